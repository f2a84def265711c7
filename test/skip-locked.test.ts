/**
 * SKIP LOCKED replicas: disjoint claims with evidence, per-aggregate order
 * with the bucketed design, reordering caught with the naive one, and no row
 * skipped when transactions commit out of id order.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { stopChild } from '../bench/harness/processes.js';
import type { KafkaMessage } from 'kafkajs';
import { OrderingChecker } from '../src/chaos/ordering.js';
import { HEADERS, type WireEvent } from '../src/events.js';
import { amendOrders, placeOrders, writeOutboxEvents } from '../src/orders/write-path.js';
import { bumpOrderVersions } from '../src/queries.js';
import { checkClaims, readEvidence } from '../src/relay/table/evidence.js';
import { createPollingRelay } from '../src/relay/table/polling.js';
import type { EventPublisher } from '../src/relay/publisher.js';
import { bucketedStrategy, naiveSkipLockedStrategy, prepareBuckets } from '../src/relay/table/skip-locked.js';
import { TableRelay, type ClaimStrategy } from '../src/relay/table/relay.js';
import { eventually, headerOf, log, readTopic, scratchDir, testEnv, topicMessageCount, type TestEnv } from './helpers.js';

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli.js');

/** Writes `aggregates` orders, then `rounds` amendments of each: hot aggregates with many versions. */
async function hotAggregates(env: TestEnv, aggregates: number, rounds: number): Promise<number> {
  const placed = await placeOrders(env.sql, Array.from({ length: aggregates }, (_, i) => ({ customerId: `hot-${i}`, amountCents: 100, currency: 'EUR' })));
  const writers = env.pool({ max: 4 });
  for (let round = 0; round < rounds; round++) {
    // Several writers at once, each amending every order: versions still commit in order.
    await Promise.all(
      [0, 1].map((w) => amendOrders(writers, placed.map((p) => ({ orderId: p.orderId, deltaCents: w + 1 })))),
    );
  }
  return aggregates * (1 + rounds * 2);
}

/** A publisher whose calls take a random extra 0-15 ms, as a busy network would. */
function jittery(inner: EventPublisher): EventPublisher {
  return {
    async publish(messages: readonly WireEvent[]) {
      await sleep(Math.random() * 15);
      await inner.publish(messages);
    },
    close: () => inner.close(),
  };
}

/** pino's level number for warn: lines at or above it are worth showing. */
const WARN_LEVEL = 40;

function parseLogLine(line: string): Record<string, unknown> | undefined {
  try {
    const entry: unknown = JSON.parse(line);
    return typeof entry === 'object' && entry !== null ? (entry as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function checkOrder(messages: readonly KafkaMessage[]): OrderingChecker {
  const checker = new OrderingChecker();
  for (const message of messages) checker.observe(message.key!.toString(), Number(headerOf(message, HEADERS.aggregateVersion)));
  return checker;
}

async function runReplicas(env: TestEnv, strategyFor: (index: number) => ClaimStrategy, replicas: number, batchSize: number) {
  const relays = Array.from(
    { length: replicas },
    (_, index) =>
      new TableRelay({
        sql: env.pool({ max: 2, idleInTransactionTimeoutMs: 30_000 }),
        publisher: jittery(env.publisher()),
        wire: env.wire,
        strategy: strategyFor(index),
        log,
        batchSize,
        intervalMs: 20,
        replicaId: `r${index}`,
      }),
  );
  for (const relay of relays) relay.start();
  env.defer(() => Promise.all(relays.map((r) => r.stop())));
  await eventually('every row published', async () => (await env.sql`SELECT 1 FROM outbox WHERE published_at IS NULL LIMIT 1`).length === 0, 60_000);
  return relays;
}

describe('SKIP LOCKED replicas', () => {
  it('claims disjoint batches in separate processes, with evidence, and Kafka gets no duplicate', async (t) => {
    const env = await testEnv(t);
    const evidence = path.join(await scratchDir(), 'evidence');
    const child = spawn(
      process.execPath,
      [CLI, 'relay', '--mode', 'skip-locked', '--replicas', '3', '--buckets', '16', '--batch-size', '50', '--interval-ms', '50', '--evidence', evidence],
      {
        env: {
          ...process.env,
          OUTBOX_BENCH_SCHEMA: env.config.schema,
          OUTBOX_BENCH_TOPIC_PREFIX: env.config.topicPrefix,
          OUTBOX_BENCH_PARTITIONS: '3',
          OUTBOX_BENCH_LOG_LEVEL: 'info',
          OUTBOX_BENCH_LOG_FORMAT: 'json',
        },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    // A replica polls from the moment it logs 'relay started' (its Kafka
    // producer connected); its database session shows up earlier, while it
    // still connects. Warnings and anything not a log line pass through.
    const polling = new Set<string>();
    createInterface({ input: child.stderr! }).on('line', (line) => {
      const entry = parseLogLine(line);
      if (entry?.msg === 'relay started' && typeof entry.replica === 'string') polling.add(entry.replica);
      else if (!entry || (typeof entry.level === 'number' && entry.level >= WARN_LEVEL)) process.stderr.write(`${line}\n`);
    });
    env.defer(() => stopChild(child));
    // Write only once all three replicas poll: a backlog written before they
    // start could be drained by the first one up before the last one starts.
    await eventually('three replicas polling', () => polling.size === 3);
    const events = await hotAggregates(env, 40, 10);
    await eventually('every row published', async () => (await env.sql`SELECT 1 FROM outbox WHERE published_at IS NULL LIMIT 1`).length === 0, 60_000);
    // Gracefully, so each replica writes the rest of its evidence.
    await stopChild(child);

    const report = checkClaims(readEvidence(evidence));
    assert.equal(report.replicas.length, 3, 'three replica processes took part');
    assert.equal(report.claimedEvents, events);
    assert.equal(report.unreleasedPasses, 0);
    assert.deepEqual(report.overlaps, []);
    assert.equal(report.disjoint, true);
    assert.equal(await topicMessageCount(env.kafka, env.topic()), events, 'Kafka received each event exactly once');
    const checker = checkOrder(await readTopic(env.kafka, env.topic(), events));
    assert.deepEqual(checker.violations, []);
  });

  it('keeps per-aggregate order with bucketed ownership; the naive SKIP LOCKED reorders and the checker catches it', async (t) => {
    const ordered = await testEnv(t);
    const events = await hotAggregates(ordered, 8, 30);
    await prepareBuckets(ordered.sql, 8);
    await runReplicas(ordered, (index) => bucketedStrategy({ buckets: 8, replicas: 3, replicaIndex: index }), 3, 5);
    const good = checkOrder(await readTopic(ordered.kafka, ordered.topic(), events));
    assert.equal(good.aggregates, 8);
    assert.deepEqual(good.violations, [], 'bucketed replicas never publish a version before the one below it');

    const naive = await testEnv(t);
    const naiveEvents = await hotAggregates(naive, 8, 30);
    await runReplicas(naive, () => naiveSkipLockedStrategy, 3, 5);
    const bad = checkOrder(await readTopic(naive.kafka, naive.topic(), naiveEvents));
    assert.ok(bad.violations.length > 0, 'the naive ORDER BY id FOR UPDATE SKIP LOCKED relays reordered versions of hot aggregates');
    log.warn({ reorderings: bad.violations.length, example: bad.violations[0] }, 'negative control: the naive design reordered, as expected');
  });

  for (const design of ['polling', 'skip-locked'] as const) {
    it(`${design}: never skips a row whose transaction commits after later ids were published, nor publishes a later version first`, async (t) => {
      const env = await testEnv(t);
      const [x] = await placeOrders(env.sql, [{ customerId: 'x', amountCents: 1, currency: 'EUR' }]);
      assert.ok(x);
      const strategy = design === 'polling' ? undefined : bucketedStrategy({ buckets: 4, replicas: 1, replicaIndex: 0 });
      if (strategy) await prepareBuckets(env.sql, 4);
      const relay = strategy
        ? new TableRelay({ sql: env.pool({ max: 2 }), publisher: env.publisher(), wire: env.wire, strategy, log, batchSize: 100, intervalMs: 50 })
        : createPollingRelay({ sql: env.pool({ max: 2 }), publisher: env.publisher(), wire: env.wire, log, batchSize: 100, intervalMs: 50 });
      relay.start();
      env.defer(() => relay.stop());
      await eventually('v1 published', async () => (await env.sql`SELECT 1 FROM outbox WHERE published_at IS NULL`).length === 0);

      // Version 2 of X takes its id now, but its transaction stays open.
      const held = env.pool({ max: 1 });
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      const heldTransaction = held.begin(async (tx) => {
        const versions = await bumpOrderVersions(tx, [{ orderId: x.orderId, count: 1, deltaCents: 1 }]);
        await writeOutboxEvents(tx, [
          { eventId: crypto.randomUUID(), aggregateType: 'order', aggregateId: x.orderId, aggregateVersion: versions.get(x.orderId)!, eventType: 'OrderAmended', payload: '{}' },
        ]);
        await released;
      });
      await eventually('the held row to exist', async () => (await env.sql`SELECT 1 FROM pg_stat_activity WHERE state = 'idle in transaction' AND application_name = 'outbox-bench'`).length > 0);

      // Later ids commit and are published meanwhile; a second writer of X waits on X's row lock.
      const later = await placeOrders(env.sql, Array.from({ length: 50 }, (_, i) => ({ customerId: `later-${i}`, amountCents: i, currency: 'EUR' })));
      const thirdVersion = amendOrders(env.pool({ max: 1 }), [{ orderId: x.orderId, deltaCents: 1 }]);
      await eventually('the later rows published', async () => {
        const [row] = await env.sql`SELECT count(*)::int AS n FROM outbox WHERE published_at IS NOT NULL AND event_id = ANY(${later.map((l) => l.eventId)}::uuid[])`;
        return row?.n === 50;
      });
      release();
      await heldTransaction;
      await thirdVersion;
      await eventually('everything published', async () => (await env.sql`SELECT 1 FROM outbox WHERE published_at IS NULL`).length === 0);

      const messages = await readTopic(env.kafka, env.topic(), 53);
      const versionsOfX = messages.filter((m) => m.key?.toString() === x.orderId).map((m) => Number(headerOf(m, HEADERS.aggregateVersion)));
      assert.deepEqual(versionsOfX, [1, 2, 3], 'version 2 was published, and before version 3');
    });
  }
});

/**
 * What the lease (idle_in_transaction_session_timeout) does and does not
 * fence, shown on two replicas sharing eight buckets.
 */
describe('SKIP LOCKED leases', () => {
  const LEASE_MS = 1_000;
  const BUCKETS = 8;

  function replica(env: TestEnv, index: number, strategy: ClaimStrategy, publisher: EventPublisher, evidenceDir: string): TableRelay {
    return new TableRelay({
      sql: env.pool({ max: 2, idleInTransactionTimeoutMs: LEASE_MS }),
      publisher,
      wire: env.wire,
      strategy,
      log,
      batchSize: 50,
      intervalMs: 20,
      replicaId: `lease-${index}`,
      leaseMs: LEASE_MS,
      evidenceFile: path.join(evidenceDir, `replica-${index}.jsonl`),
    });
  }

  it('cuts off a replica whose Kafka publish outlasts the lease: its rows go out again, nothing lost, first deliveries in order', async (t) => {
    const env = await testEnv(t);
    const events = await hotAggregates(env, 20, 2);
    await prepareBuckets(env.sql, BUCKETS);
    const evidenceDir = await scratchDir();
    // Created before any replica claims: a first publish that created it would
    // spend part of the lease inside the claiming transaction.
    await env.ensureTopic();
    // Replica 0's first publish takes 2.5 leases: PostgreSQL ends its idle transaction meanwhile.
    let slow = true;
    const inner = env.publisher();
    const slowPublisher: EventPublisher = {
      async publish(messages) {
        if (slow) {
          slow = false;
          await sleep(2.5 * LEASE_MS);
        }
        await inner.publish(messages);
      },
      close: () => inner.close(),
    };
    const relays = [
      replica(env, 0, bucketedStrategy({ buckets: BUCKETS, replicas: 2, replicaIndex: 0 }), slowPublisher, evidenceDir),
      replica(env, 1, bucketedStrategy({ buckets: BUCKETS, replicas: 2, replicaIndex: 1 }), env.publisher(), evidenceDir),
    ];
    relays[0]!.start();
    await eventually('replica 0 to hold buckets', async () => (await env.sql`SELECT 1 FROM pg_locks WHERE relation = 'relay_buckets'::regclass AND mode = 'RowShareLock'`).length > 0);
    relays[1]!.start();
    env.defer(() => Promise.all(relays.map((r) => r.stop())));
    await eventually('every row published', async () => (await env.sql`SELECT 1 FROM outbox WHERE published_at IS NULL LIMIT 1`).length === 0, 60_000);
    // The slow publish lands too (late), after the other replica re-published its rows.
    await eventually('the late copies to land', async () => (await topicMessageCount(env.kafka, env.topic())) > events, 30_000);
    const messages = await readTopic(env.kafka, env.topic(), events);
    assert.equal(new Set(messages.map((m) => headerOf(m, HEADERS.eventId))).size, events, 'nothing lost');
    const checker = checkOrder(messages);
    assert.deepEqual(checker.violations, [], 'each version first delivered after the one before it');
    assert.ok(checker.duplicates > 0, 'the cut-off batch reached Kafka twice');
    const claims = checkClaims(readEvidence(evidenceDir));
    assert.ok(claims.leaseCut > 0, 'the evidence shows the replica the lease cut off');
    assert.deepEqual(claims.overlaps, [], 'no bucket held by both, the cut-off holder excepted');
  });

  it('does not fence a replica whose backend stays active past the lease: it keeps its buckets, nobody takes them, its pass commits', async (t) => {
    const env = await testEnv(t);
    const events = await hotAggregates(env, 20, 2);
    await prepareBuckets(env.sql, BUCKETS);
    const evidenceDir = await scratchDir();
    // Created before any replica claims: a first publish that created it would
    // spend part of the lease inside the claiming transaction.
    await env.ensureTopic();
    // Replica 0's first pass runs a statement for two leases after claiming: its session is active, not idle.
    let busy = true;
    const inner = bucketedStrategy({ buckets: BUCKETS, replicas: 2, replicaIndex: 0 });
    const activeStrategy: ClaimStrategy = {
      name: inner.name,
      async claim(tx, limit) {
        const claim = await inner.claim(tx, limit);
        if (busy && claim.rows.length > 0) {
          busy = false;
          await tx`SELECT pg_sleep(${(2 * LEASE_MS) / 1_000})`;
        }
        return claim;
      },
    };
    const relays = [
      replica(env, 0, activeStrategy, env.publisher(), evidenceDir),
      replica(env, 1, bucketedStrategy({ buckets: BUCKETS, replicas: 2, replicaIndex: 1 }), env.publisher(), evidenceDir),
    ];
    relays[0]!.start();
    await eventually('replica 0 to be inside its long statement', async () => (await env.sql`SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' AND state = 'active'`).length > 0);
    relays[1]!.start();
    env.defer(() => Promise.all(relays.map((r) => r.stop())));
    await eventually('every row published', async () => (await env.sql`SELECT 1 FROM outbox WHERE published_at IS NULL LIMIT 1`).length === 0, 60_000);
    const claims = checkClaims(readEvidence(evidenceDir));
    assert.equal(claims.leaseCut, 0, 'no session was cut off');
    assert.deepEqual(claims.overlaps, [], 'replica 1 never held a bucket replica 0 held');
    assert.ok(relays[0]!.published > 0, 'the long pass committed its rows');
    assert.equal(await topicMessageCount(env.kafka, env.topic()), events, 'every event once: nothing was taken over and published again');
    assert.deepEqual(checkOrder(await readTopic(env.kafka, env.topic(), events)).violations, []);
  });
});
