/**
 * A lost replication slot, recovered the way its error says: nothing that
 * reached the outbox may be missing from Kafka afterwards, and no aggregate's
 * events may arrive out of order. Kafka really stops (SIGSTOP), PostgreSQL
 * really invalidates the slot (a small max_slot_wal_keep_size), and the
 * recovery is the command a user runs.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Kafka } from 'kafkajs';
import { stopChild } from '../bench/harness/processes.js';
import { OrderingChecker } from '../src/chaos/ordering.js';
import { resolveConfig } from '../src/config.js';
import { createSql, migrate, type Sql } from '../src/db.js';
import { OutboxBenchError } from '../src/errors.js';
import { HEADERS } from '../src/events.js';
import { LocalKafka, LocalPostgres } from '../src/infra/index.js';
import { createKafkaClient } from '../src/kafka-client.js';
import { KafkajsPublisher } from '../src/kafka/kafkajs.js';
import { TopicAdmin } from '../src/kafka/topics.js';
import { amendOrders, placeOrders } from '../src/orders/write-path.js';
import { CdcRelay, CONFIRMED_RECORD_INTERVAL_MS } from '../src/relay/cdc/relay.js';
import { shardOf } from '../src/relay/cdc/sharded.js';
import type { EventPublisher } from '../src/relay/publisher.js';
import { recoverSlot } from '../src/relay/cdc/slot-recovery.js';
import { WireEncoder } from '../src/relay/wire.js';
import { parseLsn } from '../src/relay/cdc/lsn.js';
import { startRetryingBind } from './ports.js';
import { defer, eventually, freePort, headerOf, log, readTopic, scratchDir, topicMessageCount, uniqueName } from './helpers.js';

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli.js');

// Rationale: a fence every 200 ms gives the test a fresh published horizon
// within a second of each step, instead of the relay's 5 s default.
const HEARTBEAT_MS = 200;

const orders = (n: number, prefix: string) => Array.from({ length: n }, (_, i) => ({ customerId: `${prefix}-${i}`, amountCents: i, currency: 'EUR' }));

/** A PostgreSQL of the test's own that invalidates a slot once it falls `keep` behind (a WAL segment is 16MB). */
async function startPostgres(t: TestContext, schema: string, keep = '1MB'): Promise<{ server: LocalPostgres; sql: Sql }> {
  const config = resolveConfig({ env: {}, overrides: { pgPort: await freePort(), dataDir: await scratchDir() } });
  const server = new LocalPostgres({ config, log, settings: { max_slot_wal_keep_size: keep, max_wal_size: '32MB', min_wal_size: '32MB' } });
  await startRetryingBind(() => server.start());
  defer(t, () => server.stop('immediate'));
  const sql = createSql(server.url, schema, { max: 4 });
  defer(t, () => sql.end({ timeout: 5 }));
  await migrate(sql, { schema, partitionWidth: '1 day', partitionsAhead: 1 });
  return { server, sql };
}

/** A kafkajs publisher, closed (with its topic admin) after the test. */
function kafkaPublisher(t: TestContext, kafka: Kafka): EventPublisher {
  const topics = new TopicAdmin(kafka, 3);
  const publisher = new KafkajsPublisher({ kafka, topics, timeoutMs: 2_000 });
  defer(t, () => topics.close());
  defer(t, () => publisher.close());
  return publisher;
}

/** What the relays send, to topics of the test's own prefix. */
function wireFor(prefix: string): WireEncoder {
  return new WireEncoder({ route: (type) => `${prefix}${type}`, headers: 'minimal', forward: [] });
}

/** Waits until no walsender reads the slot any more (its relay was just stopped). */
async function idle(sql: Sql, slotName: string): Promise<void> {
  await eventually(`slot ${slotName} to be idle`, async () => (await sql`SELECT 1 FROM pg_replication_slots WHERE slot_name = ${slotName} AND active`).length === 0);
}

/** The slot's recorded published horizon, once it lies at or past `lsn`. */
async function horizonPast(sql: Sql, slotName: string, lsn: string): Promise<{ snapshot: string; lsn: string }> {
  return eventually(`a published horizon of ${slotName} at or past ${lsn}`, async () => {
    const [row] = await sql<{ snapshot: string | null; lsn: string | null }[]>`
      SELECT horizon_snapshot::text AS snapshot, horizon_lsn::text AS lsn FROM relay_cdc_slots WHERE slot_name = ${slotName}`;
    return row?.snapshot && row.lsn && parseLsn(row.lsn) >= parseLsn(lsn) ? { snapshot: row.snapshot, lsn: row.lsn } : undefined;
  });
}

async function insertLsn(sql: Sql): Promise<string> {
  const [row] = await sql<{ lsn: string }[]>`SELECT pg_current_wal_insert_lsn()::text AS lsn`;
  return row!.lsn;
}

/**
 * Writes WAL until PostgreSQL has removed what `lostSlot` needs, then
 * checkpoints: the checkpoint invalidates it. With `keep` (a slot whose relay
 * keeps up), WAL goes in 2 MB steps and that slot's restart position is
 * waited for after each, so it is never more than a step behind when a
 * checkpoint comes (PostgreSQL starts them by itself too) and survives on a
 * server that keeps a segment for slots.
 */
async function invalidate(sql: Sql, lostSlot: string, keep?: string): Promise<void> {
  await sql`CREATE TABLE IF NOT EXISTS filler (filler text)`;
  const keepUp = async () => {
    if (!keep) return;
    // A running-transactions record is where a slot's restart position can
    // move to: the record's start, at or after the insert position before it.
    const mark = await insertLsn(sql);
    await sql`SELECT pg_log_standby_snapshot()`;
    await eventually(`slot ${keep} to move its restart position to ${mark} or later`, async () => {
      const [row] = await sql<{ lsn: string | null }[]>`SELECT restart_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = ${keep}`;
      return row?.lsn && parseLsn(row.lsn) >= parseLsn(mark);
    });
  };
  const [steps, rows] = keep ? [30, 1_000] : [6, 5_000];
  for (let i = 0; i < steps; i++) {
    await sql`INSERT INTO filler SELECT repeat('y', 2000) FROM generate_series(1, ${rows}::int)`;
    if (!keep) await sql`SELECT pg_switch_wal()`;
    await keepUp();
  }
  await sql`SELECT pg_switch_wal()`;
  await keepUp();
  await sql`CHECKPOINT`;
  await eventually(`slot ${lostSlot} to be lost`, async () => (await sql`SELECT 1 FROM pg_replication_slots WHERE slot_name = ${lostSlot} AND wal_status = 'lost'`).length === 1);
}

/**
 * Every outbox row's event in Kafka, and each aggregate's versions first seen
 * in order. Waits until the relays are idle (the slots confirmed past the
 * last write, no row left for the polling relay), then reads the topic to its
 * end, so an event that never arrives is counted rather than waited for.
 */
async function assertNothingLostOrReordered(sql: Sql, kafka: Kafka, topic: string, slots: readonly string[]): Promise<{ events: number; duplicates: number }> {
  const last = await insertLsn(sql);
  await eventually('the CDC relays to confirm past the last write', async () => {
    const rows = await sql<{ lsn: string | null }[]>`SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = ANY(${slots as string[]})`;
    return rows.length === slots.length && rows.every((r) => r.lsn && parseLsn(r.lsn) >= parseLsn(last));
  }, 120_000);
  const rows = await sql<{ eventId: string }[]>`SELECT event_id::text FROM outbox`;
  const messages = await readTopic(kafka, topic, await topicMessageCount(kafka, topic), 60_000, { countMessages: true });
  const delivered = new Set(messages.map((m) => headerOf(m, HEADERS.eventId)));
  const lost = rows.filter((r) => !delivered.has(r.eventId));
  assert.equal(lost.length, 0, `${lost.length} of ${rows.length} committed events never reached Kafka`);
  const checker = new OrderingChecker();
  for (const m of messages) checker.observe(m.key!.toString(), Number(headerOf(m, HEADERS.aggregateVersion)));
  assert.deepEqual(checker.violations, [], 'each aggregate first seen in version order');
  return { events: rows.length, duplicates: messages.length - delivered.size };
}

/** Runs the CLI until it prints `ready`; its JSON log lines are collected. */
async function runCli(t: TestContext, args: string[], env: NodeJS.ProcessEnv, ready: RegExp): Promise<{ child: ChildProcess; logs: Record<string, unknown>[] }> {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  defer(t, () => stopChild(child));
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
    const lines = stderr.split('\n');
    stderr = lines.pop()!;
    for (const line of lines) {
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        logs.push({ msg: line });
      }
    }
  });
  let stdout = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  await eventually(`the CLI to print ${ready}`, () => {
    if (child.exitCode !== null) throw new Error(`the CLI exited with ${child.exitCode}: ${logs.map((l) => JSON.stringify(l)).join('\n')}`);
    return ready.test(stdout);
  }, 120_000);
  return { child, logs };
}

describe('lost-slot recovery', () => {
  it('cdc: `relay --recover-slot` after Kafka stopped and the slot was lost: 0 lost, 0 reordered, the SAVEPOINT transaction held across a fence re-published', async (t) => {
    const schema = 'recover_cdc';
    const prefix = `${uniqueName('recover')}.event.`;
    const topic = `${prefix}order`;
    const wire = wireFor(prefix);
    const { server, sql } = await startPostgres(t, schema);
    const kafkaConfig = resolveConfig({ env: {}, overrides: { kafkaPort: await freePort(), kafkaControllerPort: await freePort(), dataDir: await scratchDir(), topicPartitions: 3 } });
    const broker = new LocalKafka({ config: kafkaConfig, log });
    await startRetryingBind(() => broker.start());
    defer(t, () => broker.stop('kill'));
    const kafka = createKafkaClient({ brokers: broker.brokers, log, clientId: 'recover-cdc', retries: 1 });
    const topics = new TopicAdmin(kafka, 3);
    defer(t, () => topics.close());
    await topics.ensure(topic);
    const publisher = kafkaPublisher(t, kafka);
    const relay = new CdcRelay({ databaseUrl: server.url, sql, schema, publisher, wire, slotName: 'recover_slot', publicationName: 'recover_pub', log, batchSize: 200, heartbeatIntervalMs: HEARTBEAT_MS, statusIntervalMs: 1_000 });
    await relay.start();
    defer(t, () => relay.stop());
    const end = relay.done.then(() => new Error('the relay stopped without an error'), (error: unknown) => error);

    // Delivered and proven: the horizon passes them.
    const placed = await placeOrders(sql, orders(100, 'a'));
    await amendOrders(sql, placed.map((p) => ({ orderId: p.orderId, deltaCents: 1 })));
    await eventually('the first 200 events published', () => relay.published >= 200);
    await horizonPast(sql, 'recover_slot', await insertLsn(sql));

    // A writer holds one transaction open across a fence and writes inside a SAVEPOINT:
    // its row's xmin is a subtransaction's id that the fence's snapshot would call visible.
    const open = await sql.reserve();
    defer(t, () => open.release());
    await open`BEGIN`;
    await open`SAVEPOINT held`;
    const held = await placeOrders(open, orders(5, 'held'));
    await horizonPast(sql, 'recover_slot', await insertLsn(sql));

    // Kafka stops; writes go on, the held transaction commits.
    const brokerPid = broker.pid()!;
    process.kill(brokerPid, 'SIGSTOP');
    defer(t, () => {
      try {
        process.kill(brokerPid, 'SIGCONT');
      } catch {}
    });
    // The outage outlasts the relay's bookkeeping interval: a recovery that
    // trusted "last confirmed at" would mark rows of the outage (the old rule did).
    let outage = 0;
    for (const until = performance.now() + 1.5 * CONFIRMED_RECORD_INTERVAL_MS; performance.now() < until; outage += 10) {
      await placeOrders(sql, orders(10, `b${outage}`));
      await sleep(250);
    }
    await amendOrders(sql, placed.slice(0, 50).map((p) => ({ orderId: p.orderId, deltaCents: 2 })));
    await open`RELEASE SAVEPOINT held`;
    await open`COMMIT`;
    await amendOrders(sql, held.map((p) => ({ orderId: p.orderId, deltaCents: 3 })));
    await eventually('the relay to hold unacknowledged events', () => relay.bufferedEvents > 0);
    const [lastHorizon] = await sql<{ snapshot: string }[]>`SELECT horizon_snapshot::text AS snapshot FROM relay_cdc_slots WHERE slot_name = 'recover_slot'`;

    await invalidate(sql, 'recover_slot');
    const failure = await end;
    assert.ok(failure instanceof OutboxBenchError, String(failure));
    assert.equal(failure.code, 'SLOT_LOST');
    assert.match(failure.message, /relay --mode cdc --schema recover_cdc --recover-slot recover_slot/);
    assert.match(failure.message, /never|nothing is marked that Kafka may lack/);
    await relay.stop();
    await idle(sql, 'recover_slot');
    process.kill(brokerPid, 'SIGCONT');
    const after = await sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM outbox WHERE NOT pg_visible_in_snapshot(txid, ${lastHorizon!.snapshot}::pg_snapshot)`;
    const afterHorizon = 5 + outage + 50 + 5;
    assert.equal(after[0]!.n, afterHorizon, 'rows committed after the last horizon');

    // The command the error names, as a user runs it.
    const { logs } = await runCli(
      t,
      ['relay', '--mode', 'cdc', '--schema', schema, '--slot', 'recover_slot', '--publication', 'recover_pub', '--recover-slot', 'recover_slot', '--topic-prefix', prefix, '--partitions', '3', '--kafka-client', 'kafkajs', '--log-format', 'json', '--log-level', 'info'],
      { DATABASE_URL: server.url, KAFKA_BROKERS: broker.brokers.join(',') },
      /relay cdc running/,
    );
    const [slot] = await sql<{ walStatus: string }[]>`SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'recover_slot'`;
    assert.notEqual(slot?.walStatus, 'lost', 'a new slot replaced the lost one');

    // Writes after the recovery go through the new slot.
    await placeOrders(sql, orders(50, 'd'));
    const { events } = await assertNothingLostOrReordered(sql, kafka, topic, ['recover_slot']);
    assert.equal(events, 200 + afterHorizon + 50);
    const report = logs.find((line) => typeof line.msg === 'string' && line.msg.startsWith('recovered slot recover_slot')) as { marked: number; republished: number } | undefined;
    assert.ok(report, 'the recovery reports what it did');
    assert.equal(report.marked, 200, 'the first 200 events, and nothing after the last horizon, were proven and marked');
    assert.ok(report.republished >= afterHorizon, `the ${afterHorizon} rows after the last horizon were re-published (${report.republished})`);
    const heldRows = await sql<{ published: boolean }[]>`SELECT published_at IS NOT NULL AS published FROM outbox WHERE aggregate_id = ANY(${held.map((h) => h.orderId)})`;
    assert.ok(heldRows.length === 10 && heldRows.every((r) => r.published), 'the held transaction\'s rows were re-published by the recovery');
  });

  it('cdc-sharded: one slot lost while the other lags and survives; the recovery re-publishes only the lost shard\'s rows', async (t) => {
    const schema = 'recover_sharded';
    const prefix = `${uniqueName('recover')}.event.`;
    const wire = wireFor(prefix);
    const { server, sql } = await startPostgres(t, schema, '16MB');
    const kafka = createKafkaClient({ brokers: process.env.KAFKA_BROKERS!.split(','), log, clientId: 'recover-sharded', retries: 1 });
    const topics = new TopicAdmin(kafka, 3);
    defer(t, () => topics.close());
    const settings = { slotName: 'rs_slot', publicationName: 'rs_pub', replicas: 2 };
    const [lost, kept] = [shardOf(settings, 0), shardOf(settings, 1)];
    await topics.ensure(`${prefix}order`);
    const good = kafkaPublisher(t, kafka);
    // Shard 0's Kafka is a port nothing listens on: it reads events it can never confirm.
    const nowhere = createKafkaClient({ brokers: [`127.0.0.1:${await freePort()}`], log, clientId: 'recover-nowhere', retries: 0, quiet: true });
    const dead = kafkaPublisher(t, nowhere);
    const relayOf = (shard: typeof lost, publisher: EventPublisher) =>
      new CdcRelay({ databaseUrl: server.url, sql, schema, publisher, wire, ...shard, label: 'cdc-sharded', log, batchSize: 200, heartbeatIntervalMs: HEARTBEAT_MS, statusIntervalMs: 1_000 });
    const lostRelay = relayOf(lost, dead);
    const keptRelay = relayOf(kept, good);
    for (const relay of [lostRelay, keptRelay]) {
      await relay.start();
      defer(t, () => relay.stop());
    }
    const end = lostRelay.done.then(() => new Error('the relay stopped without an error'), (error: unknown) => error);

    const placed = await placeOrders(sql, orders(200, 's'));
    await amendOrders(sql, placed.map((p) => ({ orderId: p.orderId, deltaCents: 1 })));
    await eventually('shard 0 to hold its events', () => lostRelay.bufferedEvents > 0);
    await invalidate(sql, lost.slotName, kept.slotName);
    const failure = await end;
    assert.ok(failure instanceof OutboxBenchError && failure.code === 'SLOT_LOST', String(failure));
    assert.match(failure.message, /relay --mode cdc-sharded --schema recover_sharded --recover-slot rs_slot_0/);
    await lostRelay.stop();
    await idle(sql, lost.slotName);
    const [survivor] = await sql<{ walStatus: string }[]>`SELECT wal_status FROM pg_replication_slots WHERE slot_name = ${kept.slotName}`;
    assert.ok(survivor && survivor.walStatus !== 'lost', `shard 1's slot survived (${survivor?.walStatus})`);

    // Shard 1 keeps running through the recovery of shard 0.
    const report = await recoverSlot({ sql, schema, relayMode: 'cdc-sharded', ...lost, publisher: good, wire, batchSize: 100, log });
    const [shard0] = await sql.unsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM outbox WHERE ${lost.rowFilter!}`);
    assert.equal(report.republished, shard0!.n, 'every row of the lost shard, none of the other');
    await placeOrders(sql, orders(40, 't'));
    const restarted = relayOf(lost, good);
    await restarted.start();
    defer(t, () => restarted.stop());
    await assertNothingLostOrReordered(sql, kafka, `${prefix}order`, [lost.slotName, kept.slotName]);
  });
});
