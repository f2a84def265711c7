/**
 * Turns one replication connection's decoded pgoutput messages into committed
 * transactions for the CDC relay's commit-order queue: outbox inserts and
 * transactional outbox messages gather into the open transaction until its
 * commit; a non-transactional outbox message or a heartbeat fence is a
 * transaction of its own. A transaction that grows past the spill threshold
 * moves to disk while it is read (spill.ts).
 *
 * One reader per connection, like the decoder: a reconnect reads the open
 * transaction again from its BEGIN.
 */
import { nowMs, type WireEvent } from '../../events.js';
import type { Logger } from '../../log.js';
import { decodeOutboxFrame } from '../../outbox-frame.js';
import { OUTBOX_MESSAGE_PREFIX } from '../../queries.js';
import type { QueuedTransaction } from './commit-queue.js';
import { parseLsn } from './lsn.js';
import type { PgoutputMessage } from './pgoutput.js';
import { HEARTBEAT_PREFIX } from './slot-progress.js';
import { MemoryEvents, SpillFile } from './spill.js';
import type { WireEncoder } from '../wire.js';

export interface TransactionReaderOptions {
  wire: WireEncoder;
  /** Events a transaction holds in memory before it moves to disk. */
  spillAfterEvents: number;
  spillDir?: string | undefined;
  /** Whether outbox logical messages are this relay's to publish (see CdcRelayOptions). */
  publishLogicalMessages: boolean;
  /** Benchmarks: keep each transaction's commit and receipt times. */
  recordTimes: boolean;
  log: Logger;
  /** Receives each committed transaction, in commit order. */
  committed(transaction: QueuedTransaction): void;
}

/** The transaction being read: its events in memory until it grows past the spill threshold, then on disk. */
interface OpenTransaction {
  events: WireEvent[];
  spill: SpillFile | undefined;
  bytes: number;
}

export class TransactionReader {
  /** Transactions that went to disk while they were read. */
  spilledTransactions = 0;
  readonly #options: TransactionReaderOptions;
  #current: OpenTransaction | undefined;

  constructor(options: TransactionReaderOptions) {
    this.#options = options;
  }

  /** Whether a transaction is half-read (its commit has not arrived). */
  get reading(): boolean {
    return this.#current !== undefined;
  }

  read(lsn: string, message: PgoutputMessage): void {
    switch (message.tag) {
      case 'begin':
        this.drop();
        this.#current = { events: [], spill: undefined, bytes: 0 };
        return;
      case 'insert':
        if (this.#current) this.#add(this.#current, this.#options.wire.fromColumns(message.row));
        return;
      case 'message':
        this.#readLogicalMessage(lsn, message);
        return;
      case 'commit': {
        const open = this.#current;
        this.#current = undefined;
        if (!open) return;
        open.spill?.finish();
        const transaction: QueuedTransaction = { endLsn: message.endLsn, events: open.spill ?? new MemoryEvents(open.events), published: 0, bytes: open.bytes };
        if (this.#options.recordTimes) {
          transaction.committedAt = message.committedAt;
          transaction.receivedAt = nowMs();
        }
        this.#options.committed(transaction);
        return;
      }
      default:
        return;
    }
  }

  /** Forgets the transaction being read (a reconnect reads it again), and its file. */
  drop(): void {
    this.#current?.spill?.close();
    this.#current = undefined;
  }

  #readLogicalMessage(lsn: string, message: Extract<PgoutputMessage, { tag: 'message' }>): void {
    if (message.prefix === OUTBOX_MESSAGE_PREFIX) {
      // Another relay of the shared-out outbox publishes these; this one only
      // lets them pass, so its slot still advances past them.
      if (!this.#options.publishLogicalMessages) return;
      const event = this.#options.wire.fromColumns(decodeOutboxFrame(message.content));
      if (message.transactional && this.#current) this.#add(this.#current, event);
      else this.#options.committed({ endLsn: message.lsn || parseLsn(lsn), events: new MemoryEvents([event]), published: 0, bytes: sizeOf(event) });
      return;
    }
    if (message.prefix === HEARTBEAT_PREFIX && !message.transactional) {
      // Confirmable once everything before it is published: the slot advances
      // past WAL of tables outside the publication.
      this.#options.committed({ endLsn: message.lsn || parseLsn(lsn), events: new MemoryEvents([]), published: 0 });
    }
  }

  /** Adds an event to the transaction being read, moving it to disk once it grows past the threshold. */
  #add(open: OpenTransaction, event: WireEvent): void {
    open.bytes += sizeOf(event);
    if (open.spill) {
      open.spill.append(event);
      return;
    }
    open.events.push(event);
    if (open.events.length < this.#options.spillAfterEvents) return;
    open.spill = new SpillFile(this.#options.spillDir);
    for (const held of open.events) open.spill.append(held);
    open.events = [];
    this.spilledTransactions += 1;
    this.#options.log.info({ events: open.spill.length, file: open.spill.file }, 'a large transaction goes to disk until it commits');
  }
}

/**
 * About an event's bytes in a Kafka request: its key and value (a string's
 * length stands for its bytes; headers are left out). A bound, not a count
 * the broker checks.
 */
function sizeOf(event: WireEvent): number {
  return event.key.length + event.value.length;
}
