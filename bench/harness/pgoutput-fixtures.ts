/**
 * pgoutput wire messages built by hand from the protocol description
 * ("Logical Replication Message Formats", version 1), for decoder tests and
 * micro-benchmarks.
 */
import { randomUUID } from 'node:crypto';

class WireWriter {
  readonly #parts: Buffer[] = [];
  byte(value: number): this {
    this.#parts.push(Buffer.from([value]));
    return this;
  }
  int16(value: number): this {
    const b = Buffer.alloc(2);
    b.writeInt16BE(value);
    this.#parts.push(b);
    return this;
  }
  int32(value: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32BE(value);
    this.#parts.push(b);
    return this;
  }
  int64(value: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(value);
    this.#parts.push(b);
    return this;
  }
  cstring(value: string): this {
    this.#parts.push(Buffer.from(`${value}\0`, 'utf8'));
    return this;
  }
  text(value: string): this {
    const bytes = Buffer.from(value, 'utf8');
    return this.byte(0x74).int32(bytes.length).raw(bytes);
  }
  raw(bytes: Buffer): this {
    this.#parts.push(bytes);
    return this;
  }
  build(): Buffer {
    return Buffer.concat(this.#parts);
  }
}

/** The outbox table's columns as PostgreSQL announces them: name and type OID. */
export const OUTBOX_RELATION_COLUMNS: readonly [string, number][] = [
  ['id', 20],
  ['event_id', 2950],
  ['aggregate_type', 25],
  ['aggregate_id', 25],
  ['aggregate_version', 23],
  ['event_type', 25],
  ['payload', 3802],
  ['headers', 3802],
  ['created_at', 1184],
  ['published_at', 1184],
];

export function relationMessage(oid: number, schema: string, table: string, columns: readonly [string, number][] = OUTBOX_RELATION_COLUMNS): Buffer {
  const w = new WireWriter().byte(0x52).int32(oid).cstring(schema).cstring(table).byte(0x64).int16(columns.length);
  for (const [name, type] of columns) w.byte(0).cstring(name).int32(type).int32(-1);
  return w.build();
}

export interface OutboxInsert {
  eventId?: string;
  aggregateType?: string;
  aggregateId?: string;
  aggregateVersion?: number;
  eventType?: string;
  payload: string;
  headers?: string;
}

/** An insert into the outbox: every column as text, published_at null. */
export function insertMessage(oid: number, row: OutboxInsert): Buffer {
  const w = new WireWriter().byte(0x49).int32(oid).byte(0x4e).int16(OUTBOX_RELATION_COLUMNS.length);
  w.text('123456')
    .text(row.eventId ?? randomUUID())
    .text(row.aggregateType ?? 'order')
    .text(row.aggregateId ?? randomUUID())
    .text(String(row.aggregateVersion ?? 1))
    .text(row.eventType ?? 'OrderPlaced')
    .text(row.payload)
    .text(row.headers ?? '{}');
  w.text('2026-11-23 14:37:35.340123+00').byte(0x6e);
  return w.build();
}

export function beginMessage(finalLsn: bigint): Buffer {
  return new WireWriter().byte(0x42).int64(finalLsn).int64(0n).int32(1234).build();
}

/** `commitTimeUs`: microseconds since 2000-01-01, as PostgreSQL sends it. */
export function commitMessage(commitLsn: bigint, endLsn: bigint, commitTimeUs = 0n): Buffer {
  return new WireWriter().byte(0x43).byte(0).int64(commitLsn).int64(endLsn).int64(commitTimeUs).build();
}

export function logicalMessage(transactional: boolean, lsn: bigint, prefix: string, content: Buffer): Buffer {
  return new WireWriter().byte(0x4d).byte(transactional ? 1 : 0).int64(lsn).cstring(prefix).int32(content.length).raw(content).build();
}
