/**
 * The CDC relay against the real server: it confirms only what Kafka has,
 * survives its connection being cut and itself being SIGKILLed, keeps an idle
 * slot moving, bounds its buffer, and refuses lost or vanished slots.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { stopChild } from '../bench/harness/processes.js';
import { OrderingChecker } from '../src/chaos/ordering.js';
import { resolveConfig } from '../src/config.js';
import { createSql, migrate } from '../src/db.js';
import { OutboxBenchError } from '../src/errors.js';
import { HEADERS, type WireEvent } from '../src/events.js';
import { LocalKafka, LocalPostgres } from '../src/infra/index.js';
import { createKafkaClient } from '../src/kafka-client.js';
import { silentLogger } from '../src/log.js';
import { amendOrders, amendOrdersIn, placeOrders } from '../src/orders/write-path.js';
import { CdcRelay } from '../src/relay/cdc/relay.js';
import { WireEncoder } from '../src/relay/wire.js';
import { prepareSlot, slotLagBytes } from '../src/relay/cdc/slot.js';
import { parseLsn } from '../src/relay/cdc/lsn.js';
import { dropIdleSlots } from '../src/relay/cdc/slot.js';
import { KafkajsPublisher } from '../src/kafka/kafkajs.js';
import { TopicAdmin } from '../src/kafka/topics.js';
import type { EventPublisher } from '../src/relay/publisher.js';
import { cdcRelayFor, cdcRelayProcessEnv, currentLsn, eventually, freePort, headerOf, log, readTopic, scratchDir, slotState, testEnv, topicMessageCount, withWalSenderTimeout } from './helpers.js';

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli.js');

const cdcRelay = cdcRelayFor;

// Rationale: far below the 60 s default, so a relay that leaves keepalives
// unanswered loses its connection within the few seconds a test waits.
const WAL_SENDER_TIMEOUT_MS = 2_000;
// No unprompted status updates within a test: only answers to keepalives keep the connection.
const UNPROMPTED_STATUS_MS = 600_000;

/** Holds every publish until released: a Kafka round trip that takes as long as the test wants. */
function gatedPublisher(inner: EventPublisher): EventPublisher & { release(): void; waiting(): number } {
  let open = false;
  const waiters: (() => void)[] = [];
  return {
    async publish(messages) {
      if (!open) await new Promise<void>((resolve) => waiters.push(resolve));
      await inner.publish(messages);
    },
    close: () => inner.close(),
    release() {
      open = true;
      for (const wake of waiters.splice(0)) wake();
    },
    waiting: () => waiters.length,
  };
}

const orders = (n: number, prefix: string) => Array.from({ length: n }, (_, i) => ({ customerId: `${prefix}-${i}`, amountCents: i, currency: 'EUR' }));

describe('CDC relay', () => {
  it('publishes outbox rows and table-less WAL messages, whole transactions, in order', async (t) => {
    const env = await testEnv(t);
    const relay = cdcRelay(env);
    await relay.start();
    const placed = [...(await placeOrders(env.sql, orders(200, 'table'))), ...(await placeOrders(env.sql, orders(200, 'message'), 'message'))];
    await amendOrders(env.sql, placed.slice(0, 50).flatMap((p) => [{ orderId: p.orderId, deltaCents: 1 }, { orderId: p.orderId, deltaCents: 2 }]), 'message');
    const messages = await readTopic(env.kafka, env.topic(), 500);
    assert.deepEqual(new Set(messages.map((m) => headerOf(m, HEADERS.eventId))).size, 500);
    const checker = new OrderingChecker();
    for (const m of messages) checker.observe(m.key!.toString(), Number(headerOf(m, HEADERS.aggregateVersion)));
    assert.deepEqual(checker.violations, []);
    const [outbox] = await env.sql`SELECT count(*)::int AS n FROM outbox`;
    assert.equal(outbox?.n, 200, 'the table-less events left no rows');
    const sample = messages.find((m) => headerOf(m, HEADERS.aggregateVersion) === '1');
    assert.equal(JSON.parse(sample!.value!.toString()).currency, 'EUR', 'the payload arrives as the JSON that was written');
    await eventually('the slot to confirm everything', async () => parseLsn((await slotState(env))!.confirmedFlushLsn!) >= (await currentLsn(env)) - 1_000_000n);
  });

  it('never confirms past events Kafka has not acknowledged, answers keepalives, and resumes when Kafka is back', async (t) => {
    const env = await testEnv(t);
    const config = resolveConfig({ env: {}, overrides: { kafkaPort: await freePort(), kafkaControllerPort: await freePort(), dataDir: await scratchDir(), topicPartitions: 3 } });
    const broker = new LocalKafka({ config, log });
    await broker.start();
    env.defer(() => broker.stop('kill'));
    const privateKafka = createKafkaClient({ brokers: broker.brokers, log, clientId: 'cdc-outage', retries: 1 });
    const publisher = new KafkajsPublisher({ kafka: privateKafka, topics: new TopicAdmin(privateKafka, 3), timeoutMs: 2_000 });
    env.defer(() => publisher.close());
    const relay = cdcRelay(env, { publisher, databaseUrl: withWalSenderTimeout(env, WAL_SENDER_TIMEOUT_MS), statusIntervalMs: UNPROMPTED_STATUS_MS });
    await relay.start();
    await placeOrders(env.sql, orders(20, 'before'));
    await eventually('the first events confirmed', async () => relay.published === 20);
    const walsender = (await slotState(env))?.activePid;

    await broker.stop('kill');
    // The slot skips, on replay, exactly the transactions whose COMMIT record
    // starts before its confirmed position, so that is the line the relay must
    // not cross. The commit record starts at or after the last insert's end.
    let commitNotBefore = 0n;
    await env.sql.begin(async (tx) => {
      await placeOrders(tx, orders(100, 'during'));
      const [row] = await tx<{ lsn: string }[]>`SELECT pg_current_wal_insert_lsn()::text AS lsn`;
      commitNotBefore = parseLsn(row!.lsn);
    });
    const afterInsert = await currentLsn(env);
    // Several publish attempts fail meanwhile; keepalives and heartbeats keep
    // coming, and a walsender whose keepalives go unanswered would end the
    // connection after WAL_SENDER_TIMEOUT_MS.
    await sleep(3 * WAL_SENDER_TIMEOUT_MS);
    const during = await slotState(env);
    assert.equal(during?.activePid, walsender, 'the same replication connection stays up: keepalives are answered');
    assert.ok(
      parseLsn(during!.confirmedFlushLsn!) <= commitNotBefore,
      `confirmed ${during!.confirmedFlushLsn} must not pass the unpublished transaction's commit (at or after ${commitNotBefore.toString(16)})`,
    );
    assert.equal(relay.published, 20);

    await broker.start();
    await eventually('the backlog published after Kafka came back', () => relay.published >= 120, 60_000);
    // The relay's client retries once, to fail fast while the broker is down;
    // the reader needs the usual patience for a coordinator that is still loading.
    const reader = createKafkaClient({ brokers: broker.brokers, log, clientId: 'cdc-outage-reader' });
    const messages = await readTopic(reader, env.topic(), 120);
    assert.equal(new Set(messages.map((m) => headerOf(m, HEADERS.eventId))).size, 120, 'nothing was lost');
    await eventually('the slot to confirm past the backlog', async () => parseLsn((await slotState(env))!.confirmedFlushLsn!) >= afterInsert);
  });

  it('answers keepalives when Kafka is unreachable from the start, before anything was confirmed', async (t) => {
    const env = await testEnv(t);
    await prepareSlot({ sql: env.sql, schema: env.config.schema, slotName: env.config.slotName, publicationName: env.config.publicationName }, log);
    // Written before the relay starts: its first transaction can never be published.
    await placeOrders(env.sql, orders(10, 'stuck'));
    const nowhere = createKafkaClient({ brokers: [`127.0.0.1:${await freePort()}`], log: silentLogger, clientId: 'cdc-no-kafka', retries: 0, quiet: true });
    const publisher = new KafkajsPublisher({ kafka: nowhere, topics: new TopicAdmin(nowhere, 3), timeoutMs: 1_000 });
    env.defer(() => publisher.close());
    const relay = cdcRelay(env, { publisher, databaseUrl: withWalSenderTimeout(env, WAL_SENDER_TIMEOUT_MS), statusIntervalMs: UNPROMPTED_STATUS_MS });
    await relay.start();
    await eventually('the stuck transaction to be buffered', () => relay.bufferedEvents === 10);
    const walsender = await eventually('a walsender', async () => (await slotState(env))?.activePid);
    await sleep(3 * WAL_SENDER_TIMEOUT_MS);
    assert.equal((await slotState(env))?.activePid, walsender, 'the walsender did not time the relay out: its keepalives were answered');
    assert.equal(relay.published, 0);
  });

  it('bounds its memory on a transaction larger than its buffer: the events wait on disk for the commit, and all arrive in order', async (t) => {
    const env = await testEnv(t);
    const spillDir = await scratchDir();
    const relay = cdcRelay(env, { spillAfterEvents: 500, spillDir });
    await relay.start();
    // One transaction of 3,000 events: six times what the relay keeps in memory.
    const placed = await placeOrders(env.sql, orders(2_000, 'big'));
    await env.sql.begin(async (tx) => {
      await amendOrdersIn(tx, placed.slice(0, 500).flatMap((p) => [{ orderId: p.orderId, deltaCents: 1 }, { orderId: p.orderId, deltaCents: 2 }]));
    });
    const messages = await readTopic(env.kafka, env.topic(), 3_000);
    assert.equal(new Set(messages.map((m) => headerOf(m, HEADERS.eventId))).size, 3_000);
    const checker = new OrderingChecker();
    for (const m of messages) checker.observe(m.key!.toString(), Number(headerOf(m, HEADERS.aggregateVersion)));
    assert.deepEqual(checker.violations, []);
    assert.ok(relay.spilledTransactions >= 1, 'the big transactions went to disk');
    const sample = messages.find((m) => headerOf(m, HEADERS.aggregateVersion) === '1');
    assert.equal(JSON.parse(sample!.value!.toString()).currency, 'EUR', 'the payload came back from the file as it was written');
    await eventually('the spill files to be gone once published', () => readdirSync(spillDir).length === 0);
  });

  it('publishes what a new connection brings while the old connection\'s publish was still waiting for Kafka', async (t) => {
    const env = await testEnv(t);
    const gate = gatedPublisher(env.publisher());
    // No heartbeat during the test: nothing but the fix may restart publishing.
    const relay = cdcRelay(env, { publisher: gate, heartbeatIntervalMs: 600_000 });
    await relay.start();
    await placeOrders(env.sql, orders(5, 'first'));
    await eventually('a publish held at the gate', () => gate.waiting() === 1);
    await env.sql`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = ${env.config.slotName} AND active_pid IS NOT NULL`;
    await eventually('the relay to reconnect', async () => (await slotState(env))?.active === true);
    await placeOrders(env.sql, orders(5, 'second'));
    await eventually('the new connection to buffer both transactions', () => relay.bufferedEvents === 10);
    gate.release();
    // No heartbeat for 600 s: publishing within eventually()'s 30 s is the fix, not new WAL.
    await eventually('both transactions published, with no WAL arriving after the release', () => relay.published >= 10);
    const messages = await readTopic(env.kafka, env.topic(), 10);
    assert.equal(new Set(messages.map((m) => headerOf(m, HEADERS.eventId))).size, 10);
  });

  it('keeps an idle slot from pinning WAL while other tables are busy', async (t) => {
    const env = await testEnv(t);
    const relay = cdcRelay(env);
    await relay.start();
    // A slot nobody reads, for comparison: it pins everything written after it.
    const control = `${env.config.slotName}_control`;
    await env.sql`SELECT pg_create_logical_replication_slot(${control}, 'pgoutput')`;
    env.defer(() => env.sql`SELECT pg_drop_replication_slot(${control})`);
    await env.sql`CREATE TABLE busy (id bigserial PRIMARY KEY, filler text)`;
    for (let round = 0; round < 8; round++) {
      await env.sql`INSERT INTO busy (filler) SELECT repeat('x', 1000) FROM generate_series(1, 2000)`;
      await sleep(250);
    }
    await sleep(2_000); // a few heartbeats
    const idleLag = (await slotLagBytes(env.sql, env.config.slotName))!;
    const [controlRow] = await env.sql<{ lag: number }[]>`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint AS lag FROM pg_replication_slots WHERE slot_name = ${control}`;
    assert.ok(controlRow!.lag > 16_000_000, `the unread control slot is ${controlRow!.lag} bytes behind`);
    assert.ok(idleLag < 1_000_000, `the relay's slot stays within 1 MB of the WAL end (is ${idleLag} bytes behind)`);
    assert.equal(relay.published, 0);
  });

  it('bounds its buffer when Kafka is slower than the WAL', async (t) => {
    const env = await testEnv(t);
    const inner = env.publisher();
    let peakBuffered = 0;
    let relayRef: CdcRelay | undefined;
    const slow: EventPublisher = {
      async publish(messages: readonly WireEvent[]) {
        peakBuffered = Math.max(peakBuffered, relayRef!.bufferedEvents);
        await sleep(30);
        await inner.publish(messages);
      },
      close: () => inner.close(),
    };
    const relay = cdcRelay(env, { publisher: slow, batchSize: 20, maxBufferedEvents: 100 });
    relayRef = relay;
    await relay.start();
    for (let i = 0; i < 50; i++) await placeOrders(env.sql, orders(20, `burst-${i}`));
    await eventually('all 1000 published', () => relay.published === 1_000, 60_000);
    // The limit, plus what one socket read (64 KiB, ~10 transactions here)
    // had already delivered when the stream was paused; without the pause the
    // relay would hold most of the 1,000.
    assert.ok(peakBuffered <= 400, `buffered ${peakBuffered} events at most`);
    assert.equal(await topicMessageCount(env.kafka, env.topic()), 1_000);
  });

  it('reconnects after its walsender is terminated and loses nothing', async (t) => {
    const env = await testEnv(t);
    const relay = cdcRelay(env);
    await relay.start();
    const writer = (async () => {
      for (let i = 0; i < 30; i++) {
        await placeOrders(env.sql, orders(20, `w${i}`));
        await sleep(50);
      }
    })();
    for (let cut = 0; cut < 3; cut++) {
      await sleep(400);
      await env.sql`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = ${env.config.slotName} AND active_pid IS NOT NULL`;
    }
    await writer;
    const messages = await readTopic(env.kafka, env.topic(), 600, 60_000);
    assert.equal(new Set(messages.map((m) => headerOf(m, HEADERS.eventId))).size, 600, 'every event arrived (duplicates allowed)');
  });

  it('loses nothing when the relay process is SIGKILLed at random moments under load', async (t) => {
    const env = await testEnv(t);
    const childEnv = await cdcRelayProcessEnv(env);
    let child: ChildProcess | undefined;
    const startChild = () => {
      child = spawn(process.execPath, [CLI, 'relay', '--mode', 'cdc', '--batch-size', '50'], { env: childEnv, stdio: 'ignore' });
    };
    env.defer(() => child && stopChild(child));
    startChild();
    let written = 0;
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        written += (await placeOrders(env.sql, orders(25, `k${i}`))).length;
        await sleep(40);
      }
    })();
    const seed = Math.floor(Math.random() * 1e9);
    log.warn({ seed }, 'SIGKILL schedule seed');
    let state = seed;
    const random = () => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const confirmed = async () => parseLsn((await slotState(env))?.confirmedFlushLsn ?? '0/0');
    for (let kill = 0; kill < 4; kill++) {
      // Each relay dies at work: once it has confirmed past where the last one
      // stopped (a start takes a second or more on a busy machine), at a random
      // moment after.
      const before = await confirmed();
      await eventually('the restarted relay to confirm progress', async () => (await confirmed()) > before, 30_000);
      await sleep(random() * 1_500);
      const victim = child!;
      victim.kill('SIGKILL');
      await once(victim, 'exit');
      await eventually('the walsender to let go of the slot', async () => (await slotState(env))?.active === false, 20_000);
      startChild();
    }
    writing = false;
    await writer;
    const messages = await readTopic(env.kafka, env.topic(), written, 90_000);
    assert.equal(new Set(messages.map((m) => headerOf(m, HEADERS.eventId))).size, written, `all ${written} events arrived despite 4 SIGKILLs (seed ${seed})`);
  });
});

describe('CDC slot safety', () => {
  it('refuses a lost slot and a vanished slot with the slot name and the fix, and never recreates them silently', async (t) => {
    const config = resolveConfig({ env: {}, overrides: { pgPort: await freePort(), dataDir: await scratchDir() } });
    const server = new LocalPostgres({ config, log, settings: { max_slot_wal_keep_size: '1MB', max_wal_size: '32MB', min_wal_size: '32MB' } });
    await server.start();
    t.after(() => server.stop('immediate'));
    const sql = createSql(server.url, 'slots', { max: 2 });
    t.after(() => sql.end({ timeout: 5 }));
    await migrate(sql, { schema: 'slots', partitionWidth: '1 day', partitionsAhead: 1 });
    const options = { sql, schema: 'slots', slotName: 'lost_slot', publicationName: 'lost_pub' };
    await prepareSlot(options, log);

    // Push the slot more than max_slot_wal_keep_size behind, then checkpoint: PostgreSQL invalidates it.
    await sql`CREATE TABLE filler (filler text)`;
    for (let i = 0; i < 6; i++) {
      await sql`INSERT INTO filler SELECT repeat('y', 2000) FROM generate_series(1, 5000)`;
      await sql`SELECT pg_switch_wal()`;
    }
    await sql`CHECKPOINT`;
    await eventually('the slot to be lost', async () => (await sql`SELECT 1 FROM pg_replication_slots WHERE slot_name = 'lost_slot' AND wal_status = 'lost'`).length === 1, 30_000);
    await assert.rejects(prepareSlot(options, log), (error: unknown) => {
      assert.ok(error instanceof OutboxBenchError);
      assert.equal(error.code, 'SLOT_LOST');
      assert.match(error.message, /replication slot "lost_slot" was invalidated \(wal_status = 'lost'/);
      assert.match(error.message, /relay --mode cdc --schema slots --recover-slot lost_slot/);
      return true;
    });
    const [still] = await sql`SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'lost_slot'`;
    assert.equal(still?.walStatus, 'lost', 'the relay did not drop or recreate it');

    await sql`SELECT pg_drop_replication_slot('lost_slot')`;
    await assert.rejects(prepareSlot(options, log), (error: unknown) => {
      assert.ok(error instanceof OutboxBenchError);
      assert.equal(error.code, 'SLOT_MISSING');
      assert.match(error.message, /replication slot "lost_slot" that this relay created .* no longer exists.*--recover-slot lost_slot/);
      return true;
    });
    assert.equal((await sql`SELECT 1 FROM pg_replication_slots WHERE slot_name = 'lost_slot'`).length, 0, 'not recreated silently');
    await assert.rejects(prepareSlot({ ...options, recreateSlot: true }, log), (error: unknown) => {
      assert.ok(error instanceof OutboxBenchError);
      assert.equal(error.code, 'USAGE');
      assert.match(error.message, /--recreate-slot would start .* skip the outbox rows .* --recover-slot lost_slot/);
      return true;
    });
    await prepareSlot({ ...options, store: 'message', recreateSlot: true }, log);
    assert.equal((await sql`SELECT 1 FROM pg_replication_slots WHERE slot_name = 'lost_slot'`).length, 1, 'the message store recreated it when asked to');
    await sql`SELECT pg_drop_replication_slot('lost_slot')`;
  });

  it('stops with the recovery its store allows when its slot is invalidated while it streams', async (t) => {
    const config = resolveConfig({ env: {}, overrides: { pgPort: await freePort(), dataDir: await scratchDir() } });
    const server = new LocalPostgres({ config, log, settings: { max_slot_wal_keep_size: '1MB', max_wal_size: '32MB', min_wal_size: '32MB' } });
    await server.start();
    t.after(() => server.stop('immediate'));
    const sql = createSql(server.url, 'streaming', { max: 2 });
    t.after(() => sql.end({ timeout: 5 }));
    await migrate(sql, { schema: 'streaming', partitionWidth: '1 day', partitionsAhead: 1 });
    // Kafka unreachable: the relays read events they can never confirm, so their slots fall behind.
    const nowhere = createKafkaClient({ brokers: [`127.0.0.1:${await freePort()}`], log: silentLogger, clientId: 'cdc-lost-stream', retries: 0, quiet: true });
    const publisher = new KafkajsPublisher({ kafka: nowhere, topics: new TopicAdmin(nowhere, 3), timeoutMs: 1_000 });
    t.after(() => publisher.close());
    const relays = (['table', 'message'] as const).map(
      (store) =>
        new CdcRelay({
          databaseUrl: server.url,
          sql,
          schema: 'streaming',
          publisher,
          wire: new WireEncoder({ route: (type) => `lost.${type}`, headers: 'minimal', forward: [] }),
          slotName: `lost_${store}_slot`,
          publicationName: `lost_${store}_pub`,
          store,
          log,
          batchSize: 100,
        }),
    );
    for (const relay of relays) {
      await relay.start();
      t.after(() => relay.stop());
    }
    // Each relay's end, caught as it happens: the two stop at different moments, and an end nobody awaits yet
    // would be an unhandled rejection.
    const ends = relays.map((relay) => relay.done.then(() => new Error('the relay stopped without an error'), (error: unknown) => error));
    await placeOrders(sql, orders(10, 'table'));
    await placeOrders(sql, orders(10, 'message'), 'message');
    await eventually('both relays to hold their events', () => relays.every((r) => r.bufferedEvents > 0));
    await sql`CREATE TABLE filler (filler text)`;
    for (let i = 0; i < 6; i++) {
      await sql`INSERT INTO filler SELECT repeat('y', 2000) FROM generate_series(1, 5000)`;
      await sql`SELECT pg_switch_wal()`;
    }
    await sql`CHECKPOINT`;
    const [tableEnd, messageEnd] = await Promise.all(ends);
    assert.ok(tableEnd instanceof OutboxBenchError, String(tableEnd));
    assert.equal(tableEnd.code, 'SLOT_LOST');
    assert.match(tableEnd.message, /"lost_table_slot" was invalidated/);
    assert.match(tableEnd.message, /marks published the outbox rows the slot's published horizon proves Kafka has: none, because no published horizon/);
    assert.match(tableEnd.message, /relay --mode cdc --schema streaming --recover-slot lost_table_slot/);
    assert.ok(messageEnd instanceof OutboxBenchError, String(messageEnd));
    assert.equal(messageEnd.code, 'SLOT_LOST');
    assert.match(messageEnd.message, /"lost_message_slot" was invalidated/);
    assert.match(messageEnd.message, /cannot be re-published: a logical message lives only in the WAL/);
    assert.match(messageEnd.message, /reconcile from your business tables every write/);
    for (const store of ['table', 'message']) {
      const [row] = await sql`SELECT wal_status FROM pg_replication_slots WHERE slot_name = ${`lost_${store}_slot`}`;
      assert.equal(row?.walStatus, 'lost', 'left for the operator, not recreated');
    }
  });

  it('drops idle slots by name or by prefix, taking an underscore literally, and leaves a slot in use alone', async (t) => {
    const env = await testEnv(t);
    const relay = cdcRelay(env);
    await relay.start();
    // start() resolves while the stream opens; the slot is in use once the walsender holds it.
    await eventually('the relay to hold its slot', async () => (await slotState(env))?.active === true);
    const base = env.config.slotName;
    const names = [`${base}_a1`, `${base}_a2`, `${base}xa3`, `${base}_b1`];
    for (const name of names) await env.sql`SELECT pg_create_logical_replication_slot(${name}, 'pgoutput')`;
    const left = async () =>
      (await env.sql<{ name: string }[]>`SELECT slot_name AS name FROM pg_replication_slots WHERE starts_with(slot_name, ${base}) ORDER BY 1`).map((r) => r.name);
    env.defer(async () => {
      for (const name of await left()) await env.sql`SELECT pg_drop_replication_slot(${name}) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = ${name} AND active)`;
    });
    assert.equal(await dropIdleSlots(env.sql, { prefix: `${base}_a` }), 2, 'the two _a slots; the x in xa3 is no underscore');
    assert.equal(await dropIdleSlots(env.sql, { name: `${base}_b1` }), 1);
    assert.equal(await dropIdleSlots(env.sql, { name: `${base}_b1` }), 0, 'gone already');
    // The relay's own slot is in use: a prefix that covers it drops only the idle one beside it.
    assert.equal(await dropIdleSlots(env.sql, { prefix: base }), 1);
    assert.deepEqual(await left(), [base]);
  });

  it('refuses to start without wal_level=logical', async (t) => {
    const config = resolveConfig({ env: {}, overrides: { pgPort: await freePort(), dataDir: await scratchDir() } });
    const server = new LocalPostgres({ config, log, settings: { wal_level: 'replica' } });
    await server.start();
    t.after(() => server.stop('immediate'));
    const sql = createSql(server.url, 'nolog', { max: 1 });
    t.after(() => sql.end({ timeout: 5 }));
    await migrate(sql, { schema: 'nolog', partitionWidth: '1 day', partitionsAhead: 1 });
    await assert.rejects(prepareSlot({ sql, schema: 'nolog', slotName: 's', publicationName: 'p' }, log), (error: unknown) =>
      error instanceof OutboxBenchError && error.code === 'WAL_LEVEL_NOT_LOGICAL' && /wal_level=replica.*ALTER SYSTEM SET wal_level = 'logical'/.test(error.message),
    );
  });
});
