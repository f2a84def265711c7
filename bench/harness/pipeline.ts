/**
 * One end-to-end run: load workers (piscina, open loop) write orders; the
 * relay (its own process) publishes them; the consumer (its own process)
 * applies them once and notes when each was first applied. Then the run
 * drains, and every committed order is accounted for: applied or lost.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Piscina } from 'piscina';
import type { ConsumerKafkaClientName, KafkaClientName, RelayMode } from '../../src/config.js';
import { createSql, dropSchema, migrate, type Sql } from '../../src/db.js';
import { OutboxBenchError, describeError } from '../../src/errors.js';
import { nowMs } from '../../src/events.js';
import type { Infra } from '../../src/infra/index.js';
import { createKafkaClient } from '../../src/kafka-client.js';
import { createHistogram, decodeHistogram, encodeHistogram, summarizeMs, type LatencySummaryMs } from '../../src/latency.js';
import type { Logger } from '../../src/log.js';
import type { StageHistograms } from '../../src/relay/stages.js';
import { ORDER_AGGREGATE, type OutboxStore } from '../../src/orders/write-path.js';
import { processCpuSeconds, processTreeCpuSeconds, peakRssBytes, processTreePssBytes } from '../../src/process-stats.js';
import { TopicAdmin } from '../../src/kafka/index.js';
import { account, type Accounting } from './accounting.js';
import type { ConsumerFinal } from './consumer-process.js';
import { newRunTag } from './load-ids.js';
import { planLoad, type LoadPlan, type LoadResult, type LoadTask } from './load-worker.js';
import { childEnv, deleteTopic, startConsumerGroup, startRelayProcess, stopChild, type ConsumerGroup, type StartedRelay } from './processes.js';
import { Progress } from './progress.js';
import { RunSampler, type Component, type LagReading } from './sampler.js';

export type { LagReading } from './sampler.js';
export type { ProcessCost, TimelinePoint } from './accounting.js';

// Rationale: kafkajs' default session timeout is 30 s; a consumer stopped
// longer is expelled from its group and the run measures a rebalance instead.
const MAX_CONSUMER_STALL_MS = 25_000;
// Rationale: the workers must be up and connected before their first order
// is due, or the first second measures thread start-up.
const START_DELAY_MS = 2_000;
// Rationale: an order applied within 2 s after the window still counts as
// delivered in it, unless the caller (the saturation search) sets its own grace.
const DEFAULT_GRACE_MS = 2_000;

export interface PipelineParameters {
  relayMode: RelayMode;
  /** Where the load writes events; `ptp` is pg-transactional-outbox's table (peers). */
  store: OutboxStore | 'ptp';
  /** Orders (= events) per second offered, all workers together. */
  rate: number;
  warmupS: number;
  durationS: number;
  workers: number;
  connectionsPerWorker: number;
  ordersPerTransaction: number;
  payloadBytes: number;
  /** Events per aggregate (1 = only new orders). */
  eventsPerAggregate: number;
  /** Recent orders per worker that amendments choose from. */
  keySpace: number;
  /** Share of amendments aimed at the `hotKeys` hottest orders. */
  hotKeyShare: number;
  hotKeys: number;
  partitions: number;
  batchSize: number;
  pollIntervalMs: number;
  replicas: number;
  /** Kafka producers per relay, in parallel. */
  publishers: number;
  /** The relay's Kafka client (default: the configured one). */
  kafkaClient?: KafkaClientName;
  /** The consumer's Kafka client (default: the configured one). */
  consumerKafkaClient?: ConsumerKafkaClientName;
  /** Consumer processes in the group (100K/s needs more than one). */
  consumers?: number;
  /** The consumer commits offsets at most this often (0 = every batch). */
  consumerCommitIntervalMs: number;
  /** Give up waiting for stragglers after this long, s. */
  drainTimeoutS: number;
  /** Seed of the load's random choices. */
  seed: number;
  /**
   * Drain mode: write the whole load with no relay running, then start the
   * relay and time how fast it clears the backlog.
   */
  relayAfterLoad?: boolean;
  /**
   * Pause the consumer (SIGSTOP, then SIGCONT) for this long in the middle of
   * the measured window, ms. The harness's own check: a stall must show in the
   * latency tail, because latency runs from the intended send time.
   */
  stallConsumerMs?: number;
  /**
   * An order intended inside the measured window counts as delivered in it
   * when it was applied by the window's end plus this, ms (default 2,000).
   */
  deliveryGraceMs?: number;
}

export interface PipelineResult extends Accounting {
  /** Where an event's time goes, stage by stage (see stageHistograms). */
  stages: StageSummaries;
  parameters: PipelineParameters;
  duplicates: number;
  errors: string[];
  durationOfRunS: number;
}

export interface PipelineContext {
  infra: Infra;
  log: Logger;
  /** Scenario name: names the schema, topics and log files. */
  name: string;
  /** Where raw logs of child processes go. */
  rawDir: string;
  quiet: boolean;
  /** Reads relay lag; called about ten times a second. */
  lag: (sql: Sql) => Promise<LagReading>;
  /** Extra env for the relay process (slot names ...). */
  relayEnv?: Record<string, string>;
  /** Runs on the fresh schema before any load (a CDC drain creates its slot here). */
  beforeLoad?: (sql: Sql, schema: string) => Promise<void>;
  /** Drain runs: after the backlog is written, before the relay starts. */
  beforeRelay?: (sql: Sql, schema: string) => Promise<void>;
  /** Starts a relay other than ours (a peer); resolves once it is ready to publish to `topicPrefix`. */
  startRelay?: (sql: Sql, schema: string, topicPrefix: string) => Promise<StartedRelay>;
}

export function loadPool(workers: number): Piscina {
  return new Piscina({ filename: new URL('./load-worker.js', import.meta.url).href, minThreads: workers, maxThreads: workers, idleTimeout: 60_000 });
}

/** Every load worker's share of the plan, on the shared timetable; resolves when all are written. */
export function runLoad(
  pool: Piscina,
  l: { databaseUrl: string; schema: string; runTag: string; plan: LoadPlan; startAt: number; measureFrom: number; measureTo: number; p: PipelineParameters },
): Promise<LoadResult[]> {
  const { p } = l;
  return Promise.all(
    l.plan.ordersPerWorker.map(
      (orders, workerIndex) =>
        pool.run({
          databaseUrl: l.databaseUrl,
          schema: l.schema,
          runTag: l.runTag,
          store: p.store,
          workerIndex,
          rate: l.plan.perWorkerRate,
          startAt: l.startAt,
          orders,
          measureFrom: l.measureFrom,
          measureTo: l.measureTo,
          ordersPerTransaction: p.ordersPerTransaction,
          connections: p.connectionsPerWorker,
          payloadBytes: p.payloadBytes,
          eventsPerAggregate: p.eventsPerAggregate,
          keySpace: p.keySpace,
          hotKeyShare: p.hotKeyShare,
          hotKeys: p.hotKeys,
          seed: p.seed,
        } satisfies LoadTask) as Promise<LoadResult>,
    ),
  );
}

/** Each stage of an event's way, as an HDR histogram (encoded, µs) and its percentiles. */
export type StageSummaries = Record<'write' | 'commitToRelay' | 'relayToAck' | 'kafkaToConsumer' | 'receiptToApplied', { histogram: string; ms: LatencySummaryMs }>;

/**
 * The latency budget of a run: intended -> commit (the writers, measured
 * window), commit -> relay and relay -> Kafka ack (the relay's own record,
 * every event of the run: `--stages-file`), Kafka -> consumer receipt (from
 * the broker's append time) and receipt -> applied (the consumer, measured
 * window). A relay that wrote no record (a peer) leaves its two empty.
 */
function stageHistograms(prefix: string, final: ConsumerFinal, loads: readonly LoadResult[]): StageSummaries {
  const relay = { commitToRelay: createHistogram(), relayToAck: createHistogram() };
  const dir = path.dirname(prefix);
  for (const file of readdirSync(dir).filter((name) => name.startsWith(`${path.basename(prefix)}.`) && name.endsWith('.json'))) {
    const recorded = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as StageHistograms;
    relay.commitToRelay.add(decodeHistogram(recorded.commitToRelay));
    relay.relayToAck.add(decodeHistogram(recorded.relayToAck));
  }
  const write = createHistogram();
  for (const load of loads) write.add(decodeHistogram(load.commitLatency));
  const entry = (h: ReturnType<typeof createHistogram>) => ({ histogram: encodeHistogram(h), ms: summarizeMs(h) });
  return {
    write: entry(write),
    commitToRelay: entry(relay.commitToRelay),
    relayToAck: entry(relay.relayToAck),
    kafkaToConsumer: entry(decodeHistogram(final.kafkaToConsumer)),
    receiptToApplied: entry(decodeHistogram(final.receiptToApplied)),
  };
}

/** What one run sets up, and takes down again whatever happens. */
interface RunResources {
  schema: string;
  runId: string;
  topicPrefix: string;
  topic: string;
  sql: Sql;
  kafka: ReturnType<typeof createKafkaClient>;
  children: ChildProcess[];
}

async function setUp(context: PipelineContext, p: PipelineParameters): Promise<RunResources> {
  mkdirSync(context.rawDir, { recursive: true });
  const schema = `bench_${context.name.replace(/[^a-z0-9]/g, '_')}`;
  const runId = Date.now().toString(36);
  const topicPrefix = `bench.${context.name}.${runId}.`;
  const run: RunResources = {
    schema,
    runId,
    topicPrefix,
    topic: `${topicPrefix}${ORDER_AGGREGATE}`,
    sql: createSql(context.infra.databaseUrl, schema, { max: 2, applicationName: 'outbox-bench-harness' }),
    kafka: createKafkaClient({ brokers: context.infra.kafkaBrokers, log: context.log, clientId: 'outbox-bench-harness' }),
    children: [],
  };
  // A fresh schema per run: no history from an earlier run skews the poll.
  await dropSchema(run.sql, schema);
  await migrate(run.sql, { schema, partitionWidth: '1 day', partitionsAhead: 2 });
  // The broker stamps each record with its append time, so the consumer can
  // tell the time an event spent reaching Kafka from the time it waited there.
  const topics = new TopicAdmin(run.kafka, p.partitions, { 'message.timestamp.type': 'LogAppendTime' });
  await topics.ensure(run.topic);
  await topics.close();
  await context.beforeLoad?.(run.sql, schema);
  return run;
}

async function tearDown(context: PipelineContext, run: RunResources): Promise<void> {
  for (const child of run.children) await stopChild(child).catch(() => {});
  await deleteTopic(run.kafka, run.topic, context.log);
  // The figures are in the result; a schema per run left behind would fill
  // the disk over a saturation search (hundreds of MB each).
  await dropSchema(run.sql, run.schema).catch((error: unknown) => context.log.warn({ err: describeError(error), schema: run.schema }, 'could not drop the run schema'));
  await run.sql.end({ timeout: 5 });
}

function cpuProbe(infra: Infra, relay: () => ChildProcess | undefined, consumers: readonly ChildProcess[]): () => Record<Component, number | undefined> {
  return () => {
    const pgPid = infra.postgres.pid();
    const kafkaPid = infra.kafka.pid();
    const relayProcess = relay();
    const usage = process.cpuUsage();
    return {
      postgres: pgPid === undefined ? undefined : processTreeCpuSeconds(pgPid),
      kafka: kafkaPid === undefined ? undefined : processCpuSeconds(kafkaPid),
      // A relay not started yet (drain mode) has used nothing so far.
      relay: relayProcess === undefined ? 0 : relayProcess.pid === undefined ? undefined : processTreeCpuSeconds(relayProcess.pid),
      consumer: sumOver(consumers, (pid) => processCpuSeconds(pid)),
      loadGenerator: (usage.user + usage.system) / 1e6,
    };
  };
}

/** A reading summed over processes; undefined if any cannot be read. */
function sumOver(children: readonly ChildProcess[], read: (pid: number) => number | undefined): number | undefined {
  let total = 0;
  for (const child of children) {
    const value = child.pid === undefined ? undefined : read(child.pid);
    if (value === undefined) return undefined;
    total += value;
  }
  return total;
}

function peakMemory(infra: Infra, relay: ChildProcess | undefined, consumers: readonly ChildProcess[]): Record<Component, number | undefined> {
  const pgPid = infra.postgres.pid();
  const kafkaPid = infra.kafka.pid();
  return {
    postgres: pgPid === undefined ? undefined : processTreePssBytes(pgPid),
    kafka: kafkaPid === undefined ? undefined : peakRssBytes(kafkaPid),
    relay: relay?.pid === undefined ? undefined : peakRssBytes(relay.pid),
    consumer: sumOver(consumers, peakRssBytes),
    loadGenerator: process.resourceUsage().maxRSS * 1_024,
  };
}

/** SIGSTOPs the consumer in the middle of the measured window; returns a function that undoes it early. */
function scheduleConsumerStall(consumers: readonly ChildProcess[], measureFrom: number, p: PipelineParameters): () => void {
  const stallMs = p.stallConsumerMs ?? 0;
  if (stallMs <= 0) return () => {};
  let stopped = false;
  let timer: NodeJS.Timeout;
  const resume = () => {
    clearTimeout(timer);
    if (stopped) for (const consumer of consumers) consumer.kill('SIGCONT');
    stopped = false;
  };
  const stallAt = measureFrom + Math.max(0, p.durationS * 1_000 - stallMs) / 2;
  timer = setTimeout(() => {
    for (const consumer of consumers) consumer.kill('SIGSTOP');
    stopped = true;
    timer = setTimeout(resume, stallMs);
  }, Math.max(0, stallAt - nowMs()));
  return resume;
}

/** Waits until every committed order was applied, or nothing moved for drainTimeoutS. */
async function drainUntilApplied(consumer: ConsumerGroup, committed: number, p: PipelineParameters, log: Logger): Promise<void> {
  let lastDistinct = -1;
  let stalledSince = Date.now();
  for (;;) {
    const distinct = consumer.progress()?.distinct ?? 0;
    if (distinct >= committed) return;
    if (distinct !== lastDistinct) {
      lastDistinct = distinct;
      stalledSince = Date.now();
    } else if (Date.now() - stalledSince > p.drainTimeoutS * 1_000) {
      log.warn({ distinct, committed }, 'drain timed out: some committed orders never arrived');
      return;
    }
    await sleep(200);
  }
}

function phaseAt(now: number, startAt: number, measureFrom: number, measureTo: number): string {
  if (now < startAt) return 'start';
  if (now < measureFrom) return 'warm-up';
  return now < measureTo ? 'measure' : 'drain';
}

export async function runPipeline(context: PipelineContext, p: PipelineParameters): Promise<PipelineResult> {
  const { infra, log } = context;
  const stallLimitMs = Math.min(p.durationS * 1_000, MAX_CONSUMER_STALL_MS);
  if ((p.stallConsumerMs ?? 0) > stallLimitMs) {
    throw new OutboxBenchError(
      'USAGE',
      `--stall-consumer-ms ${p.stallConsumerMs} is longer than the measured window or the consumer group's session timeout; at most ${stallLimitMs} here`,
    );
  }
  const run = await setUp(context, p);
  let pool: Piscina | undefined;
  let sampler: RunSampler | undefined;
  let resumeConsumer = () => {};
  const progress = new Progress(context.quiet);
  try {
    const plan: LoadPlan = planLoad(p);
    const stagesPrefix = path.join(context.rawDir, 'stages');
    const env = childEnv(infra, run.schema, run.topicPrefix, p.partitions, { OUTBOX_BENCH_STAGES_FILE: stagesPrefix, ...context.relayEnv });
    const launchRelay = async (): Promise<StartedRelay> => {
      const started = context.startRelay ? await context.startRelay(run.sql, run.schema, run.topicPrefix) : await startRelayProcess(context.rawDir, env, p);
      run.children.push(started.child);
      return started;
    };
    let relay = p.relayAfterLoad ? undefined : await launchRelay();
    // A whole millisecond: intended times travel as text with 3 decimals, and
    // the window's edges must compare the same on both sides.
    const startAt = Math.ceil(nowMs()) + START_DELAY_MS;
    const measureFrom = startAt + p.warmupS * 1_000;
    const measureTo = measureFrom + p.durationS * 1_000;
    const runTag = newRunTag();
    const consumer = await startConsumerGroup(context.rawDir, {
      databaseUrl: infra.databaseUrl,
      kafkaBrokers: [...infra.kafkaBrokers],
      schema: run.schema,
      topic: run.topic,
      groupId: `bench-${context.name}-${run.runId}`,
      measureFrom,
      measureTo,
      runTag,
      startAt,
      perWorkerRate: plan.perWorkerRate,
      ordersPerWorker: plan.ordersPerWorker,
      commitIntervalMs: p.consumerCommitIntervalMs,
      ...(p.consumerKafkaClient ? { kafkaClient: p.consumerKafkaClient } : {}),
    }, p.consumers ?? 1);
    run.children.push(...consumer.children);
    resumeConsumer = scheduleConsumerStall(consumer.children, measureFrom, p);

    sampler = new RunSampler({
      cpu: cpuProbe(infra, () => relay?.child, consumer.children),
      lag: () => context.lag(run.sql),
      walBytes: async () => Number((await run.sql<{ lsn: string }[]>`SELECT (pg_current_wal_lsn() - '0/0')::text AS lsn`)[0]?.lsn ?? Number.NaN),
    });
    sampler.start();
    // Samples at the window's exact edges, so its CPU is read, not interpolated.
    const edges = [measureFrom, measureTo].map((at) => setTimeout(() => sampler?.sampleCpu(), Math.max(0, at - nowMs())));
    let previousDistinct = 0;
    const ticker = setInterval(() => {
      const latest = consumer.progress();
      const now = nowMs();
      const distinct = latest?.distinct ?? 0;
      progress.update({ elapsedS: (now - startAt) / 1_000, phase: phaseAt(now, startAt, measureFrom, measureTo), ratePerSec: distinct - previousDistinct, lag: sampler!.latestLag(), p99Ms: latest?.p99Ms ?? 0 });
      previousDistinct = distinct;
    }, 1_000);

    pool = loadPool(p.workers);
    const loads = await runLoad(pool, { databaseUrl: infra.databaseUrl, schema: run.schema, runTag, plan, startAt, measureFrom, measureTo, p });
    const committed = loads.reduce((sum, r) => sum + r.committed, 0);
    if (!relay) {
      await context.beforeRelay?.(run.sql, run.schema);
      relay = await launchRelay();
    }
    await drainUntilApplied(consumer, committed, p, log);
    clearInterval(ticker);
    for (const edge of edges) clearTimeout(edge);
    await sampler.stop();
    progress.done();
    const memory = peakMemory(infra, relay.child, consumer.children);
    const final: ConsumerFinal = await consumer.finish();
    await stopChild(relay.child);
    for (const child of consumer.children) await stopChild(child);
    const stages = stageHistograms(stagesPrefix, final, loads);

    const accounting = account({
      plan,
      startAt,
      measureFrom,
      measureTo,
      loads,
      final,
      sampler,
      memory,
      relaySpawnedAt: p.relayAfterLoad ? relay.spawnedAt : undefined,
      graceMs: p.deliveryGraceMs ?? DEFAULT_GRACE_MS,
    });
    if (final.foreign > 0 || accounting.unexpected > 0) {
      throw new OutboxBenchError(
        'CHECK_FAILED',
        `${final.foreign} deliveries were not orders of this run's load plan and ${accounting.unexpected} were orders whose writer saw the transaction fail: ` +
          'the run cannot account for them, so its figures are not published',
      );
    }
    return {
      ...accounting,
      stages,
      parameters: p,
      duplicates: final.duplicates,
      errors: [...new Set(loads.flatMap((r) => r.errors))],
      durationOfRunS: Math.round((nowMs() - startAt) / 100) / 10,
    };
  } finally {
    progress.done();
    // A stopped process would never act on the SIGTERM of the tear-down.
    resumeConsumer();
    await sampler?.stop();
    await pool?.destroy();
    await tearDown(context, run);
  }
}
