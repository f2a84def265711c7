/**
 * Debezium as a relay: Kafka Connect in standalone mode with the Debezium
 * PostgreSQL connector and its Outbox Event Router, reading *our* outbox table
 * and routing to the same topics, keys and headers as our relays, so that the
 * same consumer reads both. Jars from Maven Central like the broker's.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PROJECT_ROOT, type Config } from '../../src/config.js';
import type { Sql } from '../../src/db.js';
import { nowMs } from '../../src/events.js';
import { OutboxBenchError } from '../../src/errors.js';
import { fetchJars } from '../../src/infra/maven.js';
import type { Logger } from '../../src/log.js';
import { dropIdleSlots, slotLagBytes } from '../../src/relay/cdc/slot.js';
import { stopChild } from '../harness/processes.js';
import { freePort, jmxServerFlags, jmxToolLibDir, queueFigures, startJmxSampler, streamingMBean, type JmxSampler } from './jmx.js';
import { startThreadSampler } from './jvm-threads.js';
import { replicationNames } from './slots.js';
import { refuseOurSettings } from './start-options.js';
import type { DriverRun, HeapAfterGc, RelayDriver, RunningRelay, StartOptions } from './types.js';

export const DEBEZIUM_VERSION = '3.4.3.Final';

export interface DebeziumSettings {
  name: string;
  /** Connector and worker overrides on top of the common ones. */
  connector: Record<string, string>;
  worker: Record<string, string>;
  /** -Xmx (the heap starts at Connect's 256 MiB); the peers scenario looks for the smallest that sustains the profile's top rate. */
  heapMb: number;
  /** Why these values, for the report. */
  rationale: string;
}

/*
 * Sources for every value below: Debezium 3.4's PostgreSQL connector
 * reference ("Advanced connector configuration properties",
 * https://debezium.io/documentation/reference/3.4/connectors/postgresql.html),
 * Kafka 4.1's producer and Connect worker configuration
 * (https://kafka.apache.org/41/documentation.html#producerconfigs,
 * #connectconfigs), and Debezium's ChangeEventQueue: poll() returns when
 * max.batch.size records are queued or poll.interval.ms has passed, so below
 * max.batch.size records per interval every batch waits the whole interval.
 */

/** Debezium's and Connect's defaults, touched only where the run needs it. */
export const DEBEZIUM_DEFAULT: DebeziumSettings = {
  name: 'debezium-default',
  connector: {},
  worker: {},
  heapMb: 1_024,
  rationale:
    "Connect's and Debezium's defaults: poll.interval.ms 500, max.batch.size 2048, max.queue.size 8192, producer linger.ms 5 (the 4.x client default), " +
    "batch.size 16 KiB, one request in flight (Connect's own setting for source tasks), offsets and the slot's confirmed position flushed every 60 s.",
};

/** Fewer, fuller hand-offs and Kafka requests; latency is not its concern. */
export const DEBEZIUM_THROUGHPUT: DebeziumSettings = {
  name: 'debezium-throughput',
  connector: {
    'max.batch.size': '8192',
    // Must exceed max.batch.size (the connector refuses it otherwise); four
    // batches of room keep the WAL reader going while the producer catches up.
    'max.queue.size': '32768',
    'poll.interval.ms': '50',
    'producer.override.linger.ms': '5',
    'producer.override.batch.size': '131072',
    'producer.override.enable.idempotence': 'true',
    'producer.override.max.in.flight.requests.per.connection': '5',
  },
  worker: { 'offset.flush.interval.ms': '10000' },
  heapMb: 1_024,
  rationale:
    'max.batch.size 8192 and max.queue.size 32768 (4x the defaults: bigger hand-offs from the WAL reader to the producer, room for four batches), ' +
    'poll.interval.ms 50 (a partial batch waits at most 50 ms instead of 500, without the poll loop spinning), producer linger.ms 5 and batch.size 128 KiB ' +
    '(fuller Kafka requests), enable.idempotence with 5 requests in flight (idempotence keeps each partition in order with up to 5; Connect otherwise allows one), ' +
    'offsets and the slot confirmed every 10 s instead of 60 s.',
};

/** An event out as soon as it is read. */
export const DEBEZIUM_LATENCY: DebeziumSettings = {
  name: 'debezium-latency',
  connector: {
    'poll.interval.ms': '10',
    'producer.override.linger.ms': '0',
  },
  worker: {},
  heapMb: 1_024,
  rationale:
    'poll.interval.ms 10 (a partial batch waits at most 10 ms; chosen among 5, 10 and 20 ms by the rule stated with them, from runs of all three at 1,000 events/s) and producer linger.ms 0 ' +
    "(a request leaves as soon as the producer has a record); the rest Debezium's and Connect's defaults.",
};

/**
 * The latency profile's poll.interval.ms is one of these, chosen by a rule
 * fixed before measuring (bench:peers's latency phase runs the siblings by
 * name beside it, and its report applies the rule): the lowest e2e p99 at
 * 1,000 events/s; among intervals whose p99 ranges overlap the lowest's,
 * the one with the least relay CPU per event. Below 5 ms the loop is a spin.
 */
export const DEBEZIUM_POLL_INTERVALS_MS = [5, 10, 20] as const;

/** The latency profile with another of its candidate poll intervals. */
export function debeziumLatencyPolling(ms: (typeof DEBEZIUM_POLL_INTERVALS_MS)[number]): DebeziumSettings {
  return {
    ...DEBEZIUM_LATENCY,
    name: `debezium-latency-poll${ms}`,
    connector: { ...DEBEZIUM_LATENCY.connector, 'poll.interval.ms': String(ms) },
    rationale: `debezium-latency's settings with poll.interval.ms ${ms}, one of the intervals its rule chooses among (5, 10, 20 ms).`,
  };
}

/**
 * Which poll interval a latency-profile result ran with: a candidate's own
 * (its name says it), or the profile's as its recorded settings say (the
 * profile's interval is the one the rule chose when it was measured).
 */
export function pollIntervalOf(name: string, settings: string): number | undefined {
  // A candidate by name, or the profile's windows kept under the interval it ran at ("debezium-latency at 20 ms").
  const named = /^debezium-latency-poll(\d+)$/.exec(name) ?? /^debezium-latency at (\d+) ms$/.exec(name);
  if (named) return Number(named[1]);
  if (name !== DEBEZIUM_LATENCY.name) return undefined;
  const recorded = /poll\.interval\.ms (\d+)/.exec(settings);
  return recorded ? Number(recorded[1]) : undefined;
}

/**
 * The JVM flags Kafka's own launcher gives Connect: connect-standalone.sh's
 * KAFKA_HEAP_OPTS start the heap at 256 MiB (its -Xmx, 2 GiB there, is the
 * heap under test here), and kafka-run-class.sh's KAFKA_JVM_PERFORMANCE_OPTS
 * choose G1 with 20 ms pause goals. Starting the heap at its maximum instead
 * would make the resident memory read the heap's size, not what Connect uses.
 */
export const CONNECT_JVM_FLAGS = [
  '-Xms256M',
  '-server',
  '-XX:+UseG1GC',
  '-XX:MaxGCPauseMillis=20',
  '-XX:InitiatingHeapOccupancyPercent=35',
  '-XX:+ExplicitGCInvokesConcurrent',
  '-Djava.awt.headless=true',
] as const;

const GC_LOG = 'gc.log';

/**
 * The heap after each collection in a JVM's unified GC log: lines such as
 * `[0.412s][info][gc] GC(3) Pause Young (Normal) (G1 Evacuation Pause) 24M->6M(256M) 2.1ms`,
 * whose second figure is what the collection left.
 */
export function heapAfterGcOf(log: string): HeapAfterGc | undefined {
  const after: number[] = [];
  for (const match of log.matchAll(/\bGC\(\d+\) .*?\d+(?:\.\d+)?([KMG])->(\d+(?:\.\d+)?)([KMG])\(/g)) {
    const value = Number(match[2]);
    after.push(match[3] === 'G' ? value * 1_024 : match[3] === 'K' ? value / 1_024 : value);
  }
  if (after.length === 0) return undefined;
  return { collections: after.length, maxMiB: Math.round(Math.max(...after)), lastMiB: Math.round(after.at(-1)!) };
}

export interface DebeziumOptions {
  config: Config;
  log: Logger;
  databaseUrl: string;
  kafkaBrokers: readonly string[];
  schema: string;
  topicPrefix: string;
  slot: string;
  publication: string;
  workDir: string;
  settings: DebeziumSettings;
  /** Opens this JMX port on the Connect JVM (for the streaming queue's readings). */
  jmxPort?: number;
}

function properties(values: Record<string, string>): string {
  return `${Object.entries(values)
    .map(([key, value]) => `${key}=${value}`)
    .join('\n')}\n`;
}

/** The topic prefix Debezium runs with for a schema (it names its MBeans too). */
export function debeziumTopicPrefix(schema: string): string {
  return `dbz_${schema}`;
}

/** Creates the publication the way our CDC relay does (rows under the partitioned parent). */
export async function preparePublication(sql: Sql, schema: string, publication: string): Promise<void> {
  await sql.unsafe(`DROP PUBLICATION IF EXISTS ${publication}`);
  await sql.unsafe(`CREATE PUBLICATION ${publication} FOR TABLE ${schema}.outbox WITH (publish = 'insert', publish_via_partition_root = true)`);
}

/** Connect's worker settings: our delivery guarantees, offsets kept in `dir`, then the profile's. */
function workerProperties(options: DebeziumOptions, dir: string): string {
  return properties({
    'bootstrap.servers': options.kafkaBrokers.join(','),
    'key.converter': 'org.apache.kafka.connect.storage.StringConverter',
    'value.converter': 'org.apache.kafka.connect.storage.StringConverter',
    'header.converter': 'org.apache.kafka.connect.storage.SimpleHeaderConverter',
    'offset.storage.file.filename': path.join(dir, 'offsets.dat'),
    // Connect's REST API is not used; port 0 keeps it from colliding with anything.
    listeners: 'http://127.0.0.1:0',
    'plugin.discovery': 'only_scan',
    // Same delivery guarantees as our publishers: acks from all replicas, idempotent. One request in
    // flight is what Connect sets for source tasks anyway; a profile may allow five (idempotence keeps order).
    'producer.acks': 'all',
    'producer.enable.idempotence': 'true',
    'producer.max.in.flight.requests.per.connection': '1',
    'connector.client.config.override.policy': 'All',
    ...options.settings.worker,
  });
}

/** The connector's settings: our outbox table through the run's slot and publication, routed as our relays route. */
function connectorProperties(options: DebeziumOptions): string {
  const url = new URL(options.databaseUrl);
  return properties({
    name: `outbox-${options.settings.name}`,
    'connector.class': 'io.debezium.connector.postgresql.PostgresConnector',
    'tasks.max': '1',
    'plugin.name': 'pgoutput',
    'database.hostname': url.hostname,
    'database.port': url.port || '5432',
    'database.user': decodeURIComponent(url.username),
    'database.password': decodeURIComponent(url.password),
    'database.dbname': url.pathname.slice(1),
    'topic.prefix': debeziumTopicPrefix(options.schema),
    'slot.name': options.slot,
    'publication.name': options.publication,
    // Our publication already exists, with publish_via_partition_root.
    'publication.autocreate.mode': 'disabled',
    'table.include.list': `${options.schema}.outbox`,
    'snapshot.mode': 'no_data',
    'tombstones.on.delete': 'false',
    transforms: 'outbox',
    'transforms.outbox.type': 'io.debezium.transforms.outbox.EventRouter',
    'transforms.outbox.table.field.event.id': 'event_id',
    'transforms.outbox.table.field.event.key': 'aggregate_id',
    'transforms.outbox.table.field.event.payload': 'payload',
    'transforms.outbox.route.by.field': 'aggregate_type',
    'transforms.outbox.route.topic.replacement': `${options.topicPrefix}\${routedByValue}`,
    // The event id goes into the `id` header by default; the version is the one
    // other header our consumer reads, as our relays send by default.
    'transforms.outbox.table.fields.additional.placement': 'aggregate_version:header:aggregateVersion',
    ...options.settings.connector,
  });
}

/** Spawns Kafka Connect with Debezium; `spawnedAt` is the drain's time origin, as for our relays. */
export async function startDebezium(options: DebeziumOptions): Promise<{ child: ChildProcess; spawnedAt: number }> {
  const libDir = await fetchJars({
    pom: path.join(PROJECT_ROOT, 'kafka', 'debezium', 'pom.xml'),
    properties: { 'kafka.version': options.config.kafkaVersion, 'debezium.version': DEBEZIUM_VERSION },
    home: path.join(options.config.cacheDir, `connect-${options.config.kafkaVersion}-debezium-${DEBEZIUM_VERSION}`),
    what: `Kafka Connect ${options.config.kafkaVersion} and Debezium ${DEBEZIUM_VERSION}`,
    alternative: 'leave Debezium out with --mode',
    log: options.log,
  });
  const dir = options.workDir;
  mkdirSync(dir, { recursive: true });
  // Each run creates its slot afresh: offsets an earlier run stored here would point at WAL this slot never had.
  rmSync(path.join(dir, 'offsets.dat'), { force: true });
  const worker = workerProperties(options, dir);
  const connector = connectorProperties(options);
  writeFileSync(path.join(dir, 'worker.properties'), worker);
  writeFileSync(path.join(dir, 'connector.properties'), connector);
  writeFileSync(
    path.join(dir, 'log4j2.properties'),
    ['status = warn', 'appender.out.type = Console', 'appender.out.name = out', 'appender.out.layout.type = PatternLayout', 'appender.out.layout.pattern = [%d] %p %m (%c)%n', 'rootLogger.level = info', 'rootLogger.appenderRef.out.ref = out', ''].join('\n'),
  );
  const log = createWriteStream(path.join(dir, 'connect.log'));
  const spawnedAt = nowMs();
  const child = spawn(
    'java',
    [
      ...CONNECT_JVM_FLAGS,
      `-Xmx${options.settings.heapMb}m`,
      // The JVM's own record of every collection (one line each): the heap
      // left after GC is read from it; Connect's launcher logs none by default.
      `-Xlog:gc:file=${path.join(dir, GC_LOG)}`,
      ...(options.jmxPort === undefined ? [] : jmxServerFlags(options.jmxPort)),
      `-Dlog4j2.configurationFile=${path.join(dir, 'log4j2.properties')}`,
      '-cp',
      `${libDir}/*`,
      'org.apache.kafka.connect.cli.ConnectStandalone',
      path.join(dir, 'worker.properties'),
      path.join(dir, 'connector.properties'),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  return { child, spawnedAt };
}

/** Waits until Debezium streams from its slot (the slot is active). */
export async function waitForDebezium(sql: Sql, slot: string, child: ChildProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new OutboxBenchError('CHECK_FAILED', `Kafka Connect exited (code ${child.exitCode}); see ${logFile}`);
    const [row] = await sql<{ active: boolean }[]>`SELECT active FROM pg_replication_slots WHERE slot_name = ${slot}`;
    if (row?.active) return;
    await sleep(250);
  }
  throw new OutboxBenchError('NOT_READY', `Debezium did not start streaming within 120 s; see ${logFile}`);
}

/**
 * Debezium with one of the profiles above as a driver: Connect reads our
 * outbox table through a slot of its own, created before any load so that a
 * drain's backlog is in its WAL; its streaming queue, read over JMX, is its
 * evidence.
 */
export function debeziumDriver(profile: DebeziumSettings, heapMb = profile.heapMb): RelayDriver {
  const settings = { ...profile, heapMb };
  const { slot, publication } = replicationNames(profile.name);
  const start = async (run: DriverRun, options?: StartOptions): Promise<RunningRelay> => {
    refuseOurSettings(profile.name, options, 'jvm');
    const workDir = path.join(run.rawDir, 'connect');
    const watched = options?.watchers !== false;
    // Fetched before Connect starts, so a failed fetch leaves nothing running.
    const jmxTool = watched ? await jmxToolLibDir(run.config, run.log) : undefined;
    const jmxPort = watched ? await freePort() : undefined;
    const started = await startDebezium({
      config: run.config,
      log: run.log,
      databaseUrl: run.infra.databaseUrl,
      kafkaBrokers: run.infra.kafkaBrokers,
      schema: run.schema,
      topicPrefix: run.topicPrefix,
      slot,
      publication,
      workDir,
      settings,
      ...(jmxPort === undefined ? {} : { jmxPort }),
    });
    options?.onSpawned?.(started);
    let jmx: JmxSampler | undefined;
    try {
      await waitForDebezium(run.sql, slot, started.child, path.join(workDir, 'connect.log'));
      if (jmxTool !== undefined && jmxPort !== undefined) {
        jmx = startJmxSampler({ libDir: jmxTool, port: jmxPort, mbean: streamingMBean(debeziumTopicPrefix(run.schema)), file: path.join(workDir, 'jmx.csv') });
      }
    } catch (error) {
      // Not yet the run's to stop: this start never returned it.
      await stopChild(started.child).catch(() => {});
      throw error;
    }
    const heapAfterGc = () => (existsSync(path.join(workDir, GC_LOG)) ? heapAfterGcOf(readFileSync(path.join(workDir, GC_LOG), 'utf8')) : undefined);
    if (!jmx) return { ...started, heapAfterGc };
    const sampler = jmx;
    // Watched runs only: what limits Connect is read from its threads' CPU over the window.
    const threads = started.child.pid === undefined ? undefined : startThreadSampler(started.child.pid);
    return {
      ...started,
      helpers: [sampler.child],
      heapAfterGc,
      evidence: (window) => ({ heapMb: settings.heapMb, heapAfterGc: heapAfterGc(), queue: queueFigures(sampler.readings(), window.from, window.to), threads: threads?.over(window) ?? null }),
    };
  };
  return {
    label: profile.name,
    settings: `${profile.rationale} JVM: Kafka's Connect launcher flags (-Xms256M, G1, MaxGCPauseMillis=20, InitiatingHeapOccupancyPercent=35, ExplicitGCInvokesConcurrent), -Xmx the heap under test.`,
    backlog: { kind: 'store', store: 'table' },
    usesOurKafkaClient: false,
    runtime: 'jvm',
    windowEvidence: true,
    // Connect confirms the slot only when it flushes offsets (every 10 s in
    // the throughput profile, 60 s by default): the slot's lag is a sawtooth.
    lagFromDelivery: true,
    heap: { mb: heapMb, resized: (mb) => debeziumDriver(profile, mb) },
    provisioning: () => undefined,
    prepare: async (run) => {
      await dropIdleSlots(run.sql, { name: slot });
      await preparePublication(run.sql, run.schema, publication);
      await run.sql`SELECT pg_create_logical_replication_slot(${slot}, 'pgoutput')`;
    },
    start,
    lag: async (run) => ({ events: null, bytes: await slotLagBytes(run.sql, slot) }),
  };
}
