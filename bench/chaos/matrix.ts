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
import { LocalKafkaCluster } from '../../src/infra/kafka-cluster.js';
import { LocalPostgres } from '../../src/infra/postgres.js';
import { PostgresFailover } from './failover.js';
import { isPortFree } from '../../src/infra/processes.js';
import type { Logger } from '../../src/log.js';
import { checkClaims, readEvidence, recordSessionEnd, type ClaimReport } from '../../src/relay/table/evidence.js';
import { relayModeInfo } from '../../src/relay/modes.js';
import { openRun, type RunSetup } from '../harness/run-setup.js';
import type { ConsumerTask, WriterTask } from './child.js';
import { seededRandom } from '../../src/chaos/failpoints.js';
import { addConsumer, failoverPostgres, killConsumer, killKafka, killLeader, killRelay, killTwoBrokers, pauseRelay, restartPostgres, terminateWalsender, type FaultKind, type FaultRecord, type FaultTargets } from './faults.js';
import { checkHistory, latencyAroundFaults, readJsonLines, type CheckReport, type DeliveryRecord, type FaultLatency, type LatencySpan, type WriteRecord } from './history.js';
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
  /** The PostgreSQL faults restart (with a standby: the primary it started as). */
  postgres: LocalPostgres;
  /** What clients connect to: the server, or with a standby the proxy in front of whichever is primary. */
  databaseUrl: string;
  /** A primary with a physical standby and failover slots (rows that fail over). */
  failover?: PostgresFailover;
  /** One broker, or a cluster (rows that kill brokers of it). */
  kafka: LocalKafka | LocalKafkaCluster;
  config: Config;
  stop(): Promise<void>;
}

async function freePorts(count: number, from: number): Promise<number[]> {
  const ports: number[] = [];
  for (let port = from; ports.length < count && port < from + 500; port++) if (await isPortFree(port)) ports.push(port);
  if (ports.length < count) throw new Error(`no ${count} free ports from ${from}`);
  return ports;
}

/** A base port with the nine above it and the ports 10 and 20 above it free: a cluster's three brokers (clusterBrokerPort). */
async function freeClusterBase(from: number): Promise<number> {
  for (let port = from; port < from + 1_000; port += 30) {
    if ((await isPortFree(port)) && (await isPortFree(port + 10)) && (await isPortFree(port + 20))) return port;
  }
  throw new Error(`no free ports for a Kafka cluster from ${from}`);
}

/**
 * A PostgreSQL and a Kafka of the run's own: they get killed, so they cannot
 * be anyone else's. `kafkaNodes` 3 makes the Kafka a cluster with a
 * dedicated controller (replication factor 3, min.insync.replicas 2).
 */
export async function startChaosServers(workDir: string, log: Logger, options: { kafkaNodes?: number; standby?: boolean; portBase?: number } = {}): Promise<ChaosServers> {
  const kafkaNodes = options.kafkaNodes ?? 1;
  const standby = options.standby ?? false;
  const { chaosPortBase, kafkaJit } = resolveConfig();
  const base = options.portBase ?? chaosPortBase;
  // Each kind of servers in a port range and a folder of its own: several kinds run side by side.
  const kind = kafkaNodes > 1 ? 'cluster' : standby ? 'failover' : undefined;
  const [pgPort, controllerPort, standbyPort, proxyPort] = await freePorts(4, base + (kafkaNodes > 1 ? 2_000 : standby ? 0 : 1_000));
  const kafkaPort = kafkaNodes > 1 ? await freeClusterBase(base + 2_568) : (await freePorts(1, proxyPort! + 1))[0]!;
  const dataDir = kind ? path.join(workDir, kind) : workDir;
  const config = resolveConfig({
    env: {},
    overrides: { pgPort: pgPort!, kafkaPort, kafkaControllerPort: controllerPort!, kafkaNodes, dataDir, topicPartitions: 3, kafkaHeapMb: 512, kafkaJit },
  });
  const failover = standby ? await PostgresFailover.start(config, path.join(dataDir, 'pg'), { primary: pgPort!, standby: standbyPort!, proxy: proxyPort! }, log) : undefined;
  const postgres = failover?.primary ?? new LocalPostgres({ config, log });
  const kafka = kafkaNodes > 1 ? new LocalKafkaCluster({ config, log }) : new LocalKafka({ config, log });
  const stopPostgres = async () => (failover ? failover.stop() : postgres.stop('fast'));
  try {
    if (!failover) await postgres.start();
    await kafka.start();
  } catch (error) {
    await stopPostgres();
    throw error;
  }
  return {
    postgres,
    databaseUrl: failover?.url ?? postgres.url,
    ...(failover ? { failover } : {}),
    kafka,
    config,
    async stop() {
      await kafka.stop('graceful').catch(() => {});
      await stopPostgres().catch(() => {});
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
  /** How long the faults ran, s. */
  faultWindowS: number;
  /** A soak's faults stopped because they had hit as asked, before the window ran out. */
  stoppedOnHits: boolean;
  /** SIGKILL exits of processes started after the faults ended: they start without a failpoint, so none should die so (a process started inside the window keeps its own). */
  killedAfterFaults: number;
  /** Events committed per second from the writer's first commit to its last (the load the row ran at). */
  committedPerSec: number;
  /** Commit-to-receipt latency before the first fault and in the 10 s after each server or group fault. */
  latency: { baseline: LatencySpan; faults: FaultLatency[] };
}

// Rationale: a leader election, a rebalance or a promotion settles within a
// few seconds here; 10 s after a fault's start holds its whole effect, and
// the faults that carry latency come at least 5 s apart.
const FAULT_LATENCY_SPAN_MS = 10_000;
// Rationale: a server fault's cost is measured on the events committed after
// it. A restart here takes 1-3 s, so two restarts at fixed fractions of a
// short window could follow each other with no commit in between (the reduced
// matrix's 8 s row once did); 2 s of service first (about 50 transactions at
// the test's 25 per second) gives every such fault events to measure.
const SERVER_FAULT_GAP_MS = 2_000;

/** Faults whose latency cost is worth a figure (process kills and failpoints are measured by the drains instead). */
const LATENCY_FAULTS = new Set<string>(['kill-kafka', 'kill-leader', 'kill-two-brokers', 'restart-postgres', 'failover-postgres', 'kill-consumer', 'add-consumer']);

export interface RowOptions {
  servers: ChaosServers;
  workDir: string;
  seed: number;
  /** Seconds of faults; in a soak, the most a row may take to reach its hits. */
  faultWindowS: number;
  /**
   * Soak: keep injecting until this many faults (every kind, failpoints
   * included) hit a process at work, or the window ends; the servers are
   * killed again every 10-15 s instead of twice.
   */
  targetHits?: number | undefined;
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
  consumers: string[];
  /** Starts a consumer of the row's group; `restart` false for the ones a fault adds and removes. */
  startConsumer(name: string, restart: boolean): Promise<void>;
  /** Set when the fault window ends: processes started after it get no failpoint. */
  faultsOverAt: number | undefined;
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
  const infra = { databaseUrl: options.servers.databaseUrl, kafkaBrokers: options.servers.kafka.brokers };
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
    consumers: [],
    // Set by startComponents, once the row's environment is known.
    startConsumer: async () => {},
    faultsOverAt: undefined,
  };
}

/** Starts the consumer, the relay(s) and the writer, each once it may. */
async function startComponents(row: Row): Promise<void> {
  const { spec, options, supervisor, run } = row;
  const databaseUrl = options.servers.databaseUrl;
  const kafkaBrokers = [...options.servers.kafka.brokers];
  const baseEnv = run.env({ logLevel: 'info' });
  delete baseEnv.CRASH_AT;
  // `{seed}` becomes the row's seed plus the process's start ordinal: a process that crashed at its
  // first draw would otherwise draw the same crash at every restart, and a restart must go on where
  // a crash left off. The same seed replays the same schedule, start by start. Like every other
  // fault, failpoints end with the fault window: a process restarted in the drain starts without
  // one, or a relay crashing every 5th batch would drain its backlog at a few events a second.
  const withCrash = (crashAt: string | undefined) =>
    crashAt ? (start: number) => (row.faultsOverAt !== undefined ? baseEnv : { ...baseEnv, CRASH_AT: crashAt.replace('{seed}', String(options.seed + start)) }) : baseEnv;

  // Every consumer of the group appends to the one history, in the order each received.
  const consumerTask: ConsumerTask = { databaseUrl, kafkaBrokers, schema: run.schema, topic: run.topic, groupId: `chaos-${spec.name}-${run.runId}`, historyFile: row.consumerHistory };
  row.startConsumer = async (name, restart) => {
    supervisor.start({ name, script: CHILD, args: ['consumer', JSON.stringify(consumerTask)], env: withCrash(spec.consumerCrashAt), logFile: path.join(row.dir, `${name}.log`), restart });
    await supervisor.waitReady(name, READY_TIMEOUT_MS);
  };
  const consumers = spec.consumers ?? 1;
  for (let index = 0; index < consumers; index++) {
    const name = consumers > 1 ? `consumer-${index}` : 'consumer';
    row.consumers.push(name);
    await row.startConsumer(name, true);
  }

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
  // A failover is only a test of the relay once the standby holds its slots: wait here, so the fault's time is the kill's.
  const { failover } = options.servers;
  if (failover && run.relay) await failover.waitForSyncedSlots(run.relay.mode.slots(run.relay.settings));
}

// Rationale: a server kill is followed by seconds of recovery (restart,
// reconnects, a leader election); 10-15 s apart lets each one hit a pipeline
// at work again, where two per row suffice outside a soak.
const SOAK_SERVER_FAULT_MS: readonly [number, number] = [10_000, 15_000];

/**
 * The load a row ran at: its committed events over the span from the first
 * commit to the last. Not over the fault window, which begins while the
 * writer process is still starting and ends before it stops.
 */
function committedRate(writes: readonly WriteRecord[], committed: number): number {
  let first = Infinity;
  let last = -Infinity;
  for (const write of writes) {
    if (write.type !== 'committed') continue;
    first = Math.min(first, write.at);
    last = Math.max(last, write.at);
  }
  return last > first ? Math.round(committed / ((last - first) / 1_000)) : 0;
}

/** Processes started after the fault window that died by SIGKILL: every fault had stopped, so each would be a failpoint left armed. */
function killedAfterFaults(row: Row): number {
  const { events } = row.supervisor;
  const lateStarts = new Set(events.filter((e) => e.event === 'started' && e.at >= row.faultsOverAt!).map((e) => e.pid));
  return events.filter((e) => e.event === 'exited' && e.signal === 'SIGKILL' && lateStarts.has(e.pid)).length;
}

/** Failpoint crashes so far: SIGKILLs of supervised processes the matrix did not send (a failpoint ends its process with one). */
function failpointKills(row: Row, log: readonly FaultRecord[]): number {
  const kills = row.supervisor.events.filter((e) => e.event === 'exited' && e.signal === 'SIGKILL').length;
  return Math.max(0, kills - log.filter((f) => f.kind === 'kill-relay' || f.kind === 'kill-consumer').length);
}

/** What was injected and what hit, by kind, failpoint crashes so far included. */
function tallyFaults(row: Row, log: readonly FaultRecord[]): RowResult['faults'] {
  const faults: RowResult['faults'] = {};
  for (const fault of log) {
    const count = (faults[fault.kind] ??= { scheduled: 0, hit: 0 });
    count.scheduled += 1;
    if (fault.hit) count.hit += 1;
  }
  // A failpoint fires only inside the work it interrupts: each one is a hit.
  const failpoints = failpointKills(row, log);
  if (failpoints > 0) faults.failpoint = { scheduled: failpoints, hit: failpoints };
  return faults;
}

const totalHits = (faults: RowResult['faults']) => Object.values(faults).reduce((sum, f) => sum + f.hit, 0);

/** The row's fault kinds that never hit a process at work: the soak waits for them, the verdict fails on them. */
const kindsNotHit = (spec: RowSpec, faults: RowResult['faults']) => spec.faults.filter((kind) => !faults[kind]?.hit);

/**
 * Runs the seeded fault schedule over the fault window (in a soak, until the
 * row's faults hit `targetHits` times and each kind hit at least once);
 * returns what was injected and what hit.
 */
async function injectFaults(row: Row): Promise<{ log: FaultRecord[]; stoppedOnHits: boolean }> {
  const { spec, options } = row;
  const random = seededRandom(options.seed);
  const targets: FaultTargets = {
    sql: row.sql,
    supervisor: row.supervisor,
    postgres: options.servers.postgres,
    failover: options.servers.failover,
    kafka: options.servers.kafka,
    relays: row.relays,
    consumers: row.consumers,
    startConsumer: (name) => row.startConsumer(name, false),
    topic: row.run.topic,
    relay: row.run.relay,
    evidenceDir: row.evidenceDir,
    random,
  };
  const windowMs = options.faultWindowS * 1_000;
  const started = Date.now();
  const schedule: { at: number; run: () => Promise<Omit<FaultRecord, 'at'> | undefined>; server?: true }[] = [];
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
  // Rationale: a killed leader is replaced within a few seconds, and the
  // producer's retries and the consumer's rejoin take a few more.
  if (has('kill-leader')) every(6_000, 10_000, () => killLeader(targets, 3_000));
  // Rationale: a rebalance settles in a second or two here; 2-4 s apart
  // keeps the group rebalancing while it works.
  if (has('kill-consumer')) every(2_000, 4_000, () => killConsumer(targets));
  if (has('add-consumer')) every(5_000, 8_000, () => addConsumer(targets, 3_000));
  // One failover a row: the old primary is gone for good afterwards.
  if (has('failover-postgres')) schedule.push({ at: windowMs * 0.4, run: () => failoverPostgres(targets) });
  const soak = options.targetHits !== undefined;
  if (soak) {
    const [min, max] = SOAK_SERVER_FAULT_MS;
    if (has('kill-kafka')) every(min, max, () => killKafka(targets, 2_000));
    if (has('kill-two-brokers')) every(min + 8_000, max + 8_000, () => killTwoBrokers(targets, 4_000));
    if (has('restart-postgres')) every(min, max, () => restartPostgres(targets, 1_000));
  } else {
    for (const fraction of [0.3, 0.65]) {
      if (has('kill-kafka')) schedule.push({ at: windowMs * fraction, run: () => killKafka(targets, 2_000), server: true });
      if (has('restart-postgres')) schedule.push({ at: windowMs * fraction, run: () => restartPostgres(targets, 1_000), server: true });
    }
    if (has('kill-two-brokers')) schedule.push({ at: windowMs * 0.2, run: () => killTwoBrokers(targets, 4_000), server: true });
  }
  schedule.sort((a, b) => a.at - b.at);
  const log: FaultRecord[] = [];
  // A soak stops early only once every kind of the row has hit too: the row is
  // judged on each kind having hit a process at work, and a kind drawn rarely
  // (a walsender between two relay kills) could otherwise miss every chance.
  const reached = () => {
    if (!soak) return false;
    const faults = tallyFaults(row, log);
    return totalHits(faults) >= options.targetHits! && kindsNotHit(spec, faults).length === 0;
  };
  let serverFaultEnded = Number.NEGATIVE_INFINITY;
  for (const fault of schedule) {
    // A second server fault waits for some service after the first, whose recovery is measured from it.
    const due = fault.server ? Math.max(started + fault.at, serverFaultEnded + SERVER_FAULT_GAP_MS) : started + fault.at;
    if (fault.server && due >= started + windowMs) continue;
    // A row whose only faults are failpoints reaches its hits between scheduled faults.
    while (Date.now() < due) {
      if (reached()) return { log, stoppedOnHits: true };
      await sleep(Math.min(500, Math.max(0, due - Date.now())));
    }
    if (reached()) return { log, stoppedOnHits: true };
    const at = Date.now() - started;
    const record = await fault.run();
    if (fault.server) serverFaultEnded = Date.now();
    if (record) log.push({ at, ...record });
  }
  while (Date.now() < started + windowMs) {
    if (reached()) return { log, stoppedOnHits: true };
    await sleep(Math.min(500, Math.max(0, started + windowMs - Date.now())));
  }
  return { log, stoppedOnHits: false };
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
  for (const kind of kindsNotHit(spec, faults)) failures.push(`no ${kind} fault hit a process doing work (${faults[kind]?.scheduled ?? 0} injected)`);
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
    const faultsFrom = Date.now();
    const { log: faultLog, stoppedOnHits } = await injectFaults(row);
    row.faultsOverAt = Date.now();
    const faultWindowS = Math.round((Date.now() - faultsFrom) / 100) / 10;
    const faultsWithLatency = faultLog.filter((f) => LATENCY_FAULTS.has(f.kind) && f.hit);
    await supervisor.stop('writer');
    for (const name of row.relays) if (supervisor.isPaused(name)) supervisor.signal(name, 'SIGCONT');
    const report = await drainRow(row);

    const faults = tallyFaults(row, faultLog);
    const claims = row.evidenceDir ? checkClaims(readEvidence(row.evidenceDir)) : undefined;
    const failures = judgeRow(spec, report, faults, claims);
    const hit = totalHits(faults);
    if (options.targetHits !== undefined && hit < options.targetHits) {
      failures.push(`only ${hit} faults hit a process at work in ${faultWindowS} s; the soak asks for ${options.targetHits}`);
    }
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
      faultWindowS,
      stoppedOnHits,
      killedAfterFaults: killedAfterFaults(row),
      committedPerSec: committedRate(readJsonLines<WriteRecord>(row.writerHistory), report.committed),
      latency: latencyAroundFaults(readJsonLines<WriteRecord>(row.writerHistory), readJsonLines<DeliveryRecord>(row.consumerHistory), faultsWithLatency, faultsFrom, FAULT_LATENCY_SPAN_MS),
    };
  } finally {
    await supervisor.stopAll().catch(() => {});
    await row.run.close();
  }
}
