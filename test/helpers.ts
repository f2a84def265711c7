/**
 * Test isolation: every test gets its own PostgreSQL schema, Kafka topic
 * prefix, consumer group and replication slot names, on the servers that
 * test/run.js started once for the whole run.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, cpSync, lstatSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, type TestContext } from 'node:test';
import type { Kafka, KafkaMessage } from 'kafkajs';
import type { PipelineParameters } from '../bench/harness/pipeline.js';
import { PROJECT_ROOT, resolveConfig, type Config } from '../src/config.js';
import { createSql, dropSchema, migrate, type Sql } from '../src/db.js';
import { acquireInfra, type Infra } from '../src/infra/index.js';
import { topicFor } from '../src/events.js';
import { createKafkaClient } from '../src/kafka-client.js';
import { createLogger, type Logger } from '../src/log.js';
import { KafkajsPublisher } from '../src/kafka/kafkajs.js';
import { TopicAdmin } from '../src/kafka/topics.js';
import { IdempotentConsumer, type Delivery } from '../src/consumer/consumer.js';
import { kafkajsConsumers, type ConsumerSource } from '../src/kafka/consumers.js';
import { CdcRelay, type CdcRelayOptions } from '../src/relay/cdc/relay.js';
import type { EventPublisher } from '../src/relay/publisher.js';
import { WireEncoder } from '../src/relay/wire.js';
import { parseLsn } from '../src/relay/cdc/lsn.js';
import { dropIdleSlots, prepareSlot } from '../src/relay/cdc/slot.js';
import { slicePort } from './ports.js';

export { startRetryingBind } from './ports.js';

export const log: Logger = createLogger((process.env.OUTBOX_BENCH_TEST_LOG_LEVEL as 'warn' | undefined) ?? 'warn', 'test');

/*
 * Failure artifacts. While a test runs, its scratch folders (servers' data and
 * logs, relay logs, chaos histories) are in the system's temporary folder,
 * where PostgreSQL, run as `postgres` under root, can reach them. When the
 * file's process exits, a failed test's folders move to
 * <artifacts>/<file>/<nn>-<test>/ and the rest are removed; a failed test's
 * schema is not dropped. The failure names the folder. test/run.js names
 * <artifacts> per run (OUTBOX_TEST_ARTIFACTS).
 */
const ARTIFACTS_ROOT = process.env.OUTBOX_TEST_ARTIFACTS ?? path.join(PROJECT_ROOT, '.test-artifacts', 'adhoc');
const TEST_FILE = path.basename(process.argv[1] ?? 'unknown').replace(/\.test\.js$/, '');

interface Evidence {
  /** Where it is kept if its test fails. */
  folder: string;
  dirs: string[];
  schema?: string;
  failed: boolean;
}

/** What the file's before/after hooks made: kept if any test of the file failed. */
const fileEvidence: Evidence = { folder: path.join(ARTIFACTS_ROOT, TEST_FILE, 'file-hooks'), dirs: [], failed: false };
const testEvidence: Evidence[] = [];
// Tests in a file run one at a time (node:test's default), so the test between
// beforeEach and afterEach owns whatever is made meanwhile. A hook's context is
// a new object for each hook, so the test is tracked by order, not by identity.
let current: Evidence | undefined;

type Outcome = { passed: boolean; error?: unknown };
const outcome = (t: TestContext) => t as TestContext & Outcome;

beforeEach((t) => {
  const slug = t.name.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 80);
  current = { folder: path.join(ARTIFACTS_ROOT, TEST_FILE, `${String(testEvidence.length + 1).padStart(2, '0')}-${slug}`), dirs: [], failed: false };
  testEvidence.push(current);
});

afterEach((context) => {
  // Each hooks only tests, never suites.
  const t = context as TestContext;
  const evidence = current;
  current = undefined;
  if (!evidence || outcome(t).passed) return;
  evidence.failed = fileEvidence.failed = true;
  mkdirSync(evidence.folder, { recursive: true });
  writeFileSync(path.join(evidence.folder, 'failure.txt'), `${t.name}\n\n${describeFailure(outcome(t).error)}\n`);
  if (evidence.schema) writeFileSync(path.join(evidence.folder, 'schema.txt'), `${evidence.schema}\n`);
  const note =
    `artifacts kept in ${evidence.folder}` +
    (evidence.schema ? `; schema ${evidence.schema} kept` : '') +
    (fileEvidence.dirs.length > 0 ? `; the file's own servers and folders in ${fileEvidence.folder}` : '');
  t.diagnostic(note);
  // The reporter prints the error's stack, whose first line is its message.
  const error = outcome(t).error;
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
  if (cause instanceof Error) {
    cause.message += ` [${note}]`;
    if (cause.stack) cause.stack = cause.stack.replace(/^.*$/m, (line) => `${line} [${note}]`);
  }
});

function describeFailure(error: unknown): string {
  const cause = error instanceof Error && error.cause !== undefined ? error.cause : error;
  return cause instanceof Error ? (cause.stack ?? cause.message) : String(cause);
}

/** Moves a folder, across file systems too (sockets, which cannot be copied, stay behind). */
function moveFolder(from: string, to: string): void {
  mkdirSync(path.dirname(to), { recursive: true });
  try {
    renameSync(from, to);
  } catch {
    cpSync(from, to, { recursive: true, verbatimSymlinks: true, filter: (source) => !lstatSync(source).isSocket() });
    rmSync(from, { recursive: true, force: true, maxRetries: 3 });
  }
}

// On exit, not in an after hook: hooks run in the order they were added, so a
// server started in a scratch folder later would still be writing into it
// (PostgreSQL's pg_wal) when it went.
process.once('exit', () => {
  for (const evidence of [...testEvidence, fileEvidence]) {
    for (const dir of evidence.dirs) {
      try {
        if (evidence.failed) moveFolder(dir, path.join(evidence.folder, path.basename(dir)));
        else rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
      } catch (error) {
        process.stderr.write(`test artifacts: could not ${evidence.failed ? 'keep' : 'remove'} ${dir}: ${String(error)}\n`);
      }
    }
  }
});

function requireServers(): { databaseUrl: string; kafkaBrokers: string } {
  const databaseUrl = process.env.DATABASE_URL;
  const kafkaBrokers = process.env.KAFKA_BROKERS;
  if (!databaseUrl || !kafkaBrokers) {
    throw new Error('tests need the servers that `npm test` starts (or DATABASE_URL and KAFKA_BROKERS): run `npm test`, not node --test directly');
  }
  return { databaseUrl, kafkaBrokers };
}

export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(5).toString('hex')}`;
}

export interface TestEnv {
  config: Config;
  /** A pool on the test's own, migrated schema. */
  sql: Sql;
  kafka: Kafka;
  /** A new pool on the test schema, closed after the test. */
  pool(options?: Parameters<typeof createSql>[2]): Sql;
  /** A kafkajs publisher on the test's topics, closed after the test. */
  publisher(): EventPublisher;
  /** What the relays send for an event, with the test's topic prefix and the default headers. */
  wire: WireEncoder;
  /** Creates the test's topic (of an aggregate type) unless it exists. */
  ensureTopic(aggregateType?: string): Promise<void>;
  topic(aggregateType?: string): string;
  /** Runs `cleanup` after the test, before anything registered earlier (LIFO). */
  defer(cleanup: () => Promise<unknown> | unknown): void;
}

const deferred = new WeakMap<TestContext, (() => unknown)[]>();

/**
 * Runs `cleanup` after the test, before everything deferred earlier: what
 * uses a server stops before the server does (node:test runs after hooks in
 * the order they were added). A failing step is logged; the others still run.
 */
export function defer(t: TestContext, cleanup: () => unknown): void {
  let steps = deferred.get(t);
  if (!steps) {
    const stack: (() => unknown)[] = [];
    deferred.set(t, (steps = stack));
    t.after(async () => {
      for (const step of stack.reverse()) {
        try {
          await step();
        } catch (error) {
          log.warn({ err: String(error) }, 'test cleanup step failed');
        }
      }
    });
  }
  steps.push(cleanup);
}

/** A migrated schema, names of its own, and cleanup after the test. */
export async function testEnv(t: TestContext, overrides: Partial<Config> = {}): Promise<TestEnv> {
  const servers = requireServers();
  const id = uniqueName('t');
  const config = resolveConfig({
    env: { DATABASE_URL: servers.databaseUrl, KAFKA_BROKERS: servers.kafkaBrokers },
    overrides: {
      schema: id,
      topicPrefix: `${id}.event.`,
      slotName: `${id}_slot`,
      publicationName: `${id}_pub`,
      consumerGroup: `${id}-group`,
      topicPartitions: 3,
      ...overrides,
    },
  });
  // Deferred first, so it runs last: the schema goes once nothing uses it.
  defer(t, async () => {
    const admin = createSql(config.databaseUrl!, config.schema, { max: 1 });
    // A failed test's slots go too: an idle slot would pin WAL for the rest of the run.
    await dropIdleSlots(admin, { prefix: id }).catch(() => {});
    if (outcome(t).passed) await dropSchema(admin, config.schema).catch(() => {});
    await admin.end({ timeout: 5 });
  });
  const pool = (options?: Parameters<typeof createSql>[2]) => {
    const sql = createSql(config.databaseUrl!, config.schema, options);
    defer(t, () => sql.end({ timeout: 5 }));
    return sql;
  };
  const sql = pool({ max: 4 });
  await migrate(sql, { schema: config.schema, partitionWidth: config.partitionWidth, partitionsAhead: config.partitionsAhead });
  const kafka = createKafkaClient({ brokers: config.kafkaBrokers!, log, clientId: id });
  const topics = new TopicAdmin(kafka, config.topicPartitions);
  defer(t, () => topics.close());
  if (current) current.schema = config.schema;
  return {
    config,
    sql,
    kafka,
    pool,
    publisher() {
      const publisher = new KafkajsPublisher({ kafka, topics });
      defer(t, () => publisher.close());
      return publisher;
    },
    wire: new WireEncoder({ route: (type) => topicFor(config.topicPrefix, type), headers: config.kafkaHeaders, forward: config.forwardHeaders }),
    ensureTopic(aggregateType = 'order') {
      return topics.ensure(topicFor(config.topicPrefix, aggregateType));
    },
    topic(aggregateType = 'order') {
      return topicFor(config.topicPrefix, aggregateType);
    },
    defer(cleanup) {
      defer(t, cleanup);
    },
  };
}

/** Polls until `probe` returns a truthy value; fails with `what` after the timeout. */
export async function eventually<T>(what: string, probe: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = 30_000): Promise<T> {
  // Monotonic: a wall-clock step (35 s has been seen on these machines) must not end or stretch the wait.
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await sleep(100);
  }
}

/**
 * Reads a topic from the beginning until `count` distinct events (by event id
 * header) arrived (or `count` messages, with countMessages), or the timeout;
 * returns every message read, duplicates included, in the order each
 * partition delivered them.
 */
export async function readTopic(
  kafka: Kafka,
  topic: string,
  count: number,
  timeoutMs = 30_000,
  options: { /** Count messages, duplicates included (to read a topic to its end), instead of distinct events. */ countMessages?: boolean } = {},
): Promise<(KafkaMessage & { partition: number })[]> {
  await eventually(`topic ${topic} to exist`, () => topicExists(kafka, topic), timeoutMs);
  const consumer = kafka.consumer({ groupId: uniqueName('reader'), maxWaitTimeInMs: 500 });
  const messages: (KafkaMessage & { partition: number })[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    const ids = new Set<string | undefined>();
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        messages.push({ ...message, partition });
        ids.add(headerOf(message, 'id'));
      },
    });
    if (options.countMessages) await eventually(`${count} messages on ${topic}`, () => messages.length >= count, timeoutMs);
    else await eventually(`${count} distinct events on ${topic}`, () => ids.size >= count, timeoutMs);
    return messages;
  } finally {
    await consumer.disconnect();
  }
}

export function headerOf(message: KafkaMessage, name: string): string | undefined {
  const value = message.headers?.[name];
  const first = Array.isArray(value) ? value[0] : value;
  return first?.toString();
}

/** Messages ever written to a topic: the sum of its partitions' high watermarks. */
export async function topicMessageCount(kafka: Kafka, topic: string): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    return offsets.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0);
  } finally {
    await admin.disconnect();
  }
}

export async function topicExists(kafka: Kafka, topic: string): Promise<boolean> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return (await admin.listTopics()).includes(topic);
  } finally {
    await admin.disconnect();
  }
}

/** A port nothing listens on right now, from this test file's slice (test/ports.ts). */
export function freePort(): Promise<number> {
  return slicePort();
}

/**
 * A scratch folder of the running test (of the file, from a before/after hook):
 * kept if that test fails, removed when the file's process exits otherwise.
 * World-traversable, because PostgreSQL runs as the `postgres` user when the
 * tests run as root.
 */
export async function scratchDir(prefix = 'outbox-bench-test-'): Promise<string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  chmodSync(dir, 0o755);
  (current ?? fileEvidence).dirs.push(dir);
  return dir;
}


/** The idempotent consumer on the test's topic and group (kafkajs unless told), stopped after the test; every delivery lands in `deliveries`. */
export async function startTestConsumer(env: TestEnv, options: { source?: ConsumerSource; deliveries?: Delivery[] } = {}) {
  await env.ensureTopic();
  const deliveries = options.deliveries ?? [];
  const consumer = new IdempotentConsumer({
    source: options.source ?? kafkajsConsumers(env.kafka),
    sql: env.pool({ max: 2 }),
    groupId: env.config.consumerGroup,
    topics: [env.topic()],
    log,
    onDelivery: (d) => deliveries.push(d),
  });
  await consumer.start();
  env.defer(() => consumer.stop());
  return { consumer, deliveries };
}

/** A CDC relay on the test's schema, slot and publication, stopped (and its publication dropped) after the test. */
export function cdcRelayFor(env: TestEnv, options: Partial<CdcRelayOptions> = {}): CdcRelay {
  const relay = new CdcRelay({
    databaseUrl: env.config.databaseUrl!,
    sql: env.pool({ max: 2 }),
    schema: env.config.schema,
    publisher: env.publisher(),
    wire: env.wire,
    slotName: env.config.slotName,
    publicationName: env.config.publicationName,
    log,
    batchSize: 500,
    heartbeatIntervalMs: 500,
    statusIntervalMs: 1_000,
    ...options,
  });
  env.defer(() => relay.stop());
  env.defer(() => env.sql.unsafe(`DROP PUBLICATION IF EXISTS ${env.config.publicationName}`).catch(() => {}));
  return relay;
}

/**
 * The environment of a CDC relay process (`outbox-bench relay --mode cdc`)
 * on the test's schema, topic prefix, slot and publication; the slot is
 * created first, so the process finds it where the test looks.
 */
export async function cdcRelayProcessEnv(env: TestEnv): Promise<NodeJS.ProcessEnv> {
  await prepareSlot({ sql: env.sql, schema: env.config.schema, slotName: env.config.slotName, publicationName: env.config.publicationName }, log);
  env.defer(() => env.sql.unsafe(`DROP PUBLICATION IF EXISTS ${env.config.publicationName}`).catch(() => {}));
  return {
    ...process.env,
    OUTBOX_BENCH_SCHEMA: env.config.schema,
    OUTBOX_BENCH_TOPIC_PREFIX: env.config.topicPrefix,
    OUTBOX_BENCH_SLOT: env.config.slotName,
    OUTBOX_BENCH_PUBLICATION: env.config.publicationName,
    OUTBOX_BENCH_PARTITIONS: '3',
    OUTBOX_BENCH_LOG_LEVEL: 'warn',
  };
}

/** The test slot's confirmed position and who reads it. */
export async function slotState(env: TestEnv) {
  const [row] = await env.sql<{ confirmedFlushLsn: string | null; active: boolean; activePid: number | null; walStatus: string }[]>`
    SELECT confirmed_flush_lsn::text, active, active_pid, wal_status FROM pg_replication_slots WHERE slot_name = ${env.config.slotName}`;
  return row;
}

/** The test database URL with wal_sender_timeout set for the replication connection only. */
export function withWalSenderTimeout(env: TestEnv, ms: number): string {
  const url = new URL(env.config.databaseUrl!);
  url.searchParams.set('options', `-c wal_sender_timeout=${ms}`);
  return url.toString();
}

export async function currentLsn(env: TestEnv): Promise<bigint> {
  const [row] = await env.sql<{ lsn: string }[]>`SELECT pg_current_wal_lsn()::text AS lsn`;
  return parseLsn(row!.lsn);
}

/**
 * A light pipeline load for tests: one worker, a polling relay on a short
 * poll, a few seconds; each test overrides what it is about.
 */
export function testParameters(overrides: Partial<PipelineParameters> = {}): PipelineParameters {
  return {
    relayMode: 'polling',
    store: 'table',
    rate: 200,
    warmupS: 1,
    durationS: 6,
    workers: 1,
    connectionsPerWorker: 4,
    ordersPerTransaction: 1,
    payloadBytes: 128,
    eventsPerAggregate: 1,
    keySpace: 100,
    hotKeyShare: 0,
    hotKeys: 1,
    partitions: 3,
    batchSize: 500,
    pollIntervalMs: 100,
    replicas: 1,
    publishers: 1,
    consumerCommitIntervalMs: 0,
    drainTimeoutS: 30,
    seed: 7,
    ...overrides,
  };
}

/** The servers `npm test` provides, acquired for one test and released after it. */
export async function testServers(t: TestContext): Promise<Infra> {
  const config = resolveConfig();
  assert.ok(config.databaseUrl && config.kafkaBrokers, 'npm test provides the servers');
  const infra = await acquireInfra({ config, log });
  t.after(() => infra.release());
  return infra;
}
