/**
 * The CDC relay's acknowledgement state: committed transactions in commit
 * order, how much of each Kafka has acknowledged, and the one position that
 * may be confirmed to PostgreSQL, the end LSN of the last transaction at the
 * head whose every event is acknowledged. A transaction confirmed out of
 * order would let a replay skip an earlier one that Kafka never got.
 */
import type { WireEvent } from '../../events.js';
import type { Lsn } from './lsn.js';
import type { EventLog } from './spill.js';

export interface QueuedTransaction {
  /** The end LSN of the commit record (or of a non-transactional message): what may be confirmed once published. */
  endLsn: Lsn;
  /** Its events, in memory or spilled to disk (spill.ts). */
  events: EventLog;
  /** How many of `events` Kafka has acknowledged. */
  published: number;
  /** Epoch ms: when it committed (from the WAL), and when its commit reached the relay (benchmarks' stages). */
  committedAt?: number;
  receivedAt?: number;
  /** About the bytes of its events' keys and values (what a batch's byte bound counts). */
  bytes?: number;
  /** performance.now() when it was queued: a batching delay counts from the oldest unsent one. */
  queuedAt?: number;
}

export class CommitQueue {
  readonly #transactions: QueuedTransaction[] = [];
  #buffered = 0;
  #bufferedBytes = 0;

  /** Events queued and not yet acknowledged. */
  get buffered(): number {
    return this.#buffered;
  }

  /** About the bytes of those events (a partly acknowledged transaction counts its share). */
  get bufferedBytes(): number {
    return this.#bufferedBytes;
  }

  /**
   * When the oldest transaction with events Kafka has not acknowledged was
   * queued (performance.now()). The relay holds only while nothing is in
   * flight, so then that is the oldest not yet handed to Kafka.
   */
  get oldestUnsentQueuedAt(): number | undefined {
    for (const transaction of this.#transactions) if (transaction.published < transaction.events.length) return transaction.queuedAt;
    return undefined;
  }

  get isEmpty(): boolean {
    return this.#transactions.length === 0;
  }

  push(transaction: QueuedTransaction): void {
    transaction.queuedAt ??= performance.now();
    this.#transactions.push(transaction);
    this.#buffered += transaction.events.length - transaction.published;
    this.#bufferedBytes += unsentShare(transaction, transaction.events.length - transaction.published);
  }

  /** Forgets everything (a new connection replays from the confirmed position). */
  clear(): void {
    for (const transaction of this.#transactions) transaction.events.close();
    this.#transactions.length = 0;
    this.#buffered = 0;
    this.#bufferedBytes = 0;
  }

  /** The next unacknowledged events in commit order, at most `max`, across transactions. */
  nextBatch(max: number): WireEvent[] {
    const batch: WireEvent[] = [];
    for (const transaction of this.#transactions) {
      if (transaction.published < transaction.events.length) batch.push(...transaction.events.read(transaction.published, max - batch.length));
      if (batch.length >= max) break;
    }
    return batch;
  }

  /** Kafka acknowledged the `count` events nextBatch() handed out. */
  acknowledge(count: number): void {
    let left = count;
    for (const transaction of this.#transactions) {
      if (left === 0) break;
      const take = Math.min(left, transaction.events.length - transaction.published);
      transaction.published += take;
      this.#bufferedBytes -= unsentShare(transaction, take);
      left -= take;
    }
    this.#buffered -= count;
    if (this.#buffered === 0) this.#bufferedBytes = 0; // no float residue once nothing is left
  }

  /**
   * Drops the fully acknowledged transactions at the head, handing each to
   * `finished`, and returns the end LSN of the last one dropped: the position
   * that may now be confirmed (undefined if none finished).
   */
  takeFinished(finished?: (transaction: QueuedTransaction) => void): Lsn | undefined {
    let confirmable: Lsn | undefined;
    while (this.#transactions.length > 0) {
      const head = this.#transactions[0]!;
      if (head.published < head.events.length) break;
      this.#transactions.shift();
      head.events.close();
      finished?.(head);
      if (confirmable === undefined || head.endLsn > confirmable) confirmable = head.endLsn;
    }
    return confirmable;
  }
}

/** The bytes of `count` of a transaction's events, its events taken as equal in size. */
function unsentShare(transaction: QueuedTransaction, count: number): number {
  const { bytes = 0, events } = transaction;
  return events.length === 0 ? 0 : (bytes * count) / events.length;
}
