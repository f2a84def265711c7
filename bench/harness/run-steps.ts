/**
 * The steps of a pipeline run that act on a clock: its timetable, the
 * consumer's stall, the relay's pause for a drain, the sampling and the
 * wait for the drain to finish.
 */
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { OutboxBenchError } from '../../src/errors.js';
import { nowMs } from '../../src/events.js';
import type { Infra } from '../../src/infra/index.js';
import type { Logger } from '../../src/log.js';
import type { LagReading } from '../../src/relay/modes.js';
import { prewarmMs, type LoadPlan } from './load-worker.js';
import type { PipelineParameters } from './parameters.js';
import { signalTree, type ConsumerGroup } from './processes.js';
import type { Running } from './running.js';
import { cpuProbe, relayMemoryProbe, RunSampler, type RelayProcesses } from './sampler.js';

// Rationale: the workers must be up and connected before their first order
// is due, or the first second measures thread start-up.
const START_DELAY_MS = 2_000;
// Rationale: a relay paused for a drain after a prewarm stops this long
// before the backlog's first order is due (its transaction is sent later
// still, when its last order is due), so that a timer fired a little late
// still pauses it before any backlog event exists; the prewarm's last 50 ms
// of events wait out the pause and are left out of the drain's figures.
const PAUSE_LEAD_MS = 50;

/** When a run's phases begin and end (epoch ms): the load's start, the prewarm's end, the measured window. */
export interface Timetable {
  startAt: number;
  prewarmTo: number;
  measureFrom: number;
  measureTo: number;
}

export function timetableOf(plan: LoadPlan, p: PipelineParameters): Timetable {
  // A whole millisecond: intended times travel as text with 3 decimals, and
  // the window's edges must compare the same on both sides.
  const startAt = Math.ceil(nowMs()) + START_DELAY_MS;
  const prewarmTo = startAt + prewarmMs(plan);
  const measureFrom = prewarmTo + p.warmupS * 1_000;
  return { startAt, prewarmTo, measureFrom, measureTo: measureFrom + p.durationS * 1_000 };
}

/** SIGSTOPs the consumer in the middle of the measured window; returns a function that undoes it early. */
export function scheduleConsumerStall(consumers: readonly ChildProcess[], measureFrom: number, p: PipelineParameters): () => void {
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
 * drainTimeoutS, or drainLimitS passed (then it says the drain was cut:
 * what is missing may still be on its way); a run being stopped ends the
 * wait at once (its consumers are gone, so nothing would move again).
 */
export async function drainUntilApplied(running: Running, consumer: ConsumerGroup, committed: number, p: PipelineParameters, log: Logger): Promise<{ cut: boolean }> {
  const started = performance.now();
  let lastDistinct = -1;
  let stalledSince = started;
  for (;;) {
    if (running.stopping) throw new OutboxBenchError('SHUTTING_DOWN', 'the run was stopped while it drained');
    const distinct = consumer.progress()?.distinct ?? 0;
    if (distinct >= committed) return { cut: false };
    if (distinct !== lastDistinct) {
      lastDistinct = distinct;
      stalledSince = performance.now();
    } else if (performance.now() - stalledSince > p.drainTimeoutS * 1_000) {
      log.warn({ distinct, committed }, 'drain timed out: some committed orders never arrived');
      return { cut: false };
    }
    if (p.drainLimitS !== undefined && performance.now() - started > p.drainLimitS * 1_000) {
      log.warn({ distinct, committed, drainLimitS: p.drainLimitS }, 'drain cut at its limit while orders still arrived');
      return { cut: true };
    }
    await sleep(200);
  }
}

function phaseAt(now: number, at: Timetable): string {
  const { startAt, prewarmTo, measureFrom, measureTo } = at;
  if (now < startAt) return 'start';
  if (now < prewarmTo) return 'prewarm';
  if (now < measureFrom) return 'warm-up';
  return now < measureTo ? 'measure' : 'drain';
}

/**
 * Samples CPU and lag for the whole run, at the window's exact edges too (so
 * its CPU is read, not interpolated), and prints a progress line a second.
 */
export function startSampling(
  running: Running,
  infra: Infra,
  relay: () => RelayProcesses | undefined,
  consumer: ConsumerGroup,
  lag: () => Promise<LagReading>,
  at: Timetable,
): RunSampler {
  const sampler = new RunSampler({
    cpu: cpuProbe(infra, relay, consumer.children),
    relayMemory: relayMemoryProbe(() => relay()?.child),
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

/**
 * Pauses (SIGSTOP, its whole process tree) a warm relay just before the
 * drain's backlog begins; `resume` continues it once the backlog is written
 * and returns the drain's time origin.
 */
export function schedulePause(running: Running, relay: ChildProcess, measureFrom: number): { resume(): number } {
  let pausedAt = Number.NaN;
  running.timers.push(
    setTimeout(() => {
      signalTree(relay, 'SIGSTOP');
      running.pausedRelay = relay;
      pausedAt = nowMs();
    }, Math.max(0, measureFrom - PAUSE_LEAD_MS - nowMs())),
  );
  return {
    resume() {
      if (!running.pausedRelay || !(pausedAt < measureFrom)) {
        throw new OutboxBenchError('CHECK_FAILED', `the relay was paused ${Math.round(pausedAt - measureFrom)} ms after the backlog began (or not at all): the drain would not be one`);
      }
      const drainFrom = nowMs();
      signalTree(running.pausedRelay, 'SIGCONT');
      running.pausedRelay = undefined;
      return drainFrom;
    },
  };
}
