/**
 * bench:frontier's section of results/README.md: the decision table first,
 * then the chart of the headline shape, then every subject's figures and the
 * sittings they were measured in.
 */
import type { SittingRecord } from '../../harness/sitting.js';
import { frontier as frontierChart } from '../../report/charts.js';
import { current, f, save, whole, type ReportContext } from '../../report/kit.js';
import { ratioText, sittingTable } from '../drain/rounds.js';
import { decisions, HEAD_TO_HEAD_BUDGET_MS, headToHead, paretoFrontier, subjectFigures, type SubjectFigures, type Spread } from './analysis.js';
import type { FrontierRun } from './measure.js';
import { SHAPES, SUBJECTS, shapeKey, shapeLabel } from './subjects.js';

/** What the frontier scenario writes into its summary's `extra`. */
export interface FrontierResult {
  anchor: string;
  shapes: string[];
  repeats: number;
  runs: FrontierRun[];
  sittings: readonly SittingRecord[];
  incomplete?: string;
}

// Rationale: the shape most services run: one
// event per transaction at a rate well inside every relay's reach.
export const HEADLINE_SHAPE = shapeKey({ eventsPerTransaction: 1, rate: 2_000 });

const spreadText = (s: Spread | null, digits = 1) => (s === null ? 'n/a' : `${f(s.median, digits)} (${f(s.min, digits)}–${f(s.max, digits)})`);
const labelOf = (key: string) => {
  const shape = SHAPES.find((s) => shapeKey(s) === key);
  return shape ? shapeLabel(shape) : key;
};
const isDefault = (subject: string) => SUBJECTS.find((s) => s.key === subject)?.isDefault ?? false;
const operationsOf = (subject: string) => SUBJECTS.find((s) => s.key === subject)?.operations ?? '';
const sittingsOf = (runs: readonly FrontierRun[], figures: SubjectFigures) => {
  const sittings = [...new Set(runs.filter((r) => r.subject === figures.subject && r.shape === figures.shape).map((r) => r.window.sitting))].sort((a, b) => a - b);
  return `${figures.counted} run${figures.counted === 1 ? '' : 's'}, sitting${sittings.length === 1 ? '' : 's'} ${sittings.join(', ')}`;
};

/** The note a frontier stopped before its last round carries wherever its tables go. */
export const incompleteNote = (extra: FrontierResult): string[] => (extra.incomplete ? [`> **Incomplete**: ${extra.incomplete}.`, ''] : []);

/** The decision table: for each shape and p99 budget, the cheapest relay setting that held it in every run. */
export function decisionTable(extra: FrontierResult): string[] {
  const figures = subjectFigures(extra.runs, extra.anchor);
  const rows = decisions(figures, extra.shapes);
  return [
    `| your load | p99 budget | use | with | p99, worst run (ms) | whole-pipeline CPU-s per million events | ÷ ${extra.anchor} | besides the relay | rests on |`,
    '|---|---:|---|---|---:|---:|---:|---|---|',
    ...rows.map((d) => {
      const c = d.choice;
      if (!c) return `| ${labelOf(d.shape)} | ${whole(d.budgetMs)} ms | none measured held it | | | | | | |`;
      return `| ${labelOf(d.shape)} | ${whole(d.budgetMs)} ms | ${c.relay} | ${c.setting} | ${f(c.p99Ms!.max)} | ${spreadText(c.cpuPerMillion, 0)} | ${c.cpuRatio ? ratioText(c.cpuRatio) : 'n/a'} | ${operationsOf(c.subject)} | ${sittingsOf(extra.runs, c)} |`;
    }),
    '',
  ];
}

/**
 * The decision table folded for a first look: a row per p99 budget, a
 * column per load, each cell the relay and setting chosen with its CPU per
 * event, then what each chosen relay asks of you besides itself.
 */
export function decisionGrid(extra: FrontierResult): string[] {
  const rows = decisions(subjectFigures(extra.runs, extra.anchor), extra.shapes);
  const cell = (shape: string, budgetMs: number) => {
    const c = rows.find((d) => d.shape === shape && d.budgetMs === budgetMs)?.choice;
    return c ? `${c.relay}, ${c.setting} · ${f(c.cpuPerMillion!.median, 0)}` : 'none held it';
  };
  const budgets = [...new Set(rows.map((d) => d.budgetMs))];
  const chosen = [...new Set(rows.flatMap((d) => (d.choice ? [d.choice.relay] : [])))];
  return [
    `| p99 budget | ${extra.shapes.map(labelOf).join(' | ')} |`,
    `|---|${extra.shapes.map(() => '---').join('|')}|`,
    ...budgets.map((budgetMs) => `| ${whole(budgetMs)} ms | ${extra.shapes.map((shape) => cell(shape, budgetMs)).join(' | ')} |`),
    '',
    'Each cell: the relay and setting with the least whole-pipeline CPU per event whose every run held the budget, lost nothing and kept up, · its CPU-s per million events. ' +
      `What you run besides the relay: ${chosen.map((relay) => `${relay} — ${operationsOf(SUBJECTS.find((s) => s.relay === relay)!.key)}`).join('. ')}.`,
    '',
  ];
}

/** Our CDC relay, at its cheapest setting within the budget, against the polling relay at its default and against every Debezium setting. */
export function headToHeadTable(extra: FrontierResult): string[] {
  const rows = headToHead(extra.runs, extra.shapes, 'cdc', (s) => (s.relay === 'polling' && isDefault(s.subject)) || s.relay === 'debezium');
  if (rows.length === 0) return [];
  const ratio = (r: Parameters<typeof ratioText>[0] | null) => (r ? ratioText(r) : 'n/a');
  return [
    `**Our CDC relay against the polling relay at its default, and against Debezium.** cdc at its cheapest setting whose p99 held ${whole(HEAD_TO_HEAD_BUDGET_MS)} ms in every run; ` +
      'each ratio is ours ÷ theirs, median [lowest–highest] of the rounds that ran both (below 1: ours is cheaper, or faster).',
    '',
    `| your load | cdc setting | against | whole-pipeline CPU per event ÷ | relay CPU per event ÷ | e2e p99 ÷ | their p99, worst run (ms) |`,
    '|---|---|---|---:|---:|---:|---:|',
    ...rows.map(
      (h) =>
        `| ${labelOf(h.shape)} | ${h.ours ? h.ours.setting : `none held ${whole(HEAD_TO_HEAD_BUDGET_MS)} ms`} | ${h.against.relay}, ${h.against.setting} | ${ratio(h.wholePipelineCpu)} | ${ratio(h.relayCpu)} | ${ratio(h.p99)} | ${h.against.p99Ms ? f(h.against.p99Ms.max) : 'n/a'} |`,
    ),
    '',
  ];
}

function chartOf(context: ReportContext, figures: readonly SubjectFigures[], shape: string): string {
  const relays = [...new Set(figures.map((s) => s.relay))];
  const series = relays.map((relay) => {
    const own = figures.filter((s) => s.relay === relay && s.shape === shape);
    const points = own.filter((s) => s.p99Ms && s.cpuPerMillion && s.counted === s.runs).map((s) => ({ p99Ms: s.p99Ms!.max, cpu: s.cpuPerMillion!.median, label: s.setting }));
    return { name: relay, points, frontier: paretoFrontier(own).map((s) => ({ p99Ms: s.p99Ms!.max, cpu: s.cpuPerMillion!.median })) };
  });
  const chart = frontierChart(series, `CPU per event against p99: ${labelOf(shape)}`, 'whole-pipeline CPU-s per million events', 'each dot a relay setting (worst p99 of its runs, median CPU); lines join each relay\'s settings no other of its own beats on both');
  return save(context.charts, `frontier-${shape}`, chart);
}

function shapeTable(figures: readonly SubjectFigures[], shape: string, anchor: string): string[] {
  return [
    `**${labelOf(shape)}**`,
    '',
    `| relay | setting | runs counted | e2e p50 (ms) | e2e p99 (ms) | whole-pipeline CPU-s / 1M | CPU per event ÷ ${anchor} | p99 ÷ ${anchor} | why a run did not count |`,
    '|---|---|---:|---:|---:|---:|---:|---:|---|',
    ...figures
      .filter((s) => s.shape === shape)
      .map(
        (s) =>
          `| ${s.relay} | ${s.setting}${isDefault(s.subject) ? ' (default)' : ''} | ${s.counted} of ${s.runs} | ${spreadText(s.p50Ms)} | ${spreadText(s.p99Ms)} | ${spreadText(s.cpuPerMillion, 0)} | ` +
          `${s.cpuRatio ? ratioText(s.cpuRatio) : 'n/a'} | ${s.p99Ratio ? ratioText(s.p99Ratio) : 'n/a'} | ${s.failures.join('; ')} |`,
      ),
    '',
  ];
}

export function frontierReport(context: ReportContext, folder: string): string[] {
  const summary = current<FrontierResult>(context, folder);
  const extra = summary?.extra;
  if (!extra) return [];
  const figures = subjectFigures(extra.runs, extra.anchor);
  const lines = [
    '## Latency against cost: which relay for your budget',
    '',
    ...incompleteNote(extra),
    `Each relay at three values of the knob that trades its latency for CPU, at ${extra.shapes.map(labelOf).join('; ')}: ${extra.repeats} runs of each, in rounds of one shape that run every setting once, ` +
      `the anchor (${extra.anchor}) first; each run warmed at its own rate first and measured between two settled CPU probes. ` +
      'CPU is the whole pipeline\'s (PostgreSQL, Kafka, relay, consumer and the load generator) per million events applied in the window. ' +
      'A run counts when it lost nothing and applied 98% of its window in time; a setting is recommended only if every run of it counted, by its worst p99.',
    '',
    ...decisionTable(extra),
    ...headToHeadTable(extra),
  ];
  if (figures.some((s) => s.shape === HEADLINE_SHAPE)) lines.push(`![CPU per event against p99, ${labelOf(HEADLINE_SHAPE)}](${chartOf(context, figures, HEADLINE_SHAPE)})`, '');
  lines.push('<details><summary>Every setting at every shape, and the other shapes\' charts</summary>', '');
  for (const shape of extra.shapes) {
    lines.push(...shapeTable(figures, shape, extra.anchor));
    if (shape !== HEADLINE_SHAPE && figures.some((s) => s.shape === shape)) lines.push(`![CPU per event against p99, ${labelOf(shape)}](${chartOf(context, figures, shape)})`, '');
  }
  lines.push('</details>', '', ...sittingTable(extra.runs.map((r) => r.window), extra.sittings, 'runs'));
  return lines;
}
