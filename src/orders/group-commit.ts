/**
 * Group commit at the HTTP edge: orders that arrive while earlier ones are
 * being written are placed together, in one statement and one transaction
 * (one WAL flush for all of them), instead of a transaction each.
 *
 * The batching is natural, not timed: an order that finds a free writer is
 * written at once, alone, so a quiet service adds no latency; orders that
 * arrive while all writers are busy queue and leave together, up to
 * `maxBatch`, as soon as a writer frees up. Each caller's promise settles
 * only once its own order committed (or failed).
 *
 * One bad order must not fail the others: input is validated before it
 * queues (validateOrder), and if a batch statement still fails (a
 * client-chosen order id that exists already, say), its orders are written
 * again one by one, so each gets its own outcome.
 */
import type { Sql } from '../db.js';
import { placeOrders, validateOrder, type OutboxStore, type PlaceOrderInput, type WrittenEvent } from './write-path.js';

export interface GroupCommitOptions {
  sql: Sql;
  store: OutboxStore;
  /** Most orders in one statement. */
  maxBatch: number;
  /** Statements in flight at once (each holds a connection). */
  writers: number;
}

interface Pending {
  input: PlaceOrderInput;
  resolve: (written: WrittenEvent) => void;
  reject: (error: unknown) => void;
}

export class GroupCommitter {
  readonly #options: GroupCommitOptions;
  readonly #queue: Pending[] = [];
  #writing = 0;
  /** Statements written and orders in them, for the service's metrics and tests. */
  readonly stats = { statements: 0, orders: 0, retriedOneByOne: 0 };

  constructor(options: GroupCommitOptions) {
    this.#options = options;
  }

  /** Resolves when this order committed; rejects with its own error (INVALID_INPUT before anything is written). */
  place(input: PlaceOrderInput): Promise<WrittenEvent> {
    // Throws for bad input, before the order can share a statement with others.
    validateOrder(input);
    return new Promise((resolve, reject) => {
      this.#queue.push({ input, resolve, reject });
      this.#drain();
    });
  }

  #drain(): void {
    while (this.#writing < this.#options.writers && this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#options.maxBatch);
      this.#writing += 1;
      void this.#write(batch).finally(() => {
        this.#writing -= 1;
        this.#drain();
      });
    }
  }

  async #write(batch: Pending[]): Promise<void> {
    this.stats.statements += 1;
    this.stats.orders += batch.length;
    try {
      const written = await placeOrders(this.#options.sql, batch.map((p) => p.input), this.#options.store);
      batch.forEach((p, i) => p.resolve(written[i]!));
    } catch (error) {
      if (batch.length === 1 || !isDataError(error)) {
        // A lost connection may have committed or not: retrying could place
        // an order twice, so every caller gets the error (as a lone request would).
        for (const p of batch) p.reject(error);
        return;
      }
      // Which order failed the statement is unknown: each on its own now.
      this.stats.retriedOneByOne += batch.length;
      await Promise.all(
        batch.map(async (p) => {
          try {
            const [written] = await placeOrders(this.#options.sql, [p.input], this.#options.store);
            p.resolve(written!);
          } catch (single) {
            p.reject(single);
          }
        }),
      );
    }
  }
}

/**
 * A statement PostgreSQL refused because of one order's data (SQLSTATE
 * class 22, data exception, or 23, integrity constraint violation): nothing
 * was written, and the other orders of the batch can go alone.
 */
function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && /^2[23]/.test(code);
}
