/**
 * The HTTP order service refuses bad input with a 4xx JSON error that names
 * the problem, and writes nothing when it does.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { createOrderService } from '../src/orders/http.js';
import { log, testEnv, type TestEnv } from './helpers.js';

async function serve(env: TestEnv, bodyLimit = 1_024, groupCommitMax = 0) {
  const app = createOrderService({ sql: env.pool({ max: 8 }), log, bodyLimit, groupCommitMax });
  env.defer(() => app.close());
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  assert.ok(address && typeof address === 'object');
  return `http://127.0.0.1:${address.port}`;
}

async function post(url: string, body: string, contentType = 'application/json') {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': contentType }, body });
  return { status: response.status, body: (await response.json()) as { error: string; message: string } };
}

async function rowCounts(env: TestEnv) {
  const [row] = await env.sql`SELECT (SELECT count(*) FROM orders)::int AS orders, (SELECT count(*) FROM outbox)::int AS outbox`;
  return { ...row };
}

describe('HTTP order service', () => {
  it('answers bad input with a 4xx naming the problem and writes nothing', async (t) => {
    const env = await testEnv(t);
    const base = await serve(env);
    const cases: { name: string; body: string; contentType?: string; status: number; message: RegExp }[] = [
      { name: 'malformed JSON', body: '{"customerId": "a", ', status: 400, message: /JSON/i },
      { name: 'missing field', body: JSON.stringify({ customerId: 'a', currency: 'EUR' }), status: 400, message: /must have required property 'amountCents'/ },
      { name: 'wrong type', body: JSON.stringify({ customerId: 'a', amountCents: '12', currency: 'EUR' }), status: 400, message: /amountCents must be integer/ },
      { name: 'fractional amount', body: JSON.stringify({ customerId: 'a', amountCents: 1.5, currency: 'EUR' }), status: 400, message: /amountCents must be integer/ },
      { name: 'negative amount', body: JSON.stringify({ customerId: 'a', amountCents: -1, currency: 'EUR' }), status: 400, message: /amountCents must be >= 0/ },
      { name: 'bad currency', body: JSON.stringify({ customerId: 'a', amountCents: 1, currency: 'euro' }), status: 400, message: /currency must match pattern/ },
      { name: 'unknown field', body: JSON.stringify({ customerId: 'a', amountCents: 1, currency: 'EUR', admin: true }), status: 400, message: /must NOT have additional properties/ },
      { name: 'bad orderId', body: JSON.stringify({ orderId: 'nope', customerId: 'a', amountCents: 1, currency: 'EUR' }), status: 400, message: /orderId must match format "uuid"/ },
      { name: 'NUL in customerId', body: JSON.stringify({ customerId: 'a\u0000b', amountCents: 1, currency: 'EUR' }), status: 400, message: /customerId must match pattern/ },
      { name: 'NUL in note', body: JSON.stringify({ customerId: 'a', amountCents: 1, currency: 'EUR', note: '\u0000' }), status: 400, message: /note must match pattern/ },
      { name: 'not an object', body: '[1,2,3]', status: 400, message: /body must be object/ },
      { name: 'oversized body', body: JSON.stringify({ customerId: 'x'.repeat(2_000), amountCents: 1, currency: 'EUR' }), status: 413, message: /too large/i },
      { name: 'wrong content type', body: 'customerId=a', contentType: 'application/x-www-form-urlencoded', status: 415, message: /Unsupported Media Type/i },
    ];
    for (const c of cases) {
      const { status, body } = await post(`${base}/orders`, c.body, c.contentType);
      assert.equal(status, c.status, `${c.name}: status`);
      assert.equal(typeof body.error, 'string', `${c.name}: error code`);
      assert.match(body.message, c.message, `${c.name}: message`);
    }
    assert.deepEqual(await rowCounts(env), { orders: 0, outbox: 0 });
  });

  it('places an order (201), refuses a second one with the same orderId (409)', async (t) => {
    const env = await testEnv(t);
    const base = await serve(env);
    const orderId = randomUUID();
    const body = JSON.stringify({ orderId, customerId: 'a', amountCents: 10, currency: 'EUR' });
    const first = await post(`${base}/orders`, body);
    assert.equal(first.status, 201);
    assert.equal((first.body as unknown as { orderId: string }).orderId, orderId);
    const second = await post(`${base}/orders`, body);
    assert.equal(second.status, 409);
    assert.equal(second.body.error, 'CONFLICT');
    assert.deepEqual(await rowCounts(env), { orders: 1, outbox: 1 });
  });

  it('appends amendments with the next version, 404 for an unknown order', async (t) => {
    const env = await testEnv(t);
    const base = await serve(env);
    const placed = (await post(`${base}/orders`, JSON.stringify({ customerId: 'a', amountCents: 10, currency: 'EUR' }))).body as unknown as { orderId: string };
    const amended = await post(`${base}/orders/${placed.orderId}/amendments`, JSON.stringify({ deltaCents: -3 }));
    assert.equal(amended.status, 201);
    assert.equal((amended.body as unknown as { aggregateVersion: number }).aggregateVersion, 2);
    const unknown = await post(`${base}/orders/${randomUUID()}/amendments`, JSON.stringify({ deltaCents: 1 }));
    assert.equal(unknown.status, 404);
    const badId = await post(`${base}/orders/not-a-uuid/amendments`, JSON.stringify({ deltaCents: 1 }));
    assert.equal(badId.status, 400);
    assert.deepEqual(await rowCounts(env), { orders: 1, outbox: 2 });
  });

  it('reports health', async (t) => {
    const env = await testEnv(t);
    const base = await serve(env);
    const response = await fetch(`${base}/health`);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { status: 'ok' });
    const missing = await fetch(`${base}/nope`);
    assert.equal(missing.status, 404);
  });

  it('with group commit, concurrent orders share statements; each gets its own answer, and a bad one fails alone', async (t) => {
    const env = await testEnv(t);
    const base = await serve(env, 1_024, 100);
    const duplicate = randomUUID();
    const requests = [
      ...Array.from({ length: 300 }, (_, i) => JSON.stringify({ customerId: `g-${i}`, amountCents: i, currency: 'EUR' })),
      // Refused before it can join a batch.
      JSON.stringify({ customerId: 'bad', amountCents: -1, currency: 'EUR' }),
      // The same client-chosen id twice in one burst: the batch holding both fails, and each is retried alone.
      JSON.stringify({ orderId: duplicate, customerId: 'dup-1', amountCents: 1, currency: 'EUR' }),
      JSON.stringify({ orderId: duplicate, customerId: 'dup-2', amountCents: 1, currency: 'EUR' }),
    ];
    const answers = await Promise.all(requests.map((body) => post(`${base}/orders`, body)));
    const statuses = answers.map((a) => a.status);
    assert.equal(statuses.slice(0, 300).filter((s) => s === 201).length, 300, 'every good order placed');
    assert.equal(statuses[300], 400);
    assert.deepEqual([statuses[301], statuses[302]].sort(), [201, 409], 'one of the two with the same id placed, the other refused');
    const placed = answers.filter((a) => a.status === 201).map((a) => (a.body as unknown as { orderId: string; eventId: string }).orderId);
    assert.equal(new Set(placed).size, 301, 'each request answered with its own order');
    assert.deepEqual(await rowCounts(env), { orders: 301, outbox: 301 });
    // Orders of one transaction share its start time: fewer transactions than orders means they were grouped.
    const [row] = await env.sql<{ transactions: number }[]>`SELECT count(DISTINCT created_at)::int AS transactions FROM orders`;
    assert.ok(row!.transactions < 301, `${row!.transactions} transactions for 301 orders`);
  });
});
