/**
 * From bench:frontier's runs to what a user reads: each subject's figures
 * per shape (medians of its repeats, with their range), its ratios to the
 * anchor of its own round, each relay's Pareto frontier of CPU per event
 * against p99, and the decision table.
 */
import { ratiosToAnchor, type AnchorRatio } from '../../harness/sitting.js';
import { midpointSpread, type Spread } from '../../harness/stats.js';
import { groupBy } from '../../report/kit.js';
import type { FrontierRun } from './measure.js';

export type { Spread } from '../../harness/stats.js';

export interface SubjectFigures {
  subject: string;
  relay: string;
  setting: string;
  shape: string;
  /** Runs measured, and of them those that count (nothing lost, kept up). */
  runs: number;
  counted: number;
  /** Why runs did not count. */
  failures: string[];
  p50Ms: Spread | null;
  p99Ms: Spread | null;
  /** Whole-pipeline CPU seconds per million events. */
  cpuPerMillion: Spread | null;
  /** Against the anchor of the same round: whole-pipeline CPU per event, and p99. */
  cpuRatio: AnchorRatio | null;
  p99Ratio: AnchorRatio | null;
}

/** The median as the midpoint of the two middle values for an even count: of two repeats, neither run alone decides. */
function spread(values: readonly number[]): Spread | null {
  return midpointSpread(values) ?? null;
}

/** Every subject's figures at every shape measured, in the order the runs came. */
export function subjectFigures(runs: readonly FrontierRun[], anchor: string): SubjectFigures[] {
  const groups = groupBy(runs, (run) => `${run.shape}\u0000${run.subject}`);
  const byShape = groupBy(runs, (run) => run.shape);
  const ratios = new Map<string, { cpu: AnchorRatio[]; p99: AnchorRatio[] }>();
  for (const [shape, shapeRuns] of byShape) {
    // Only runs that count are compared: a run that lost events or fell behind has no cost or latency worth a ratio.
    const counted = shapeRuns.filter((r) => r.failure === undefined);
    const windowOf = (r: FrontierRun) => r.window;
    ratios.set(shape, {
      cpu: ratiosToAnchor(counted, anchor, (r) => r.subject, windowOf, (r) => r.cpuSecondsPerMillion?.total),
      p99: ratiosToAnchor(counted, anchor, (r) => r.subject, windowOf, (r) => r.e2eMs?.p99),
    });
  }
  return [...groups.values()].map((group) => {
    const first = group[0]!;
    const counted = group.filter((r) => r.failure === undefined);
    const shapeRatios = ratios.get(first.shape);
    return {
      subject: first.subject,
      relay: first.relay,
      setting: first.setting,
      shape: first.shape,
      runs: group.length,
      counted: counted.length,
      failures: group.flatMap((r) => (r.failure === undefined ? [] : [r.failure])),
      p50Ms: spread(counted.flatMap((r) => (r.e2eMs ? [r.e2eMs.p50] : []))),
      p99Ms: spread(counted.flatMap((r) => (r.e2eMs ? [r.e2eMs.p99] : []))),
      cpuPerMillion: spread(counted.flatMap((r) => (typeof r.cpuSecondsPerMillion?.total === 'number' ? [r.cpuSecondsPerMillion.total] : []))),
      cpuRatio: shapeRatios?.cpu.find((r) => r.subject === first.subject) ?? null,
      p99Ratio: shapeRatios?.p99.find((r) => r.subject === first.subject) ?? null,
    };
  });
}

/** Whether a subject may be recommended: every run of it counted, and it has figures. */
export const dependable = (s: SubjectFigures) => s.runs > 0 && s.counted === s.runs && s.p99Ms !== null && s.cpuPerMillion !== null;

/**
 * A relay's Pareto frontier at one shape: its dependable settings that no
 * other of its settings beats on both p99 (the worst repeat) and CPU per
 * event (the median), from the lowest p99 up.
 */
export function paretoFrontier(figures: readonly SubjectFigures[]): SubjectFigures[] {
  const points = figures.filter(dependable);
  const beats = (a: SubjectFigures, b: SubjectFigures) =>
    a.p99Ms!.max <= b.p99Ms!.max && a.cpuPerMillion!.median <= b.cpuPerMillion!.median && (a.p99Ms!.max < b.p99Ms!.max || a.cpuPerMillion!.median < b.cpuPerMillion!.median);
  return points.filter((p) => !points.some((q) => q !== p && beats(q, p))).sort((a, b) => a.p99Ms!.max - b.p99Ms!.max);
}

/**
 * Rationale: the budgets a service states, from "as it happens" to "within
 * a second"; each row answers one of them.
 */
export const P99_BUDGETS_MS = [10, 20, 50, 100, 250, 1_000] as const;

export interface Decision {
  shape: string;
  budgetMs: number;
  /** The cheapest dependable subject whose worst p99 is within the budget; undefined when none is. */
  choice?: SubjectFigures;
}

/**
 * For each shape and p99 budget, the subject with the least whole-pipeline
 * CPU per event (median of its repeats) among those whose every run counted
 * and whose worst p99 is within the budget.
 */
export function decisions(figures: readonly SubjectFigures[], shapes: readonly string[]): Decision[] {
  return shapes.flatMap((shape) =>
    P99_BUDGETS_MS.map((budgetMs) => {
      const choice = cheapestWithin(figures, shape, budgetMs);
      return { shape, budgetMs, ...(choice ? { choice } : {}) };
    }),
  );
}

/** Among the dependable subjects at `shape` (of one relay, if named) whose worst p99 is within the budget, the one with the least CPU per event. */
function cheapestWithin(figures: readonly SubjectFigures[], shape: string, budgetMs: number, relay?: string): SubjectFigures | undefined {
  return figures
    .filter((s) => s.shape === shape && (relay === undefined || s.relay === relay) && dependable(s) && s.p99Ms!.max <= budgetMs)
    .sort((a, b) => a.cpuPerMillion!.median - b.cpuPerMillion!.median)[0];
}

/**
 * Rationale: the p99 a service that wants its events "as they happen" states;
 * our CDC relay's setting in the head-to-head is the cheapest that held it.
 */
export const HEAD_TO_HEAD_BUDGET_MS = 50;

/** Our CDC relay against another subject at one shape: figure over figure in each round that held both. */
export interface HeadToHead {
  shape: string;
  /** cdc's cheapest setting whose every run held HEAD_TO_HEAD_BUDGET_MS (undefined: none did). */
  ours?: SubjectFigures;
  against: SubjectFigures;
  wholePipelineCpu: AnchorRatio | null;
  relayCpu: AnchorRatio | null;
  p99: AnchorRatio | null;
}

/**
 * For each shape, our CDC relay at its cheapest setting within the budget
 * against each subject `against` picks (the polling relay at its default,
 * every Debezium setting): ratios of the whole pipeline's CPU per event, the
 * relay's own, and p99, each taken round by round, as the anchor's ratios are.
 */
export function headToHead(runs: readonly FrontierRun[], shapes: readonly string[], ourRelay: string, against: (s: SubjectFigures) => boolean): HeadToHead[] {
  const figures = subjectFigures(runs, '');
  return shapes.flatMap((shape) => {
    const ours = cheapestWithin(figures, shape, HEAD_TO_HEAD_BUDGET_MS, ourRelay);
    const counted = runs.filter((r) => r.shape === shape && r.failure === undefined);
    return figures
      .filter((s) => s.shape === shape && against(s))
      .map((other) => {
        const ratio = (figure: (run: FrontierRun) => number | null | undefined) =>
          ours ? (ratiosToAnchor(counted, other.subject, (r) => r.subject, (r) => r.window, figure).find((r) => r.subject === ours.subject) ?? null) : null;
        return {
          shape,
          ...(ours ? { ours } : {}),
          against: other,
          wholePipelineCpu: ratio((r) => r.cpuSecondsPerMillion?.total),
          relayCpu: ratio((r) => r.cpuSecondsPerMillion?.relay),
          p99: ratio((r) => r.e2eMs?.p99),
        };
      });
  });
}
