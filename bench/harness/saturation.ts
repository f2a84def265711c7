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
 * down by the same factor until one passes). The search then brackets the
 * limit: [the highest rate that passed, the lowest that failed], bisected
 * until the bracket is within its resolution; the top of the bracket is run
 * once more. A failed confirmation is a failure: the bracket's top comes down
 * to it and the bisection goes on from the next lower passing rate, so the
 * published rate passed twice and the lowest failure is at most one
 * resolution above it, or the search says how wide its bracket stayed.
 */
import { OutboxBenchError } from '../../src/errors.js';
import { describeResult } from '../report/format.js';
import type { PrewarmParameters } from './load-worker.js';
import type { Evidence } from '../drivers/types.js';
import { runPipeline, type PipelineContext, type PipelineParameters, type PipelineResult } from './pipeline.js';

/** Shortest measured window a step may have, s. */
export const MIN_STEP_S = 20;
/** Share of the window's orders that must be applied by its end plus the p99 limit. */
export const MIN_DELIVERED_SHARE = 0.98;
/** Largest lag growth allowed, as a share of the offered rate, per second. */
export const MAX_LAG_SLOPE_SHARE = 0.005;

/** Default width of the final bracket, as a share of its bottom. */
// Rationale: 5% is finer than the spread of repeated runs on these hosts
// (10-20%), so the search is never what limits a comparison; each halving
// costs one more step (at least 20 s), about four after a 1.6x growth.
export const SEARCH_RESOLUTION = 0.05;

// Rationale: a relay that passes a rate's first run and fails its second at
// every rate near its limit makes each bisection end in a failed
// confirmation; 24 steps of at least 20 s bound a search to about 15 minutes
// on this machine. Past it the search only confirms downward and publishes
// the bracket it reached.
const MAX_SEARCH_STEPS = 24;

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
  /** Width the bracket is bisected to, as a share of its bottom (default SEARCH_RESOLUTION). */
  resolution?: number;
  /** Most steps a search runs before it only confirms downward (default MAX_SEARCH_STEPS). */
  maxSteps?: number;
  p99LimitMs: number;
  /** The relay's own account of a run's losses (RelayDriver.explainLoss), named beside them. */
  explainLoss?: (evidence: Evidence) => string | undefined;
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
  /**
   * The lowest rate that failed (a search step or a confirmation) above the
   * sustained rate; null when none did up to the search's maximum.
   */
  lowestFailedRate: number | null;
  /** The width the search was asked to reach, as a share of the sustained rate. */
  resolution: number;
  /** The width it reached, (lowestFailedRate - sustainedRate) / sustainedRate; null without a bracket. */
  bracketWidth: number | null;
  steps: SearchStep[];
}

/**
 * How far a search's limit may lie above its sustained rate: the lowest rate
 * above it that failed (a search step or a confirmation), and that rate's
 * distance above it as a share of it. Read from the steps, so a result
 * published before the search recorded its bracket gets one too.
 */
export function bracketOf(sustainedRate: number, steps: readonly Pick<SearchStep, 'rate' | 'passed'>[]): { lowestFailedRate: number | null; width: number | null } {
  const failed = steps.filter((s) => !s.passed && s.rate > sustainedRate).map((s) => s.rate);
  if (failed.length === 0) return { lowestFailedRate: null, width: null };
  const lowestFailedRate = Math.min(...failed);
  return { lowestFailedRate, width: sustainedRate > 0 ? Math.round(((lowestFailedRate - sustainedRate) / sustainedRate) * 1_000) / 1_000 : null };
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
  // The relay's own account goes with the missing orders, whether the drain ran its course (lost) or was cut (undrained).
  const explained = r.lost + (r.undrained ?? 0) > 0 && r.evidence ? options.explainLoss?.(r.evidence) : undefined;
  const because = explained ? ` (${explained})` : '';
  if (r.lost > 0) reasons.push(`${r.lost} lost${because}`);
  if (r.undrained) reasons.push(`${r.undrained} not applied when the drain was cut ${r.parameters.drainLimitS} s after the load (late or lost: not told apart)${r.lost > 0 ? '' : because}`);
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

/** A step the search asks for: a rate, and whether it is a first run or the confirmation of a passed one. */
export interface SearchAttempt {
  rate: number;
  attempt: SearchStep['attempt'];
}

/**
 * The search as a plan: it yields the next step to run, is told whether it
 * passed, and returns the sustained rate. Stepped by one relay's runs
 * (searchSustained) or by several relays' in turn (the peers comparison,
 * round-robin); a stopped search is resumed by telling a new plan the
 * outcomes it had, since the same outcomes always ask for the same steps.
 */
export function* searchPlan(options: Pick<SearchOptions, 'startRate' | 'maxRate' | 'minRate' | 'growth' | 'resolution' | 'maxSteps'>): Generator<SearchAttempt, number, boolean> {
  const resolution = options.resolution ?? SEARCH_RESOLUTION;
  const maxSteps = options.maxSteps ?? MAX_SEARCH_STEPS;
  const steps: { rate: number; attempt: SearchStep['attempt']; passed: boolean }[] = [];
  function* attempt(rate: number, kind: SearchStep['attempt']): Generator<SearchAttempt, boolean, boolean> {
    const passed = yield { rate, attempt: kind };
    steps.push({ rate, attempt: kind, passed });
    return passed;
  }
  // Rates that passed a search step; a rate whose confirmation failed is at or above failedAt.
  const passedBelow = (limit: number) => Math.max(0, ...steps.filter((s) => s.passed && s.attempt === 'search' && s.rate < limit).map((s) => s.rate));
  let failedAt = Number.POSITIVE_INFINITY;
  for (let rate = options.startRate; rate <= options.maxRate; rate = Math.round(rate * options.growth)) {
    if (!(yield* attempt(rate, 'search'))) {
      failedAt = rate;
      break;
    }
  }
  // A start above the limit steps down by the same factor until a step
  // passes, so the bisections start from a bracket one factor wide (halving
  // from the start would leave the limit anywhere in a factor of 2 or more).
  for (let rate = Math.round(failedAt / options.growth); Number.isFinite(failedAt) && passedBelow(failedAt) === 0 && rate >= (options.minRate ?? MIN_SEARCH_RATE); rate = Math.round(rate / options.growth)) {
    if (!(yield* attempt(rate, 'search'))) failedAt = rate;
  }
  for (let low = passedBelow(failedAt); low > 0; low = passedBelow(failedAt)) {
    // Bisections narrow the bracket; with no failure there is none, and rates round to 10 (or 100) apart.
    while (Number.isFinite(failedAt) && (failedAt - low) / low > resolution && steps.length < maxSteps) {
      const mid = roundRate((low + failedAt) / 2);
      if (mid <= low || mid >= failedAt) break;
      if (yield* attempt(mid, 'search')) low = mid;
      else failedAt = mid;
    }
    if (yield* attempt(low, 'confirm')) return low;
    failedAt = low;
  }
  return 0;
}

/** A search's result from its steps and the rate its plan returned. */
export function searchResultOf(sustainedRate: number, steps: SearchStep[], resolution = SEARCH_RESOLUTION): SearchResult {
  const { lowestFailedRate, width } = bracketOf(sustainedRate, steps);
  return { sustainedRate, lowestFailedRate, resolution, bracketWidth: width, steps };
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
  const plan = searchPlan(options);
  for (let next = plan.next(); ; ) {
    if (next.done) return searchResultOf(next.value, steps, options.resolution);
    const { rate, attempt } = next.value;
    const result = await (options.run ?? runPipeline)(
      { ...context, name: `${context.name}-${rate}${attempt === 'confirm' ? '-confirm' : ''}` },
      { ...base, rate, deliveryGraceMs: options.p99LimitMs, ...(options.prewarm ? { prewarm: options.prewarm(rate) } : {}) },
    );
    const step = judge(rate, attempt, result, options);
    steps.push(step);
    options.onResult?.(step, result);
    onStep(step, describeResult(`${context.name} @ ${rate}/s${attempt === 'confirm' ? ' (confirmation)' : ''}`, result));
    next = plan.next(step.passed);
  }
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
