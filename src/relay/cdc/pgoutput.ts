/**
 * A minimal pgoutput decoder (protocol version 1) for exactly what the CDC
 * relay reads: transaction boundaries, the outbox table's inserts and the
 * outbox's logical messages. Everything else is skipped by its tag.
 *
 * Columns are never parsed into JavaScript values: the decoder returns
 * views into one copy of the WAL message for the columns the relay forwards,
 * and the payload's bytes reach Kafka exactly as PostgreSQL sent them. The
 * general-purpose parser of pg-logical-replication builds an object per row
 * with every column converted; that was most of the relay's decoding cost
 * (see docs/capacity.md).
 *
 * The one copy is not optional: the message node-postgres hands over is a
 * view into its socket read buffer, which it reuses for the next reads,
 * while an event waits in the relay for Kafka. Views into it would be
 * overwritten under the relay's feet (the CDC SIGKILL test caught exactly
 * that: event ids of one event published with bytes of another).
 *
 * Message layouts: PostgreSQL documentation, "Logical Replication Message
 * Formats" (protocol version 1).
 */
import { PgoutputPlugin } from 'pg-logical-replication';

/** The outbox columns the relay needs, as raw bytes. */
export interface OutboxColumns {
  eventId: Buffer;
  aggregateType: Buffer;
  aggregateId: Buffer;
  aggregateVersion: Buffer;
  eventType: Buffer;
  payload: Buffer;
  headers: Buffer;
}

export type PgoutputMessage =
  | { tag: 'begin' }
  | {
      tag: 'commit';
      /** End LSN of the commit record: what may be confirmed once the transaction is published. */
      endLsn: bigint;
      /** When the transaction committed, epoch ms. */
      committedAt: number;
    }
  | { tag: 'insert'; row: OutboxColumns }
  | { tag: 'message'; transactional: boolean; lsn: bigint; prefix: string; content: Buffer }
  /** A message the relay has no use for (another table's change, a type, an origin...). */
  | { tag: 'other' };

const NEEDED = ['event_id', 'aggregate_type', 'aggregate_id', 'aggregate_version', 'event_type', 'payload', 'headers'] as const;
type Needed = (typeof NEEDED)[number];
const FIELD: Record<Needed, keyof OutboxColumns> = {
  event_id: 'eventId',
  aggregate_type: 'aggregateType',
  aggregate_id: 'aggregateId',
  aggregate_version: 'aggregateVersion',
  event_type: 'eventType',
  payload: 'payload',
  headers: 'headers',
};

/** For each column position of a relation, the field it fills (or undefined: skipped). */
type ColumnMap = (keyof OutboxColumns | undefined)[];

/** 2000-01-01T00:00:00Z, PostgreSQL's epoch, in Unix epoch ms. */
const POSTGRES_EPOCH_MS = 946_684_800_000;

const OTHER: PgoutputMessage = Object.freeze({ tag: 'other' });
const BEGIN: PgoutputMessage = Object.freeze({ tag: 'begin' });
const EMPTY = Buffer.alloc(0);

export class PgoutputDecoder {
  readonly #schema: string;
  readonly #table: string;
  /** Relations announced on this connection that are the outbox, by OID. */
  readonly #outbox = new Map<number, ColumnMap>();

  /** Decodes the inserts of `<schema>.<table>` and every logical message. */
  constructor(schema: string, table = 'outbox') {
    this.#schema = schema;
    this.#table = table;
  }

  decode(buffer: Buffer): PgoutputMessage {
    switch (buffer[0]) {
      case 0x42: // 'B' begin
        return BEGIN;
      case 0x43: // 'C' commit: flags, commit LSN, end LSN, timestamp (µs since 2000-01-01)
        return { tag: 'commit', endLsn: buffer.readBigUInt64BE(10), committedAt: Number(buffer.readBigInt64BE(18)) / 1_000 + POSTGRES_EPOCH_MS };
      case 0x52: // 'R' relation
        this.#relation(buffer);
        return OTHER;
      case 0x49: // 'I' insert
        return this.#insert(buffer);
      case 0x4d: // 'M' logical message
        return message(buffer);
      default:
        return OTHER;
    }
  }

  #relation(buffer: Buffer): void {
    const oid = buffer.readUInt32BE(1);
    let at = 5;
    const [namespace, afterNamespace] = cstring(buffer, at);
    const [name, afterName] = cstring(buffer, afterNamespace);
    at = afterName + 1; // replica identity setting
    if (namespace !== this.#schema || name !== this.#table) {
      // A relation re-announced under another name is no longer the outbox.
      this.#outbox.delete(oid);
      return;
    }
    const columns = buffer.readUInt16BE(at);
    at += 2;
    const map: ColumnMap = [];
    for (let i = 0; i < columns; i++) {
      at += 1; // flags
      const [column, next] = cstring(buffer, at);
      at = next + 8; // type OID, type modifier
      map.push((NEEDED as readonly string[]).includes(column) ? FIELD[column as Needed] : undefined);
    }
    this.#outbox.set(oid, map);
  }

  #insert(message: Buffer): PgoutputMessage {
    const map = this.#outbox.get(message.readUInt32BE(1));
    if (!map) return OTHER;
    const buffer = Buffer.from(message);
    // buffer[5] is 'N' (a new tuple).
    const columns = buffer.readUInt16BE(6);
    let at = 8;
    const row: OutboxColumns = { eventId: EMPTY, aggregateType: EMPTY, aggregateId: EMPTY, aggregateVersion: EMPTY, eventType: EMPTY, payload: EMPTY, headers: EMPTY };
    for (let i = 0; i < columns; i++) {
      const kind = buffer[at];
      at += 1;
      // 'n' null and 'u' unchanged TOAST carry no bytes; 't' text and 'b' binary a length.
      if (kind !== 0x74 && kind !== 0x62) continue;
      const length = buffer.readUInt32BE(at);
      at += 4;
      const field = map[i];
      if (field) row[field] = buffer.subarray(at, at + length);
      at += length;
    }
    return { tag: 'insert', row };
  }
}

/** 'M': flags, LSN, prefix (C string), content length, content (copied: see the module comment). */
function message(buffer: Buffer): PgoutputMessage {
  const transactional = buffer[1] === 1;
  const lsn = buffer.readBigUInt64BE(2);
  const [prefix, at] = cstring(buffer, 10);
  const length = buffer.readUInt32BE(at);
  return { tag: 'message', transactional, lsn, prefix, content: Buffer.from(buffer.subarray(at + 4, at + 4 + length)) };
}

/** A NUL-terminated string at `at`, and the offset just past its NUL. */
function cstring(buffer: Buffer, at: number): [string, number] {
  const end = buffer.indexOf(0, at);
  return [buffer.toString('utf8', at, end), end + 1];
}

/**
 * pg-logical-replication's pgoutput plugin with our decoder: the library
 * starts replication with the plugin's options and hands every WAL message
 * to parse(); the relay receives what the decoder returns.
 */
export class OutboxPlugin extends PgoutputPlugin {
  readonly #decoder: PgoutputDecoder;

  constructor(decoder: PgoutputDecoder, options: ConstructorParameters<typeof PgoutputPlugin>[0]) {
    super(options);
    this.#decoder = decoder;
  }

  // The library types parse() as returning its own message shape; the relay's
  // 'data' listener receives this decoder's instead.
  override parse(buffer: Buffer): ReturnType<PgoutputPlugin['parse']> {
    return this.#decoder.decode(buffer) as unknown as ReturnType<PgoutputPlugin['parse']>;
  }
}
