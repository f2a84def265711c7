/**
 * One end-to-end run: load workers (piscina, open loop) write orders; the
 * relay (its own process) publishes them; the consumer (its own process)
 * applies them once and notes when each was first applied. Then the run
 * drains, and every committed order is accounted for: applied or lost.
 */
import { mkdirSync } from 'node:fs';
import { DEFAULTS, type Config } from '../../src/config.js';
import type { Sql } from '../../src/db.js';
import { OutboxBenchError } from '../../src/errors.js';
import { nowMs, reanchorClock } from '../../src/events.js';
import type { Infra } from '../../src/infra/index.js';
import type { Logger } from '../../src/log.js';
import { OURS } from '../drivers/ours.js';
import type { Evidence, RelayDriver, RunningRelay } from '../drivers/types.js';
import { account, type Accounting } from './accounting.js';
import { driverRunOf, writePathOf } from './driver-run.js';
import type { ConsumerFinal } from './consumer-process.js';
import { checkWorkload, loadPool, runLoad } from './load.js';
import { newRunTag } from './load-ids.js';
import { planLoad, type LoadPlan, type LoadResult } from './load-worker.js';
import type { PipelineParameters } from './parameters.js';
import { startConsumerGroup, stopChild, type ConsumerGroup } from './processes.js';
import { adopt, beginRunning, endRunning, refuseIfStopping, type Running } from './running.js';
import { drainUntilApplied, scheduleConsumerStall, schedulePause, startSampling, timetableOf, type Timetable } from './run-steps.js';
import { openRun, relayOf, type RunSetup } from './run-setup.js';
import { peakMemory, type RunSampler } from './sampler.js';
import { stageHistograms, type StageSummaries } from './stages.js';

export type { LagReading } from '../../src/relay/modes.js';
export type { ProcessCost, TimelinePoint } from './accounting.js';
export type { StageSummaries } from './stages.js';
export { stopRunsInProgress } from './running.js';
export { relayOf };
export { checkWorkload, loadPool, runLoad, subjectsForWorkload } from './load.js';
export type { PipelineParameters } from './parameters.js';

// Rationale: kafkajs' default session timeout is 30 s; a consumer stopped
// longer is expelled from its group and the run measures a rebalance instead.
const MAX_CONSUMER_STALL_MS = 25_000;
// Rationale: an order applied within 2 s after the window still counts as
// delivered in it, unless the caller (the saturation search) sets its own grace.
const DEFAULT_GRACE_MS = 2_000;

export interface PipelineResult extends Accounting {
  /** Where an event's time goes, stage by stage (see stageHistograms). */
  stages: StageSummaries;
  parameters: PipelineParameters;
  duplicates: number;
  errors: string[];
  durationOfRunS: number;
  /** The relay's own readings of the run (RunningRelay.evidence). */
  evidence?: Evidence;
}

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
  /** The relay measured; our relay, in the parameters' relay mode, unless given. */
  driver?: RelayDriver;
  /** The configuration a relay's driver reads (default: resolved from the environment, as the benchmark runner does). */
  config?: Config;
}

function startConsumers(context: PipelineContext, run: RunSetup, p: PipelineParameters, plan: LoadPlan, at: Timetable, runTag: string): Promise<ConsumerGroup> {
  return startConsumerGroup(context.rawDir, {
    databaseUrl: context.infra.databaseUrl,
    kafkaBrokers: [...context.infra.kafkaBrokers],
    schema: run.schema,
    topic: run.topic,
    groupId: `bench-${context.name}-${run.runId}`,
    measureFrom: at.measureFrom,
    measureTo: at.measureTo,
    runTag,
    startAt: at.startAt,
    perWorkerRate: plan.perWorkerRate,
    prewarm: plan.prewarm,
    ordersPerWorker: plan.ordersPerWorker,
    commitIntervalMs: p.consumerCommitIntervalMs,
    fetch: { maxWaitMs: p.fetchMaxWaitMs ?? DEFAULTS.fetchMaxWaitMs, minBytes: p.fetchMinBytes ?? DEFAULTS.fetchMinBytes },
    ...(p.consumerKafkaClient ? { kafkaClient: p.consumerKafkaClient } : {}),
  }, p.consumers ?? 1);
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
  const driver = context.driver ?? OURS;
  const writePath = writePathOf(driver, p.store);
  mkdirSync(context.rawDir, { recursive: true });
  // No process of an earlier run is left: this run's all start on one anchor, aligned with the wall clock.
  const stepMs = reanchorClock();
  if (Math.abs(stepMs) > 1_000) log.warn({ stepMs: Math.round(stepMs) }, 'the wall clock moved against the monotonic clock since the last run; re-anchored');
  refuseIfStopping(context.name, 'not started');
  // The broker stamps each record with its append time, so the consumer can
  // tell the time an event spent reaching Kafka from the time it waited there.
  const run = await openRun({ infra, log, name: context.name, partitions: p.partitions, topicConfig: { 'message.timestamp.type': 'LogAppendTime' }, relay: driver.provisioning(p) });
  const running = beginRunning(run, context.quiet);
  try {
    // Stopping began while the run was being set up.
    refuseIfStopping(context.name, 'stopped');
    return await measure(context, driver, running, p, writePath);
  } finally {
    await endRunning(running);
  }
}

/** The run itself: the relay, the consumers and the load, then the drain until every committed order was applied. */
async function measure(context: PipelineContext, driver: RelayDriver, running: Running, p: PipelineParameters, writePath: string | undefined): Promise<PipelineResult> {
  const { infra, log } = context;
  const { run } = running;
  await checkWorkload({ databaseUrl: infra.databaseUrl, schema: run.schema, p, writePath });
  const driverRun = driverRunOf({ ...context, recordStages: true }, run, p);
  await driver.prepare(driverRun);
  const plan: LoadPlan = planLoad(p);
  const launchRelay = async (): Promise<RunningRelay> => {
    const started = await driver.start(driverRun);
    await adopt(running, [started.child, ...(started.helpers ?? [])]);
    return started;
  };
  const pausesRelay = p.relayAfterLoad === true && plan.prewarm !== undefined;
  // The hook would run while the relay is stopped, perhaps holding row locks it needs.
  if (pausesRelay && context.beforeRelay) throw new OutboxBenchError('USAGE', 'a drain after a prewarm pauses its relay and takes no beforeRelay hook');
  let relay = p.relayAfterLoad && !pausesRelay ? undefined : await launchRelay();
  const at = timetableOf(plan, p);
  const runTag = newRunTag();
  const consumer = await startConsumers(context, run, p, plan, at, runTag);
  await adopt(running, consumer.children);
  running.resumeConsumer = scheduleConsumerStall(consumer.children, at.measureFrom, p);
  const sampler = startSampling(running, infra, () => relay, consumer, () => driver.lag(driverRun), at);
  const pause = pausesRelay ? schedulePause(running, relay!.child, at.measureFrom) : undefined;

  running.pool = loadPool(p.workers);
  const loads = await runLoad(running.pool, { databaseUrl: infra.databaseUrl, schema: run.schema, runTag, plan, startAt: at.startAt, measureFrom: at.measureFrom, measureTo: at.measureTo, p, writePath });
  const committed = loads.reduce((sum, r) => sum + r.committed, 0);
  let drainFrom: number | undefined;
  if (!relay) {
    await context.beforeRelay?.(run.sql, run.schema);
    relay = await launchRelay();
    drainFrom = relay.spawnedAt;
  } else if (pause) {
    drainFrom = pause.resume();
  }
  const { cut } = await drainUntilApplied(running, consumer, committed, p, log);
  return finish({ context, driver, running, p, plan, at, loads, consumer, sampler, relay, drainFrom, drainCut: cut, stagesPrefix: driverRun.stagesPrefix! });
}

/** Stops the run's processes once it drained, and accounts for every committed order. */
async function finish(f: {
  context: PipelineContext;
  driver: RelayDriver;
  running: Running;
  p: PipelineParameters;
  plan: LoadPlan;
  at: Timetable;
  loads: LoadResult[];
  consumer: ConsumerGroup;
  sampler: RunSampler;
  relay: RunningRelay;
  drainFrom: number | undefined;
  drainCut: boolean;
  stagesPrefix: string;
}): Promise<PipelineResult> {
  const { running, sampler, consumer, relay, p, loads } = f;
  for (const timer of running.timers) clearTimeout(timer);
  await sampler.stop();
  running.progress.done();
  const memory = peakMemory(f.context.infra, relay.child, consumer.children, sampler.peakRelayMemory);
  const final: ConsumerFinal = await consumer.finish();
  await stopChild(relay.child);
  for (const child of consumer.children) await stopChild(child);
  const accounting = account({
    plan: f.plan,
    startAt: f.at.startAt,
    measureFrom: f.at.measureFrom,
    measureTo: f.at.measureTo,
    loads,
    final,
    sampler,
    memory,
    drainFrom: f.drainFrom,
    drainCut: f.drainCut,
    graceMs: p.deliveryGraceMs ?? DEFAULT_GRACE_MS,
    lagFromDelivery: f.driver.lagFromDelivery,
  });
  if (final.foreign > 0 || accounting.unexpected > 0) {
    throw new OutboxBenchError(
      'CHECK_FAILED',
      `${final.foreign} deliveries were not orders of this run's load plan and ${accounting.unexpected} were orders whose writer saw the transaction fail: ` +
        'the run cannot account for them, so its figures are not published',
    );
  }
  const evidence = relay.evidence?.(accounting.window);
  return {
    ...accounting,
    ...(evidence ? { evidence } : {}),
    stages: stageHistograms(f.stagesPrefix, final, loads),
    parameters: p,
    duplicates: final.duplicates,
    errors: [...new Set(loads.flatMap((r) => r.errors))],
    durationOfRunS: Math.round((nowMs() - f.at.startAt) / 100) / 10,
  };
}
