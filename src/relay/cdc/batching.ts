/**
 * The CDC relay's batching delay: a trade of latency for CPU. Sending each
 * commit as it arrives gives Kafka tiny requests and the consumer tiny
 * batches at one event per transaction; waiting a few ms for more commits
 * fills them. What is queued waits until its oldest unsent transaction has
 * been queued `delayMs` (time spent awaiting the previous publish counts), or
 * until `maxEvents` events or `maxBytes` bytes are queued.
 *
 * The held events stay in the commit queue, so the relay is never idle while
 * it holds them: no keepalive reply confirms past a held commit, and a crash
 * during the hold replays them (relay.ts).
 */
import { WakeableSleep } from '../../backoff.js';
import type { Sql } from '../../db.js';
import type { Logger } from '../../log.js';
import type { CommitQueue } from './commit-queue.js';

export interface BatchingOptions {
  delayMs: number;
  maxEvents: number;
  maxBytes: number;
}

export class BatchingDelay {
  readonly #options: BatchingOptions;
  readonly #wait = new WakeableSleep();

  constructor(options: BatchingOptions) {
    this.#options = options;
  }

  /** How much longer the queued events may wait for more commits (0 or less: send them now). */
  remainingMs(queue: CommitQueue): number {
    if (this.#options.delayMs === 0 || this.#full(queue)) return 0;
    const oldest = queue.oldestUnsentQueuedAt;
    return oldest === undefined ? 0 : oldest + this.#options.delayMs - performance.now();
  }

  /** Waits `ms`, or less if released. */
  hold(ms: number): Promise<void> {
    return this.#wait.sleep(ms);
  }

  /** A commit was queued: ends the hold if a full batch is there now. */
  queued(queue: CommitQueue): void {
    if (this.#wait.sleeping && this.#full(queue)) this.#wait.wake();
  }

  /** Ends the hold (the relay stops). */
  release(): void {
    this.#wait.wake();
  }

  #full(queue: CommitQueue): boolean {
    return queue.buffered >= this.#options.maxEvents || queue.bufferedBytes >= this.#options.maxBytes;
  }
}

/**
 * Warns when the delay is not well below the server's wal_sender_timeout (as
 * the server is configured; a replication connection may set its own).
 * Keepalives are answered during a hold, so the connection survives it; the
 * warning is about the slot, whose confirmed position stands still while a
 * hold lasts.
 */
export async function checkDelayAgainstTimeout(sql: Sql, delayMs: number, log: Logger): Promise<void> {
  if (delayMs === 0) return;
  const [row] = await sql<{ ms: number }[]>`SELECT setting::int AS ms FROM pg_settings WHERE name = 'wal_sender_timeout'`;
  const walSenderTimeoutMs = row?.ms ?? 0;
  // Rationale: a quarter of the timeout is a lag the server already tolerates
  // from a quiet client several times over; anything longer is a polling
  // relay's territory (config.ts bounds the flag at 5 s).
  if (walSenderTimeoutMs > 0 && delayMs * 4 > walSenderTimeoutMs) log.warn({ batchDelayMs: delayMs, walSenderTimeoutMs }, 'the batching delay is not well below wal_sender_timeout');
}
