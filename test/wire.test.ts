/**
 * The relay's lean path, piece by piece and without servers: the pgoutput
 * decoder, the logical-message frame, the Java-compatible partitioner, the
 * Kafka record a relay builds, and the consumer's amount reader.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { Partitioners } from 'kafkajs';
import { beginMessage, commitMessage, insertMessage, logicalMessage, relationMessage } from '../bench/harness/pgoutput-fixtures.js';
import { amountOf } from '../src/consumer/consumer.js';
import { partitionOf } from '../src/kafka/murmur2.js';
import { decodeOutboxFrame, encodeOutboxFrame } from '../src/outbox-frame.js';
import { PgoutputDecoder } from '../src/relay/cdc/pgoutput.js';
import { WireEncoder } from '../src/relay/wire.js';

const text = (b: Buffer | string | undefined) => (b === undefined ? undefined : b.toString());

describe('pgoutput decoder', () => {
  it("slices the outbox's columns and the commit's end LSN, and skips other tables", () => {
    const decoder = new PgoutputDecoder('app');
    assert.deepEqual(decoder.decode(relationMessage(10, 'app', 'outbox')), { tag: 'other' });
    assert.deepEqual(decoder.decode(relationMessage(11, 'app', 'orders', [['order_id', 2950], ['payload', 3802]])), { tag: 'other' });
    assert.deepEqual(decoder.decode(relationMessage(12, 'other_schema', 'outbox')), { tag: 'other' });
    assert.deepEqual(decoder.decode(beginMessage(0x1_0000_0000n)), { tag: 'begin' });

    const eventId = randomUUID();
    const payload = '{"orderId": "o-1", "amountCents": 4200}';
    const insert = insertMessage(10, { eventId, aggregateId: 'o-1', aggregateVersion: 7, payload, headers: '{"traceparent": "00-ab"}' });
    const decoded = decoder.decode(insert);
    assert.equal(decoded.tag, 'insert');
    if (decoded.tag !== 'insert') return;
    assert.equal(text(decoded.row.eventId), eventId);
    assert.equal(text(decoded.row.aggregateType), 'order');
    assert.equal(text(decoded.row.aggregateId), 'o-1');
    assert.equal(text(decoded.row.aggregateVersion), '7');
    assert.equal(text(decoded.row.eventType), 'OrderPlaced');
    assert.equal(text(decoded.row.payload), payload);
    assert.equal(text(decoded.row.headers), '{"traceparent": "00-ab"}');
    // node-postgres reuses the buffer the message came in: what the relay keeps must not change with it.
    insert.fill(0x20);
    assert.equal(text(decoded.row.payload), payload, 'the decoded columns survive the input buffer being reused');
    assert.equal(text(decoded.row.eventId), eventId);

    // Inserts into another table of the publication, or a relation never announced, are not events.
    assert.deepEqual(decoder.decode(insertMessage(11, { payload })), { tag: 'other' });
    assert.deepEqual(decoder.decode(insertMessage(99, { payload })), { tag: 'other' });
    // Commit timestamp: 1 s after PostgreSQL's epoch (2000-01-01), in µs.
    assert.deepEqual(decoder.decode(commitMessage(0x2_0000_0010n, 0x2_0000_0040n, 1_000_000n)), { tag: 'commit', endLsn: 0x2_0000_0040n, committedAt: Date.UTC(2000, 0, 1) + 1_000 });
  });

  it('reads logical messages with their prefix, transactional flag and LSN', () => {
    const decoder = new PgoutputDecoder('app');
    const content = Buffer.from('hello');
    const decoded = decoder.decode(logicalMessage(true, 0x3_0000_0000n, 'outbox', content));
    assert.equal(decoded.tag, 'message');
    if (decoded.tag !== 'message') return;
    assert.equal(decoded.transactional, true);
    assert.equal(decoded.lsn, 0x3_0000_0000n);
    assert.equal(decoded.prefix, 'outbox');
    assert.equal(text(decoded.content), 'hello');
  });
});

describe('logical-message frame', () => {
  it('round-trips every field, with the payload bytes as written', () => {
    const event = { eventId: randomUUID(), aggregateType: 'order', aggregateId: 'o-ü', aggregateVersion: 12, eventType: 'OrderAmended', payload: '{"deltaCents":-5,"note":"ünïcode"}', headers: { traceparent: '00-1' } };
    const columns = decodeOutboxFrame(encodeOutboxFrame(event));
    assert.equal(text(columns.eventId), event.eventId);
    assert.equal(text(columns.aggregateType), 'order');
    assert.equal(text(columns.aggregateId), 'o-ü');
    assert.equal(text(columns.aggregateVersion), '12');
    assert.equal(text(columns.eventType), 'OrderAmended');
    assert.equal(text(columns.payload), event.payload);
    assert.deepEqual(JSON.parse(text(columns.headers)!), event.headers);
  });

  it('still reads the JSON frames earlier versions wrote', () => {
    const legacy = Buffer.from(JSON.stringify({ payload: { a: 1 }, eventId: 'e', aggregateType: 'order', aggregateId: 'x', aggregateVersion: 2, eventType: 'T', headers: {} }));
    const columns = decodeOutboxFrame(legacy);
    assert.equal(text(columns.payload), '{"a":1}');
    assert.equal(text(columns.aggregateVersion), '2');
  });
});

describe('partitioning', () => {
  it("puts every key on the partition the Java client (kafkajs' DefaultPartitioner) picks", () => {
    const java = Partitioners.DefaultPartitioner();
    for (const partitions of [1, 3, 6, 24]) {
      const metadata = Array.from({ length: partitions }, (_, partitionId) => ({ partitionId, leader: 0 }));
      for (let i = 0; i < 2_000; i++) {
        const key = i % 3 === 0 ? randomUUID() : `k-${i}-${'x'.repeat(i % 7)}`;
        const expected = java({ topic: 't', partitionMetadata: metadata as never, message: { key, value: null } });
        assert.equal(partitionOf(key, partitions), expected, `key ${key}, ${partitions} partitions`);
      }
    }
  });
});

describe('Kafka record of an event', () => {
  const route = (type: string) => `outbox.event.${type}`;
  const row = { id: 1, createdAt: new Date(), eventId: 'e-1', aggregateType: 'order', aggregateId: 'o-1', aggregateVersion: 3, eventType: 'OrderPlaced', payload: '{"a":1}', headers: { traceparent: '00-x', 'x-intended-at': '12.5', id: 'spoofed' } };

  it('sends the event id and version only, by default', () => {
    const record = new WireEncoder({ route, headers: 'minimal', forward: [] }).fromEvent(row);
    assert.deepEqual(record, { topic: 'outbox.event.order', key: 'o-1', value: '{"a":1}', headers: { id: 'e-1', aggregateVersion: '3' } });
  });

  it('adds named stored headers, or all of them, never letting one override the identity', () => {
    assert.deepEqual(new WireEncoder({ route, headers: 'minimal', forward: ['x-intended-at'] }).fromEvent(row).headers, { id: 'e-1', aggregateVersion: '3', 'x-intended-at': '12.5' });
    assert.deepEqual(new WireEncoder({ route, headers: 'all', forward: [] }).fromEvent(row).headers, {
      id: 'e-1',
      aggregateVersion: '3',
      eventType: 'OrderPlaced',
      aggregateType: 'order',
      traceparent: '00-x',
      'x-intended-at': '12.5',
    });
  });

  it('forwards decoded columns as the same bytes', () => {
    const columns = decodeOutboxFrame(encodeOutboxFrame({ ...row, headers: { 'x-intended-at': '9' } }));
    const record = new WireEncoder({ route, headers: 'minimal', forward: ['x-intended-at'] }).fromColumns(columns);
    assert.equal(record.topic, 'outbox.event.order');
    assert.equal(text(record.key), 'o-1');
    assert.equal(text(record.value), '{"a":1}');
    assert.equal(text(record.headers.id), 'e-1');
    assert.equal(text(record.headers.aggregateVersion), '3');
    assert.equal(text(record.headers['x-intended-at']), '9');
  });
});

describe('consumer amount reader', () => {
  it('reads the amount of placed and amended orders from the payload bytes, as jsonb or JSON.stringify wrote them', () => {
    assert.equal(amountOf(Buffer.from('{"orderId": "x", "currency": "EUR", "amountCents": 4200, "customerId": "c"}')), 4200);
    assert.equal(amountOf(Buffer.from('{"orderId":"x","deltaCents":-17}')), -17);
    assert.equal(amountOf(Buffer.from('{"orderId":"x"}')), null);
    assert.equal(amountOf(Buffer.from('{"amountCents": "12"}')), null);
    assert.equal(amountOf(null), null);
  });
});
