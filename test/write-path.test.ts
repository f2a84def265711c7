import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { OutboxBenchError } from '../src/errors.js';
import { amendOrders, orderPlacedEvent, placeOrder, placeOrders, validateOrder, writeOutboxEvents } from '../src/orders/write-path.js';
import { testEnv } from './helpers.js';

const order = (customerId = 'c-1') => ({ customerId, amountCents: 1234, currency: 'EUR' });

describe('write path', () => {
  it('writes the order and its OrderPlaced outbox row together', async (t) => {
    const env = await testEnv(t);
    const written = await placeOrder(env.sql, order());
    const [row] = await env.sql`SELECT aggregate_id, aggregate_version, event_type, payload, published_at FROM outbox WHERE event_id = ${written.eventId}`;
    assert.equal(row?.aggregateId, written.orderId);
    assert.equal(row?.aggregateVersion, 1);
    assert.equal(row?.eventType, 'OrderPlaced');
    assert.deepEqual(row?.payload, { orderId: written.orderId, customerId: 'c-1', amountCents: 1234, currency: 'EUR' });
    assert.equal(row?.publishedAt, null);
    const [placed] = await env.sql`SELECT count(*)::int AS n FROM orders WHERE order_id = ${written.orderId}`;
    assert.equal(placed?.n, 1);
  });

  it('leaves neither an order nor an outbox row when the transaction rolls back', async (t) => {
    const env = await testEnv(t);
    const input = validateOrder(order());
    await assert.rejects(
      env.sql.begin(async (tx) => {
        await tx`INSERT INTO orders (order_id, customer_id, amount_cents, currency) VALUES (${input.orderId}, ${input.customerId}, ${input.amountCents}, ${input.currency})`;
        await writeOutboxEvents(tx, [orderPlacedEvent(input)]);
        throw new Error('business rule failed after both writes');
      }),
      /business rule failed/,
    );
    const [counts] = await env.sql`SELECT (SELECT count(*) FROM orders)::int AS orders, (SELECT count(*) FROM outbox)::int AS outbox`;
    assert.deepEqual({ ...counts }, { orders: 0, outbox: 0 });
  });

  it('is all or nothing for a batch: one bad order fails the whole statement', async (t) => {
    const env = await testEnv(t);
    const existing = await placeOrder(env.sql, order());
    await assert.rejects(placeOrders(env.sql, [order('a'), { ...order('b'), orderId: existing.orderId }, order('c')]), /duplicate key/);
    const [counts] = await env.sql`SELECT (SELECT count(*) FROM orders)::int AS orders, (SELECT count(*) FROM outbox)::int AS outbox`;
    assert.deepEqual({ ...counts }, { orders: 1, outbox: 1 });
    const placed = await placeOrders(env.sql, Array.from({ length: 500 }, (_, i) => order(`c-${i}`)));
    assert.equal(placed.length, 500);
    const [after] = await env.sql`SELECT count(*)::int AS n FROM outbox`;
    assert.equal(after?.n, 501);
  });

  it('writes no outbox row in the table-less (WAL message) form', async (t) => {
    const env = await testEnv(t);
    await placeOrders(env.sql, [order('a'), order('b')], 'message');
    const [counts] = await env.sql`SELECT (SELECT count(*) FROM orders)::int AS orders, (SELECT count(*) FROM outbox)::int AS outbox`;
    assert.deepEqual({ ...counts }, { orders: 2, outbox: 0 });
  });

  it('gives concurrent writers of one aggregate unique, gap-free, increasing versions', async (t) => {
    const env = await testEnv(t);
    const { orderId } = await placeOrder(env.sql, order());
    const pool = env.pool({ max: 8 });
    await Promise.all(Array.from({ length: 40 }, (_, i) => amendOrders(pool, [{ orderId, deltaCents: i }, { orderId, deltaCents: 1 }])));
    const rows = await env.sql<{ aggregateVersion: number }[]>`SELECT aggregate_version FROM outbox WHERE aggregate_id = ${orderId} ORDER BY id`;
    // Ids follow commit order of each aggregate, so in id order versions must be exactly 1..81.
    assert.deepEqual(
      rows.map((r) => r.aggregateVersion),
      Array.from({ length: 81 }, (_, i) => i + 1),
    );
    const [current] = await env.sql`SELECT version FROM orders WHERE order_id = ${orderId}`;
    assert.equal(current?.version, 81);
  });

  it('refuses to amend an unknown order and writes nothing', async (t) => {
    const env = await testEnv(t);
    const known = await placeOrder(env.sql, order());
    await assert.rejects(
      amendOrders(env.sql, [{ orderId: known.orderId, deltaCents: 5 }, { orderId: randomUUID(), deltaCents: 5 }]),
      (error: unknown) => error instanceof OutboxBenchError && error.code === 'INVALID_INPUT' && /unknown order/.test(error.message),
    );
    const [row] = await env.sql`SELECT count(*)::int AS n FROM outbox`;
    assert.equal(row?.n, 1);
  });

  it('validates library input like the HTTP API does', () => {
    assert.throws(() => validateOrder({ customerId: '', amountCents: -1, currency: 'euro' }), (error: unknown) => {
      assert.ok(error instanceof OutboxBenchError);
      assert.equal(error.code, 'INVALID_INPUT');
      assert.match(error.message, /customerId must be/);
      assert.match(error.message, /amountCents must be a non-negative integer/);
      assert.match(error.message, /currency must be a 3-letter/);
      return true;
    });
    assert.throws(() => validateOrder({ customerId: 'a\u0000', amountCents: 1, currency: 'EUR', note: 'x\u0000' }), /customerId must not contain U\+0000; note must not contain U\+0000/);
  });
});
