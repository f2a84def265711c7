/**
 * Cleanup never removes an undelivered event: a partition holding one
 * unpublished row survives, a transaction still writing into an old
 * partition is waited for, and for the CDC relays only what every slot has
 * confirmed goes (every shard's, for the sharded one). And the inbox window's trade-off, shown for real.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { kafkajsConsumers } from '../src/kafka/consumers.js';
import { IdempotentConsumer } from '../src/consumer/consumer.js';
import { deleteDeliveredBatched, dropDeliveredPartitions, sweepInbox } from '../src/cleanup/retention.js';
import { ensurePartitions, type Sql } from '../src/db.js';
import { shardOf } from '../src/relay/cdc/sharded.js';
import { loadRelayMode } from '../src/relay/modes.js';
import { cdcRelayFor, eventually, log, testEnv, type TestEnv } from './helpers.js';

/** Outbox rows written straight into the past (minutes ago), unpublished. */
async function pastRows(sql: Sql, minutesAgo: number, count: number): Promise<string[]> {
  const ids = Array.from({ length: count }, () => randomUUID());
  await sql`
    INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload, created_at)
    SELECT id, 'order', id::text, 1, 'OrderPlaced', '{}'::jsonb, now() - ${`${minutesAgo} minutes`}::interval
    FROM unnest(${ids}::uuid[]) AS id`;
  return ids;
}

async function minutePartitions(env: TestEnv): Promise<void> {
  // The schema was migrated with day-wide partitions; these tests want minutes.
  await env.sql`DELETE FROM outbox_partitioning`;
  for (const p of await env.sql<{ partitionName: string }[]>`SELECT partition_name FROM outbox_partitions`) await env.sql.unsafe(`DROP TABLE ${p.partitionName}`);
  await ensurePartitions(env.sql, '1 minute', 20, new Date(Date.now() - 15 * 60_000));
}

const partitionsLeft = async (env: TestEnv) => (await env.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox_partitions WHERE range_end <= now() - interval '2 minutes'`)[0]!.n;

describe('outbox cleanup', () => {
  it('drops delivered partitions and keeps one holding a single unpublished row, until it is published', async (t) => {
    const env = await testEnv(t);
    await minutePartitions(env);
    const delivered = await pastRows(env.sql, 10, 50);
    const pending = await pastRows(env.sql, 6, 20);
    await env.sql`UPDATE outbox SET published_at = now() WHERE event_id = ANY(${[...delivered, ...pending.slice(1)]}::uuid[])`;

    const first = await dropDeliveredPartitions({ sql: env.sql, retention: '2 minutes', proof: 'published-at', log });
    const kept = first.filter((d) => !d.dropped);
    assert.equal(kept.length, 1, 'only the partition with the unpublished row survives');
    assert.match(kept[0]!.reason!, /1 row\(s\) not published yet/);
    const [row] = await env.sql`SELECT count(*)::int AS n FROM outbox WHERE event_id = ${pending[0]!}`;
    assert.equal(row?.n, 1, 'the unpublished row is still there');
    assert.ok(first.filter((d) => d.dropped).length >= 5);

    await env.sql`UPDATE outbox SET published_at = now() WHERE event_id = ${pending[0]!}`;
    const second = await dropDeliveredPartitions({ sql: env.sql, retention: '2 minutes', proof: 'published-at', log });
    assert.ok(second.every((d) => d.dropped));
    assert.equal(await partitionsLeft(env), 0);
    const [rest] = await env.sql`SELECT count(*)::int AS n FROM outbox`;
    assert.equal(rest?.n, 0);
  });

  it('waits out a transaction still writing into an old partition instead of dropping under it', async (t) => {
    const env = await testEnv(t);
    await minutePartitions(env);
    const writer = env.pool({ max: 1 });
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const held = writer.begin(async (tx) => {
      await pastRows(tx as unknown as Sql, 8, 1);
      await released;
    });
    await eventually('the writer to hold its transaction', async () => (await env.sql`SELECT 1 FROM pg_stat_activity WHERE state = 'idle in transaction'`).length > 0);
    const busy = await dropDeliveredPartitions({ sql: env.sql, retention: '2 minutes', proof: 'published-at', log, lockTimeoutMs: 100 });
    assert.ok(busy.some((d) => !d.dropped && /busy: no lock/.test(d.reason!)), 'the lock was not taken while the writer was in');
    release();
    await held;
    const afterCommit = await dropDeliveredPartitions({ sql: env.sql, retention: '2 minutes', proof: 'published-at', log });
    assert.ok(afterCommit.some((d) => !d.dropped && /1 row\(s\) not published yet/.test(d.reason!)), 'the committed row is not published yet, so its partition stays');
    const [row] = await env.sql`SELECT count(*)::int AS n FROM outbox`;
    assert.equal(row?.n, 1);
  });

  it('for the CDC relay, drops only what every replication slot has confirmed', async (t) => {
    const env = await testEnv(t);
    await minutePartitions(env);
    const relay = cdcRelayFor(env, { batchSize: 100, statusIntervalMs: 500 });
    await relay.start();
    await relay.stop(); // the slot stays, confirmed at its creation point

    await pastRows(env.sql, 9, 30);
    const behind = await dropDeliveredPartitions({ sql: env.sql, retention: '2 minutes', proof: 'replication-slots', log, slotWaitMs: 500 });
    assert.ok(behind.every((d) => !d.dropped), 'nothing goes while the slot has not confirmed the rows');
    assert.ok(behind.some((d) => /have not confirmed/.test(d.reason!)));
    const deletedBehind = await deleteDeliveredBatched({ sql: env.sql, retention: '2 minutes', proof: 'replication-slots', log, slotWaitMs: 500, batchSize: 10 });
    assert.equal(deletedBehind.deleted, 0);

    const resumed = cdcRelayFor(env, { batchSize: 100, statusIntervalMs: 500 });
    await resumed.start();
    await eventually('the 30 events published', () => resumed.published === 30);
    const caughtUp = await dropDeliveredPartitions({ sql: env.sql, retention: '2 minutes', proof: 'replication-slots', log, slotWaitMs: 10_000 });
    assert.ok(caughtUp.some((d) => d.dropped));
    assert.ok(caughtUp.every((d) => d.dropped), caughtUp.map((d) => d.reason).join('; '));
  });

  it('for the sharded CDC relay, keeps a partition until every shard\'s slot has confirmed past it', async (t) => {
    const env = await testEnv(t);
    await minutePartitions(env);
    const settings = { ...env.config, relayMode: 'cdc-sharded' as const, replicas: 2 };
    const mode = await loadRelayMode('cdc-sharded');
    await mode.provision(env.sql, settings, log);
    env.defer(() => mode.release(env.sql, settings));
    // Random aggregate ids: both shards hold some of these rows.
    await pastRows(env.sql, 9, 60);
    const shard = (index: number) => cdcRelayFor(env, { ...shardOf(settings, index), batchSize: 100, statusIntervalMs: 500 });
    const first = shard(0);
    await first.start();
    await eventually('shard 0 to publish its rows', () => first.published > 0 && first.published < 60);
    const kept = await dropDeliveredPartitions({ sql: env.sql, retention: '2 minutes', proof: 'replication-slots', log, slotWaitMs: 500 });
    assert.ok(kept.every((d) => !d.dropped), 'nothing goes while shard 1 has not confirmed');
    assert.ok(kept.some((d) => d.reason?.includes(shardOf(settings, 1).slotName)), kept.map((d) => d.reason).join('; '));

    const second = shard(1);
    await second.start();
    await eventually('both shards to publish all 60', () => first.published + second.published === 60);
    const dropped = await dropDeliveredPartitions({ sql: env.sql, retention: '2 minutes', proof: 'replication-slots', log, slotWaitMs: 10_000 });
    assert.ok(dropped.some((d) => d.dropped) && dropped.every((d) => d.dropped), dropped.map((d) => d.reason).join('; '));
  });

  it('batched DELETE removes only published rows older than the window', async (t) => {
    const env = await testEnv(t);
    await minutePartitions(env);
    const old = await pastRows(env.sql, 10, 120);
    await pastRows(env.sql, 9, 7); // old but unpublished
    const recent = await pastRows(env.sql, 0, 5);
    await env.sql`UPDATE outbox SET published_at = now() WHERE event_id = ANY(${[...old, ...recent]}::uuid[])`;
    const result = await deleteDeliveredBatched({ sql: env.sql, retention: '2 minutes', proof: 'published-at', log, batchSize: 50 });
    assert.equal(result.deleted, 120);
    assert.equal(result.batches, 3);
    const [left] = await env.sql`SELECT count(*) FILTER (WHERE published_at IS NULL)::int AS unpublished, count(*)::int AS total FROM outbox`;
    assert.deepEqual({ ...left }, { unpublished: 7, total: 12 });
  });
});

describe('inbox retention', () => {
  it('discards a duplicate inside the window, applies it again once its id was swept', async (t) => {
    const env = await testEnv(t);
    await env.ensureTopic();
    const consumer = new IdempotentConsumer({ source: kafkajsConsumers(env.kafka), sql: env.pool({ max: 2 }), groupId: env.config.consumerGroup, topics: [env.topic()], log });
    await consumer.start();
    env.defer(() => consumer.stop());
    const publisher = env.publisher();
    const event = env.wire.fromEvent({ eventId: randomUUID(), aggregateType: 'order', aggregateId: randomUUID(), aggregateVersion: 1, eventType: 'OrderPlaced', payload: '{"amountCents":5}' });
    const eventId = event.headers.id!.toString();
    const applied = async () => (await env.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM order_ledger WHERE event_id = ${eventId}`)[0]!.n;

    await publisher.publish([event]);
    await eventually('the first delivery applied', async () => (await applied()) === 1);
    await publisher.publish([event]);
    await eventually('the duplicate discarded', () => consumer.stats.duplicates === 1);
    assert.equal(await applied(), 1, 'inside the window the inbox dedupes');

    // Age the id past the window, as if two hours went by, and sweep.
    await env.sql`UPDATE inbox SET processed_at = now() - interval '2 hours' WHERE event_id = ${eventId}`;
    assert.equal(await sweepInbox(env.sql, '1 hour'), 1);
    await publisher.publish([event]);
    await eventually('the late duplicate applied again', async () => (await applied()) === 2);
    assert.equal(consumer.stats.applied, 2, 'after its id was swept, a redelivery is applied a second time: the window must outlast any redelivery');
  });
});
