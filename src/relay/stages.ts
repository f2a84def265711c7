/**
 * Where an event's time goes inside a relay, for benchmarks that ask
 * (`--stages-file`): from its commit (the CDC relay reads the commit
 * timestamp from the WAL; the table relays the row's insert time) to the
 * relay's receipt of it, and from that receipt to Kafka's acknowledgement.
 * HDR histograms in microseconds, written as JSON when the relay stops.
 */
import { writeFileSync } from 'node:fs';
import { createHistogram, encodeHistogram, recordMsTimes, type Histogram } from '../latency.js';

export interface StageHistograms {
  /** Commit (or insert) -> the relay had the event. */
  commitToRelay: string;
  /** The relay had the event -> Kafka acknowledged it. */
  relayToAck: string;
}

export class StageRecorder {
  readonly #commitToRelay: Histogram = createHistogram();
  readonly #relayToAck: Histogram = createHistogram();
  readonly #file: string;

  constructor(file: string) {
    this.#file = file;
  }

  /** `count` events that committed at `committedAt`, reached the relay at `receivedAt` and Kafka acknowledged at `ackedAt` (epoch ms). */
  record(committedAt: number, receivedAt: number, ackedAt: number, count = 1): void {
    recordMsTimes(this.#commitToRelay, Math.max(0, receivedAt - committedAt), count);
    recordMsTimes(this.#relayToAck, Math.max(0, ackedAt - receivedAt), count);
  }

  write(): void {
    const histograms: StageHistograms = { commitToRelay: encodeHistogram(this.#commitToRelay), relayToAck: encodeHistogram(this.#relayToAck) };
    writeFileSync(this.#file, `${JSON.stringify(histograms)}\n`);
  }
}

/** The recorder `--stages-file` asks for, if any: one file per process (`<prefix>.<pid>.json`). */
export function stageRecorderFor(prefix: string | undefined): StageRecorder | undefined {
  return prefix ? new StageRecorder(`${prefix}.${process.pid}.json`) : undefined;
}
