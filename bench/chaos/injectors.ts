/**
 * How each fault of the crash matrix is carried out, aimed at a process doing
 * work: the entries of the fault table (faults.ts) call these. A fault that
 * lands on an idle relay proves nothing, so each reports whether it hit.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Sql } from '../../src/db.js';
import type { LocalKafka } from '../../src/infra/kafka.js';
import { LocalKafkaCluster } from '../../src/infra/kafka-cluster.js';
import { createKafkaClient } from '../../src/kafka-client.js';
import { silentLogger } from '../../src/log.js';
import type { LocalPostgres } from '../../src/infra/postgres.js';
import { appendSessionEnd } from '../../src/relay/table/evidence.js';
import { relayApplicationName, type RelayModeBehaviour, type RelayModeInfo, type RelaySettings } from '../../src/relay/modes.js';
import type { PostgresFailover } from './failover.js';
import type { Supervisor } from './supervisor.js';

/** What one injection did: whom it aimed at, and whether that was a process at work (see faults.ts). */
export interface Shot {
  target: string;
  hit: boolean;
}

export interface FaultTargets {
  /** The row's own pool (on its schema). */
  sql: Sql;
  supervisor: Supervisor;
  postgres: LocalPostgres;
  /** The primary-and-standby pair, on rows that fail over. */
  failover: PostgresFailover | undefined;
  kafka: LocalKafka | LocalKafkaCluster;
  /** The row's topic (the leader-kill fault looks up its partition leaders). */
  topic: string;
  /** Supervisor names of the relay processes, by replica index. */
  relays: readonly string[];
  /** Supervisor names of the consumer processes of the group. */
  consumers: readonly string[];
  /** Starts one more consumer in the group under `name` (not restarted when it exits). */
  startConsumer(name: string): Promise<void>;
  /** The row's relay: its mode and the row's settings (slot names, process count). */
  relay: { mode: RelayModeInfo & RelayModeBehaviour; settings: RelaySettings } | undefined;
  /** Where the relays write claim evidence, if they do. */
  evidenceDir: string | undefined;
  random: () => number;
}

// Rationale: a relay at the matrix's load is inside a pass a good part of
// each 100 ms cycle; polling every 10 ms for up to 2 s finds one.
const AIM_POLL_MS = 10;
const AIM_ATTEMPTS = 200;
// Rationale: up to 1.5 s (15 x 100 ms) covers a relay restart here; a longer
// wait would push the rest of the schedule back.
const WALSENDER_WAIT_ATTEMPTS = 15;

/** A relay at work right now: its index and, for table relays, its session and the server's clock. */
interface Busy {
  index: number;
  session?: { backendPid: number; seenAt: number };
}

async function working(t: FaultTargets): Promise<Busy[]> {
  if (!t.relay) return [];
  const slots = t.relay.mode.slots(t.relay.settings);
  if (slots.length > 0) {
    // A CDC process is at work while its slot is read and behind the WAL.
    const rows = await t.sql<{ slot: string }[]>`
      SELECT slot_name AS slot FROM pg_replication_slots
      WHERE slot_name = ANY(${slots}) AND active_pid IS NOT NULL AND pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) > 0`;
    return rows.map((row) => ({ index: slots.indexOf(row.slot) }));
  }
  const mode = t.relay.settings.relayMode;
  const names = t.relays.map((_, index) => relayApplicationName(mode, index));
  const rows = await t.sql<{ name: string; pid: number; at: number }[]>`
    SELECT application_name AS name, pid, (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS at FROM pg_stat_activity
    WHERE application_name = ANY(${names}) AND xact_start IS NOT NULL AND state <> 'idle'`;
  return rows.map((row) => ({ index: names.indexOf(row.name), session: { backendPid: row.pid, seenAt: row.at } })).filter((busy) => busy.index >= 0);
}

async function aim<T>(find: () => Promise<T | undefined>): Promise<T | undefined> {
  for (let attempt = 0; attempt < AIM_ATTEMPTS; attempt++) {
    const found = await find().catch(() => undefined);
    if (found !== undefined) return found;
    await sleep(AIM_POLL_MS);
  }
  return undefined;
}

export async function killRelay(t: FaultTargets): Promise<Shot | undefined> {
  const busy = await aim(async () => {
    const candidates = await working(t);
    return candidates.length > 0 ? candidates[Math.floor(t.random() * candidates.length)] : undefined;
  });
  const index = busy?.index ?? Math.floor(t.random() * t.relays.length);
  const target = t.relays[index]!;
  if (!t.supervisor.signal(target, 'SIGKILL')) return undefined;
  // Its session was seen alive, mid-transaction, just before the kill: its
  // claims held at least until then.
  if (t.evidenceDir && busy?.session && t.relay) {
    appendSessionEnd(t.evidenceDir, { replica: `${t.relay.settings.relayMode}-${index}`, backendPid: busy.session.backendPid, lastSeenAt: busy.session.seenAt });
  }
  return { target, hit: busy !== undefined };
}

/** Backends of SKIP LOCKED replicas holding bucket locks right now: [replica index, backend pid]. */
async function bucketHolders(t: FaultTargets): Promise<[number, number][]> {
  if (!t.relay) return [];
  const mode = t.relay.settings.relayMode;
  const names = t.relays.map((_, index) => relayApplicationName(mode, index));
  const rows = await t.sql<{ name: string; pid: number }[]>`
    SELECT a.application_name AS name, a.pid FROM pg_stat_activity a
    WHERE a.application_name = ANY(${names}) AND a.xact_start IS NOT NULL
      AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.relation = 'relay_buckets'::regclass)`;
  return rows.map((row): [number, number] => [names.indexOf(row.name), row.pid]).filter(([index]) => index >= 0);
}

async function alive(sql: Sql, pid: number): Promise<boolean> {
  const rows = await sql`SELECT 1 FROM pg_stat_activity WHERE pid = ${pid}`;
  return rows.length > 0;
}

/**
 * Freezes a replica that holds buckets for `pauseMs` (longer than its lease).
 * If it let go of them in the instant before the signal, it is resumed at
 * once and another holder is sought.
 */
export async function pauseRelay(t: FaultTargets, pauseMs: number): Promise<Shot | undefined> {
  const frozen = await aim(async () => {
    const holders = await bucketHolders(t);
    if (holders.length === 0) return undefined;
    const [index, pid] = holders[Math.floor(t.random() * holders.length)]!;
    const target = t.relays[index]!;
    if (!t.supervisor.signal(target, 'SIGSTOP')) return undefined;
    // A COMMIT already on the wire completes without the client: check that
    // the frozen replica still holds its buckets.
    await sleep(50);
    if ((await bucketHolders(t)).some(([, holder]) => holder === pid)) return { target, pid };
    t.supervisor.signal(target, 'SIGCONT');
    return undefined;
  });
  if (!frozen) return { target: 'no replica held buckets', hit: false };
  await sleep(pauseMs);
  const fenced = !(await alive(t.sql, frozen.pid).catch(() => true));
  t.supervisor.signal(frozen.target, 'SIGCONT');
  return { target: frozen.target, hit: fenced };
}

export async function terminateWalsender(t: FaultTargets): Promise<Shot | undefined> {
  // The relay of these rows is killed every few seconds, so its walsender
  // is often gone at the scheduled moment: wait briefly for the next one.
  const slots = t.relay ? t.relay.mode.slots(t.relay.settings) : [];
  const slot = (slots.length > 1 ? slots[Math.floor(t.random() * slots.length)] : slots[0]) ?? 'no slot';
  for (let attempt = 0; attempt < WALSENDER_WAIT_ATTEMPTS; attempt++) {
    const rows = await t.sql`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = ${slot} AND active_pid IS NOT NULL`.catch(() => []);
    if (rows.length > 0) return { target: slot, hit: true };
    await sleep(100);
  }
  return { target: slot, hit: false };
}

export async function killKafka(t: FaultTargets, downMs: number): Promise<Shot> {
  const wasRunning = t.kafka.pid() !== undefined;
  await t.kafka.stop('kill');
  await sleep(downMs);
  await t.kafka.start();
  return { target: 'broker', hit: wasRunning };
}

export async function restartPostgres(t: FaultTargets, downMs: number): Promise<Shot> {
  const wasRunning = t.postgres.pid() !== undefined;
  await t.postgres.stop('immediate');
  await sleep(downMs);
  await t.postgres.start();
  return { target: 'postgres', hit: wasRunning };
}

export async function failoverPostgres(t: FaultTargets): Promise<Shot> {
  if (!t.failover) throw new Error('this fault needs the row to run on a primary with a standby (RowSpec.postgres)');
  // The row waited for the standby to sync these before its faults began.
  const slots = t.relay ? t.relay.mode.slots(t.relay.settings) : [];
  const streaming = await t.sql<{ slot: string }[]>`SELECT slot_name AS slot FROM pg_replication_slots WHERE slot_name = ANY(${slots}) AND active_pid IS NOT NULL`;
  const promotion = await t.failover.promote();
  const synced = slots.every((slot) => promotion.syncedSlots.some((s) => s.slot === slot));
  return { target: `standby (down ${promotion.downMs} ms; synced ${promotion.syncedSlots.map((s) => `${s.slot} at ${s.confirmedLsn}`).join(', ')})`, hit: synced && streaming.length > 0 };
}

/** The broker leading a partition of `topic` (node id), or undefined while none does. */
async function leaderOf(t: FaultTargets): Promise<number | undefined> {
  const kafka = createKafkaClient({ brokers: [...t.kafka.brokers], log: silentLogger, clientId: 'chaos-leader', quiet: true, retries: 0 });
  const admin = kafka.admin();
  try {
    await admin.connect();
    const { topics } = await admin.fetchTopicMetadata({ topics: [t.topic] });
    const leaders = (topics[0]?.partitions ?? []).map((p) => p.leader).filter((leader) => leader >= 0);
    return leaders.length === 0 ? undefined : leaders[Math.floor(t.random() * leaders.length)];
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

function clusterOf(t: FaultTargets): LocalKafkaCluster {
  if (!(t.kafka instanceof LocalKafkaCluster)) throw new Error('this fault needs the row to run on a Kafka cluster (RowSpec.kafka)');
  return t.kafka;
}

export async function killLeader(t: FaultTargets, downMs: number): Promise<Shot> {
  const cluster = clusterOf(t);
  const leader = await leaderOf(t).catch(() => undefined);
  if (leader === undefined) return { target: 'no leader found', hit: false };
  const broker = cluster.broker(leader);
  await broker.stop('kill');
  await sleep(downMs);
  await broker.start();
  return { target: `broker ${leader}`, hit: true };
}

export async function killTwoBrokers(t: FaultTargets, downMs: number): Promise<Shot> {
  const cluster = clusterOf(t);
  const ids = cluster.nodes.map((node) => node.node.id);
  const kept = ids[Math.floor(t.random() * ids.length)]!;
  const killed = ids.filter((id) => id !== kept).slice(0, 2);
  const running = killed.filter((id) => cluster.broker(id).pid() !== undefined);
  await Promise.all(killed.map((id) => cluster.broker(id).stop('kill')));
  // One back after a while (writes resume with two in sync), the other later.
  await sleep(downMs);
  await cluster.broker(killed[0]!).start();
  await sleep(downMs);
  await cluster.broker(killed[1]!).start();
  return { target: `brokers ${killed.join(' and ')}`, hit: running.length === 2 };
}

export async function killConsumer(t: FaultTargets): Promise<Shot> {
  const target = t.consumers[Math.floor(t.random() * t.consumers.length)]!;
  const others = t.consumers.length > 1;
  const killed = t.supervisor.signal(target, 'SIGKILL');
  return { target, hit: killed && others };
}

let extraConsumers = 0;

export async function addConsumer(t: FaultTargets, stayMs: number): Promise<Shot> {
  const name = `consumer-extra-${++extraConsumers}`;
  await t.startConsumer(name);
  await sleep(stayMs);
  await t.supervisor.stop(name);
  return { target: name, hit: true };
}

