/**
 * The package as a service uses it: everything below comes from 'outbox-bench'
 * (the package's own name, resolved through package.json "exports" like a
 * dependent's import), nothing from src/. Only the test's isolation and
 * cleanup come from the helpers.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it, type TestContext } from 'node:test';
import {
  IdempotentConsumer,
  METRIC_NAMES,
  Metrics,
  ShutdownStack,
  consumersFor,
  createLogger,
  createSql,
  isOutboxBenchError,
  openRuntime,
  placeOrder,
  resolveConfig,
  startRelay,
  writeOutboxEvents,
  type Config,
  type Delivery,
  type RelayMode,
} from 'outbox-bench';
import * as api from 'outbox-bench';
import { dropSchema } from '../src/db.js';
import { dropIdleSlots } from '../src/relay/cdc/slot.js';
import { defer, eventually, uniqueName } from './helpers.js';

const log = createLogger('warn', 'public-api');

/** A config of the test's own names on the servers `npm test` started, as a service would resolve its own. */
function serviceConfig(t: TestContext, relayMode: RelayMode): Config {
  const databaseUrl = process.env.DATABASE_URL;
  const kafkaBrokers = process.env.KAFKA_BROKERS;
  assert.ok(databaseUrl && kafkaBrokers, 'run through `npm test`, which starts the servers');
  const id = uniqueName('t');
  const config = resolveConfig({
    env: { DATABASE_URL: databaseUrl, KAFKA_BROKERS: kafkaBrokers },
    overrides: { schema: id, topicPrefix: `${id}.event.`, slotName: `${id}_slot`, publicationName: `${id}_pub`, consumerGroup: `${id}-group`, relayMode, pollIntervalMs: 100, topicPartitions: 3 },
  });
  // Deferred first, so it runs after the service has shut down.
  defer(t, async () => {
    const admin = createSql(databaseUrl, id, { max: 1 });
    await dropIdleSlots(admin, { prefix: id }).catch(() => {});
    await admin.unsafe(`DROP PUBLICATION IF EXISTS ${config.publicationName}`).catch(() => {});
    await dropSchema(admin, id).catch(() => {});
    await admin.end({ timeout: 5 });
  });
  return config;
}

const metricValue = async (metrics: Metrics, name: string) => (await metrics.registry.getSingleMetric(name)?.get())?.values.reduce((sum, v) => sum + v.value, 0) ?? 0;

describe('public API', () => {
  it('resolves through the package name to the built entry point, and exports what a service needs and nothing of the harness', async () => {
    assert.match(import.meta.resolve('outbox-bench'), /\/dist\/src\/index\.js$/);
    // Runtime names only (types leave no trace); a change here is a change of the public API.
    assert.deepEqual(Object.keys(api).sort(), [
      'DEFAULTS', 'HEADERS', 'IdempotentConsumer', 'METRIC_NAMES', 'Metrics', 'OutboxBenchError', 'ShutdownStack', 'TopicAdmin', 'WireEncoder',
      'amendOrders', 'consumersFor', 'createLogger', 'createPublisher', 'createSql', 'describeError', 'ensurePartitions', 'installSignalHandlers',
      'isOutboxBenchError', 'kafkajsConsumers', 'migrate', 'openRuntime', 'placeOrder', 'placeOrders', 'resolveConfig', 'startRelay', 'topicFor',
      'writeOutboxEvents',
    ]);
    assert.throws(() => resolveConfig({ env: { OUTBOX_BENCH_RELAY_MODE: 'carrier-pigeon' } }), (error) => isOutboxBenchError(error, 'CONFIG_INVALID'));
  });

  for (const relayMode of ['polling', 'cdc'] as const) {
    it(`runs a service's outbox with the ${relayMode} relay: migrate, write in its own transaction, startRelay, consume once, stop`, async (t) => {
      const config = serviceConfig(t, relayMode);
      const shutdown = new ShutdownStack(log);
      defer(t, () => shutdown.run());
      const runtime = await openRuntime({ config, log, shutdown, requireLogicalWal: relayMode === 'cdc' });
      assert.equal(runtime.infra.postgres.external, true, 'the configured servers are used, none started');
      await runtime.migrate();
      const sql = runtime.sql({ max: 2 });

      // The CDC relay's slot must exist before the events it is to read are written.
      const metrics = new Metrics();
      const relay = await startRelay(runtime, { metrics });
      let ended = false;
      void relay.done.then(() => (ended = true));
      const placed = await placeOrder(sql, { customerId: 'public-api', amountCents: 1_250, currency: 'EUR' });
      const amendment = randomUUID();
      await sql.begin(async (tx) => {
        // The service's own write and its event commit together or not at all.
        await tx`UPDATE orders SET amount_cents = amount_cents - 250, version = 2, updated_at = now() WHERE order_id = ${placed.orderId}`;
        await writeOutboxEvents(tx, [
          { eventId: amendment, aggregateType: 'order', aggregateId: placed.orderId, aggregateVersion: 2, eventType: 'OrderAmended', payload: JSON.stringify({ deltaCents: -250 }) },
        ]);
      });

      const topic = runtime.topic('order');
      await runtime.ensureTopic(topic);
      const deliveries: Delivery[] = [];
      const consumer = new IdempotentConsumer({
        source: await consumersFor(config.consumerKafkaClient, { brokers: runtime.infra.kafkaBrokers, clientId: `${config.schema}-consumer`, log }),
        sql: runtime.sql({ max: 2 }),
        groupId: config.consumerGroup,
        topics: [topic],
        log,
        metrics,
        onDelivery: (delivery) => deliveries.push(delivery),
      });
      await consumer.start();
      shutdown.add('consumer', () => consumer.stop());

      await eventually('both events applied', () => consumer.stats.applied === 2);
      assert.deepEqual(deliveries.map((d) => [d.eventId, d.aggregateVersion, d.applied]), [[placed.eventId, 1, true], [amendment, 2, true]]);
      const ledger = await sql<{ amountCents: number }[]>`SELECT amount_cents FROM order_ledger WHERE order_id = ${placed.orderId} ORDER BY aggregate_version`;
      assert.deepEqual(ledger.map((row) => row.amountCents), [1_250, -250]);
      assert.equal(await metricValue(metrics, METRIC_NAMES.consumerApplied), 2);
      await eventually('the relay counted its publishes', async () => (await metricValue(metrics, METRIC_NAMES.relayPublished)) === 2);

      // The polling relay marks what it published; CDC's proof is the slot's confirmed position instead.
      if (relayMode === 'polling') await eventually('both rows marked', async () => (await sql`SELECT 1 FROM outbox WHERE published_at IS NULL`).length === 0);

      // Stopping cleanly: the relay first, then the consumer, then the pools and clients.
      assert.equal(ended, false, 'the relay did not end on its own');
      await relay.stop();
      await consumer.stop();
      await shutdown.run();
    });
  }
});
