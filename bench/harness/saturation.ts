/**
 * Sustained-throughput search: the highest offered rate at which a relay
 * keeps up. A step passes when the writes got in (committed >= 95% of the
 * offered rate), the pipeline delivered as fast as it was fed (>= 95%), the
 * backlog cleared within a few seconds of the load stopping (relay lag
 * stayed bounded instead of growing), nothing was lost, and the end-to-end
 * p99 stayed under the threshold. Rates grow geometrically until a step
 * fails, then bisect between the last pass and the first failure.
 */
import { describeResult } from './format.js';
import { runPipeline, type PipelineContext, type PipelineParameters, type PipelineResult } from './pipeline.js';

export interface SearchOptions {
  startRate: number;
  maxRate: number;
  /** Growth factor between steps before the first failure. */
  growth: number;
  /** Bisection steps after the first failure. */
  bisections: number;
  p99LimitMs: number;
  /** A backlog that takes longer than this to clear after the load stops means lag was growing. */
  maxDrainS: number;
}

export interface SearchStep {
  rate: number;
  eventsPerSec: number;
  committedPerSec: number;
  p99Ms: number;
  drainS: number;
  lost: number;
  /** CPU seconds per million delivered events, by process, at this rate. */
  cpuSecondsPerMillion: Record<string, number | null>;
  passed: boolean;
  /** Why it failed, in words. */
  reasons: string[];
}

export interface SearchResult {
  /** Delivered events/s of the best passing step (0 if none passed). */
  sustainedEventsPerSec: number;
  /** The offered rate of that step. */
  sustainedRate: number;
  steps: SearchStep[];
}

export function judge(rate: number, r: PipelineResult, options: SearchOptions): SearchStep {
  const reasons: string[] = [];
  if (r.committedPerSec < 0.95 * rate) reasons.push(`writes got in at ${r.committedPerSec}/s of ${rate}/s offered`);
  if (r.eventsPerSec < 0.95 * Math.min(rate, r.committedPerSec || rate)) reasons.push(`delivered ${r.eventsPerSec}/s`);
  if (r.drainS > options.maxDrainS) reasons.push(`backlog took ${r.drainS} s to clear (lag grew)`);
  if (r.lost > 0) reasons.push(`${r.lost} lost`);
  if (r.e2eMs.p99 > options.p99LimitMs) reasons.push(`p99 ${r.e2eMs.p99} ms > ${options.p99LimitMs} ms`);
  const cpuSecondsPerMillion = Object.fromEntries(Object.entries(r.cost).map(([component, cost]) => [component, cost.cpuSecondsPerMillionEvents]));
  return { rate, eventsPerSec: r.eventsPerSec, committedPerSec: r.committedPerSec, p99Ms: r.e2eMs.p99, drainS: r.drainS, lost: r.lost, cpuSecondsPerMillion, passed: reasons.length === 0, reasons };
}

export async function searchSustained(
  context: PipelineContext,
  base: PipelineParameters,
  options: SearchOptions,
  onStep: (step: SearchStep, lines: string[]) => void,
): Promise<SearchResult> {
  const steps: SearchStep[] = [];
  let best: SearchStep | undefined;
  let failedAt = Number.POSITIVE_INFINITY;
  const attempt = async (rate: number) => {
    const result = await runPipeline({ ...context, name: `${context.name}-${rate}` }, { ...base, rate });
    const step = judge(rate, result, options);
    steps.push(step);
    onStep(step, describeResult(`${context.name} @ ${rate}/s`, result));
    if (step.passed && (!best || step.rate > best.rate)) best = step;
    if (!step.passed) failedAt = Math.min(failedAt, rate);
    return step.passed;
  };
  for (let rate = options.startRate; rate <= options.maxRate; rate = Math.round(rate * options.growth)) {
    if (!(await attempt(rate))) break;
  }
  for (let i = 0; i < options.bisections && Number.isFinite(failedAt); i++) {
    const low = best?.rate ?? 0;
    const mid = Math.round((low + failedAt) / 2 / 100) * 100;
    if (mid <= low || mid >= failedAt) break;
    await attempt(mid);
  }
  return { sustainedEventsPerSec: best?.eventsPerSec ?? 0, sustainedRate: best?.rate ?? 0, steps };
}

/**
 * The drain rate of a pre-loaded backlog: the whole backlog is written first
 * (1000 orders per transaction, as fast as intake goes) with no relay
 * running, then the relay starts and the run times how long relay and
 * consumer take to deliver all of it.
 */
export async function runDrain(context: PipelineContext, base: PipelineParameters, backlog: number, drainTimeoutS: number): Promise<PipelineResult> {
  // Rationale: offered faster than batched intake goes on this machine (~20-45K/s
  // measured); the rate only shapes how long writing the backlog takes.
  const durationS = Math.max(1, Math.ceil(backlog / 50_000));
  return runPipeline(context, { ...base, rate: backlog / durationS, ordersPerTransaction: 1_000, warmupS: 0, durationS, relayAfterLoad: true, drainTimeoutS });
}
