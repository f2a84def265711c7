/**
 * Two results folders side by side: per scenario and relay, the change in
 * throughput, latency percentiles and CPU per event, each side's spread, and
 * a verdict per figure. `bench/compare.ts` is its command line.
 *
 * The verdict rule: a figure changed when its median moved by more than the
 * noise, and the noise is the larger of 5% and each side's own spread
 * (max - min over its repeats, relative to its median); a side measured once
 * has no spread to show, so 10% stands in for it. Anything inside is "within
 * noise". The rule is printed with every comparison.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { probesDiffer, type Environment } from '../harness/environment.js';
import { loadSummaries, type Summary } from './kit.js';

// Rationale: repeats of one configuration on this 2-core machine differ by
// 1-4% in throughput and more in tail latency (results/cdc spread: p99 9.8
// to 11.4 ms); a change smaller than 5% cannot be told from that.
const NOISE_FLOOR = 0.05;
// Rationale: a single run shows no spread of its own; twice the floor keeps a
// one-off reading from being called a change on the strength of one sample.
const SINGLE_RUN_NOISE = 0.1;

export const VERDICT_RULE =
  `a figure is better or worse when its median moved by more than the noise: the larger of ${NOISE_FLOOR * 100}% and each side's spread ` +
  `(max - min of its repeats over their median; ${SINGLE_RUN_NOISE * 100}% for a side measured once); otherwise within noise`;

export type Verdict = 'better' | 'worse' | 'within noise';

export interface FigureComparison {
  scenario: string;
  subject: string;
  figure: string;
  /** Which way is better. */
  better: 'higher' | 'lower';
  a: number[];
  b: number[];
  /** (median b - median a) / median a. */
  change: number;
  noise: number;
  verdict: Verdict;
}

export interface EnvironmentDifference {
  field: string;
  a: string;
  b: string;
}

export interface Comparison {
  figures: FigureComparison[];
  /** Scenarios found on one side only, or with no figures this command reads. */
  notCompared: { scenario: string; reason: string }[];
  /** Fields of the machine and servers that differ between the sides (the refusal's reason). */
  environment: EnvironmentDifference[];
  commits: { a: string[]; b: string[] };
  /** Folders measured with uncommitted changes, per side. */
  dirty: { a: string[]; b: string[] };
}

interface Figure {
  subject: string;
  figure: string;
  better: 'higher' | 'lower';
  samples: number[];
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function relativeSpread(values: readonly number[]): number {
  if (values.length < 2) return SINGLE_RUN_NOISE;
  const m = median(values);
  return m === 0 ? 0 : (Math.max(...values) - Math.min(...values)) / Math.abs(m);
}

/** The verdict on one figure, by the rule above. */
export function judge(a: readonly number[], b: readonly number[], better: 'higher' | 'lower'): { change: number; noise: number; verdict: Verdict } {
  const ma = median(a);
  const mb = median(b);
  const change = ma === 0 ? (mb === 0 ? 0 : Infinity) : (mb - ma) / Math.abs(ma);
  const noise = Math.max(NOISE_FLOOR, relativeSpread(a), relativeSpread(b));
  if (Math.abs(change) <= noise) return { change, noise, verdict: 'within noise' };
  const up = change > 0;
  return { change, noise, verdict: up === (better === 'higher') ? 'better' : 'worse' };
}

const numbers = (values: readonly (number | null | undefined)[]): number[] => values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v));

/** Steady-load runs (polling, cdc, skip-locked, peers, fastest-path): every repeat's headline figures. */
function runFigures(summary: Summary): Figure[] {
  return summary.runs.flatMap((run) => {
    const spread = run.spread;
    const figures: Figure[] = [
      { subject: run.name, figure: 'events/s', better: 'higher', samples: numbers(spread?.eventsPerSec ?? [run.eventsPerSec]) },
      { subject: run.name, figure: 'e2e p50 ms', better: 'lower', samples: numbers(spread?.e2eP50Ms ?? [run.e2eMs?.p50]) },
      { subject: run.name, figure: 'e2e p99 ms', better: 'lower', samples: numbers(spread?.e2eP99Ms ?? [run.e2eMs?.p99]) },
      { subject: run.name, figure: 'e2e p99.9 ms', better: 'lower', samples: numbers(spread?.e2eP999Ms ?? [run.e2eMs?.p999]) },
      { subject: run.name, figure: 'CPU-s per million', better: 'lower', samples: numbers(spread?.cpuSecondsPerMillion ?? [run.cpuSecondsPerMillion?.total]) },
    ];
    return figures;
  });
}

interface DrainFiguresLike {
  eventsPerSec?: number;
  timeToFirstEventS?: number;
  cpuSecondsPerMillion?: Record<string, number | null>;
  jsThreadUsPerEvent?: number | null;
}

/** Drains (results/drain): each repeat of a relay and Kafka client, its rate, first event and CPU. */
function drainFigures(summary: Summary): Figure[] {
  const runs = (summary.extra as { runs?: { strategy: string; kafkaClient?: string; relay?: DrainFiguresLike }[] } | undefined)?.runs ?? [];
  const bySubject = new Map<string, DrainFiguresLike[]>();
  for (const run of runs) {
    if (!run.relay) continue;
    const subject = run.kafkaClient ? `${run.strategy} (${run.kafkaClient})` : run.strategy;
    bySubject.set(subject, [...(bySubject.get(subject) ?? []), run.relay]);
  }
  const cpu = (r: DrainFiguresLike) => (r.cpuSecondsPerMillion ? numbers(Object.values(r.cpuSecondsPerMillion)).reduce((s, v) => s + v, 0) : undefined);
  return [...bySubject].flatMap(([subject, relays]): Figure[] => [
    { subject, figure: 'drain events/s', better: 'higher', samples: numbers(relays.map((r) => r.eventsPerSec)) },
    { subject, figure: 'first event s', better: 'lower', samples: numbers(relays.map((r) => r.timeToFirstEventS)) },
    { subject, figure: 'CPU-s per million', better: 'lower', samples: numbers(relays.map(cpu)) },
    // The relay's JavaScript thread: what one relay process cannot scale past.
    { subject, figure: 'relay JS thread µs per event', better: 'lower', samples: numbers(relays.map((r) => r.jsThreadUsPerEvent)) },
  ]);
}

/** The saturation search: each relay's sustained rate (one figure a run, confirmed twice inside it). */
function saturationFigures(summary: Summary): Figure[] {
  const strategies = (summary.extra as { strategies?: { name: string; search?: { sustainedRate?: number } }[] } | undefined)?.strategies ?? [];
  return strategies.map((s) => ({ subject: s.name, figure: 'sustained events/s', better: 'higher', samples: numbers([s.search?.sustainedRate]) }));
}

/** The quick look (results-quick/): its steady runs, and each relay's short drain. */
function quickFigures(summary: Summary): Figure[] {
  const drains = (summary.extra as { drains?: (DrainFiguresLike & { name: string })[] } | undefined)?.drains ?? [];
  const asDrain = { ...summary, extra: { runs: drains.map((d) => ({ strategy: d.name, relay: d })) } };
  return [...runFigures(summary), ...drainFigures(asDrain)];
}

/**
 * The scenarios whose summaries hold figures this comparison reads: steady
 * runs, drains, the saturation search and the quick look. The rest publish
 * tables of their own (write-cost, http, the sweeps, ...) and are compared by
 * reading them.
 */
export const COMPARED_SCENARIOS: readonly string[] = ['polling', 'skip-locked', 'cdc', 'fastest-path', 'saturation', 'drain', 'quick'];

function figuresOf(summary: Summary): Figure[] {
  if (summary.scenario === 'drain') return drainFigures(summary);
  if (summary.scenario === 'quick') return quickFigures(summary);
  if (summary.scenario === 'saturation') return saturationFigures(summary);
  return runFigures(summary);
}

/** The machine and the servers: what must match for two results to be compared. */
function environmentFields(env: Environment): Record<string, string> {
  const fields: Record<string, string> = {
    cpuModel: env.cpuModel,
    cores: String(env.cores),
    // Free memory is not the machine; whole GiB are.
    memoryGiB: String(Math.round(env.memoryGiB)),
    os: env.os,
    node: env.node,
    postgres: env.postgres,
    kafka: env.kafka,
    java: env.java,
  };
  for (const [name, value] of Object.entries(env.postgresSettings ?? {})) fields[`postgresSettings.${name}`] = value;
  return fields;
}

export function environmentDifferences(a: Environment, b: Environment): EnvironmentDifference[] {
  const fa = environmentFields(a);
  const fb = environmentFields(b);
  const differences = [...new Set([...Object.keys(fa), ...Object.keys(fb)])]
    .filter((field) => fa[field] !== fb[field])
    .map((field) => ({ field, a: fa[field] ?? '(not recorded)', b: fb[field] ?? '(not recorded)' }));
  const [pa, pb] = [a.cpuProbe?.nsPerOp, b.cpuProbe?.nsPerOp];
  if (pa !== undefined && pb !== undefined && probesDiffer(pa, pb)) {
    differences.push({ field: 'cpuProbe', a: `${pa} ns per operation`, b: `${pb} ns per operation` });
  }
  return differences;
}

/** A results folder (scenario folders with a summary.json each) or one scenario's folder. */
export function loadResults(dir: string): Map<string, Summary> {
  const own = path.join(dir, 'summary.json');
  if (existsSync(own)) {
    const summary = JSON.parse(readFileSync(own, 'utf8')) as Summary;
    return new Map([[path.basename(path.resolve(dir)), summary]]);
  }
  return loadSummaries(dir);
}

/**
 * The figures of one side: a summary's, or the pooled samples of several
 * summaries of one scenario (the same build measured in several sittings'
 * runs, alternated with the other side's).
 */
function pooledFigures(summaries: readonly Summary[]): Figure[] {
  const pooled = new Map<string, Figure>();
  for (const figure of summaries.flatMap(figuresOf)) {
    const key = `${figure.subject}\u0000${figure.figure}`;
    const seen = pooled.get(key);
    pooled.set(key, seen ? { ...seen, samples: [...seen.samples, ...figure.samples] } : figure);
  }
  return [...pooled.values()];
}

type Side = Map<string, Summary | readonly Summary[]>;
const summariesOf = (entry: Summary | readonly Summary[] | undefined): readonly Summary[] => (entry === undefined ? [] : Array.isArray(entry) ? entry : [entry as Summary]);

export function compareResults(a: Side, b: Side): Comparison {
  const figures: FigureComparison[] = [];
  const notCompared: Comparison['notCompared'] = [];
  const environment = new Map<string, EnvironmentDifference>();
  const folders = [...new Set([...a.keys(), ...b.keys()])].sort();
  for (const folder of folders) {
    const sa = summariesOf(a.get(folder));
    const sb = summariesOf(b.get(folder));
    if (sa.length === 0 || sb.length === 0) {
      notCompared.push({ scenario: folder, reason: `only in ${sa.length > 0 ? 'A' : 'B'}` });
      continue;
    }
    // Every run against the first of A: the sittings of both sides must share one machine.
    for (const other of [...sa.slice(1), ...sb]) for (const difference of environmentDifferences(sa[0]!.environment, other.environment)) environment.set(difference.field, difference);
    const fb = new Map(pooledFigures(sb).map((f) => [`${f.subject}\u0000${f.figure}`, f]));
    let matched = 0;
    for (const fa of pooledFigures(sa)) {
      const other = fb.get(`${fa.subject}\u0000${fa.figure}`);
      if (!other || fa.samples.length === 0 || other.samples.length === 0) continue;
      matched += 1;
      figures.push({ scenario: folder, subject: fa.subject, figure: fa.figure, better: fa.better, a: fa.samples, b: other.samples, ...judge(fa.samples, other.samples, fa.better) });
    }
    if (matched === 0) notCompared.push({ scenario: folder, reason: 'no figure in both that this command reads (throughput, latency, CPU per event)' });
  }
  const all = (m: Side) => [...m].flatMap(([folder, entry]) => summariesOf(entry).map((summary) => [folder, summary] as const));
  const commits = (m: Side) => [...new Set(all(m).map(([, s]) => s.environment.gitCommit.slice(0, 10)))];
  const dirty = (m: Side) => [...new Set(all(m).filter(([, s]) => s.environment.gitDirty).map(([folder]) => folder))];
  return { figures, notCompared, environment: [...environment.values()], commits: { a: commits(a), b: commits(b) }, dirty: { a: dirty(a), b: dirty(b) } };
}

/** Several folders' summaries as one side: a scenario's runs from each, pooled. */
export function loadSide(dirs: readonly string[]): Map<string, Summary[]> {
  const side = new Map<string, Summary[]>();
  for (const dir of dirs) for (const [folder, summary] of loadResults(dir)) side.set(folder, [...(side.get(folder) ?? []), summary]);
  return side;
}

const fmt = (v: number) => (Math.abs(v) >= 100 ? Math.round(v).toLocaleString('en-US') : v >= 10 ? v.toFixed(1) : v.toFixed(2));

function side(samples: readonly number[]): string {
  const m = fmt(median(samples));
  return samples.length > 1 ? `${m} (${fmt(Math.min(...samples))}-${fmt(Math.max(...samples))}, n=${samples.length})` : `${m} (n=1)`;
}

/** The comparison as Markdown tables, one per scenario. */
export function formatComparison(comparison: Comparison, labels: { a: string; b: string }): string[] {
  const lines = [`# ${labels.a} (A) against ${labels.b} (B)`, '', `Commits: A ${comparison.commits.a.join(', ')}; B ${comparison.commits.b.join(', ')}.`];
  for (const [label, folders] of [['A', comparison.dirty.a], ['B', comparison.dirty.b]] as const) {
    if (folders.length > 0) lines.push(`Measured with uncommitted changes in ${label}: ${folders.join(', ')}.`);
  }
  if (comparison.environment.length > 0) {
    lines.push('', 'Environments differ (compared anyway, as asked):', ...comparison.environment.map((d) => `- ${d.field}: A ${d.a}; B ${d.b}`));
  }
  lines.push('', `Verdict rule: ${VERDICT_RULE}.`);
  for (const scenario of [...new Set(comparison.figures.map((f) => f.scenario))]) {
    lines.push('', `## ${scenario}`, '', ...comparisonTable(comparison.figures.filter((x) => x.scenario === scenario)));
  }
  if (comparison.notCompared.length > 0) lines.push('', 'Not compared:', ...comparison.notCompared.map((n) => `- ${n.scenario}: ${n.reason}`));
  return lines;
}

/** Figures of A and B as a Markdown table: each side's median and spread, the change, the noise it is judged against, the verdict. */
export function comparisonTable(figures: readonly FigureComparison[]): string[] {
  return [
    '| relay | figure | A median (range, runs) | B median (range, runs) | change | noise | verdict |',
    '|---|---|---:|---:|---:|---:|---|',
    ...figures.map((f) => {
      const change = Number.isFinite(f.change) ? `${f.change >= 0 ? '+' : ''}${(f.change * 100).toFixed(1)}%` : 'from 0';
      return `| ${f.subject} | ${f.figure} (${f.better} is better) | ${side(f.a)} | ${side(f.b)} | ${change} | ±${(f.noise * 100).toFixed(0)}% | ${f.verdict === 'within noise' ? f.verdict : `**${f.verdict}**`} |`;
    }),
  ];
}
