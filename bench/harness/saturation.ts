/**
 * Sustained-throughput search: the highest offered rate a relay keeps up
 * with, reported as that offered rate (never as a delivered count, which a
 * late warm-up backlog can push above what was offered).
 *
 * A step passes when, over its measured window (at least 20 s):
 *  - at least 98% of the orders intended in the window were applied by the
 *    window's end plus the p99 limit;
 *  - the relay lag did not grow: its least-squares slope over the window is
 *    at most 0.5% of the offered rate per second (CDC lag in WAL bytes is
 *    converted to events with the WAL bytes per event measured in the window);
 *  - nothing was lost;
 *  - the end-to-end p99 stayed under the limit.
 * Rates grow geometrically until a step fails (a first step that fails steps
 * down by the same factor until one passes), then bisect between the last
 * pass and the first failure. The highest passing rate is run once more; if
 * that confirmation fails, the next lower passing rate is confirmed instead.
 */
import { OutboxBenchError } from '../../src/errors.js';
import { describeResult } from '../report/format.js';
import type { PrewarmParameters } from './load-worker.js';
import { runPipeline, type PipelineContext, type PipelineParameters, type PipelineResult } from './pipeline.js';

/** Shortest measured window a step may have, s. */
export const MIN_STEP_S = 20;
/** Share of the window's orders that must be applied by its end plus the p99 limit. */
export const MIN_DELIVERED_SHARE = 0.98;
/** Largest lag growth allowed, as a share of the offered rate, per second. */
export const MAX_LAG_SLOPE_SHARE = 0.005;

// Rationale: below 100 events/s a 20 s window holds too few events for the
// share and slope tests to mean anything; a relay slower than that at a
// point reports that no rate passed. Longer steps may go lower (minRate).
const MIN_SEARCH_RATE = 100;

/**
 * A rate to run at: to the nearest 100 from 1,000/s, to the nearest 10 below
 * it, so that a slow relay's steps (and 50% and 80% of its maximum) stay
 * distinct and below its limit.
 */
export function roundRate(rate: number): number {
  const step = rate >= 1_000 ? 100 : 10;
  return Math.max(10, Math.round(rate / step) * step);
}

export interface SearchOptions {
  startRate: number;
  maxRate: number;
  /** The lowest rate a start above the limit steps down to (default 100/s, for 20 s steps). */
  minRate?: number;
  /** Growth factor between steps before the first failure. */
  growth: number;
  /** Bisection steps after the first failure. */
  bisections: number;
  p99LimitMs: number;
  /** A prewarm before each step at this rate (a JVM's relay: a minute at half the step's rate, at most 1,000/s). */
  prewarm?: (rate: number) => PrewarmParameters;
  /** Runs one step (default: runPipeline); tests pass their own. */
  run?: (context: PipelineContext, p: PipelineParameters) => Promise<PipelineResult>;
  /** Sees each step's full result (the relay's own evidence), after it was judged. */
  onResult?: (step: SearchStep, result: PipelineResult) => void;
}

export interface SearchStep {
  rate: number;
  /** `search` while stepping and bisecting, `confirm` for the second run of a passing rate. */
  attempt: 'search' | 'confirm';
  committedPerSec: number;
  /** Applied per second inside the window (may exceed the rate when warm-up backlog arrives late). */
  eventsPerSec: number;
  /** Share of the orders intended in the window applied by its end plus the p99 limit. */
  deliveredShare: number;
  /** Least-squares slope of the relay lag over the window, events per second; null if unreadable. */
  lagSlopeEventsPerSec: number | null;
  /** The slope allowed at this rate. */
  lagSlopeLimit: number;
  p50Ms: number;
  p99Ms: number;
  lost: number;
  /** CPU seconds per million events applied in the window, by process. */
  cpuSecondsPerMillion: Record<string, number | null>;
  passed: boolean;
  /** Why it failed, in words. */
  reasons: string[];
}

export interface SearchResult {
  /** The offered rate of the highest step that passed twice (0 if none did). */
  sustainedRate: number;
  steps: SearchStep[];
}

export function judge(rate: number, attempt: SearchStep['attempt'], r: PipelineResult, options: SearchOptions): SearchStep {
  const reasons: string[] = [];
  const share = r.windowDelivery.intended === 0 ? 0 : r.windowDelivery.deliveredByDeadline / r.windowDelivery.intended;
  const slopeLimit = MAX_LAG_SLOPE_SHARE * rate;
  const slope = r.lag.slopeEventsPerSec;
  if (share < MIN_DELIVERED_SHARE) {
    reasons.push(`${(share * 100).toFixed(1)}% of the window's orders applied within ${options.p99LimitMs} ms of its end (needs ${MIN_DELIVERED_SHARE * 100}%)`);
  }
  if (slope === null) reasons.push('relay lag could not be read');
  else if (slope > slopeLimit) reasons.push(`lag grew ${slope.toFixed(0)} events/s per s (limit ${slopeLimit.toFixed(0)})`);
  if (r.lost > 0) reasons.push(`${r.lost} lost`);
  if (r.e2eMs.p99 >= options.p99LimitMs) reasons.push(`p99 ${r.e2eMs.p99} ms >= ${options.p99LimitMs} ms`);
  return {
    rate,
    attempt,
    committedPerSec: r.committedPerSec,
    eventsPerSec: r.eventsPerSec,
    deliveredShare: Math.round(share * 10_000) / 10_000,
    lagSlopeEventsPerSec: slope,
    lagSlopeLimit: Math.round(slopeLimit * 10) / 10,
    p50Ms: r.e2eMs.p50,
    p99Ms: r.e2eMs.p99,
    lost: r.lost,
    cpuSecondsPerMillion: Object.fromEntries(Object.entries(r.cost).map(([component, cost]) => [component, cost.cpuSecondsPerMillionEvents])),
    passed: reasons.length === 0,
    reasons,
  };
}

export async function searchSustained(
  context: PipelineContext,
  base: PipelineParameters,
  options: SearchOptions,
  onStep: (step: SearchStep, lines: string[]) => void,
): Promise<SearchResult> {
  if (base.durationS < MIN_STEP_S) {
    throw new OutboxBenchError('USAGE', `a sustained-rate step needs at least ${MIN_STEP_S} s measured (--duration-s ${base.durationS} given)`);
  }
  const steps: SearchStep[] = [];
  const attempt = async (rate: number, kind: SearchStep['attempt']) => {
    const result = await (options.run ?? runPipeline)(
      { ...context, name: `${context.name}-${rate}${kind === 'confirm' ? '-confirm' : ''}` },
      { ...base, rate, deliveryGraceMs: options.p99LimitMs, ...(options.prewarm ? { prewarm: options.prewarm(rate) } : {}) },
    );
    const step = judge(rate, kind, result, options);
    steps.push(step);
    options.onResult?.(step, result);
    onStep(step, describeResult(`${context.name} @ ${rate}/s${kind === 'confirm' ? ' (confirmation)' : ''}`, result));
    return step.passed;
  };
  const passedRates = () => [...new Set(steps.filter((s) => s.passed && s.attempt === 'search').map((s) => s.rate))].sort((a, b) => b - a);
  let failedAt = Number.POSITIVE_INFINITY;
  for (let rate = options.startRate; rate <= options.maxRate; rate = Math.round(rate * options.growth)) {
    if (!(await attempt(rate, 'search'))) {
      failedAt = rate;
      break;
    }
  }
  // A start above the limit steps down by the same factor until a step
  // passes, so the bisections start from a bracket one factor wide (halving
  // from the start would leave the limit anywhere in a factor of 2 or more).
  for (let rate = Math.round(failedAt / options.growth); Number.isFinite(failedAt) && passedRates().length === 0 && rate >= (options.minRate ?? MIN_SEARCH_RATE); rate = Math.round(rate / options.growth)) {
    if (!(await attempt(rate, 'search'))) failedAt = rate;
  }
  // Bisections narrow a bracket: with no passing rate there is none, and a
  // rate below minRate would be one its window cannot judge.
  for (let i = 0; i < options.bisections && Number.isFinite(failedAt); i++) {
    const low = passedRates()[0];
    if (low === undefined) break;
    const mid = roundRate((low + failedAt) / 2);
    if (mid <= low || mid >= failedAt) break;
    if (!(await attempt(mid, 'search'))) failedAt = mid;
  }
  for (const rate of passedRates()) {
    if (await attempt(rate, 'confirm')) return { sustainedRate: rate, steps };
  }
  return { sustainedRate: 0, steps };
}

/**
 * The drain of a pre-loaded backlog: the whole backlog is written first
 * (1,000 orders per transaction, as fast as intake goes) with no relay
 * running (or, after a prewarm, with the warm relay paused), then the relay
 * is spawned (continued); the result's `drain` holds the time to
 * its first event and the steady rate between 10% and 90% of the backlog.
 */
export async function runDrain(context: PipelineContext, base: PipelineParameters, backlog: number, drainTimeoutS: number): Promise<PipelineResult> {
  // Rationale: offered faster than batched intake goes on this machine (~20-45K/s
  // measured); the rate only shapes how long writing the backlog takes.
  const durationS = Math.max(1, Math.ceil(backlog / 50_000));
  // A prewarm keeps the base's transactions: a warm relay has seen the load it is measured under, not 1,000-order bursts.
  const prewarm = base.prewarm ? { ordersPerTransaction: base.ordersPerTransaction, ...base.prewarm } : undefined;
  return runPipeline(context, { ...base, rate: backlog / durationS, ordersPerTransaction: 1_000, warmupS: 0, durationS, relayAfterLoad: true, drainTimeoutS, ...(prewarm ? { prewarm } : {}) });
}

/** A run's CPU seconds per million events, by process, as the drain figures publish them. */
export function cpuPerMillionByProcess(result: PipelineResult): Record<string, number | null> {
  return Object.fromEntries(Object.entries(result.cost).map(([component, cost]) => [component, cost.cpuSecondsPerMillionEvents]));
}
