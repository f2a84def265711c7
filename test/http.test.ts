/**
 * The HTTP order service refuses bad input with a 4xx JSON error that names
 * the problem, and writes nothing when it does.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { createOrderService } from '../src/orders/http.js';
import { log, testEnv, type TestEnv } from './helpers.js';

async function serve(t: Parameters<typeof testEnv>[0], env: TestEnv, bodyLimit = 1_024) {
  const app = createOrderService({ sql: env.pool({ max: 2 }), log, bodyLimit });
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
    const base = await serve(t, env);
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
    const base = await serve(t, env);
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
    const base = await serve(t, env);
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
    const base = await serve(t, env);
    const response = await fetch(`${base}/health`);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { status: 'ok' });
    const missing = await fetch(`${base}/nope`);
    assert.equal(missing.status, 404);
  });
});
