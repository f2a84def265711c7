/**
 * One end-to-end run: load workers (piscina, open loop) write orders; the
 * relay (its own process) publishes them; the consumer (its own process)
 * applies them once and notes when each first arrived. Then the run drains,
 * and every committed order is accounted for: delivered, duplicated or lost.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Piscina } from 'piscina';
import type { RelayMode } from '../../src/config.js';
import { createSql, dropSchema, migrate, type Sql } from '../../src/db.js';
import { OutboxBenchError, describeError } from '../../src/errors.js';
import { nowMs } from '../../src/events.js';
import type { Infra } from '../../src/infra/index.js';
import { createKafkaClient } from '../../src/kafka-client.js';
import { createHistogram, decodeHistogram, encodeHistogram, recordMs, summarizeMs, type LatencySummaryMs } from '../../src/latency.js';
import type { Logger } from '../../src/log.js';
import { ORDER_AGGREGATE, type OutboxStore } from '../../src/orders/write-path.js';
import { processCpuSeconds, processTreeCpuSeconds, peakRssBytes, processTreePssBytes } from '../../src/process-stats.js';
import { KafkajsPublisher } from '../../src/relay/publisher.js';
import type { ConsumerFinal, ConsumerTask, FromConsumer, ToConsumer } from './consumer-process.js';
import type { LoadResult, LoadTask } from './load-worker.js';
import { Progress } from './progress.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.join(here, '..', '..', 'src', 'cli.js');

// Rationale: kafkajs' default session timeout is 30 s; a consumer stopped
// longer is expelled from its group and the run measures a rebalance instead.
const MAX_CONSUMER_STALL_MS = 25_000;

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
}

export interface ProcessCost {
  cpuSeconds: number | null;
  cpuSecondsPerMillionEvents: number | null;
  /** Peak RSS (Node, Java) or PSS at the end (PostgreSQL), MiB. */
  memoryMiB: number | null;
}

export interface TimelinePoint {
  /** Seconds since the first intended send. */
  t: number;
  /** Orders first delivered in this second. */
  delivered: number;
  /** Orders committed in this second. */
  committed: number;
  /** Relay lag sampled at this second: events (table relays) or WAL bytes (CDC). */
  lagEvents: number | null;
  lagBytes: number | null;
}

export interface PipelineResult {
  parameters: PipelineParameters;
  sent: number;
  failedWrites: number;
  delivered: number;
  duplicates: number;
  lost: number;
  unexpected: number;
  /** Orders delivered per second over the measured window. */
  eventsPerSec: number;
  /** Orders committed per second over the measured window (the offered load that got in). */
  committedPerSec: number;
  e2eMs: LatencySummaryMs;
  commitToReceiptMs: LatencySummaryMs;
  /** Deliveries that reached the consumer before the writer saw its COMMIT return. */
  deliveredBeforeCommitAck: number;
  writeMs: LatencySummaryMs;
  cost: Record<'postgres' | 'kafka' | 'relay' | 'consumer' | 'loadGenerator', ProcessCost>;
  timeline: TimelinePoint[];
  histograms: { e2e: string; commitToReceipt: string; write: string };
  errors: string[];
  durationOfRunS: number;
  /** Seconds from the last commit until the last first delivery: how long the backlog took to clear. */
  drainS: number;
  /** Drain mode only: the backlog cleared from relay start to the last delivery. */
  drain?: { backlog: number; seconds: number; eventsPerSec: number };
}

export interface LagReading {
  events: number | null;
  bytes: number | null;
}

export interface PipelineContext {
  infra: Infra;
  log: Logger;
  /** Scenario name: names the schema, topics and log files. */
  name: string;
  /** Where raw logs of child processes go. */
  rawDir: string;
  quiet: boolean;
  /** Reads relay lag; called about once a second. */
  lag: (sql: Sql) => Promise<LagReading>;
  /** Extra env for the relay process (slot names ...). */
  relayEnv?: Record<string, string>;
  /** Runs on the fresh schema before any load (a CDC drain creates its slot here). */
  beforeLoad?: (sql: Sql, schema: string) => Promise<void>;
  /**
   * Starts a relay other than ours (a peer): resolves with its process once it
   * is ready to publish to `topicPrefix`.
   */
  startRelay?: (sql: Sql, schema: string, topicPrefix: string) => Promise<ChildProcess>;
}

export function childEnv(context: PipelineContext, schema: string, topicPrefix: string, p: PipelineParameters): NodeJS.ProcessEnv {
  return {
    ...process.env,
    DATABASE_URL: context.infra.databaseUrl,
    KAFKA_BROKERS: context.infra.kafkaBrokers.join(','),
    OUTBOX_BENCH_SCHEMA: schema,
    OUTBOX_BENCH_TOPIC_PREFIX: topicPrefix,
    OUTBOX_BENCH_PARTITIONS: String(p.partitions),
    OUTBOX_BENCH_LOG_LEVEL: 'warn',
    OUTBOX_BENCH_LOG_FORMAT: 'json',
    ...context.relayEnv,
  };
}

export async function startRelayProcess(context: PipelineContext, env: NodeJS.ProcessEnv, p: PipelineParameters, extraArgs: string[] = []): Promise<ChildProcess> {
  const log = createWriteStream(path.join(context.rawDir, 'relay.log'));
  const child = fork(
    CLI,
    ['relay', '--mode', p.relayMode, '--batch-size', String(p.batchSize), '--interval-ms', String(p.pollIntervalMs), '--replicas', String(p.replicas), '--publishers', String(p.publishers), ...extraArgs],
    { env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] },
  );
  child.stderr!.pipe(log);
  let stdout = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  const started = Date.now();
  while (!/running/.test(stdout)) {
    if (child.exitCode !== null) throw new OutboxBenchError('CHECK_FAILED', `the relay exited during start-up (code ${child.exitCode}); see ${path.join(context.rawDir, 'relay.log')}`);
    if (Date.now() - started > 60_000) throw new OutboxBenchError('NOT_READY', 'the relay did not start within 60 s');
    await sleep(50);
  }
  return child;
}

export async function startConsumerProcess(context: PipelineContext, task: ConsumerTask): Promise<{ child: ChildProcess; messages: FromConsumer[] }> {
  const log = createWriteStream(path.join(context.rawDir, 'consumer.log'));
  const child = fork(path.join(here, 'consumer-process.js'), [], { stdio: ['ignore', 'inherit', 'pipe', 'ipc'], serialization: 'advanced' });
  child.stderr!.pipe(log);
  const messages: FromConsumer[] = [];
  child.on('message', (message: FromConsumer) => messages.push(message));
  child.send({ type: 'start', task } satisfies ToConsumer);
  const started = Date.now();
  while (!messages.some((m) => m.type === 'ready')) {
    const failure = messages.find((m) => m.type === 'error');
    if (failure && failure.type === 'error') throw new OutboxBenchError('CHECK_FAILED', `the consumer failed to start: ${failure.message}`);
    if (child.exitCode !== null) throw new OutboxBenchError('CHECK_FAILED', `the consumer exited during start-up; see ${path.join(context.rawDir, 'consumer.log')}`);
    if (Date.now() - started > 60_000) throw new OutboxBenchError('NOT_READY', 'the consumer did not join its group within 60 s');
    await sleep(50);
  }
  return { child, messages };
}

export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}

interface CpuSample {
  postgres: number | undefined;
  kafka: number | undefined;
  relay: number | undefined;
  consumer: number | undefined;
  loadGenerator: number;
}

function sampleCpu(context: PipelineContext, relay: ChildProcess | undefined, consumer: ChildProcess): CpuSample {
  const pgPid = context.infra.postgres.pid();
  const kafkaPid = context.infra.kafka.pid();
  const usage = process.cpuUsage();
  return {
    postgres: pgPid === undefined ? undefined : processTreeCpuSeconds(pgPid),
    kafka: kafkaPid === undefined ? undefined : processCpuSeconds(kafkaPid),
    // A relay not started yet (drain mode) has used nothing so far.
    relay: relay === undefined ? 0 : relay.pid === undefined ? undefined : processTreeCpuSeconds(relay.pid),
    consumer: consumer.pid === undefined ? undefined : processCpuSeconds(consumer.pid),
    loadGenerator: (usage.user + usage.system) / 1e6,
  };
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
  mkdirSync(context.rawDir, { recursive: true });
  const schema = `bench_${context.name.replace(/[^a-z0-9]/g, '_')}`;
  const runId = Date.now().toString(36);
  const topicPrefix = `bench.${context.name}.${runId}.`;
  const topic = `${topicPrefix}${ORDER_AGGREGATE}`;
  const sql = createSql(infra.databaseUrl, schema, { max: 2, applicationName: 'outbox-bench-harness' });
  const kafka = createKafkaClient({ brokers: infra.kafkaBrokers, log, clientId: 'outbox-bench-harness' });
  const children: ChildProcess[] = [];
  let pool: Piscina | undefined;
  const progress = new Progress(context.quiet);
  let stallTimer: NodeJS.Timeout | undefined;
  let resumeConsumer: (() => void) | undefined;
  try {
    // A fresh schema per run: no history from an earlier run skews the poll.
    await dropSchema(sql, schema);
    await migrate(sql, { schema, partitionWidth: '1 day', partitionsAhead: 2 });
    const publisher = new KafkajsPublisher({ kafka, route: () => topic, partitions: p.partitions });
    await publisher.ensureTopic(topic);
    await publisher.close();

    const perWorkerRate = p.rate / p.workers;
    const totalMs = (p.warmupS + p.durationS) * 1_000;
    const perWorker = Array.from({ length: p.workers }, () => Math.floor((totalMs * perWorkerRate) / 1_000 / p.ordersPerTransaction) * p.ordersPerTransaction);
    await context.beforeLoad?.(sql, schema);
    const env = childEnv(context, schema, topicPrefix, p);
    const launchRelay = () => (context.startRelay ? context.startRelay(sql, schema, topicPrefix) : startRelayProcess(context, env, p));
    let relay = p.relayAfterLoad ? undefined : await launchRelay();
    if (relay) children.push(relay);
    // Rationale: the start is set a little in the future so every worker is
    // up and connected before its first order is due.
    const startAt = nowMs() + 2_000;
    const measureFrom = startAt + p.warmupS * 1_000;
    const measureTo = measureFrom + p.durationS * 1_000;
    const consumer = await startConsumerProcess(context, {
      databaseUrl: infra.databaseUrl,
      kafkaBrokers: [...infra.kafkaBrokers],
      schema,
      topic,
      groupId: `bench-${context.name}-${runId}`,
      measureFrom,
      measureTo,
      perWorker,
      commitIntervalMs: p.consumerCommitIntervalMs,
    });
    children.push(consumer.child);

    const stallMs = p.stallConsumerMs ?? 0;
    if (stallMs > 0) {
      const stallAt = measureFrom + Math.max(0, p.durationS * 1_000 - stallMs) / 2;
      stallTimer = setTimeout(() => {
        consumer.child.kill('SIGSTOP');
        resumeConsumer = () => {
          resumeConsumer = undefined;
          consumer.child.kill('SIGCONT');
        };
        stallTimer = setTimeout(() => resumeConsumer?.(), stallMs);
      }, Math.max(0, stallAt - nowMs()));
    }

    pool = new Piscina({ filename: new URL('./load-worker.js', import.meta.url).href, minThreads: p.workers, maxThreads: p.workers, idleTimeout: 60_000 });
    const cpuBefore = sampleCpu(context, relay, consumer.child);
    const tasks: Promise<LoadResult>[] = perWorker.map((_, workerIndex) =>
      pool!.run({
        databaseUrl: infra.databaseUrl,
        schema,
        store: p.store,
        workerIndex,
        rate: perWorkerRate,
        startAt,
        durationMs: totalMs,
        measureFrom,
        measureTo,
        ordersPerTransaction: p.ordersPerTransaction,
        connections: p.connectionsPerWorker,
        payloadBytes: p.payloadBytes,
        eventsPerAggregate: p.eventsPerAggregate,
        keySpace: p.keySpace,
        hotKeyShare: p.hotKeyShare,
        hotKeys: p.hotKeys,
        seed: p.seed,
      } satisfies LoadTask) as Promise<LoadResult>,
    );

    // Progress and lag, once a second, while the load runs and the run drains.
    const lagTimeline = new Map<number, LagReading>();
    let loadDone = false;
    const loads = Promise.all(tasks).finally(() => (loadDone = true));
    const latestProgress = () => consumer.messages.findLast((m) => m.type === 'progress');
    let drained = false;
    const sampler = (async () => {
      let previous = 0;
      while (!loadDone || !drained) {
        await sleep(1_000);
        const second = Math.floor((nowMs() - startAt) / 1_000);
        const lag = await context.lag(sql).catch(() => ({ events: null, bytes: null }));
        lagTimeline.set(second, lag);
        const latest = latestProgress();
        const distinct = latest && latest.type === 'progress' ? latest.distinct : 0;
        progress.update({
          elapsedS: (nowMs() - startAt) / 1_000,
          phase: nowMs() < startAt ? 'start' : nowMs() < measureFrom ? 'warm-up' : nowMs() < measureTo ? 'measure' : 'drain',
          ratePerSec: distinct - previous,
          lag,
          p99Ms: latest && latest.type === 'progress' ? latest.p99Ms : 0,
        });
        previous = distinct;
      }
    })();
    const results = await loads;
    const committedTotal = results.reduce((sum, r) => sum + r.committed, 0);
    let relayStartedAt: number | undefined;
    if (!relay) {
      relay = await launchRelay();
      children.push(relay);
      // The relay's start-up (connect, create the topic, slot checks) is part of its drain time.
      relayStartedAt = nowMs();
    }

    // Drain: wait until every committed order arrived, or nothing moved for drainTimeoutS.
    let lastDistinct = -1;
    let stalledSince = Date.now();
    for (;;) {
      const latest = latestProgress();
      const distinct = latest && latest.type === 'progress' ? latest.distinct : 0;
      if (distinct >= committedTotal) break;
      if (distinct !== lastDistinct) {
        lastDistinct = distinct;
        stalledSince = Date.now();
      } else if (Date.now() - stalledSince > p.drainTimeoutS * 1_000) {
        log.warn({ distinct, committedTotal }, 'drain timed out: some committed orders never arrived');
        break;
      }
      await sleep(200);
    }
    drained = true;
    await sampler;
    progress.done();
    const cpuAfter = sampleCpu(context, relay, consumer.child);
    const memory = {
      postgres: infra.postgres.pid() === undefined ? undefined : processTreePssBytes(infra.postgres.pid()!),
      kafka: infra.kafka.pid() === undefined ? undefined : peakRssBytes(infra.kafka.pid()!),
      relay: relay.pid === undefined ? undefined : peakRssBytes(relay.pid),
      consumer: consumer.child.pid === undefined ? undefined : peakRssBytes(consumer.child.pid),
      loadGenerator: process.resourceUsage().maxRSS * 1_024,
    };

    consumer.child.send({ type: 'finish' } satisfies ToConsumer);
    const final = await (async () => {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const message = consumer.messages.find((m): m is ConsumerFinal => m.type === 'final');
        if (message) return message;
        const failure = consumer.messages.find((m) => m.type === 'error');
        if (failure && failure.type === 'error') throw new OutboxBenchError('CHECK_FAILED', `the consumer failed: ${failure.message}`);
        if (consumer.child.exitCode !== null || Date.now() > deadline) {
          throw new OutboxBenchError('CHECK_FAILED', `the consumer ${consumer.child.exitCode !== null ? 'exited' : 'did not answer within 60 s'} without its final report; see ${path.join(context.rawDir, 'consumer.log')}`);
        }
        await sleep(50);
      }
    })();
    await stopChild(relay);
    await stopChild(consumer.child);

    const result = account(p, results, final, cpuBefore, cpuAfter, memory, lagTimeline, startAt, measureFrom, measureTo);
    if (relayStartedAt !== undefined) {
      let lastDelivery = relayStartedAt;
      for (const lane of final.receivedAt) for (const t of lane) if (t > lastDelivery) lastDelivery = t;
      const seconds = Math.max(0.001, (lastDelivery - relayStartedAt) / 1_000);
      result.drain = { backlog: committedTotal, seconds: Math.round(seconds * 100) / 100, eventsPerSec: Math.round(result.delivered / seconds) };
    }
    return result;
  } finally {
    progress.done();
    clearTimeout(stallTimer);
    // A stopped process would never act on the SIGTERM below.
    resumeConsumer?.();
    await pool?.destroy();
    for (const child of children) await stopChild(child).catch(() => {});
    await deleteTopic(kafka, topic, log);
    // The figures are in the result; a schema per run left behind would fill
    // the disk over a saturation search (hundreds of MB each).
    await dropSchema(sql, schema).catch((error: unknown) => log.warn({ err: describeError(error), schema }, 'could not drop the run schema'));
    await sql.end({ timeout: 5 });
  }
}

export async function deleteTopic(kafka: ReturnType<typeof createKafkaClient>, topic: string, log: Logger): Promise<void> {
  const admin = kafka.admin();
  try {
    await admin.connect();
    await admin.deleteTopics({ topics: [topic] });
  } catch (error) {
    log.debug({ err: String(error) }, 'could not delete the run topic');
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

function account(
  p: PipelineParameters,
  results: LoadResult[],
  final: ConsumerFinal,
  before: CpuSample,
  after: CpuSample,
  memory: Record<keyof CpuSample, number | undefined>,
  lagTimeline: Map<number, LagReading>,
  startAt: number,
  measureFrom: number,
  measureTo: number,
): PipelineResult {
  const msPerOrder = (1_000 * p.workers) / p.rate;
  let sent = 0;
  let failedWrites = 0;
  let delivered = 0;
  let lost = 0;
  let unexpected = 0;
  let deliveredInWindow = 0;
  let committedInWindow = 0;
  let beforeAck = 0;
  let lastCommit = 0;
  let lastDelivery = 0;
  const commitToReceipt = createHistogram();
  const deliveredPerSecond = new Map<number, number>();
  const committedPerSecond = new Map<number, number>();
  for (const result of results) {
    const received = final.receivedAt[result.workerIndex]!;
    sent += result.committed;
    failedWrites += result.failed;
    for (let seq = 0; seq < result.commitAt.length; seq++) {
      const committedAt = result.commitAt[seq]!;
      const receivedAt = received[seq]!;
      const intendedAt = startAt + seq * msPerOrder;
      const inWindow = intendedAt >= measureFrom && intendedAt < measureTo;
      const wasCommitted = !Number.isNaN(committedAt);
      const wasDelivered = !Number.isNaN(receivedAt);
      if (wasCommitted && committedAt > lastCommit) lastCommit = committedAt;
      if (wasDelivered && receivedAt > lastDelivery) lastDelivery = receivedAt;
      if (wasCommitted) {
        const second = Math.floor((committedAt - startAt) / 1_000);
        committedPerSecond.set(second, (committedPerSecond.get(second) ?? 0) + 1);
        if (committedAt >= measureFrom && committedAt < measureTo) committedInWindow += 1;
      }
      if (wasDelivered) {
        delivered += 1;
        const second = Math.floor((receivedAt - startAt) / 1_000);
        deliveredPerSecond.set(second, (deliveredPerSecond.get(second) ?? 0) + 1);
        // Throughput counts arrivals inside the window: what the pipeline moved
        // per second, not what was offered (a lagging relay delivers later).
        if (receivedAt >= measureFrom && receivedAt < measureTo) deliveredInWindow += 1;
      }
      if (wasCommitted && !wasDelivered) lost += 1;
      if (!wasCommitted && wasDelivered) unexpected += 1;
      if (wasCommitted && wasDelivered && inWindow) {
        if (receivedAt < committedAt) beforeAck += 1;
        recordMs(commitToReceipt, Math.max(0, receivedAt - committedAt));
      }
    }
  }
  const write = createHistogram();
  for (const result of results) write.add(decodeHistogram(result.commitLatency));
  const e2e = decodeHistogram(final.endToEnd);
  const lastSecond = Math.max(0, ...deliveredPerSecond.keys(), ...committedPerSecond.keys(), ...lagTimeline.keys());
  const timeline: TimelinePoint[] = [];
  for (let t = 0; t <= lastSecond; t++) {
    const lag = lagTimeline.get(t);
    timeline.push({ t, delivered: deliveredPerSecond.get(t) ?? 0, committed: committedPerSecond.get(t) ?? 0, lagEvents: lag?.events ?? null, lagBytes: lag?.bytes ?? null });
  }
  const events = delivered;
  const cost = (key: keyof CpuSample): ProcessCost => {
    const b = before[key];
    const a = after[key];
    const cpu = a === undefined || b === undefined ? null : Math.max(0, a - b);
    const mem = memory[key];
    return {
      cpuSeconds: cpu === null ? null : Math.round(cpu * 100) / 100,
      cpuSecondsPerMillionEvents: cpu === null || events === 0 ? null : Math.round((cpu / events) * 1e6 * 10) / 10,
      memoryMiB: mem === undefined ? null : Math.round(mem / 1024 ** 2),
    };
  };
  return {
    parameters: p,
    sent,
    failedWrites,
    delivered,
    duplicates: final.duplicates,
    lost,
    unexpected,
    eventsPerSec: Math.round(deliveredInWindow / p.durationS),
    committedPerSec: Math.round(committedInWindow / p.durationS),
    e2eMs: summarizeMs(e2e),
    commitToReceiptMs: summarizeMs(commitToReceipt),
    deliveredBeforeCommitAck: beforeAck,
    writeMs: summarizeMs(write),
    cost: { postgres: cost('postgres'), kafka: cost('kafka'), relay: cost('relay'), consumer: cost('consumer'), loadGenerator: cost('loadGenerator') },
    timeline,
    histograms: { e2e: encodeHistogram(e2e), commitToReceipt: encodeHistogram(commitToReceipt), write: encodeHistogram(write) },
    errors: [...new Set(results.flatMap((r) => r.errors))],
    durationOfRunS: Math.round((nowMs() - startAt) / 100) / 10,
    drainS: Math.round(Math.max(0, lastDelivery - lastCommit) / 10) / 100,
  };
}
