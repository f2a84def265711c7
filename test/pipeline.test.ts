/**
 * The whole pipeline on the real servers: HTTP -> outbox -> polling relay ->
 * Kafka -> idempotent consumer, and the crash cases that make duplicates.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { armFailpoint, disarmFailpoint } from '../src/chaos/failpoints.js';
import type { HeaderSet } from '../src/config.js';
import { HEADERS, topicFor } from '../src/events.js';
import { createOrderService } from '../src/orders/http.js';
import { placeOrders } from '../src/orders/write-path.js';
import { createPollingRelay } from '../src/relay/table/polling.js';
import { WireEncoder } from '../src/relay/wire.js';
import { eventually, headerOf, log, readTopic, startTestConsumer, testEnv, topicMessageCount, type TestEnv } from './helpers.js';

function startRelay(env: TestEnv, options: { intervalMs?: number; batchSize?: number; headers?: HeaderSet } = {}) {
  const relay = createPollingRelay({
    sql: env.pool({ max: 2 }),
    publisher: env.publisher(),
    wire: options.headers ? new WireEncoder({ route: (type) => topicFor(env.config.topicPrefix, type), headers: options.headers, forward: [] }) : env.wire,
    log,
    batchSize: options.batchSize ?? 100,
    intervalMs: options.intervalMs ?? 500,
  });
  relay.start();
  env.defer(() => relay.stop());
  return relay;
}

describe('pipeline', () => {
  it('delivers an order placed over HTTP to the consumer, whose side effect is applied exactly once', async (t) => {
    const env = await testEnv(t);
    const app = createOrderService({ sql: env.pool({ max: 4 }), log, bodyLimit: 65_536 });
    env.defer(() => app.close());
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    assert.ok(address && typeof address === 'object');
    const { deliveries } = await startTestConsumer(env);
    startRelay(env, { headers: 'all' });

    const response = await fetch(`http://127.0.0.1:${address.port}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ customerId: 'alice', amountCents: 4_200, currency: 'EUR' }),
    });
    assert.equal(response.status, 201);
    const placed = (await response.json()) as { orderId: string; eventId: string; aggregateVersion: number };
    assert.equal(placed.aggregateVersion, 1);

    await eventually('the ledger entry', async () => (await env.sql`SELECT 1 FROM order_ledger WHERE event_id = ${placed.eventId}`).length === 1);
    const [ledger] = await env.sql`SELECT order_id, aggregate_version, event_type, amount_cents, (SELECT count(*)::int FROM order_ledger) AS entries FROM order_ledger WHERE event_id = ${placed.eventId}`;
    assert.deepEqual({ ...ledger }, { orderId: placed.orderId, aggregateVersion: 1, eventType: 'OrderPlaced', amountCents: 4_200, entries: 1 });
    const [inbox] = await env.sql`SELECT count(*)::int AS n FROM inbox WHERE event_id = ${placed.eventId}`;
    assert.equal(inbox?.n, 1);
    const [outbox] = await env.sql`SELECT published_at FROM outbox WHERE event_id = ${placed.eventId}`;
    assert.ok(outbox?.publishedAt instanceof Date, 'the outbox row is marked published');
    assert.equal(deliveries.length, 1);
    assert.equal(deliveries[0]?.applied, true);
  });

  it('publishes with the aggregate id as key and two headers by default: the event id and the version', async (t) => {
    const env = await testEnv(t);
    const [written] = await placeOrders(env.sql, [{ customerId: 'bob', amountCents: 1, currency: 'USD', headers: { traceparent: '00-abc-def-01' } }]);
    startRelay(env);
    const [message] = await readTopic(env.kafka, env.topic('order'), 1);
    assert.ok(message && written);
    assert.equal(message.key?.toString(), written.orderId);
    assert.deepEqual(Object.keys(message.headers ?? {}).sort(), [HEADERS.aggregateVersion, HEADERS.eventId]);
    assert.equal(headerOf(message, HEADERS.eventId), written.eventId);
    assert.equal(headerOf(message, HEADERS.aggregateVersion), '1');
    assert.deepEqual(JSON.parse(message.value!.toString()), { orderId: written.orderId, customerId: 'bob', amountCents: 1, currency: 'USD' });
  });

  it('with --kafka-headers all, adds the event type, aggregate type and the stored headers, one topic per aggregate type', async (t) => {
    const env = await testEnv(t);
    const [written] = await placeOrders(env.sql, [{ customerId: 'bob', amountCents: 1, currency: 'USD', headers: { traceparent: '00-abc-def-01' } }]);
    startRelay(env, { headers: 'all' });
    const [message] = await readTopic(env.kafka, env.topic('order'), 1);
    assert.ok(message && written);
    assert.equal(message.key?.toString(), written.orderId);
    assert.equal(headerOf(message, HEADERS.eventId), written.eventId);
    assert.equal(headerOf(message, HEADERS.eventType), 'OrderPlaced');
    assert.equal(headerOf(message, HEADERS.aggregateType), 'order');
    assert.equal(headerOf(message, HEADERS.aggregateVersion), '1');
    assert.equal(headerOf(message, 'traceparent'), '00-abc-def-01');
  });

  it('applies an event delivered twice only once and counts the duplicate', async (t) => {
    const env = await testEnv(t);
    const [written] = await placeOrders(env.sql, [{ customerId: 'carol', amountCents: 7, currency: 'EUR' }]);
    const [row] = await env.sql`SELECT event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload::text AS payload FROM outbox`;
    assert.ok(row && written);
    const message = env.wire.fromEvent({ eventId: row.eventId, aggregateType: row.aggregateType, aggregateId: row.aggregateId, aggregateVersion: row.aggregateVersion, eventType: row.eventType, payload: row.payload, headers: {} });
    const publisher = env.publisher();
    await publisher.publish([message]);
    await publisher.publish([message]);
    const { consumer, deliveries } = await startTestConsumer(env);
    await eventually('two deliveries', () => deliveries.length === 2);
    assert.deepEqual(deliveries.map((d) => d.applied), [true, false]);
    assert.deepEqual({ ...consumer.stats }, { received: 2, applied: 1, duplicates: 1, rejected: 0 });
    const [ledger] = await env.sql`SELECT count(*)::int AS n FROM order_ledger WHERE event_id = ${written.eventId}`;
    assert.equal(ledger?.n, 1);
  });

  it('rejects a message with a malformed id alone, and knows an id repeated in upper case in the same batch', async (t) => {
    const env = await testEnv(t);
    const event = (eventId: string, version: number) =>
      env.wire.fromEvent({ eventId, aggregateType: 'order', aggregateId: 'o-1', aggregateVersion: version, eventType: 'OrderAmended', payload: '{"deltaCents":5}', headers: {} });
    const id = randomUUID();
    const later = randomUUID();
    // One key, one partition, one send: the consumer gets them as one batch.
    await env.publisher().publish([event(id, 1), event('not-a-uuid, or two', 2), event(id.toUpperCase(), 1), event(later, 2)]);
    const { consumer, deliveries } = await startTestConsumer(env);
    await eventually('three deliveries', () => deliveries.length === 3);
    assert.deepEqual(deliveries.map((d) => [d.eventId.toLowerCase(), d.applied]), [[id, true], [id, false], [later, true]]);
    assert.deepEqual({ ...consumer.stats }, { received: 3, applied: 2, duplicates: 1, rejected: 1 });
    const ledger = await env.sql<{ eventId: string; amountCents: string }[]>`SELECT event_id::text AS event_id, amount_cents FROM order_ledger ORDER BY entry_id`;
    assert.deepEqual(ledger.map((r) => [r.eventId, Number(r.amountCents)]), [[id, 5], [later, 5]]);
  });

  it('re-publishes after a relay crash between publish and mark; the consumer discards the duplicate', async (t) => {
    const env = await testEnv(t);
    const placed = await placeOrders(env.sql, Array.from({ length: 20 }, (_, i) => ({ customerId: `d-${i}`, amountCents: i, currency: 'EUR' })));
    const { consumer, deliveries } = await startTestConsumer(env);

    armFailpoint('relay.after-publish-before-mark', { action: 'throw', every: 1, times: 1 });
    env.defer(() => disarmFailpoint());
    const first = startRelay(env, { batchSize: 20 });
    await eventually('the relay to crash at the failpoint', () => first.crashed !== undefined);
    const [unmarked] = await env.sql`SELECT count(*)::int AS n FROM outbox WHERE published_at IS NULL`;
    assert.equal(unmarked?.n, 20, 'the crash rolled back the marks, though Kafka has the events');

    startRelay(env, { batchSize: 20 }); // the restart
    await eventually('every event delivered twice', () => deliveries.length === 40);
    await eventually('all rows marked', async () => (await env.sql`SELECT 1 FROM outbox WHERE published_at IS NULL`).length === 0);
    assert.equal(consumer.stats.applied, 20);
    assert.equal(consumer.stats.duplicates, 20);
    const [ledger] = await env.sql`SELECT count(*)::int AS entries, count(DISTINCT event_id)::int AS events FROM order_ledger`;
    assert.deepEqual({ ...ledger }, { entries: 20, events: 20 });
    assert.deepEqual(new Set(deliveries.map((d) => d.eventId)), new Set(placed.map((p) => p.eventId)));
  });

  it('drains a backlog pass after pass without waiting for the poll interval', async (t) => {
    const env = await testEnv(t);
    await placeOrders(env.sql, Array.from({ length: 1_000 }, (_, i) => ({ customerId: `e-${i}`, amountCents: i, currency: 'EUR' })));
    const relay = createPollingRelay({ sql: env.pool({ max: 2 }), publisher: env.publisher(), wire: env.wire, log, batchSize: 100, intervalMs: 60_000 });
    relay.start();
    env.defer(() => relay.stop());
    // Ten full batches with a 60 s interval: only possible if full batches do not wait.
    await eventually('the backlog drained', async () => (await env.sql`SELECT 1 FROM outbox WHERE published_at IS NULL`).length === 0, 20_000);
    assert.equal(relay.published, 1_000);
  });

  it('keeps only one polling relay publishing at a time', async (t) => {
    const env = await testEnv(t);
    await placeOrders(env.sql, Array.from({ length: 300 }, (_, i) => ({ customerId: `f-${i}`, amountCents: i, currency: 'EUR' })));
    const relays = [startRelay(env, { batchSize: 10, intervalMs: 50 }), startRelay(env, { batchSize: 10, intervalMs: 50 })];
    await eventually('the backlog drained', async () => (await env.sql`SELECT 1 FROM outbox WHERE published_at IS NULL`).length === 0);
    assert.equal(relays[0]!.published + relays[1]!.published, 300, 'no row was published by both');
    assert.equal(await topicMessageCount(env.kafka, env.topic()), 300, 'Kafka holds each event once');
  });
});
