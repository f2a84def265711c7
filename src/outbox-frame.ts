/**
 * The binary frame of a table-less outbox event (the content of its
 * `pg_logical_emit_message`). Length-prefixed fields, so the CDC relay
 * slices what it forwards without parsing anything, and the payload's bytes
 * go to Kafka as written:
 *
 *   byte 0       format version (1)
 *   then, each as a UInt16BE length and its bytes:
 *                event id, aggregate type, aggregate id, aggregate version
 *                (decimal text), event type, headers (JSON object text)
 *   then         UInt32BE length and the payload (JSON text)
 *
 * Frames written by earlier versions were JSON objects (first byte `{`);
 * decodeOutboxFrame still reads those, so a slot holding old events drains.
 */
import type { OutboxEventInput } from './events.js';
import type { OutboxColumns } from './relay/cdc/pgoutput.js';

const FORMAT_V1 = 1;
const JSON_OPEN = 0x7b; // '{'

export function encodeOutboxFrame(event: OutboxEventInput): Buffer {
  const fields = [event.eventId, event.aggregateType, event.aggregateId, String(event.aggregateVersion), event.eventType, JSON.stringify(event.headers ?? {})].map((text) =>
    Buffer.from(text, 'utf8'),
  );
  const payload = Buffer.from(event.payload, 'utf8');
  const frame = Buffer.allocUnsafe(1 + fields.reduce((sum, f) => sum + 2 + f.length, 0) + 4 + payload.length);
  let at = frame.writeUInt8(FORMAT_V1, 0);
  for (const field of fields) {
    at = frame.writeUInt16BE(field.length, at);
    at += field.copy(frame, at);
  }
  at = frame.writeUInt32BE(payload.length, at);
  payload.copy(frame, at);
  return frame;
}

/** The frame's fields as views into `frame` (no copy). */
export function decodeOutboxFrame(frame: Buffer): OutboxColumns {
  if (frame[0] === JSON_OPEN) return decodeLegacyJson(frame);
  if (frame[0] !== FORMAT_V1) throw new Error(`unknown outbox frame format ${frame[0]}`);
  let at = 1;
  const next = () => {
    const length = frame.readUInt16BE(at);
    const field = frame.subarray(at + 2, at + 2 + length);
    at += 2 + length;
    return field;
  };
  const eventId = next();
  const aggregateType = next();
  const aggregateId = next();
  const aggregateVersion = next();
  const eventType = next();
  const headers = next();
  const length = frame.readUInt32BE(at);
  return { eventId, aggregateType, aggregateId, aggregateVersion, eventType, headers, payload: frame.subarray(at + 4, at + 4 + length) };
}

function decodeLegacyJson(frame: Buffer): OutboxColumns {
  const body = JSON.parse(frame.toString('utf8')) as Record<string, unknown>;
  const text = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value ?? null), 'utf8');
  return {
    eventId: text(body.eventId),
    aggregateType: text(body.aggregateType),
    aggregateId: text(body.aggregateId),
    aggregateVersion: text(String(body.aggregateVersion)),
    eventType: text(body.eventType),
    headers: text(body.headers ?? {}),
    payload: text(body.payload),
  };
}
