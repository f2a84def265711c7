/**
 * Workload sweeps: how each relay's sustained rate, latency and CPU per event
 * move when one property of the workload changes and the rest stay at the
 * saturation scenario's load (256 B payloads, 100 orders per transaction,
 * new orders only, 6 partitions). Four sweeps, each a scenario with its own
 * results folder:
 *
 *   sweep-payload     256 B, 1 KB, 4 KB, 10 KB of payload per event
 *   sweep-tx-size     1, 10, 100, 1,000 events per transaction
 *   sweep-hot-keys    none, 10% or 50% of the events on 10 orders
 *   sweep-partitions  1, 6, 24 partitions of the topic
 *
 * Per point and relay: the sustained rate by the integrity rule (the same
 * search and step verdict as the saturation scenario, harness/saturation.ts),
 * and e2e p50/p99 and CPU-s per million events from the run that confirmed
 * that rate. Entries merge into the folder's summary by (point, relay), so
 * a sweep can be finished over several sittings (`--points`,
 * `--mode`); each entry keeps the commit and date it was measured at.
 */
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { OutboxBenchError } from '../../src/errors.js';
import { relayModeInfo, type RelayMode } from '../../src/relay/modes.js';
import { categoryLines } from '../report/charts.js';
import { gitCommit } from '../harness/environment.js';
import type { PipelineParameters } from '../harness/pipeline.js';
import { bracketOf, searchSustained, type SearchOptions, type SearchStep } from '../harness/saturation.js';
import { current, f, save, type ReportContext, type Summary } from '../report/kit.js';
import { pipelineContext, type FlagReader, type Scenario, type ScenarioContext } from '../scenario.js';
import { modeFlag, p99LimitFlag, relayMode, searchRateFlags } from '../scenario-flags.js';
import { relaysForWorkload } from '../harness/sql-workload.js';

/** The relays swept: the saturation scenario's, in its order. */
const MODES: readonly RelayMode[] = ['polling', 'skip-locked', 'cdc', 'cdc-message'];

/** One value of the swept property, and the parameters that make it. */
export interface SweepPoint {
  label: string;
  parameters: Partial<PipelineParameters>;
}

/** The sweeps, in the order shown. */
export const SWEEP_NAMES = ['payload', 'tx-size', 'hot-keys', 'partitions'] as const;
export type SweepName = (typeof SWEEP_NAMES)[number];

export interface SweepDefinition {
  /** The scenario is `sweep-<name>`, its folder results/sweep-<name>/. */
  name: SweepName;
  /** What varies, for titles and the chart's axis. */
  property: string;
  /** In the order shown; the first is measured first and guides the others' searches. */
  points: readonly SweepPoint[];
  /** Measurement order when it differs from the order shown (labels). */
  measureOrder?: readonly string[];
}

// Rationale: 10 hot orders is the hot key set the sweep asks about; an
// order's first event places it, the other EVENTS_PER_ORDER - 1 amend it, so
// 90% of events are amendments that can be aimed at the hot orders.
const HOT_ORDERS = 10;
const EVENTS_PER_ORDER = 10;

/**
 * The load-worker parameters that put `share` of all events on HOT_ORDERS
 * orders: amendments are (E-1)/E of the events, so the share of amendments
 * aimed at the hot orders is share * E/(E-1). Each load worker keeps its own
 * hot set (its first orders), so the set is split across the workers.
 */
export function hotKeyParameters(share: number, workers: number): Partial<PipelineParameters> {
  const amendmentShare = (EVENTS_PER_ORDER - 1) / EVENTS_PER_ORDER;
  if (share < 0 || share > amendmentShare) throw new OutboxBenchError('USAGE', `a hot-key share must be between 0 and ${amendmentShare}`);
  return { eventsPerAggregate: EVENTS_PER_ORDER, hotKeyShare: share / amendmentShare, hotKeys: Math.max(1, Math.round(HOT_ORDERS / workers)) };
}

export function sweepDefinitions(workers: number): readonly SweepDefinition[] {
  return [
    {
      name: 'payload',
      property: 'payload per event',
      points: [
        { label: '256B', parameters: { payloadBytes: 256 } },
        { label: '1KB', parameters: { payloadBytes: 1_024 } },
        { label: '4KB', parameters: { payloadBytes: 4_096 } },
        { label: '10KB', parameters: { payloadBytes: 10_240 } },
      ],
    },
    {
      name: 'tx-size',
      property: 'events per transaction',
      points: [
        { label: '1', parameters: { ordersPerTransaction: 1 } },
        { label: '10', parameters: { ordersPerTransaction: 10 } },
        { label: '100', parameters: { ordersPerTransaction: 100 } },
        { label: '1000', parameters: { ordersPerTransaction: 1_000 } },
      ],
      // From the saturation load outwards, so each search starts near its neighbour's rate.
      measureOrder: ['100', '1000', '10', '1'],
    },
    {
      name: 'hot-keys',
      property: `events on ${HOT_ORDERS} hot orders (${EVENTS_PER_ORDER} events per order)`,
      points: [
        { label: 'none', parameters: hotKeyParameters(0, workers) },
        { label: '10%', parameters: hotKeyParameters(0.1, workers) },
        { label: '50%', parameters: hotKeyParameters(0.5, workers) },
      ],
    },
    {
      name: 'partitions',
      property: 'partitions of the topic',
      points: [
        { label: '1', parameters: { partitions: 1 } },
        { label: '6', parameters: { partitions: 6 } },
        { label: '24', parameters: { partitions: 24 } },
      ],
      measureOrder: ['6', '1', '24'],
    },
  ];
}

/** One relay at one point. */
export interface SweepEntry {
  point: string;
  relay: RelayMode;
  /** Offered events/s of the highest step that passed twice (0: none did). */
  sustainedRate: number;
  /** The run that confirmed the sustained rate (null when none did). */
  atSustained: { p50Ms: number; p99Ms: number; cpuSecondsPerMillion: Record<string, number | null>; cpuSecondsPerMillionTotal: number | null } | null;
  steps: SearchStep[];
  commit: string;
  date: string;
}

/** What a sweep scenario writes into its summary's `extra`. */
export interface SweepResult {
  sweep: string;
  property: string;
  /** Point labels in the order shown. */
  points: string[];
  entries: SweepEntry[];
}

/**
 * The previous entries with this sitting's replacing those of the same point
 * and relay, in the order of the points and relays.
 */
export function mergeEntries(previous: readonly SweepEntry[], fresh: readonly SweepEntry[], points: readonly string[]): SweepEntry[] {
  const key = (e: SweepEntry) => `${e.point}\u0000${e.relay}`;
  const byKey = new Map(previous.map((e) => [key(e), e]));
  for (const e of fresh) byKey.set(key(e), e);
  const relayRank = (relay: RelayMode) => {
    const i = MODES.indexOf(relay);
    return i < 0 ? MODES.length : i;
  };
  return [...byKey.values()]
    .filter((e) => points.includes(e.point))
    .sort((a, b) => points.indexOf(a.point) - points.indexOf(b.point) || relayRank(a.relay) - relayRank(b.relay) || a.relay.localeCompare(b.relay));
}

/** A step's total CPU per million events: null unless every process was measured. */
function totalCpu(step: SearchStep): number | null {
  const values = Object.values(step.cpuSecondsPerMillion);
  if (values.length === 0 || values.some((v) => v === null)) return null;
  return Math.round((values as number[]).reduce((a, b) => a + b, 0) * 10) / 10;
}

export function entryOf(point: string, relay: RelayMode, sustainedRate: number, steps: SearchStep[], commit: string): SweepEntry {
  const confirmed = steps.find((s) => s.attempt === 'confirm' && s.passed && s.rate === sustainedRate);
  return {
    point,
    relay,
    sustainedRate,
    atSustained: confirmed
      ? { p50Ms: confirmed.p50Ms, p99Ms: confirmed.p99Ms, cpuSecondsPerMillion: confirmed.cpuSecondsPerMillion, cpuSecondsPerMillionTotal: totalCpu(confirmed) }
      : null,
    steps,
    commit,
    date: new Date().toISOString(),
  };
}

// Rationale: the search of the first point starts where the saturation
// scenario's does. Later points start at 70% of the nearest measured point's
// rate and grow ×1.4: one sweep step rarely moves a relay's rate by more
// than that, so a search takes a pass or two, a failure, bisections to the search's
// resolution and the confirmation instead of several more growth steps from a fixed start.
const GUIDED_START_SHARE = 0.7;
const GUIDED_GROWTH = 1.4;
const FIRST_GROWTH = 1.6;
// Rationale: below 200 events/s a 20 s window holds too few transactions
// of 100 to judge; a relay that slow at a point reports "none passed".
const MIN_START_RATE = 200;

function searchOptions(context: ScenarioContext, guide: number | undefined, run: SearchOptions['run']): SearchOptions {
  const base = { maxRate: context.option('max-rate'), p99LimitMs: context.option('p99-limit-ms'), ...(run ? { run } : {}) };
  if (guide === undefined || guide <= 0) return { ...base, startRate: context.option('start-rate'), growth: FIRST_GROWTH };
  return { ...base, startRate: Math.max(MIN_START_RATE, Math.round((guide * GUIDED_START_SHARE) / 100) * 100), growth: GUIDED_GROWTH };
}

function previousEntries(outDir: string, sweep: string): SweepEntry[] {
  const file = path.join(outDir, 'summary.json');
  if (!existsSync(file)) return [];
  const summary = JSON.parse(readFileSync(file, 'utf8')) as Summary<SweepResult>;
  return summary.extra?.sweep === sweep ? summary.extra.entries : [];
}

/**
 * The rate a point's search is guided by: this relay's last rate measured in
 * this sitting, else the nearest earlier point (in measurement order) an
 * earlier sitting measured; undefined for a first point.
 */
function guideRate(definition: SweepDefinition, relay: RelayMode, label: string, fresh: readonly SweepEntry[], previous: readonly SweepEntry[]): number | undefined {
  const last = fresh.filter((e) => e.relay === relay && e.sustainedRate > 0).at(-1);
  if (last) return last.sustainedRate;
  const order = definition.measureOrder ?? definition.points.map((p) => p.label);
  for (let i = order.indexOf(label) - 1; i >= 0; i--) {
    const earlier = previous.find((e) => e.relay === relay && e.point === order[i] && e.sustainedRate > 0);
    if (earlier) return earlier.sustainedRate;
  }
  return undefined;
}

function slug(label: string): string {
  return label.toLowerCase().replace(/[^a-z0-9]+/g, '');
}

/**
 * One sweep over the relays and points asked for, merged with the folder's
 * earlier entries. `run` stands in for the pipeline in tests of the rule's
 * bookkeeping (the search itself is the saturation scenario's).
 */
/** The points --points names, each one of the sweep's. */
function pointsOf(definition: SweepDefinition, flags: FlagReader): string[] {
  const labels = definition.points.map((p) => p.label);
  const wanted = flags.list('points', labels);
  const unknown = wanted.filter((label) => !labels.includes(label));
  if (unknown.length > 0) throw new OutboxBenchError('USAGE', `sweep-${definition.name}: unknown point(s) ${unknown.join(', ')}; its points are ${labels.join(', ')}`);
  return wanted;
}

export async function runSweep(definition: SweepDefinition, context: ScenarioContext, run?: SearchOptions['run']): Promise<SweepResult & { lines: string[] }> {
  const labels = definition.points.map((p) => p.label);
  const wanted = pointsOf(definition, context);
  const relays = relaysForWorkload(context.list('mode', [...MODES]), context.parameters.workload);
  for (const relay of relays) relayModeInfo(relay);
  // A script writes what its file says: the payload and the aggregates it writes are its own.
  if (context.parameters.workload && (definition.name === 'payload' || definition.name === 'hot-keys')) {
    throw new OutboxBenchError('USAGE', `sweep-${definition.name} varies the built-in orders' ${definition.property}; --workload sql:${context.parameters.workload.file} writes its own`);
  }
  const order = (definition.measureOrder ?? labels).filter((label) => wanted.includes(label));
  const previous = previousEntries(context.outDir, definition.name);
  const commit = gitCommit();
  const fresh: SweepEntry[] = [];
  const lines: string[] = [];
  for (const relay of relays as RelayMode[]) {
    for (const label of order) {
      const point = definition.points.find((p) => p.label === label)!;
      const guide = guideRate(definition, relay, label, fresh, previous);
      const base: PipelineParameters = { ...context.parameters, ...point.parameters, relayMode: relay, store: relayModeInfo(relay).store };
      const name = `${relay}-${slug(label)}`;
      process.stderr.write(`sweep-${definition.name}: ${relay} at ${definition.property} = ${label}\n`);
      const search = await searchSustained(pipelineContext(context, name), base, searchOptions(context, guide, run), (step, stepLines) => {
        const verdict = step.passed ? 'passes' : `fails: ${step.reasons.join('; ')}`;
        process.stderr.write(`${stepLines.slice(0, 4).join('\n')}\n  -> ${verdict}\n`);
      });
      const entry = entryOf(label, relay, search.sustainedRate, search.steps, commit);
      fresh.push(entry);
      lines.push(
        `${definition.property} ${label}, ${relay}: ${entry.sustainedRate > 0 ? `sustained ${entry.sustainedRate} events/s (passed twice)` : 'no rate passed twice'}` +
          (entry.atSustained ? `; there e2e p50 ${entry.atSustained.p50Ms} / p99 ${entry.atSustained.p99Ms} ms, ${entry.atSustained.cpuSecondsPerMillionTotal ?? 'n/a'} CPU-s / 1M` : ''),
      );
    }
  }
  return { sweep: definition.name, property: definition.property, points: labels, entries: mergeEntries(previous, fresh, labels), lines };
}

/** The properties a sweep holds at the saturation load, in words (the swept one left out). */
function heldFixed(sweep: string, p: PipelineParameters): string {
  const held: [string, string][] = [
    ['payload', `${p.payloadBytes} B payloads`],
    ['tx-size', `${p.ordersPerTransaction} orders per transaction`],
    ['hot-keys', 'new orders only'],
    ['partitions', `${p.partitions} partitions`],
  ];
  return held.filter(([name]) => name !== sweep).map(([, words]) => words).join(', ');
}

/** The lowest offered rate above the sustained one that failed a step: how far the true limit may lie above it. */
function lowestFailure(entry: SweepEntry): number | null {
  return bracketOf(entry.sustainedRate, entry.steps).lowestFailedRate;
}

function report(context: ReportContext, folder: string): string[] {
  const summary = current<SweepResult>(context, folder);
  const extra = summary?.extra;
  if (!summary || !extra) return [];
  const p = summary.parameters;
  const relays = [...new Set(extra.entries.map((e) => e.relay))];
  const commits = [...new Set(extra.entries.map((e) => e.commit.slice(0, 7)))];
  const lines = [
    `## Workload sweep: ${extra.property}`,
    '',
    `Each relay's sustained rate at each point, by the saturation section's rule (steps of ${p.durationS} s measured after ${p.warmupS} s of warm-up; ` +
      'the highest offered rate that passed twice), with the end-to-end latency and the CPU of every process (PostgreSQL, Kafka, relay, ' +
      `consumer, load) per million events from the run that confirmed it. Everything not swept is the saturation load: ${heldFixed(extra.sweep, p)}. ` +
      `Measured at ${commits.join(', ')}.`,
    '',
    '| point | relay | sustained events/s | lowest rate that failed | e2e p50 (ms) | e2e p99 (ms) | CPU-s / 1M events, all processes | relay CPU-s / 1M | steps |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|',
    ...extra.entries.map(
      (e) =>
        `| ${e.point} | ${e.relay} | ${e.sustainedRate > 0 ? f(e.sustainedRate) : 'none passed twice'} | ${f(lowestFailure(e))} | ${f(e.atSustained?.p50Ms)} | ${f(e.atSustained?.p99Ms)} | ` +
        `${f(e.atSustained?.cpuSecondsPerMillionTotal)} | ${f(e.atSustained?.cpuSecondsPerMillion.relay)} | ${e.steps.length} |`,
    ),
    '',
    'The sustained rate lies between the rate shown and the lowest rate that failed (none: the search reached its highest rate); ' +
      'the gap is the search\'s resolution at that point. Every step is in the summary (`results/' +
      `${folder}/summary.json\`).`,
    '',
  ];
  const missing = extra.points.flatMap((point) => relays.filter((relay) => !extra.entries.some((e) => e.point === point && e.relay === relay)).map((relay) => `${relay} at ${point}`));
  if (missing.length > 0) lines.push(`Not measured yet: ${missing.join(', ')}.`, '');
  const chart = categoryLines(
    extra.points,
    relays.map((relay) => ({ name: relay, values: extra.points.map((point) => extra.entries.find((e) => e.point === point && e.relay === relay)?.sustainedRate ?? null) })),
    `Sustained rate by ${extra.property}`,
    extra.property,
    'sustained events/s (offered, passed twice)',
    'on this machine, everything sharing its 2 cores',
  );
  lines.push(`![Sustained rate by ${extra.property}](${save(context.charts, `sweep-${extra.sweep}`, chart)})`, '');
  return lines;
}

function sweepScenario(definition: SweepDefinition): Scenario {
  return {
    name: `sweep-${definition.name}`,
    // The payload and hot-key sweeps vary what a script writes itself (runSweep says so).
    takesWorkload: definition.name !== 'payload' && definition.name !== 'hot-keys',
    description: `each relay's sustained rate, latency and CPU per event at ${definition.points.map((p) => p.label).join(', ')} (${definition.property})`,
    // The saturation scenario's load, so the sweeps' common point matches its section.
    defaults: { ordersPerTransaction: 100, warmupS: 5, durationS: 20, drainTimeoutS: 20 },
    flags: {
      ...searchRateFlags('events/s (the start: of the first point)', { start: 2_000, max: 100_000 }, 'sweep'),
      'p99-limit-ms': p99LimitFlag('the end-to-end', 2_000, 600_000, 'sweep-p99-limit-ms'),
      mode: modeFlag('relay modes to measure', 'all', relayMode),
      points: { kind: 'list', description: 'points of the sweep to measure; entries merge into its results folder', defaultText: 'all' },
    },
    standalone: true,
    checkFlags: (flags) => void pointsOf(definition, flags),
    async run(context) {
      const own = sweepDefinitions(context.parameters.workers).find((d) => d.name === definition.name)!;
      const result = await runSweep(own, context);
      const { lines, ...extra } = result;
      return { title: `Workload sweep: ${definition.property}`, runs: [], extra: extra satisfies SweepResult, lines };
    },
    report,
  };
}

/** One sweep's scenario (its points for one load worker; a run recomputes them for its --workers). */
export function sweep(name: SweepName): Scenario {
  // Every name has a definition: a missing one fails at import, in every test.
  return sweepScenario(sweepDefinitions(1).find((d) => d.name === name)!);
}
