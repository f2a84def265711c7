/**
 * The inbox transactions of one consumer, shared by its partitions. A fetch
 * hands over a batch per partition at once; instead of a transaction each
 * (a commit and a WAL flush per partition batch, which at a few thousand
 * events per second made PostgreSQL the consumer's largest cost), the
 * batches that arrive together are applied in one statement, and batches
 * that arrive while it runs go together in the next one. One transaction is
 * in flight at a time, so a quiet consumer still writes each batch at once.
 */
import type { Sql } from '../db.js';
import { applyOnce, type DeliveredEvent, type InboxOutcome } from '../queries.js';

interface Waiting {
  events: readonly DeliveredEvent[];
  resolve: (applied: boolean[]) => void;
  reject: (error: unknown) => void;
}

export class InboxWriter {
  readonly #sql: Sql;
  #queue: Waiting[] = [];
  #busy = false;
  /** Transactions written and batches in them, for tests and metrics. */
  readonly stats = { transactions: 0, batches: 0 };

  constructor(sql: Sql) {
    this.#sql = sql;
  }

  /**
   * Applies one partition's batch; resolves, once its transaction committed,
   * with whether each event was applied here (false: a duplicate, known to
   * the inbox or earlier in the same transaction).
   */
  apply(events: readonly DeliveredEvent[]): Promise<boolean[]> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ events, resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#busy) return;
    this.#busy = true;
    // After the current turn of the event loop, so that the batches a fetch
    // handed to several partitions' handlers at once are all queued.
    setImmediate(() => void this.#write());
  }

  async #write(): Promise<void> {
    const group = this.#queue;
    this.#queue = [];
    try {
      const events = group.length === 1 ? group[0]!.events : group.flatMap((w) => w.events);
      this.stats.transactions += 1;
      this.stats.batches += group.length;
      const applied = appliedFlags(events, await applyOnce(this.#sql, events));
      let at = 0;
      for (const waiting of group) {
        waiting.resolve(applied.slice(at, at + waiting.events.length));
        at += waiting.events.length;
      }
    } catch (error) {
      for (const waiting of group) waiting.reject(error);
    } finally {
      this.#busy = false;
      if (this.#queue.length > 0) this.#schedule();
    }
  }
}

/**
 * Which events the transaction applied: all of them in the usual case (every
 * id distinct and new); otherwise the first occurrence of each id the inbox
 * did not know. PostgreSQL answers ids in lower case; a producer may have
 * sent them in upper case.
 */
function appliedFlags(events: readonly DeliveredEvent[], outcome: InboxOutcome): boolean[] {
  if (outcome.known.size === 0 && outcome.distinct === events.length) return new Array<boolean>(events.length).fill(true);
  const seen = new Set<string>();
  return events.map((event) => {
    const id = event.eventId.toLowerCase();
    const applied = !outcome.known.has(id) && !seen.has(id);
    seen.add(id);
    return applied;
  });
}
