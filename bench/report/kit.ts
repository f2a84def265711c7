/**
 * What every section of results/README.md is built with: the summaries
 * (results/<folder>/summary.json), number formatting, chart files, and the
 * rule that labels results measured under the harness's earlier rules.
 * Each scenario writes its own section from its own summary type
 * (Scenario.report); bench/report.ts puts the sections together.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Environment } from '../harness/environment.js';
import type { RunSummary } from '../harness/summary.js';
import type { Chart } from './charts.js';

/** A summary.json; `extra` is the scenario's own result type. */
export interface Summary<Extra = unknown> {
  scenario: string;
  title: string;
  date: string;
  command: string;
  parameters: RunSummary['parameters'];
  runs: RunSummary[];
  extra?: Extra;
  environment: Environment;
}

export interface ReportContext {
  /** Every summary in the results folder, by folder name. */
  summaries: Map<string, Summary>;
  /** Where chart files go (results/charts). */
  charts: string;
}

export function loadSummaries(dir: string): Map<string, Summary> {
  const summaries = new Map<string, Summary>();
  if (!existsSync(dir)) return summaries;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name, 'summary.json');
    if (entry.isDirectory() && existsSync(file)) summaries.set(entry.name, JSON.parse(readFileSync(file, 'utf8')) as Summary);
  }
  return summaries;
}

/** A number for a table: n/a when missing, whole with separators from 100 on. */
export const f = (v: number | null | undefined, digits = 1) => (v === null || v === undefined ? 'n/a' : v >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(digits));
/** A figure always printed whole, with thousands separators: offered rates, and milliseconds where a fraction would be noise. */
export const whole = (v: number | null | undefined) => (v === null || v === undefined ? 'n/a' : Math.round(v).toLocaleString('en-US'));

/**
 * Writes a chart as SVG, PNG and its ECharts option (JSON, for the
 * interactive page); returns the PNG's path relative to results/. A function
 * in the option (an axis label formatter) is kept as its source, which the
 * page turns back into a function.
 */
export function save(dir: string, name: string, chart: Chart): string {
  writeFileSync(path.join(dir, `${name}.svg`), chart.svg);
  writeFileSync(path.join(dir, `${name}.png`), chart.png);
  const option = JSON.stringify(chart.option, (_key, value: unknown) => (typeof value === 'function' ? { $function: value.toString() } : value));
  writeFileSync(path.join(dir, `${name}.json`), `${option}\n`);
  return `charts/${name}.png`;
}

/**
 * The summary in `folder` if it was measured under the current rules, typed
 * as its scenario's result. Sections built from these read only the current
 * shape; a legacy summary of such a scenario is listed as not shown.
 */
export function current<Extra>(context: ReportContext, folder: string): Summary<Extra> | undefined {
  const summary = context.summaries.get(folder);
  return summary && !isLegacy(summary) ? (summary as Summary<Extra>) : undefined;
}

/** The summary in `folder`, current or legacy (a section that labels legacy results itself). */
export function anySummary<Extra>(context: ReportContext, folder: string): Summary<Extra> | undefined {
  return context.summaries.get(folder) as Summary<Extra> | undefined;
}

/**
 * Summaries written by the harness before its measurement rules were
 * tightened (their environment has no server settings) are shown, but
 * labelled: their drain clocks, CPU windows and end points differ.
 */
export function isLegacy(summary: Summary): boolean {
  return summary.environment.postgresSettings === undefined;
}

export function legacyNote(summary: Summary): string[] {
  if (!isLegacy(summary)) return [];
  return [
    `> **Measured under the earlier rules** (${summary.date.slice(0, 10)}, commit ${summary.environment.gitCommit.slice(0, 10)}): drain clocks started ` +
      'when the relay printed its start-up line, CPU was taken from before the load to after the drain and divided by every delivered event, ' +
      'latency ended at the consumer\'s receipt, and a sustained rate was the best step\'s delivered count. Not comparable with the sections ' +
      `above; re-run with \`${summary.command}\` to measure it under the current ones.`,
    '',
  ];
}

export function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    let group = groups.get(k);
    if (!group) groups.set(k, (group = []));
    group.push(item);
  }
  return groups;
}

