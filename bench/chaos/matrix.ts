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
import type { Config } from '../../src/config.js';
import { resolveConfig } from '../../src/config.js';
import type { Sql } from '../../src/db.js';
import { LocalKafka } from '../../src/infra/kafka.js';
import { LocalPostgres } from '../../src/infra/postgres.js';
import { isPortFree } from '../../src/infra/processes.js';
import type { Logger } from '../../src/log.js';
import { checkClaims, readEvidence, recordSessionEnd, type ClaimReport } from '../../src/relay/evidence.js';
import { relayModeInfo } from '../../src/relay/modes.js';
import { openRun, type RunSetup } from '../harness/run-setup.js';
import type { ConsumerTask, WriterTask } from './child.js';
import { seededRandom } from '../../src/chaos/failpoints.js';
import { killKafka, killRelay, pauseRelay, restartPostgres, terminateWalsender, type FaultKind, type FaultRecord, type FaultTargets } from './faults.js';
import { checkHistory, readJsonLines, type CheckReport, type DeliveryRecord, type WriteRecord } from './history.js';
import type { RowSpec } from './rows.js';
import { Supervisor } from './supervisor.js';

export { MATRIX, type RowSpec } from './rows.js';

export type { FaultKind, FaultRecord } from './faults.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const CHILD = path.join(here, 'child.js');
const CLI = path.join(here, '..', '..', 'src', 'cli.js');

// Rationale: readiness of a process that connects to both servers; a loaded
// 2-core machine restarting servers mid-row can take tens of seconds.
const READY_TIMEOUT_MS = 60_000;

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

/** What one row sets up: its schema, topic and slots (the run), histories and processes. */
interface Row {
  spec: RowSpec;
  options: RowOptions;
  dir: string;
  run: RunSetup;
  sql: Sql;
  supervisor: Supervisor;
  writerHistory: string;
  consumerHistory: string;
  evidenceDir: string | undefined;
  relays: string[];
}

// Rationale: small batches and a short poll make many passes a second at
// the matrix's load, so the faults find relays inside one.
const ROW_RELAY = { batchSize: 50, pollIntervalMs: 100, publishers: 1, buckets: 8 } as const;
// Rationale: three partitions are enough to spread aggregates, and keep the
// row's own small broker quick to restart.
const ROW_PARTITIONS = 3;

async function setUpRow(spec: RowSpec, options: RowOptions): Promise<Row> {
  const dir = path.join(options.workDir, spec.name);
  mkdirSync(dir, { recursive: true });
  const infra = { databaseUrl: options.servers.postgres.url, kafkaBrokers: options.servers.kafka.brokers };
  const relay = spec.relay && { ...ROW_RELAY, relayMode: spec.relay.mode, replicas: spec.relay.replicas, ...(spec.relay.leaseMs ? { leaseMs: spec.relay.leaseMs } : {}) };
  const run = await openRun({ infra, log: options.log, name: spec.name, kind: 'chaos', partitions: ROW_PARTITIONS, relay, partitionsAhead: 1 });
  // Claim evidence where several processes share the table (what the claim checker proves disjoint).
  const info = spec.relay && relayModeInfo(spec.relay.mode);
  const evidence = info?.claimEvidence === true && info.processes === 'replicas';
  return {
    spec,
    options,
    dir,
    run,
    sql: run.sql,
    supervisor: new Supervisor(),
    writerHistory: path.join(dir, 'writes.jsonl'),
    consumerHistory: path.join(dir, 'deliveries.jsonl'),
    evidenceDir: evidence ? path.join(dir, 'evidence') : undefined,
    relays: [],
  };
}

/** Starts the consumer, the relay(s) and the writer, each once it may. */
async function startComponents(row: Row): Promise<void> {
  const { spec, options, supervisor, run } = row;
  const databaseUrl = options.servers.postgres.url;
  const kafkaBrokers = [...options.servers.kafka.brokers];
  const baseEnv = run.env({ logLevel: 'info' });
  delete baseEnv.CRASH_AT;
  // `{seed}` becomes the row's seed plus the process's start ordinal: a process that crashed at its
  // first draw would otherwise draw the same crash at every restart, and a restart must go on where
  // a crash left off. The same seed replays the same schedule, start by start.
  const withCrash = (crashAt: string | undefined) => (crashAt ? (start: number) => ({ ...baseEnv, CRASH_AT: crashAt.replace('{seed}', String(options.seed + start)) }) : baseEnv);

  const consumerTask: ConsumerTask = { databaseUrl, kafkaBrokers, schema: run.schema, topic: run.topic, groupId: `chaos-${spec.name}-${run.runId}`, historyFile: row.consumerHistory };
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
    // Each process of the mode runs under the matrix's own supervisor, so a
    // fault can aim at one of them; the settings come through the environment.
    const { replicas } = spec.relay;
    for (let index = 0; index < replicas; index++) {
      const name = replicas > 1 ? `relay-${index}` : 'relay';
      row.relays.push(name);
      const args = ['relay', ...(replicas > 1 ? ['--replica-index', String(index)] : []), ...(evidenceDir ? ['--evidence', evidenceDir] : [])];
      supervisor.start({ name, script: CLI, args, env: withCrash(spec.relay.crashAt), logFile: path.join(row.dir, `${name}.log`) });
      await supervisor.waitReady(name, READY_TIMEOUT_MS);
    }
  }

  const writerTask: WriterTask = {
    databaseUrl,
    kafkaBrokers,
    schema: run.schema,
    topicPrefix: run.topicPrefix,
    partitions: ROW_PARTITIONS,
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
    relay: row.run.relay,
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
    await row.run.close();
  }
}
