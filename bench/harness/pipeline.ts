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
import type { Config } from '../../src/config.js';
import type { Sql } from '../../src/db.js';
import { OutboxBenchError } from '../../src/errors.js';
import { nowMs, reanchorClock } from '../../src/events.js';
import type { Infra } from '../../src/infra/index.js';
import { createHistogram, decodeHistogram, encodeHistogram, summarizeMs, type LatencySummaryMs } from '../../src/latency.js';
import type { Logger } from '../../src/log.js';
import type { LagReading } from '../../src/relay/modes.js';
import type { StageHistograms } from '../../src/relay/stages.js';
import type { OutboxStore } from '../../src/orders/write-path.js';
import { account, type Accounting, type MeasuredWindow } from './accounting.js';
import type { ConsumerFinal } from './consumer-process.js';
import { newRunTag } from './load-ids.js';
import { planLoad, prewarmMs, type LoadPlan, type LoadResult, type LoadTask, type PrewarmParameters } from './load-worker.js';
import { signalTree, startConsumerGroup, startRelayProcess, stopChild, type ConsumerGroup, type StartedRelay } from './processes.js';
import { Progress } from './progress.js';
import { openRun, type RunRelay, type RunSetup } from './run-setup.js';
import { cpuProbe, peakMemory, relayMemoryProbe, RunSampler } from './sampler.js';

export type { LagReading } from '../../src/relay/modes.js';
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
// Rationale: a relay paused for a drain after a prewarm stops this long
// before the backlog's first order is due (its transaction is sent later
// still, when its last order is due), so that a timer fired a little late
// still pauses it before any backlog event exists; the prewarm's last 50 ms
// of events wait out the pause and are left out of the drain's figures.
const PAUSE_LEAD_MS = 50;

/**
 * A run's parameters: the relay's settings are the Config's own (same names,
 * same ranges), the rest describes the load.
 */
export interface PipelineParameters
  extends Pick<Config, 'relayMode' | 'batchSize' | 'pollIntervalMs' | 'replicas' | 'publishers'>,
    Partial<Pick<Config, 'kafkaClient' | 'consumerKafkaClient'>> {
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
  /** Partitions of the run's topic. */
  partitions: number;
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
   * relay and time how fast it clears the backlog. With a prewarm, the relay
   * runs through the prewarm, is paused (SIGSTOP, its whole process tree)
   * while the backlog is written and continued afterwards: the drain is
   * timed from that moment, by a relay already warm.
   */
  relayAfterLoad?: boolean;
  /**
   * A phase before the warm-up, at a rate of its own (peers: at least 60 s,
   * so that class loading and JIT are over before anything is measured).
   */
  prewarm?: PrewarmParameters;
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
  /** A peer's own readings (PeerRelay.observations). */
  peer?: PeerObservations;
}

/** A relay other than ours (a peer): it sets itself up, starts, and reports its lag. */
export interface PeerRelay {
  /** Runs on the fresh schema before any load (a peer creates its slot or its tables here). */
  beforeLoad(sql: Sql, schema: string): Promise<void>;
  /** Starts it; resolves once it is ready to publish to `topicPrefix`. */
  start(sql: Sql, schema: string, topicPrefix: string): Promise<StartedRelay>;
  /** Its lag; called about ten times a second. */
  lag(sql: Sql): Promise<LagReading>;
  /** Its lag reading trails its publishing by design: the saturation rule takes the lag slope from delivery (AccountInput.lagFromDelivery). */
  lagFromDelivery?: boolean;
  /** What it reports of the run beyond the harness's figures, over the measured window; read once the run has drained. */
  observations?(window: MeasuredWindow): PeerObservations;
}

/** A peer's own readings of a run (Debezium's queue over JMX, a library's warnings), for the report. */
export type PeerObservations = Record<string, unknown>;

export interface PipelineContext {
  infra: Infra;
  log: Logger;
  /** Scenario name: names the schema, topics and slots. */
  name: string;
  /** Where raw logs of child processes go. */
  rawDir: string;
  quiet: boolean;
  /** Drain runs: after the backlog is written, before the relay starts. */
  beforeRelay?: (sql: Sql, schema: string) => Promise<void>;
  /** Measure a peer's relay instead of ours. */
  peer?: PeerRelay;
}

/** The settings of our relay in a run with these parameters. */
export function relayOf(p: PipelineParameters): RunRelay {
  return { relayMode: p.relayMode, replicas: p.replicas, batchSize: p.batchSize, pollIntervalMs: p.pollIntervalMs, publishers: p.publishers, kafkaClient: p.kafkaClient };
}

export function loadPool(workers: number): Piscina {
  return new Piscina({ filename: new URL('./load-worker.js', import.meta.url).href, minThreads: workers, maxThreads: workers, idleTimeout: 60_000 });
}

/** Every load worker's share of the plan, on the shared timetable; resolves when all are written. */
export function runLoad(
  pool: Piscina,
  l: { databaseUrl: string; schema: string; runTag: string; plan: LoadPlan; startAt: number; measureFrom: number; measureTo: number; p: PipelineParameters; store?: LoadTask['store'] },
): Promise<LoadResult[]> {
  const { p } = l;
  return Promise.all(
    l.plan.ordersPerWorker.map(
      (orders, workerIndex) =>
        pool.run({
          databaseUrl: l.databaseUrl,
          schema: l.schema,
          runTag: l.runTag,
          store: l.store ?? p.store,
          workerIndex,
          rate: l.plan.perWorkerRate,
          startAt: l.startAt,
          prewarm: l.plan.prewarm,
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

/**
 * Waits until every committed order was applied, or nothing moved for
 * drainTimeoutS; a run being stopped ends the wait at once (its consumers
 * are gone, so nothing would move again).
 */
async function drainUntilApplied(running: Running, consumer: ConsumerGroup, committed: number, p: PipelineParameters, log: Logger): Promise<void> {
  let lastDistinct = -1;
  let stalledSince = performance.now();
  for (;;) {
    if (running.stopping) throw new OutboxBenchError('SHUTTING_DOWN', 'the run was stopped while it drained');
    const distinct = consumer.progress()?.distinct ?? 0;
    if (distinct >= committed) return;
    if (distinct !== lastDistinct) {
      lastDistinct = distinct;
      stalledSince = performance.now();
    } else if (performance.now() - stalledSince > p.drainTimeoutS * 1_000) {
      log.warn({ distinct, committed }, 'drain timed out: some committed orders never arrived');
      return;
    }
    await sleep(200);
  }
}

function phaseAt(now: number, at: { startAt: number; prewarmTo: number; measureFrom: number; measureTo: number }): string {
  const { startAt, prewarmTo, measureFrom, measureTo } = at;
  if (now < startAt) return 'start';
  if (now < prewarmTo) return 'prewarm';
  if (now < measureFrom) return 'warm-up';
  return now < measureTo ? 'measure' : 'drain';
}

/** Everything of a run that is started, and must be stopped whatever happens. */
interface Running {
  run: RunSetup;
  children: ChildProcess[];
  pool?: Piscina;
  sampler?: RunSampler;
  timers: NodeJS.Timeout[];
  resumeConsumer: () => void;
  /** A relay paused for a drain: continued before it is stopped. */
  pausedRelay?: ChildProcess | undefined;
  progress: Progress;
  /** Set once stopping began: the run's end and a signal may both stop it. */
  stopping?: Promise<void>;
  /** Resolves once runPipeline has returned or thrown (a process still starting was stopped then too). */
  ended: Promise<void>;
}

/** The runs of this process that have not ended yet. */
const inProgress = new Set<Running>();
/** Set by stopRunsInProgress: the process is stopping, and starts no run. */
let refusingRuns = false;

/**
 * Stops every run in progress: its relay (a peer's JVM and helpers too),
 * consumers and load. bench/run.ts calls it on SIGINT/SIGTERM before it
 * stops the servers: a peer still connected for logical replication keeps
 * PostgreSQL's fast shutdown waiting, and a JVM would outlive the command.
 */
export async function stopRunsInProgress(): Promise<void> {
  refusingRuns = true;
  const runs = [...inProgress];
  await Promise.all(runs.map((running) => stopRunning(running)));
  // A process that was still starting is stopped when its start returns.
  await Promise.all(runs.map((running) => running.ended));
}

/** Makes processes the run's to stop; a run already stopping stops them at once. */
async function adopt(running: Running, children: readonly ChildProcess[]): Promise<void> {
  running.children.push(...children);
  if (!running.stopping) return;
  for (const child of children) await stopChild(child).catch(() => {});
  throw new OutboxBenchError('SHUTTING_DOWN', 'the run was stopped while its processes were starting');
}

function stopRunning(running: Running): Promise<void> {
  running.stopping ??= stopRunningOnce(running);
  return running.stopping;
}

async function stopRunningOnce(running: Running): Promise<void> {
  for (const timer of running.timers) clearTimeout(timer);
  running.progress.done();
  // A stopped process would never act on the SIGTERM that follows.
  running.resumeConsumer();
  if (running.pausedRelay) signalTree(running.pausedRelay, 'SIGCONT');
  await running.sampler?.stop();
  await running.pool?.destroy();
  for (const child of running.children) await stopChild(child).catch(() => {});
  await running.run.close();
}

/**
 * Samples CPU and lag for the whole run, at the window's exact edges too (so
 * its CPU is read, not interpolated), and prints a progress line a second.
 */
function startSampling(
  running: Running,
  infra: Infra,
  relay: () => ChildProcess | undefined,
  consumer: ConsumerGroup,
  lag: () => Promise<LagReading>,
  at: { startAt: number; prewarmTo: number; measureFrom: number; measureTo: number },
): RunSampler {
  const sampler = new RunSampler({
    cpu: cpuProbe(infra, relay, consumer.children),
    relayMemory: relayMemoryProbe(relay),
    lag,
    walBytes: async () => Number((await running.run.sql<{ lsn: string }[]>`SELECT (pg_current_wal_lsn() - '0/0')::text AS lsn`)[0]?.lsn ?? Number.NaN),
  });
  running.sampler = sampler;
  sampler.start();
  for (const edge of [at.measureFrom, at.measureTo]) running.timers.push(setTimeout(() => sampler.sampleCpu(), Math.max(0, edge - nowMs())));
  let previousDistinct = 0;
  running.timers.push(
    setInterval(() => {
      const latest = consumer.progress();
      const now = nowMs();
      const distinct = latest?.distinct ?? 0;
      running.progress.update({ elapsedS: (now - at.startAt) / 1_000, phase: phaseAt(now, at), ratePerSec: distinct - previousDistinct, lag: sampler.latestLag(), p99Ms: latest?.p99Ms ?? null });
      previousDistinct = distinct;
    }, 1_000),
  );
  return sampler;
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
  // No process of an earlier run is left: this run's all start on one anchor, aligned with the wall clock.
  const stepMs = reanchorClock();
  if (Math.abs(stepMs) > 1_000) log.warn({ stepMs: Math.round(stepMs) }, 'the wall clock moved against the monotonic clock since the last run; re-anchored');
  if (refusingRuns) throw new OutboxBenchError('SHUTTING_DOWN', `run ${context.name} not started: the process is stopping`);
  // The broker stamps each record with its append time, so the consumer can
  // tell the time an event spent reaching Kafka from the time it waited there.
  const run = await openRun({ infra, log, name: context.name, partitions: p.partitions, topicConfig: { 'message.timestamp.type': 'LogAppendTime' }, relay: context.peer ? undefined : relayOf(p) });
  let markEnded = () => {};
  const ended = new Promise<void>((resolve) => (markEnded = resolve));
  const running: Running = { run, children: [], timers: [], resumeConsumer: () => {}, progress: new Progress(context.quiet), ended };
  inProgress.add(running);
  try {
    // Stopping began while the run was being set up.
    if (refusingRuns) throw new OutboxBenchError('SHUTTING_DOWN', `run ${context.name} stopped: the process is stopping`);
    await context.peer?.beforeLoad(run.sql, run.schema);
    const plan: LoadPlan = planLoad(p);
    const stagesPrefix = path.join(context.rawDir, 'stages');
    const launchRelay = async (): Promise<StartedRelay> => {
      const started = context.peer
        ? await context.peer.start(run.sql, run.schema, run.topicPrefix)
        : await startRelayProcess(context.rawDir, run.env({ stagesFile: stagesPrefix }), { describe: p.relayMode });
      await adopt(running, [started.child, ...(started.helpers ?? [])]);
      return started;
    };
    const pausesRelay = p.relayAfterLoad === true && plan.prewarm !== undefined;
    // The hook would run while the relay is stopped, perhaps holding row locks it needs.
    if (pausesRelay && context.beforeRelay) throw new OutboxBenchError('USAGE', 'a drain after a prewarm pauses its relay and takes no beforeRelay hook');
    let relay = p.relayAfterLoad && !pausesRelay ? undefined : await launchRelay();
    // A whole millisecond: intended times travel as text with 3 decimals, and
    // the window's edges must compare the same on both sides.
    const startAt = Math.ceil(nowMs()) + START_DELAY_MS;
    const prewarmTo = startAt + prewarmMs(plan);
    const measureFrom = prewarmTo + p.warmupS * 1_000;
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
      prewarm: plan.prewarm,
      ordersPerWorker: plan.ordersPerWorker,
      commitIntervalMs: p.consumerCommitIntervalMs,
      ...(p.consumerKafkaClient ? { kafkaClient: p.consumerKafkaClient } : {}),
    }, p.consumers ?? 1);
    await adopt(running, consumer.children);
    running.resumeConsumer = scheduleConsumerStall(consumer.children, measureFrom, p);
    const lag = context.peer ? () => context.peer!.lag(run.sql) : () => run.lag();
    const sampler = startSampling(running, infra, () => relay?.child, consumer, lag, { startAt, prewarmTo, measureFrom, measureTo });
    let pausedAt = Number.NaN;
    if (pausesRelay) {
      const warmRelay = relay!.child;
      running.timers.push(
        setTimeout(() => {
          signalTree(warmRelay, 'SIGSTOP');
          running.pausedRelay = warmRelay;
          pausedAt = nowMs();
        }, Math.max(0, measureFrom - PAUSE_LEAD_MS - nowMs())),
      );
    }

    running.pool = loadPool(p.workers);
    const loads = await runLoad(running.pool, { databaseUrl: infra.databaseUrl, schema: run.schema, runTag, plan, startAt, measureFrom, measureTo, p });
    const committed = loads.reduce((sum, r) => sum + r.committed, 0);
    let drainFrom: number | undefined;
    if (!relay) {
      await context.beforeRelay?.(run.sql, run.schema);
      relay = await launchRelay();
      drainFrom = relay.spawnedAt;
    } else if (pausesRelay) {
      if (!running.pausedRelay || !(pausedAt < measureFrom)) {
        throw new OutboxBenchError('CHECK_FAILED', `the relay was paused ${Math.round(pausedAt - measureFrom)} ms after the backlog began (or not at all): the drain would not be one`);
      }
      drainFrom = nowMs();
      signalTree(running.pausedRelay, 'SIGCONT');
      running.pausedRelay = undefined;
    }
    await drainUntilApplied(running, consumer, committed, p, log);
    for (const timer of running.timers) clearTimeout(timer);
    await sampler.stop();
    running.progress.done();
    const memory = peakMemory(infra, relay.child, consumer.children, sampler.peakRelayMemory);
    const final: ConsumerFinal = await consumer.finish();
    await stopChild(relay.child);
    for (const child of consumer.children) await stopChild(child);
    const accounting = account({
      plan,
      startAt,
      measureFrom,
      measureTo,
      loads,
      final,
      sampler,
      memory,
      drainFrom,
      graceMs: p.deliveryGraceMs ?? DEFAULT_GRACE_MS,
      lagFromDelivery: context.peer?.lagFromDelivery === true,
    });
    if (final.foreign > 0 || accounting.unexpected > 0) {
      throw new OutboxBenchError(
        'CHECK_FAILED',
        `${final.foreign} deliveries were not orders of this run's load plan and ${accounting.unexpected} were orders whose writer saw the transaction fail: ` +
          'the run cannot account for them, so its figures are not published',
      );
    }
    const observations = context.peer?.observations?.(accounting.window);
    return {
      ...accounting,
      ...(observations ? { peer: observations } : {}),
      stages: stageHistograms(stagesPrefix, final, loads),
      parameters: p,
      duplicates: final.duplicates,
      errors: [...new Set(loads.flatMap((r) => r.errors))],
      durationOfRunS: Math.round((nowMs() - startAt) / 100) / 10,
    };
  } finally {
    await stopRunning(running);
    inProgress.delete(running);
    markEnded();
  }
}
