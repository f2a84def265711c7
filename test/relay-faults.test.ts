/**
 * Relays when the world misbehaves, and what they tell the operator: the
 * database restarting under them, and their Prometheus metrics.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { stopChild } from '../bench/harness/processes.js';
import { resolveConfig } from '../src/config.js';
import { createSql, migrate } from '../src/db.js';
import { HEADERS } from '../src/events.js';
import { LocalKafka, LocalPostgres } from '../src/infra/index.js';
import { createKafkaClient } from '../src/kafka-client.js';
import { KafkajsPublisher } from '../src/kafka/kafkajs.js';
import { TopicAdmin } from '../src/kafka/topics.js';
import { placeOrders } from '../src/orders/write-path.js';
import { CdcRelay } from '../src/relay/cdc/relay.js';
import { createPollingRelay } from '../src/relay/table/polling.js';
import { eventually, freePort, headerOf, log, readTopic, scratchDir, startRetryingBind, testEnv } from './helpers.js';

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli.js');
const orders = (n: number, prefix: string) => Array.from({ length: n }, (_, i) => ({ customerId: `${prefix}-${i}`, amountCents: i, currency: 'EUR' }));

describe('relays under faults', () => {
  it('polling and CDC relays ride out a PostgreSQL restart and lose nothing', async (t) => {
    const env = await testEnv(t);
    const config = resolveConfig({ env: {}, overrides: { pgPort: await freePort(), dataDir: await scratchDir() } });
    const server = new LocalPostgres({ config, log });
    await startRetryingBind(() => server.start());
    t.after(() => server.stop('immediate'));
    for (const schema of ['polled', 'streamed']) {
      const setup = createSql(server.url, schema, { max: 1 });
      await migrate(setup, { schema, partitionWidth: '1 day', partitionsAhead: 1 });
      await setup.end();
    }
    const polledSql = createSql(server.url, 'polled', { max: 2 });
    const streamedSql = createSql(server.url, 'streamed', { max: 2 });
    env.defer(() => Promise.all([polledSql.end({ timeout: 1 }), streamedSql.end({ timeout: 1 })]));
    const publisher = env.publisher();
    const polling = createPollingRelay({ sql: polledSql, publisher, wire: env.wire, log, batchSize: 100, intervalMs: 100 });
    const cdc = new CdcRelay({
      databaseUrl: server.url,
      sql: streamedSql,
      schema: 'streamed',
      publisher,
      wire: env.wire,
      slotName: 'restart_slot',
      publicationName: 'restart_pub',
      log,
      batchSize: 100,
    });
    polling.start();
    await cdc.start();
    env.defer(() => Promise.all([polling.stop(), cdc.stop()]));

    await placeOrders(polledSql, orders(50, 'p-before'));
    await placeOrders(streamedSql, orders(50, 's-before'));
    await eventually('the first events published', () => polling.published === 50 && cdc.published === 50);
    await server.stop('immediate');
    await new Promise((resolve) => setTimeout(resolve, 2_000)); // both relays fail and back off meanwhile
    await startRetryingBind(() => server.start());
    await placeOrders(polledSql, orders(50, 'p-after'));
    await placeOrders(streamedSql, orders(50, 's-after'));
    const messages = await readTopic(env.kafka, env.topic(), 200, 60_000);
    const ids = new Set(messages.map((m) => headerOf(m, HEADERS.eventId)));
    assert.equal(ids.size, 200, 'all 200 events arrived after the restart');
  });

  it('the polling relay rides out a Kafka broker crash (kill -9) and restart, losing nothing', async (t) => {
    const env = await testEnv(t);
    const config = resolveConfig({ env: {}, overrides: { kafkaPort: await freePort(), kafkaControllerPort: await freePort(), dataDir: await scratchDir(), topicPartitions: 3 } });
    const broker = new LocalKafka({ config, log });
    await startRetryingBind(() => broker.start());
    env.defer(() => broker.stop('kill'));
    const kafka = createKafkaClient({ brokers: broker.brokers, log, clientId: 'polling-outage', retries: 1 });
    const publisher = new KafkajsPublisher({ kafka, topics: new TopicAdmin(kafka, 3), timeoutMs: 2_000 });
    env.defer(() => publisher.close());
    const relay = createPollingRelay({ sql: env.pool({ max: 2 }), publisher, wire: env.wire, log, batchSize: 50, intervalMs: 100 });
    relay.start();
    env.defer(() => relay.stop());
    await placeOrders(env.sql, orders(50, 'before'));
    await eventually('the first events published', () => relay.published === 50);
    await broker.stop('kill');
    await placeOrders(env.sql, orders(100, 'during'));
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const [unpublished] = await env.sql`SELECT count(*)::int AS n FROM outbox WHERE published_at IS NULL`;
    assert.equal(unpublished?.n, 100, 'nothing is marked while Kafka is down');
    await startRetryingBind(() => broker.start());
    await eventually('the backlog published after Kafka came back', async () => (await env.sql`SELECT 1 FROM outbox WHERE published_at IS NULL`).length === 0, 60_000);
    const messages = await readTopic(kafka, env.topic(), 150);
    assert.equal(new Set(messages.map((m) => headerOf(m, HEADERS.eventId))).size, 150);
  });

  it('exposes relay throughput, publish latency and lag as Prometheus metrics', async (t) => {
    const env = await testEnv(t);
    const port = await freePort();
    const child = spawn(process.execPath, [CLI, 'relay', '--mode', 'polling', '--interval-ms', '100', '--metrics-port', String(port)], {
      env: { ...process.env, OUTBOX_BENCH_SCHEMA: env.config.schema, OUTBOX_BENCH_TOPIC_PREFIX: env.config.topicPrefix, OUTBOX_BENCH_LOG_LEVEL: 'warn' },
      stdio: 'ignore',
    });
    env.defer(() => stopChild(child));
    await placeOrders(env.sql, orders(30, 'm'));
    const text = await eventually(
      'metrics showing 30 published events',
      async () => {
        const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        const done = /outbox_relay_published_events_total\{relay="polling"\} 30\b/.test(body) && /outbox_relay_lag_events\{relay="polling"\} 0\b/.test(body);
        return done ? body : undefined;
      },
      30_000,
    );
    assert.match(text, /outbox_relay_lag_seconds\{relay="polling"\} 0\b/);
    assert.match(text, /outbox_relay_publish_duration_seconds_count\{relay="polling"\} [1-9]/);
    assert.match(text, /process_cpu_seconds_total/);
  });

  it('exposes a CDC relay\'s lag and the WAL its slot retains, labelled with its mode', async (t) => {
    const env = await testEnv(t);
    const port = await freePort();
    const child = spawn(process.execPath, [CLI, 'relay', '--mode', 'cdc-message', '--metrics-port', String(port)], {
      env: {
        ...process.env,
        OUTBOX_BENCH_SCHEMA: env.config.schema,
        OUTBOX_BENCH_TOPIC_PREFIX: env.config.topicPrefix,
        OUTBOX_BENCH_SLOT: env.config.slotName,
        OUTBOX_BENCH_PUBLICATION: env.config.publicationName,
        OUTBOX_BENCH_LOG_LEVEL: 'warn',
      },
      stdio: 'ignore',
    });
    env.defer(() => env.sql.unsafe(`DROP PUBLICATION IF EXISTS ${env.config.publicationName}`).catch(() => {}));
    env.defer(() => stopChild(child));
    await eventually('the relay\'s slot', async () => (await env.sql`SELECT 1 FROM pg_replication_slots WHERE slot_name = ${env.config.slotName} AND active`).length > 0);
    await placeOrders(env.sql, orders(30, 'wal'), 'message');
    const text = await eventually(
      'metrics showing 30 published events and the slot\'s WAL',
      async () => {
        const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        const done = /outbox_relay_published_events_total\{relay="cdc-message"\} 30\b/.test(body) && /outbox_relay_slot_retained_wal_bytes\{relay="cdc-message"\} \d+/.test(body);
        return done ? body : undefined;
      },
      30_000,
    );
    assert.match(text, /outbox_relay_lag_wal_bytes\{relay="cdc-message"\} \d+/);
    assert.doesNotMatch(text, /relay="cdc"\}/, 'no metric under another mode\'s name');
  });
});
