/**
 * One row's setup: its schema, topic and slots, and its writer, relay(s) and
 * consumer(s) started as supervised processes the faults can aim at.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Sql } from '../../src/db.js';
import type { Logger } from '../../src/log.js';
import { recordSessionEnd } from '../../src/relay/table/evidence.js';
import { relayModeInfo } from '../../src/relay/modes.js';
import { openRun, type RunSetup } from '../harness/run-setup.js';
import type { ConsumerTask, WriterTask } from './child.js';
import type { RowSpec } from './rows.js';
import type { ChaosServers } from './servers.js';
import { Supervisor } from './supervisor.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const CHILD = path.join(here, 'child.js');
const CLI = path.join(here, '..', '..', 'src', 'cli.js');

// Rationale: readiness of a process that connects to both servers; a loaded
// 2-core machine restarting servers mid-row can take tens of seconds.
const READY_TIMEOUT_MS = 60_000;

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

/** What one row sets up: its schema, topic and slots (the run), histories and processes. */
export interface Row {
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

export async function setUpRow(spec: RowSpec, options: RowOptions): Promise<Row> {
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
export async function startComponents(row: Row): Promise<void> {
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
