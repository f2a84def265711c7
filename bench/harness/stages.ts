/**
 * The latency budget of a run, stage by stage: what the writers, the relay
 * (its own record) and the consumer each measured, merged.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createHistogram, decodeHistogram, encodeHistogram, summarizeMs, type LatencySummaryMs } from '../../src/latency.js';
import type { StageHistograms } from '../../src/relay/stages.js';
import type { ConsumerFinal } from './consumer-process.js';
import type { LoadResult } from './load-worker.js';

/** Each stage of an event's way, as an HDR histogram (encoded, µs) and its percentiles. */
export type StageSummaries = Record<'write' | 'commitToRelay' | 'relayToAck' | 'kafkaToConsumer' | 'receiptToApplied', { histogram: string; ms: LatencySummaryMs }>;

/**
 * The latency budget of a run: intended -> commit (the writers, measured
 * window), commit -> relay and relay -> Kafka ack (the relay's own record,
 * every event of the run: `--stages-file`), Kafka -> consumer receipt (from
 * the broker's append time) and receipt -> applied (the consumer, measured
 * window). A relay that records none leaves its two empty.
 */
export function stageHistograms(prefix: string, final: ConsumerFinal, loads: readonly LoadResult[]): StageSummaries {
  const relay = { commitToRelay: createHistogram(), relayToAck: createHistogram() };
  const dir = path.dirname(prefix);
  for (const file of readdirSync(dir).filter((name) => name.startsWith(`${path.basename(prefix)}.`) && name.endsWith('.json'))) {
    const recorded = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as StageHistograms;
    relay.commitToRelay.add(decodeHistogram(recorded.commitToRelay));
    relay.relayToAck.add(decodeHistogram(recorded.relayToAck));
  }
  const write = createHistogram();
  for (const load of loads) write.add(decodeHistogram(load.commitLatency));
  const entry = (h: ReturnType<typeof createHistogram>) => ({ histogram: encodeHistogram(h), ms: summarizeMs(h) });
  return {
    write: entry(write),
    commitToRelay: entry(relay.commitToRelay),
    relayToAck: entry(relay.relayToAck),
    kafkaToConsumer: entry(decodeHistogram(final.kafkaToConsumer)),
    receiptToApplied: entry(decodeHistogram(final.receiptToApplied)),
  };
}
