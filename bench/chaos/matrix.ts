/**
 * The crash-injection matrix: each row runs writer, relay(s) and consumer as
 * supervised processes on servers of its own, injects faults on a seeded
 * schedule, stops the faults, drains, and checks the history. The same seed
 * gives the same schedule, so any row can be replayed.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
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
import { checkClaims, readEvidence, recordSessionEnd, type ClaimReport } from '../relay/evidence.js';
import { TopicAdmin } from '../kafka/topics.js';
import type { ConsumerTask, WriterTask } from './child.js';
import { seededRandom } from './failpoints.js';
import { killKafka, killRelay, pauseRelay, restartPostgres, terminateWalsender, type FaultKind, type FaultRecord, type FaultTargets } from './faults.js';
import { checkHistory, readJsonLines, type CheckReport, type DeliveryRecord, type WriteRecord } from './history.js';
import { Supervisor } from './supervisor.js';
import { dropIdleSlots } from '../relay/slot.js';

export type { FaultKind, FaultRecord } from './faults.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const CHILD = path.join(here, 'child.js');
const CLI = path.join(here, '..', 'cli.js');

export interface RowSpec {
  name: string;
  description: string;
  writer: { store: WriterTask['store']; amendShare: number; hotKeys: number; crashAt?: string };
  relay?: { mode: RelayMode; replicas: number; crashAt?: string; leaseMs?: number };
  consumerCrashAt?: string;
  faults: FaultKind[];
  expect: { lost: 'some' | 'none'; duplicates?: 'some'; reorderings?: 'none' };
}

// Rationale: readiness of a process that connects to both servers; a loaded
// 2-core machine restarting servers mid-row can take tens of seconds.
const READY_TIMEOUT_MS = 60_000;

/** The matrix, in order. `{seed}` in a CRASH_AT is replaced by the row's seed. */
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

export interface RowResult {
  name: string;
  description: string;
  seed: number;
  report: CheckReport;
  /** Per fault kind: how many were injected and how many hit a process doing work. */
  faults: Record<string, { scheduled: number; hit: number }>;
  /** SKIP LOCKED rows: the claim evidence checked (no bucket held by two replicas at once). */
  claims?: ClaimReport;
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

/** What one row sets up: its schema, topic, slot, histories and processes. */
interface Row {
  spec: RowSpec;
  options: RowOptions;
  dir: string;
  schema: string;
  topic: string;
  topicPrefix: string;
  runId: string;
  slot: string;
  publication: string;
  sql: Sql;
  supervisor: Supervisor;
  writerHistory: string;
  consumerHistory: string;
  evidenceDir: string | undefined;
  relays: string[];
}

async function setUpRow(spec: RowSpec, options: RowOptions): Promise<Row> {
  const dir = path.join(options.workDir, spec.name);
  mkdirSync(dir, { recursive: true });
  const schema = `chaos_${spec.name.replace(/[^a-z0-9]+/g, '_')}`;
  const runId = Date.now().toString(36);
  // Kafka topic names allow [a-zA-Z0-9._-] only.
  const topicPrefix = `chaos.${spec.name.replace(/[^a-zA-Z0-9._-]/g, '-')}.${runId}.`;
  const row: Row = {
    spec,
    options,
    dir,
    schema,
    topic: topicFor(topicPrefix, 'order'),
    topicPrefix,
    runId,
    slot: `${schema}_slot`,
    publication: `${schema}_pub`,
    sql: createSql(options.servers.postgres.url, schema, { max: 2, applicationName: 'chaos-checker' }),
    supervisor: new Supervisor(),
    writerHistory: path.join(dir, 'writes.jsonl'),
    consumerHistory: path.join(dir, 'deliveries.jsonl'),
    evidenceDir: spec.relay?.mode === 'skip-locked' ? path.join(dir, 'evidence') : undefined,
    relays: [],
  };
  await dropIdleSlots(row.sql, { name: row.slot });
  await row.sql.unsafe(`DROP PUBLICATION IF EXISTS ${row.publication}`);
  await dropSchema(row.sql, schema);
  await migrate(row.sql, { schema, partitionWidth: '1 day', partitionsAhead: 1 });
  const setup = new TopicAdmin(createKafkaClient({ brokers: options.servers.kafka.brokers, log: options.log, clientId: 'chaos-setup' }), 3);
  await setup.ensure(row.topic);
  await setup.close();
  return row;
}

/** Starts the consumer, the relay(s) and the writer, each once it may. */
async function startComponents(row: Row): Promise<void> {
  const { spec, options, supervisor } = row;
  const databaseUrl = options.servers.postgres.url;
  const kafkaBrokers = [...options.servers.kafka.brokers];
  const baseEnv: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: databaseUrl,
    KAFKA_BROKERS: kafkaBrokers.join(','),
    OUTBOX_BENCH_SCHEMA: row.schema,
    OUTBOX_BENCH_TOPIC_PREFIX: row.topicPrefix,
    OUTBOX_BENCH_PARTITIONS: '3',
    OUTBOX_BENCH_SLOT: row.slot,
    OUTBOX_BENCH_PUBLICATION: row.publication,
    OUTBOX_BENCH_LOG_LEVEL: 'info',
    OUTBOX_BENCH_LOG_FORMAT: 'json',
  };
  delete baseEnv.CRASH_AT;
  const withCrash = (crashAt: string | undefined) => (crashAt ? { ...baseEnv, CRASH_AT: crashAt.replace('{seed}', String(options.seed)) } : baseEnv);

  const consumerTask: ConsumerTask = { databaseUrl, kafkaBrokers, schema: row.schema, topic: row.topic, groupId: `chaos-${spec.name}-${row.runId}`, historyFile: row.consumerHistory };
  supervisor.start({ name: 'consumer', script: CHILD, args: ['consumer', JSON.stringify(consumerTask)], env: withCrash(spec.consumerCrashAt), logFile: path.join(row.dir, 'consumer.log') });
  await supervisor.waitReady('consumer', READY_TIMEOUT_MS);

  const { evidenceDir } = row;
  if (evidenceDir) {
    // A replica that died mid-pass held its buckets until its session ended: record when.
    supervisor.onUnexpectedExit((name) => {
      const index = row.relays.indexOf(name);
      if (index >= 0) void recordSessionEnd(row.sql, evidenceDir, index).catch(() => {});
    });
  }
  if (spec.relay) {
    const { mode, replicas } = spec.relay;
    for (let index = 0; index < replicas; index++) {
      const name = replicas > 1 ? `relay-${index}` : 'relay';
      row.relays.push(name);
      const args = ['relay', '--mode', mode, '--batch-size', '50', '--interval-ms', '100', '--replicas', String(replicas)];
      if (replicas > 1) args.push('--replica-index', String(index), '--buckets', '8');
      if (spec.relay.leaseMs) args.push('--lease-ms', String(spec.relay.leaseMs));
      if (row.evidenceDir) args.push('--evidence', row.evidenceDir);
      supervisor.start({ name, script: CLI, args, env: withCrash(spec.relay.crashAt), logFile: path.join(row.dir, `${name}.log`) });
      await supervisor.waitReady(name, READY_TIMEOUT_MS);
    }
  }

  const writerTask: WriterTask = {
    databaseUrl,
    kafkaBrokers,
    schema: row.schema,
    topicPrefix: row.topicPrefix,
    partitions: 3,
    store: spec.writer.store,
    historyFile: row.writerHistory,
    transactionsPerSecond: options.transactionsPerSecond,
    eventsPerTransaction: 5,
    amendShare: spec.writer.amendShare,
    hotKeys: spec.writer.hotKeys,
    seed: options.seed,
  };
  supervisor.start({ name: 'writer', script: CHILD, args: ['writer', JSON.stringify(writerTask)], env: withCrash(spec.writer.crashAt), logFile: path.join(row.dir, 'writer.log') });
}

/** Runs the seeded fault schedule over the fault window; returns what was injected and what hit. */
async function injectFaults(row: Row): Promise<FaultRecord[]> {
  const { spec, options } = row;
  const random = seededRandom(options.seed);
  const targets: FaultTargets = {
    sql: row.sql,
    supervisor: row.supervisor,
    postgres: options.servers.postgres,
    kafka: options.servers.kafka,
    relays: row.relays,
    relayMode: spec.relay?.mode,
    slot: row.slot,
    evidenceDir: row.evidenceDir,
    random,
  };
  const windowMs = options.faultWindowS * 1_000;
  const started = Date.now();
  const schedule: { at: number; run: () => Promise<Omit<FaultRecord, 'at'> | undefined> }[] = [];
  // The schedule is drawn from the seed before anything runs.
  const every = (min: number, max: number, run: () => Promise<Omit<FaultRecord, 'at'> | undefined>) => {
    for (let at = min + random() * (max - min); at < windowMs; at += min + random() * (max - min)) schedule.push({ at, run });
  };
  const has = (kind: FaultKind) => spec.faults.includes(kind);
  if (has('kill-relay') && row.relays.length > 0) every(1_500, 3_000, () => killRelay(targets));
  if (has('pause-relay') && row.relays.length > 0) {
    const pauseMs = (spec.relay?.leaseMs ?? 30_000) + 2_000;
    every(pauseMs + 500, pauseMs + 2_000, () => pauseRelay(targets, pauseMs));
  }
  if (has('terminate-walsender')) every(2_000, 4_000, () => terminateWalsender(targets));
  for (const fraction of [0.3, 0.65]) {
    if (has('kill-kafka')) schedule.push({ at: windowMs * fraction, run: () => killKafka(targets, 2_000) });
    if (has('restart-postgres')) schedule.push({ at: windowMs * fraction, run: () => restartPostgres(targets, 1_000) });
  }
  schedule.sort((a, b) => a.at - b.at);
  const log: FaultRecord[] = [];
  for (const fault of schedule) {
    await sleep(Math.max(0, started + fault.at - Date.now()));
    const at = Date.now() - started;
    const record = await fault.run();
    if (record) log.push({ at, ...record });
  }
  await sleep(Math.max(0, started + windowMs - Date.now()));
  return log;
}

/** Drains until every committed event is applied, or nothing moves for the timeout. */
async function drainRow(row: Row): Promise<CheckReport> {
  const { spec, options, sql } = row;
  let report = await collect(sql, spec, row.writerHistory, row.consumerHistory);
  let lastProgress = Date.now();
  let lastDelivered = report.delivered;
  // A row that is expected to lose events will never drain completely:
  // stop waiting once deliveries have been still for a few seconds.
  const patienceMs = (spec.expect.lost === 'some' ? 5 : options.drainTimeoutS) * 1_000;
  let dumped = false;
  while (report.notApplied > 0 && Date.now() - lastProgress < patienceMs) {
    await sleep(1_000);
    report = await collect(sql, spec, row.writerHistory, row.consumerHistory);
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
      writeFileSync(path.join(row.dir, 'stall.json'), `${JSON.stringify({ at: new Date().toISOString(), report, activity, supervisor: row.supervisor.events }, null, 2)}\n`);
    }
  }
  await row.supervisor.stopAll();
  return collect(sql, spec, row.writerHistory, row.consumerHistory);
}

/** What the row expects, against what happened. */
function judgeRow(spec: RowSpec, report: CheckReport, faults: RowResult['faults'], claims: ClaimReport | undefined): string[] {
  const failures: string[] = [];
  if (report.committed === 0) failures.push('nothing was committed');
  for (const kind of spec.faults) {
    const count = faults[kind];
    if (!count || count.hit === 0) failures.push(`no ${kind} fault hit a process doing work (${count?.scheduled ?? 0} injected)`);
  }
  if (spec.expect.lost === 'some' && report.lost === 0) failures.push('expected the naive dual write to lose events, it lost none');
  if (spec.expect.lost === 'none' && report.lost > 0) failures.push(`${report.lost} committed events were lost`);
  if (spec.expect.lost === 'none' && report.notApplied > 0) failures.push(`${report.notApplied} committed events were never applied`);
  if (spec.expect.duplicates === 'some' && report.duplicateDeliveries === 0) failures.push('expected duplicate deliveries (proof the crashes hit between publish and acknowledgement), saw none');
  if (report.appliedTwice > 0) failures.push(`${report.appliedTwice} side effects applied twice`);
  if (report.unexpected > 0) failures.push(`${report.unexpected} events delivered that were never committed`);
  if (spec.expect.reorderings === 'none' && report.reorderings > 0) failures.push(`${report.reorderings} per-aggregate reorderings`);
  if (claims && !claims.disjoint) failures.push(`${claims.overlaps.length} buckets held by two replicas at once`);
  return failures;
}

export async function runRow(spec: RowSpec, options: RowOptions): Promise<RowResult> {
  const row = await setUpRow(spec, options);
  const { sql, supervisor } = row;
  try {
    await startComponents(row);
    const faultLog = await injectFaults(row);
    await supervisor.stop('writer');
    for (const name of row.relays) if (supervisor.isPaused(name)) supervisor.signal(name, 'SIGCONT');
    const report = await drainRow(row);

    const failpointKills = supervisor.events.filter((e) => e.event === 'exited' && e.signal === 'SIGKILL').length - faultLog.filter((f) => f.kind === 'kill-relay').length;
    const faults: RowResult['faults'] = {};
    for (const fault of faultLog) {
      const count = (faults[fault.kind] ??= { scheduled: 0, hit: 0 });
      count.scheduled += 1;
      if (fault.hit) count.hit += 1;
    }
    // A failpoint fires only inside the work it interrupts: each one is a hit.
    if (failpointKills > 0) faults.failpoint = { scheduled: failpointKills, hit: failpointKills };
    const claims = row.evidenceDir ? checkClaims(readEvidence(row.evidenceDir)) : undefined;
    const failures = judgeRow(spec, report, faults, claims);
    const starts: Record<string, number> = {};
    for (const event of supervisor.events) if (event.event === 'started') starts[event.name] = (starts[event.name] ?? 0) + 1;
    let lostDiagnosis: RowResult['lostDiagnosis'];
    if (report.lost > 0 && spec.writer.store === 'table') {
      const lost = checkHistoryLost(row.writerHistory, row.consumerHistory);
      const rows = await sql<{ published: boolean }[]>`SELECT published_at IS NOT NULL AS published FROM outbox WHERE event_id = ANY(${lost}::uuid[])`;
      lostDiagnosis = { unpublished: rows.filter((r) => !r.published).length, marked: rows.filter((r) => r.published).length, missing: lost.length - rows.length };
      failures.push(`lost events: ${lostDiagnosis.unpublished} never published, ${lostDiagnosis.marked} marked published, ${lostDiagnosis.missing} not in the outbox`);
    }
    return {
      name: spec.name,
      description: spec.description,
      seed: options.seed,
      report,
      faults,
      ...(claims ? { claims } : {}),
      starts,
      passed: failures.length === 0,
      failures,
      faultLog,
      ...(lostDiagnosis ? { lostDiagnosis } : {}),
    };
  } finally {
    await supervisor.stopAll().catch(() => {});
    await dropIdleSlots(sql, { name: row.slot }).catch(() => {});
    await sql.end({ timeout: 5 });
  }
}
