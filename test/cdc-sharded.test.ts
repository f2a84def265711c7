/**
 * Sharded CDC (`--mode cdc-sharded`): the outbox shared out over several
 * replication slots by a row filter on each publication, one relay process
 * per slot. Against the real server: the slots carry disjoint rows that
 * together are all of them, every event reaches Kafka once with each
 * aggregate in order, table-less events go through exactly one shard,
 * and another shard count on existing publications is refused. That cleanup
 * waits for every shard's slot is in cleanup.test.ts.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { startRelayProcess, stopChild } from '../bench/harness/processes.js';
import { OrderingChecker } from '../src/chaos/ordering.js';
import { settingsEnv, type Config } from '../src/config.js';
import { OutboxBenchError } from '../src/errors.js';
import { HEADERS } from '../src/events.js';
import { amendOrders, placeOrders } from '../src/orders/write-path.js';
import { shardOf } from '../src/relay/cdc/sharded.js';
import { loadRelayMode } from '../src/relay/modes.js';
import { eventually, headerOf, log, readTopic, scratchDir, testEnv, topicMessageCount, type TestEnv } from './helpers.js';

const SHARDS = 3;

const orders = (n: number, prefix: string) => Array.from({ length: n }, (_, i) => ({ customerId: `${prefix}-${i}`, amountCents: i, currency: 'EUR' }));

/** The settings of a sharded relay on the test's schema, slots and publications. */
function shardedSettings(env: TestEnv, shards = SHARDS) {
  return { ...env.config, relayMode: 'cdc-sharded' as const, replicas: shards };
}

/** The settings of a sharded relay process on the test's servers, schema, topic, slots and publications. */
function relayEnv(env: TestEnv): Partial<Config> {
  const { databaseUrl, kafkaBrokers, schema, topicPrefix, topicPartitions, slotName, publicationName } = env.config;
  return { databaseUrl, kafkaBrokers, schema, topicPrefix, topicPartitions, slotName, publicationName, relayMode: 'cdc-sharded', logFormat: 'json' };
}

/** Inserts each slot would send, read without consuming (the slots must be idle). */
async function insertsPerSlot(env: TestEnv, shards: number): Promise<number[]> {
  const counts: number[] = [];
  for (let index = 0; index < shards; index++) {
    const { slotName, publicationName } = shardOf(shardedSettings(env, shards), index);
    const [row] = await env.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM pg_logical_slot_peek_binary_changes(${slotName}, NULL, NULL, 'proto_version', '1', 'publication_names', ${publicationName})
      WHERE get_byte(data, 0) = ascii('I')`;
    counts.push(row!.n);
  }
  return counts;
}

describe('sharded CDC relay', () => {
  it('shares the outbox out: each slot carries the rows of its aggregates, together every row, none twice', async (t) => {
    const env = await testEnv(t);
    const mode = await loadRelayMode('cdc-sharded');
    await mode.provision(env.sql, shardedSettings(env), log);
    env.defer(() => mode.release(env.sql, shardedSettings(env)));
    const placed = await placeOrders(env.sql, orders(300, 'shard'));
    await amendOrders(env.sql, placed.slice(0, 60).map((p) => ({ orderId: p.orderId, deltaCents: 5 })));
    const perSlot = await insertsPerSlot(env, SHARDS);
    assert.equal(perSlot.reduce((a, b) => a + b, 0), 360, `every row reaches exactly one slot (${perSlot.join(' + ')})`);
    const expected = await env.sql<{ shard: number; n: number }[]>`
      SELECT (hashtext(aggregate_id) & 2147483647) % ${SHARDS} AS shard, count(*)::int AS n FROM outbox GROUP BY 1 ORDER BY 1`;
    assert.deepEqual(perSlot, expected.map((r) => r.n), 'each slot carries the rows whose aggregate hashes to it');
    assert.ok(perSlot.every((n) => n > 0), 'every shard got work');
  });

  it('publishes every event once with each aggregate in order, table-less events through one shard only', async (t) => {
    const env = await testEnv(t);
    await env.ensureTopic();
    const settings = settingsEnv({ ...relayEnv(env), replicas: SHARDS });
    const relay = await startRelayProcess(await scratchDir(), { ...process.env, ...settings }, { describe: 'cdc-sharded' });
    const mode = await loadRelayMode('cdc-sharded');
    env.defer(() => mode.release(env.sql, shardedSettings(env)));
    env.defer(() => stopChild(relay.child));
    await eventually('one walsender per shard', async () => {
      const [row] = await env.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_replication_slots WHERE starts_with(slot_name, ${`${env.config.slotName}_`}) AND active`;
      return row!.n === SHARDS;
    });

    const placed = await placeOrders(env.sql, orders(200, 'table'));
    await amendOrders(env.sql, placed.slice(0, 50).flatMap((p) => [{ orderId: p.orderId, deltaCents: 1 }, { orderId: p.orderId, deltaCents: 2 }]));
    await placeOrders(env.sql, orders(100, 'message'), 'message');
    const messages = await readTopic(env.kafka, env.topic(), 400);
    // Settled: nothing more arrives (a second shard publishing the messages would double them).
    await eventually('the topic to settle', async () => {
      const before = await topicMessageCount(env.kafka, env.topic());
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      return before === (await topicMessageCount(env.kafka, env.topic())) && before;
    });
    assert.equal(await topicMessageCount(env.kafka, env.topic()), 400, 'each of the 400 events once, table-less ones included');
    assert.equal(new Set(messages.map((m) => headerOf(m, HEADERS.eventId))).size, 400);
    const checker = new OrderingChecker();
    for (const m of messages) checker.observe(m.key!.toString(), Number(headerOf(m, HEADERS.aggregateVersion)));
    assert.deepEqual(checker.violations, []);
  });

  it('stops for good, with the fix, when a shard\'s slot is gone, and starts again with --recover-slot', async (t) => {
    const env = await testEnv(t);
    await env.ensureTopic();
    const mode = await loadRelayMode('cdc-sharded');
    await mode.provision(env.sql, shardedSettings(env, 2), log);
    env.defer(() => mode.release(env.sql, shardedSettings(env, 2)));
    // Shard 1's slot dropped behind the relay's back: a new one would skip what was committed meanwhile.
    const gone = shardOf(shardedSettings(env, 2), 1).slotName;
    await env.sql`SELECT pg_drop_replication_slot(${gone})`;
    const dir = await scratchDir();
    const environment = { ...process.env, ...settingsEnv({ ...relayEnv(env), replicas: 2 }) };
    await assert.rejects(startRelayProcess(dir, environment, { describe: 'cdc-sharded' }), /exited during start-up/);
    const relayLog = readFileSync(path.join(dir, 'relay.log'), 'utf8');
    assert.match(relayLog, /no longer exists/);
    assert.match(relayLog, new RegExp(`--recover-slot ${gone}`));
    const restarted = await startRelayProcess(dir, environment, { describe: 'cdc-sharded', args: ['--recover-slot', gone] });
    env.defer(() => stopChild(restarted.child));
    await placeOrders(env.sql, orders(20, 'recreated'));
    await readTopic(env.kafka, env.topic(), 20);
  });

  it('refuses another shard count on existing publications, with the fix', async (t) => {
    const env = await testEnv(t);
    const mode = await loadRelayMode('cdc-sharded');
    await mode.provision(env.sql, shardedSettings(env, 2), log);
    env.defer(() => mode.release(env.sql, shardedSettings(env, 2)));
    await assert.rejects(mode.provision(env.sql, shardedSettings(env, 3), log), (error: unknown) => {
      assert.ok(error instanceof OutboxBenchError);
      assert.equal(error.code, 'CONFIG_INVALID');
      assert.match(error.message, /resharding is not supported/);
      assert.match(error.message, /% 2/);
      return true;
    });
  });
});
