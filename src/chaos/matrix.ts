/**
 * The crash-injection matrix: each row runs writer, relay(s) and consumer as
 * supervised processes on servers of its own, injects faults on a seeded
 * schedule, stops the faults, drains, and checks the history. The same seed
 * gives the same schedule, so any row can be replayed.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Config, RelayMode } from '../config.js';
import { resolveConfig } from '../config.js';
import { createSql, dropSchema, migrate, type Sql } from '../db.js';
import { topicFor } from '../events.js';
import { LocalKafka } from '../infra/kafka.js';
import { LocalPostgres } from '../infra/postgres.js';
import { isPortFree } from '../infra/processes.js';
import { createKafkaClient } from '../kafka-client.js';
import type { Logger } from '../log.js';
import { KafkajsPublisher } from '../relay/publisher.js';
import type { ConsumerTask, WriterTask } from './child.js';
import { seededRandom } from './failpoints.js';
import { checkHistory, readJsonLines, type CheckReport, type DeliveryRecord, type WriteRecord } from './history.js';
import { Supervisor } from './supervisor.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const CHILD = path.join(here, 'child.js');
const CLI = path.join(here, '..', 'cli.js');

export type FaultKind = 'kill-relay' | 'pause-relay' | 'kill-kafka' | 'restart-postgres' | 'terminate-walsender';

export interface RowSpec {
  name: string;
  description: string;
  writer: { store: WriterTask['store']; amendShare: number; hotKeys: number; crashAt?: string };
  relay?: { mode: RelayMode; replicas: number; crashAt?: string; leaseMs?: number };
  consumerCrashAt?: string;
  faults: FaultKind[];
  expect: { lost: 'some' | 'none'; duplicates?: 'some'; reorderings?: 'none' };
}

// Rationale: up to 1.5 s (15 x 100 ms) covers a relay restart here; a longer
// wait would push the rest of the schedule back.
const WALSENDER_WAIT_ATTEMPTS = 15;

/** The matrix of the issue, in order. `{seed}` in a CRASH_AT is replaced by the row's seed. */
export const MATRIX: readonly RowSpec[] = Object.freeze([
  {
    name: 'naive-dual-write',
    description: 'commit, then publish; the writer crashes between the two (order.after-commit-before-publish, p=0.05)',
    writer: { store: 'dual-write', amendShare: 0, hotKeys: 0, crashAt: 'order.after-commit-before-publish:p=0.05:seed={seed}' },
    faults: [],
    expect: { lost: 'some' },
  },
  {
    name: 'outbox+polling',
    description: 'polling relay killed between publish and mark (failpoint every 7th pass) and by SIGKILL',
    writer: { store: 'table', amendShare: 0.3, hotKeys: 20 },
    relay: { mode: 'polling', replicas: 1, crashAt: 'relay.after-publish-before-mark:every=7' },
    faults: ['kill-relay'],
    expect: { lost: 'none', duplicates: 'some', reorderings: 'none' },
  },
  {
    name: 'outbox+skip-locked',
    description: '3 SKIP LOCKED replicas, each killed between publish and mark (every 7th pass) and by SIGKILL',
    writer: { store: 'table', amendShare: 0.3, hotKeys: 20 },
    relay: { mode: 'skip-locked', replicas: 3, crashAt: 'relay.after-publish-before-mark:every=7' },
    faults: ['kill-relay'],
    expect: { lost: 'none', duplicates: 'some', reorderings: 'none' },
  },
  {
    name: 'outbox+cdc',
    description: 'CDC relay killed between publish and ack (every 5th batch), by SIGKILL, and its walsender terminated',
    writer: { store: 'table', amendShare: 0.3, hotKeys: 20 },
    relay: { mode: 'cdc', replicas: 1, crashAt: 'cdc.after-publish-before-ack:every=5' },
    faults: ['kill-relay', 'terminate-walsender'],
    expect: { lost: 'none', duplicates: 'some', reorderings: 'none' },
  },
  {
    name: 'logical-message+cdc',
    description: 'table-less events (pg_logical_emit_message), CDC relay killed as above',
    writer: { store: 'message', amendShare: 0, hotKeys: 0 },
    relay: { mode: 'cdc-message', replicas: 1, crashAt: 'cdc.after-publish-before-ack:every=5' },
    faults: ['kill-relay', 'terminate-walsender'],
    expect: { lost: 'none', duplicates: 'some', reorderings: 'none' },
  },
  {
    name: 'kafka-broker-kill',
    description: 'the Kafka broker is killed (kill -9) and restarted twice mid-run, CDC relay',
    writer: { store: 'table', amendShare: 0.3, hotKeys: 20 },
    relay: { mode: 'cdc', replicas: 1 },
    faults: ['kill-kafka'],
    expect: { lost: 'none', reorderings: 'none' },
  },
  {
    name: 'postgres-restart',
    description: 'PostgreSQL is stopped in immediate mode (a crash) and restarted twice mid-run, polling relay',
    writer: { store: 'table', amendShare: 0.3, hotKeys: 20 },
    relay: { mode: 'polling', replicas: 1 },
    faults: ['restart-postgres'],
    expect: { lost: 'none', reorderings: 'none' },
  },
  {
    name: 'consumer-crash',
    description: 'the consumer dies between applying a batch and committing its offset (every 4th batch)',
    writer: { store: 'table', amendShare: 0.3, hotKeys: 20 },
    relay: { mode: 'cdc', replicas: 1 },
    consumerCrashAt: 'consumer.after-apply-before-offset:every=4',
    faults: [],
    expect: { lost: 'none', duplicates: 'some', reorderings: 'none' },
  },
  {
    name: 'ordering-under-pauses',
    description: '3 SKIP LOCKED replicas on hot aggregates, one at a time SIGSTOPped longer than its lease, then resumed',
    writer: { store: 'table', amendShare: 0.8, hotKeys: 5 },
    relay: { mode: 'skip-locked', replicas: 3, leaseMs: 2_000 },
    faults: ['pause-relay'],
    expect: { lost: 'none', reorderings: 'none' },
  },
]);

export interface ChaosServers {
  postgres: LocalPostgres;
  kafka: LocalKafka;
  config: Config;
  stop(): Promise<void>;
}

async function freePorts(count: number, from: number): Promise<number[]> {
  const ports: number[] = [];
  for (let port = from; ports.length < count && port < from + 500; port++) if (await isPortFree(port)) ports.push(port);
  if (ports.length < count) throw new Error(`no ${count} free ports from ${from}`);
  return ports;
}

/** A PostgreSQL and a Kafka of the run's own: they get killed, so they cannot be anyone else's. */
export async function startChaosServers(workDir: string, log: Logger): Promise<ChaosServers> {
  const [pgPort, kafkaPort, controllerPort] = await freePorts(3, 47_432);
  const config = resolveConfig({
    env: {},
    overrides: { pgPort: pgPort!, kafkaPort: kafkaPort!, kafkaControllerPort: controllerPort!, dataDir: workDir, topicPartitions: 3, kafkaHeapMb: 512 },
  });
  const postgres = new LocalPostgres({ config, log });
  const kafka = new LocalKafka({ config, log });
  await postgres.start();
  try {
    await kafka.start();
  } catch (error) {
    await postgres.stop('fast');
    throw error;
  }
  return {
    postgres,
    kafka,
    config,
    async stop() {
      await kafka.stop('graceful').catch(() => {});
      await postgres.stop('fast').catch(() => {});
    },
  };
}

export interface FaultRecord {
  at: number;
  kind: FaultKind | 'failpoint';
  target: string;
}

export interface RowResult {
  name: string;
  description: string;
  seed: number;
  report: CheckReport;
  faults: Record<string, number>;
  /** Times each component was started (1 = never restarted). */
  starts: Record<string, number>;
  passed: boolean;
  failures: string[];
  faultLog: FaultRecord[];
  /** For lost events of a table outbox: still unpublished (a relay stuck) or marked (published and gone). */
  lostDiagnosis?: { unpublished: number; marked: number; missing: number };
}

export interface RowOptions {
  servers: ChaosServers;
  workDir: string;
  seed: number;
  faultWindowS: number;
  drainTimeoutS: number;
  transactionsPerSecond: number;
  log: Logger;
}

async function waitForLog(file: string, pattern: RegExp, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if (pattern.test(readFileSync(file, 'utf8'))) return;
    } catch {
      // not written yet
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${pattern} in ${file}`);
}

async function collect(sql: Sql, spec: RowSpec, writerHistory: string, consumerHistory: string): Promise<CheckReport> {
  const writes = readJsonLines<WriteRecord>(writerHistory);
  const deliveries = readJsonLines<DeliveryRecord>(consumerHistory);
  const inOutbox = new Set((await sql<{ eventId: string }[]>`SELECT event_id::text FROM outbox`).map((r) => r.eventId));
  const orders = new Set((await sql<{ orderId: string }[]>`SELECT order_id::text FROM orders`).map((r) => r.orderId));
  const applications = new Map((await sql<{ eventId: string; n: number }[]>`SELECT event_id::text, count(*)::int AS n FROM order_ledger GROUP BY 1`).map((r) => [r.eventId, r.n]));
  return checkHistory({
    writes,
    deliveries,
    // The outbox table is the record of table-mode events; without one, a new
    // order (version 1) exists exactly when its OrderPlaced event does.
    existsInDatabase: (event) => (spec.writer.store === 'table' ? inOutbox.has(event.eventId) : event.version === 1 && orders.has(event.aggregateId)),
    applications,
  });
}

/** Ids of committed-but-undelivered events, from the two histories (writes acknowledged as committed only). */
function checkHistoryLost(writerHistory: string, consumerHistory: string): string[] {
  const delivered = new Set(readJsonLines<DeliveryRecord>(consumerHistory).map((d) => d.eventId));
  const writes = readJsonLines<WriteRecord>(writerHistory);
  const committed = new Set(writes.filter((w) => w.type === 'committed').map((w) => w.txn));
  return writes.flatMap((w) => (w.type === 'pending' && committed.has(w.txn) ? w.events.map((e) => e.eventId) : [])).filter((id) => !delivered.has(id));
}

export async function runRow(spec: RowSpec, options: RowOptions): Promise<RowResult> {
  const { servers, log } = options;
  const dir = path.join(options.workDir, spec.name);
  mkdirSync(dir, { recursive: true });
  const schema = `chaos_${spec.name.replace(/[^a-z0-9]+/g, '_')}`;
  const runId = Date.now().toString(36);
  // Kafka topic names allow [a-zA-Z0-9._-] only.
  const topicPrefix = `chaos.${spec.name.replace(/[^a-zA-Z0-9._-]/g, '-')}.${runId}.`;
  const topic = topicFor(topicPrefix, 'order');
  const slot = `${schema}_slot`;
  const publication = `${schema}_pub`;
  const databaseUrl = servers.postgres.url;
  const kafkaBrokers = [...servers.kafka.brokers];
  const sql = createSql(databaseUrl, schema, { max: 2, applicationName: 'chaos-checker' });
  const supervisor = new Supervisor();
  const faultLog: FaultRecord[] = [];
  const random = seededRandom(options.seed);
  const writerHistory = path.join(dir, 'writes.jsonl');
  const consumerHistory = path.join(dir, 'deliveries.jsonl');
  try {
    await sql`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = ${slot} AND NOT active`;
    await sql.unsafe(`DROP PUBLICATION IF EXISTS ${publication}`);
    await dropSchema(sql, schema);
    await migrate(sql, { schema, partitionWidth: '1 day', partitionsAhead: 1 });
    const setup = new KafkajsPublisher({ kafka: createKafkaClient({ brokers: kafkaBrokers, log, clientId: 'chaos-setup' }), route: () => topic, partitions: 3 });
    await setup.ensureTopic(topic);
    await setup.close();

    const baseEnv: NodeJS.ProcessEnv = {
      ...process.env,
      DATABASE_URL: databaseUrl,
      KAFKA_BROKERS: kafkaBrokers.join(','),
      OUTBOX_BENCH_SCHEMA: schema,
      OUTBOX_BENCH_TOPIC_PREFIX: topicPrefix,
      OUTBOX_BENCH_PARTITIONS: '3',
      OUTBOX_BENCH_SLOT: slot,
      OUTBOX_BENCH_PUBLICATION: publication,
      OUTBOX_BENCH_LOG_LEVEL: 'info',
      OUTBOX_BENCH_LOG_FORMAT: 'json',
    };
    delete baseEnv.CRASH_AT;
    const withCrash = (crashAt: string | undefined) => (crashAt ? { ...baseEnv, CRASH_AT: crashAt.replace('{seed}', String(options.seed)) } : baseEnv);

    const consumerTask: ConsumerTask = { databaseUrl, kafkaBrokers, schema, topic, groupId: `chaos-${spec.name}-${runId}`, historyFile: consumerHistory };
    supervisor.start({ name: 'consumer', script: CHILD, args: ['consumer', JSON.stringify(consumerTask)], env: withCrash(spec.consumerCrashAt), logFile: path.join(dir, 'consumer.log') });
    await waitForLog(path.join(dir, 'consumer.log'), /consumer ready/, 60_000);

    const relays: string[] = [];
    if (spec.relay) {
      const { mode, replicas } = spec.relay;
      for (let index = 0; index < replicas; index++) {
        const name = replicas > 1 ? `relay-${index}` : 'relay';
        relays.push(name);
        const args = ['relay', '--mode', mode, '--batch-size', '50', '--interval-ms', '100', '--replicas', String(replicas)];
        if (replicas > 1) args.push('--replica-index', String(index), '--buckets', '8');
        if (spec.relay.leaseMs) args.push('--lease-ms', String(spec.relay.leaseMs));
        supervisor.start({ name, script: CLI, args, env: withCrash(spec.relay.crashAt), logFile: path.join(dir, `${name}.log`) });
        await waitForLog(path.join(dir, `${name}.log`), /running/, 60_000);
      }
    }

    const writerTask: WriterTask = {
      databaseUrl,
      kafkaBrokers,
      schema,
      topicPrefix,
      partitions: 3,
      store: spec.writer.store,
      historyFile: writerHistory,
      transactionsPerSecond: options.transactionsPerSecond,
      eventsPerTransaction: 5,
      amendShare: spec.writer.amendShare,
      hotKeys: spec.writer.hotKeys,
      seed: options.seed,
    };
    supervisor.start({ name: 'writer', script: CHILD, args: ['writer', JSON.stringify(writerTask)], env: withCrash(spec.writer.crashAt), logFile: path.join(dir, 'writer.log') });

    // The fault schedule, drawn from the seed before anything runs.
    const windowMs = options.faultWindowS * 1_000;
    const started = Date.now();
    const schedule: { at: number; run: () => Promise<void> }[] = [];
    const every = (min: number, max: number, run: () => Promise<void>) => {
      for (let at = min + random() * (max - min); at < windowMs; at += min + random() * (max - min)) schedule.push({ at, run });
    };
    const record = (kind: FaultRecord['kind'], target: string) => faultLog.push({ at: Date.now() - started, kind, target });
    const pick = () => relays[Math.floor(random() * relays.length)]!;
    if (spec.faults.includes('kill-relay') && relays.length > 0) {
      every(1_500, 3_000, async () => {
        const target = pick();
        if (supervisor.signal(target, 'SIGKILL')) record('kill-relay', target);
      });
    }
    if (spec.faults.includes('pause-relay') && relays.length > 0) {
      const pauseMs = (spec.relay?.leaseMs ?? 30_000) + 2_000;
      every(pauseMs + 500, pauseMs + 2_000, async () => {
        const target = pick();
        if (!supervisor.signal(target, 'SIGSTOP')) return;
        record('pause-relay', target);
        setTimeout(() => supervisor.signal(target, 'SIGCONT'), pauseMs).unref();
      });
    }
    if (spec.faults.includes('terminate-walsender')) {
      every(2_000, 4_000, async () => {
        // The relay of these rows is killed every few seconds, so its walsender
        // is often gone at the scheduled moment: wait briefly for the next one.
        for (let attempt = 0; attempt < WALSENDER_WAIT_ATTEMPTS; attempt++) {
          const rows = await sql`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = ${slot} AND active_pid IS NOT NULL`.catch(() => []);
          if (rows.length > 0) {
            record('terminate-walsender', slot);
            return;
          }
          await sleep(100);
        }
      });
    }
    for (const fraction of [0.3, 0.65]) {
      if (spec.faults.includes('kill-kafka')) {
        schedule.push({
          at: windowMs * fraction,
          run: async () => {
            await servers.kafka.stop('kill');
            record('kill-kafka', 'broker');
            await sleep(2_000);
            await servers.kafka.start();
          },
        });
      }
      if (spec.faults.includes('restart-postgres')) {
        schedule.push({
          at: windowMs * fraction,
          run: async () => {
            await servers.postgres.stop('immediate');
            record('restart-postgres', 'postgres');
            await sleep(1_000);
            await servers.postgres.start();
          },
        });
      }
    }
    schedule.sort((a, b) => a.at - b.at);
    for (const fault of schedule) {
      await sleep(Math.max(0, started + fault.at - Date.now()));
      await fault.run();
    }
    await sleep(Math.max(0, started + windowMs - Date.now()));
    await supervisor.stop('writer');
    for (const name of relays) if (supervisor.isPaused(name)) supervisor.signal(name, 'SIGCONT');

    // Drain: until every committed event is applied, or nothing moves for the timeout.
    let report = await collect(sql, spec, writerHistory, consumerHistory);
    let lastProgress = Date.now();
    let lastDelivered = report.delivered;
    // A row that is expected to lose events will never drain completely:
    // stop waiting once deliveries have been still for a few seconds.
    const patienceMs = (spec.expect.lost === 'some' ? 5 : options.drainTimeoutS) * 1_000;
    let dumped = false;
    while (report.notApplied > 0 && Date.now() - lastProgress < patienceMs) {
      await sleep(1_000);
      report = await collect(sql, spec, writerHistory, consumerHistory);
      if (report.delivered !== lastDelivered) {
        lastDelivered = report.delivered;
        lastProgress = Date.now();
      } else if (!dumped && Date.now() - lastProgress > 10_000) {
        // Stalled: record who holds what, for whoever reads this row afterwards.
        dumped = true;
        const activity = await sql`
          SELECT a.pid, a.application_name, a.state, a.wait_event_type, a.wait_event, a.xact_start, a.state_change, left(a.query, 120) AS query,
                 (SELECT array_agg(l.mode) FROM pg_locks l WHERE l.pid = a.pid AND l.relation = 'relay_buckets'::regclass) AS bucket_locks
          FROM pg_stat_activity a WHERE a.datname = current_database()`.catch((error: unknown) => [{ error: String(error) }]);
        writeFileSync(path.join(dir, 'stall.json'), `${JSON.stringify({ at: new Date().toISOString(), report, activity, supervisor: supervisor.events }, null, 2)}\n`);
      }
    }
    await supervisor.stopAll();
    report = await collect(sql, spec, writerHistory, consumerHistory);

    const failpointKills = supervisor.events.filter((e) => e.event === 'exited' && e.signal === 'SIGKILL').length - faultLog.filter((f) => f.kind === 'kill-relay').length;
    if (failpointKills > 0) faultLog.push({ at: Date.now() - started, kind: 'failpoint', target: `${failpointKills} processes killed themselves at a failpoint` });
    const faults: Record<string, number> = {};
    for (const fault of faultLog) faults[fault.kind] = (faults[fault.kind] ?? 0) + (fault.kind === 'failpoint' ? failpointKills : 1);
    const failures: string[] = [];
    if (report.committed === 0) failures.push('nothing was committed');
    if (spec.expect.lost === 'some' && report.lost === 0) failures.push('expected the naive dual write to lose events, it lost none');
    if (spec.expect.lost === 'none' && report.lost > 0) failures.push(`${report.lost} committed events were lost`);
    if (spec.expect.lost === 'none' && report.notApplied > 0) failures.push(`${report.notApplied} committed events were never applied`);
    if (spec.expect.duplicates === 'some' && report.duplicateDeliveries === 0) failures.push('expected duplicate deliveries (proof the crashes hit between publish and acknowledgement), saw none');
    if (report.appliedTwice > 0) failures.push(`${report.appliedTwice} side effects applied twice`);
    if (report.unexpected > 0) failures.push(`${report.unexpected} events delivered that were never committed`);
    if (spec.expect.reorderings === 'none' && report.reorderings > 0) failures.push(`${report.reorderings} per-aggregate reorderings`);
    const starts: Record<string, number> = {};
    for (const event of supervisor.events) if (event.event === 'started') starts[event.name] = (starts[event.name] ?? 0) + 1;
    let lostDiagnosis: RowResult['lostDiagnosis'];
    if (report.lost > 0 && spec.writer.store === 'table') {
      const lost = checkHistoryLost(writerHistory, consumerHistory);
      const rows = await sql<{ published: boolean }[]>`SELECT published_at IS NOT NULL AS published FROM outbox WHERE event_id = ANY(${lost}::uuid[])`;
      lostDiagnosis = { unpublished: rows.filter((r) => !r.published).length, marked: rows.filter((r) => r.published).length, missing: lost.length - rows.length };
      failures.push(`lost events: ${lostDiagnosis.unpublished} never published, ${lostDiagnosis.marked} marked published, ${lostDiagnosis.missing} not in the outbox`);
    }
    return { name: spec.name, description: spec.description, seed: options.seed, report, faults, starts, passed: failures.length === 0, failures, faultLog, ...(lostDiagnosis ? { lostDiagnosis } : {}) };
  } finally {
    await supervisor.stopAll().catch(() => {});
    await sql`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = ${slot} AND NOT active`.catch(() => {});
    await sql.end({ timeout: 5 });
  }
}
