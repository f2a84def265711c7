/**
 * Builds results/README.md and results/charts/ from the summaries in
 * results/<scenario>/summary.json: `node dist/bench/report.js [results-dir]`.
 * Sections appear for the scenarios that have results; numbers are copied
 * from the summaries, never typed in.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../src/config.js';
import { decodeHistogram } from '../src/latency.js';
import { bars, latencyByPercentile, lines as lineChart, throughputAndLag, type Chart } from '../src/report/charts.js';
import type { Environment } from './harness/environment.js';
import { medianWithRange } from './harness/format.js';
import type { RowResult } from '../src/chaos/matrix.js';
import type { RunSummary } from './harness/summary.js';
import { COMPONENTS, type Component } from './harness/sampler.js';
import type { CleanupSample, StrategyRun } from './scenarios/cleanup.js';
import type { PeerResult } from './scenarios/peers.js';
import type { StrategySaturation } from './scenarios/saturation.js';
import type { DrainRun } from './scenarios/drain.js';
import type { ProfileSummary } from './harness/profile.js';
import { MAX_LAG_SLOPE_SHARE, MIN_DELIVERED_SHARE } from './harness/saturation.js';

export interface Summary {
  scenario: string;
  title: string;
  date: string;
  command: string;
  parameters: RunSummary['parameters'];
  runs: RunSummary[];
  extra?: Record<string, unknown>;
  environment: Environment;
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

const f = (v: number | null | undefined, digits = 1) => (v === null || v === undefined ? 'n/a' : v >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(digits));

function save(dir: string, name: string, chart: Chart): string {
  writeFileSync(path.join(dir, `${name}.svg`), chart.svg);
  writeFileSync(path.join(dir, `${name}.png`), chart.png);
  return `charts/${name}.png`;
}

/**
 * A scenario's summary if it was measured under the current rules. The
 * sections built from these only read the current shape; a legacy summary of
 * such a scenario is listed as not shown (see `notShownSection`).
 */
function current(summaries: Map<string, Summary>, name: string): Summary | undefined {
  const summary = summaries.get(name);
  return summary && !isLegacy(summary) ? summary : undefined;
}

function notShownSection(summaries: Map<string, Summary>): string[] {
  const skipped = ['polling', 'skip-locked', 'cdc', 'saturation', 'drain', 'fastest-path', 'http'].filter((name) => summaries.has(name) && !current(summaries, name));
  if (skipped.length === 0) return [];
  return ['## Not shown', '', `Results measured under the harness's earlier rules, left out until re-run: ${skipped.map((name) => `\`${name}\``).join(', ')}.`, ''];
}

/** The common-rate runs of the strategy scenarios, in a fixed order. */
function strategyRuns(summaries: Map<string, Summary>): RunSummary[] {
  return ['polling', 'skip-locked', 'cdc'].flatMap((name) => current(summaries, name)?.runs ?? []);
}

function sideBySide(summaries: Map<string, Summary>, charts: string): string[] {
  const runs = strategyRuns(summaries);
  if (runs.length === 0) return [];
  const p = runs[0]!.parameters;
  const lines = [
    `## The relays side by side`,
    '',
    `Same workload for every relay: ${p.rate.toLocaleString('en-US')} events/s offered open-loop by ${p.workers} worker thread(s), ` +
      `${p.ordersPerTransaction} orders per transaction, ~${p.payloadBytes}-byte payloads, ${p.partitions} Kafka partitions; ` +
      `${p.durationS} s measured after ${p.warmupS} s of warm-up. End-to-end latency runs from each order's *intended* send time ` +
      '(no coordinated omission) to the moment the idempotent consumer\'s inbox transaction committed (*applied*); receipt (the batch ' +
      'handed to the consumer, before that transaction) is shown beside it. Rates and CPU are taken over the measured window and divided ' +
      'by the events applied inside it.',
    '',
    '| relay | applied events/s | e2e p50 | p90 | p99 | p99.9 | max (ms) | receipt p50 / p99 (ms) | commit→applied p50 / p99 (ms) | sent | duplicates | lost | CPU s per 1M events |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...runs.map(
      (r) =>
        `| ${r.name} | ${f(r.eventsPerSec)} | ${f(r.e2eMs.p50)} | ${f(r.e2eMs.p90)} | ${f(r.e2eMs.p99)} | ${f(r.e2eMs.p999)} | ${f(r.e2eMs.max)} | ` +
        `${f(r.e2eReceiptMs.p50)} / ${f(r.e2eReceiptMs.p99)} | ${f(r.commitToAppliedMs.p50)} / ${f(r.commitToAppliedMs.p99)} | ${r.sent.toLocaleString('en-US')} | ${r.duplicates} | ` +
        `${r.spread && r.spread.lost !== r.lost ? `${r.lost} (${r.spread.lost} over all ${r.spread.runs} runs)` : r.lost} | ${f(r.cpuSecondsPerMillion.total)} |`,
    ),
    '',
  ];
  const repeated = runs.filter((r) => r.spread && r.spread.runs > 1);
  if (repeated.length > 0) {
    const range = (values: readonly (number | null)[]) => {
      const known = values.filter((v): v is number => v !== null);
      return known.length === 0 ? 'n/a' : `${f(Math.min(...known))} – ${f(Math.max(...known))}`;
    };
    lines.push(
      `Each relay was measured ${[...new Set(repeated.map((r) => r.spread!.runs))].join('/')} times in a row; the table above shows the run with the median p99 ` +
        '(the better of the two middle runs for an even count), and the spread across all runs is:',
      '',
      '| relay | runs | applied events/s (min – max) | e2e p50 (ms) | e2e p99 (ms) | e2e p99.9 (ms) | CPU s per 1M events | lost in each run |',
      '|---|---:|---:|---:|---:|---:|---:|---:|',
      ...repeated.map(
        (r) =>
          `| ${r.name} | ${r.spread!.runs} | ${range(r.spread!.eventsPerSec)} | ${range(r.spread!.e2eP50Ms)} | ${range(r.spread!.e2eP99Ms)} | ` +
          `${range(r.spread!.e2eP999Ms)} | ${range(r.spread!.cpuSecondsPerMillion)} | ${(r.spread!.lostPerRun ?? []).join(' / ')} |`,
      ),
      '',
    );
  }
  const budgeted = runs.filter((r) => r.stages);
  if (budgeted.length > 0) {
    const cell = (s: { ms: { count: number; p50: number; p99: number } }) => (s.ms.count === 0 ? 'n/a' : `${f(s.ms.p50)} / ${f(s.ms.p99)}`);
    lines.push(
      'Where the time goes (p50 / p99, ms): the writers\' intended send → commit; commit → the relay has the event and the relay → ' +
        'Kafka\'s acknowledgement, as the relay recorded them (every event of the run; the table relays count from the row\'s insert, ' +
        'the CDC relay from the commit timestamp in the WAL); Kafka → consumer receipt, from the broker\'s append time (the topic is ' +
        'set to LogAppendTime); receipt → applied, the inbox transaction.',
      '',
      '| relay | write | commit → relay | relay → Kafka ack | Kafka → consumer | receipt → applied | end to end |',
      '|---|---:|---:|---:|---:|---:|---:|',
      ...budgeted.map(
        (r) =>
          `| ${r.name} | ${cell(r.stages.write)} | ${cell(r.stages.commitToRelay)} | ${cell(r.stages.relayToAck)} | ${cell(r.stages.kafkaToConsumer)} | ${cell(r.stages.receiptToApplied)} | ` +
          `${f(r.e2eMs.p50)} / ${f(r.e2eMs.p99)} |`,
      ),
      '',
    );
  }
  const latency = latencyByPercentile(
    runs.map((r) => ({ name: r.name, histogram: decodeHistogram(r.histograms.e2e) })),
    'End-to-end latency by percentile (intended send → applied)',
    `${p.rate} events/s offered; ${p.durationS} s measured per relay`,
  );
  lines.push(`![End-to-end latency by percentile](${save(charts, 'latency-by-percentile', latency)})`, '');
  const components = ['postgres', 'kafka', 'relay', 'consumer', 'loadGenerator'] as const;
  const cpu = bars(
    runs.map((r) => r.name),
    components.map((c) => ({ name: c, values: runs.map((r) => r.cpuSecondsPerMillion[c]) })),
    'CPU seconds per million events, by process',
    'CPU seconds / 1M events',
    'lower is cheaper; the sum is what a capacity plan multiplies',
    true,
  );
  lines.push(`![CPU cost per million events](${save(charts, 'cpu-per-million', cpu)})`, '');
  lines.push(
    'The raw latency distributions are in each scenario folder as `.hgrm` files (HdrHistogram percentile output, milliseconds); ' +
      '`summary.json` holds every figure above, the per-second timeline and the compressed histograms.',
    '',
  );
  for (const r of runs) {
    const timeline = throughputAndLag(
      [{ name: r.name, points: r.timeline.map((t) => [t.t, t.delivered]) }],
      [{ name: r.name, points: r.timeline.map((t) => [t.t, r.relay.startsWith('cdc') ? Math.round((t.lagBytes ?? 0) / 1024) : t.lagEvents ?? 0]) }],
      `${r.name}: applied events per second and relay lag`,
      r.relay.startsWith('cdc') ? 'KiB of WAL' : 'unpublished events',
      `warm-up ${r.parameters.warmupS} s, then ${r.parameters.durationS} s measured`,
    );
    lines.push(`![${r.name} throughput and lag](${save(charts, `timeline-${r.name}`, timeline)})`, '');
  }
  return lines;
}

function saturationSection(summaries: Map<string, Summary>, charts: string): string[] {
  const summary = current(summaries, 'saturation');
  const extra = summary?.extra as { strategies: StrategySaturation[] } | undefined;
  if (!summary || !extra) return [];
  const p = summary.parameters;
  const lines = [
    '## Sustained throughput and backlog drain',
    '',
    `Each strategy is offered increasing rates (×1.6 per step, then two bisection steps), ${p.ordersPerTransaction} orders per transaction, ` +
      `${p.durationS} s measured per step after ${p.warmupS} s of warm-up. A step passes when at least ${MIN_DELIVERED_SHARE * 100}% of the orders ` +
      'intended in its window were applied by the window\'s end plus the p99 limit, the relay lag did not grow (its least-squares slope over the ' +
      `window at most ${MAX_LAG_SLOPE_SHARE * 100}% of the offered rate per second; CDC lag in WAL bytes converted with the WAL bytes per event of ` +
      'the window), nothing was lost, and the end-to-end p99 stayed under the limit. The highest passing rate is run a second time; the ' +
      '*sustained* rate is the offered rate of the highest step that passed twice. The drain is measured apart: the whole backlog is ' +
      'written with no relay running, then the relay process is spawned; its clock starts at the spawn, the time to the first applied ' +
      'event is shown apart, and the drain rate is the steady rate from 10% to 90% of the backlog applied (CPU over the same part).',
    '',
    '| strategy | sustained events/s (offered, passed twice) | drain events/s (10%–90%) | first event after (s) | backlog | all applied after (s) | relay CPU s / 1M in the drain |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...extra.strategies.map(
      (s) =>
        `| ${s.name} | ${s.search.sustainedRate > 0 ? f(s.search.sustainedRate) : 'none passed twice'} | ${f(s.drain?.eventsPerSec)} | ${f(s.drain?.timeToFirstEventS, 2)} | ` +
        `${f(s.drain?.backlog)} | ${f(s.drain?.seconds, 2)} | ${f(s.drain?.cpuSecondsPerMillion.relay)} |`,
    ),
    '',
  ];
  const chart = bars(
    extra.strategies.map((s) => s.name),
    [
      { name: 'sustained (offered events/s)', values: extra.strategies.map((s) => s.search.sustainedRate) },
      { name: 'backlog drain, 10%–90% (events/s)', values: extra.strategies.map((s) => s.drain?.eventsPerSec ?? null) },
    ],
    'Sustained throughput and backlog drain rate per strategy',
    'events per second',
    'on this machine, everything (PostgreSQL, Kafka, relay, consumer, load) sharing it',
  );
  lines.push(`![Sustained throughput per strategy](${save(charts, 'sustained-throughput', chart)})`, '', '<details><summary>Every step of the search</summary>', '');
  lines.push(
    '| strategy | offered | run | committed/s | applied/s in the window | applied by the deadline | lag slope (events/s per s) | slope limit | p99 (ms) | verdict |',
    '|---|---:|---|---:|---:|---:|---:|---:|---:|---|',
  );
  for (const s of extra.strategies) {
    for (const step of s.search.steps) {
      lines.push(
        `| ${s.name} | ${f(step.rate)} | ${step.attempt} | ${f(step.committedPerSec)} | ${f(step.eventsPerSec)} | ${(step.deliveredShare * 100).toFixed(1)}% | ` +
          `${f(step.lagSlopeEventsPerSec)} | ${f(step.lagSlopeLimit)} | ${f(step.p99Ms)} | ${step.passed ? 'passes' : step.reasons.join('; ')} |`,
      );
    }
  }
  lines.push('', '</details>', '');
  return lines;
}

function fastestPathSection(summaries: Map<string, Summary>): string[] {
  const summary = current(summaries, 'fastest-path');
  if (!summary) return [];
  type Variant = RunSummary & { change: string; intakeEventsPerSec: number };
  const runs = summary.runs as Variant[];
  return [
    '## Toward 100K events/s: the fastest path, change by change',
    '',
    'Batched intake and the CDC relay, one change at a time on top of the previous ones, each on the same backlog in the same run. ' +
      '*Intake* is how fast the writers got the backlog in (all of it offered at once); *drain* is the steady rate at which relay and ' +
      'consumer applied it, from 10% to 90% of the backlog, after the relay process was spawned; CPU is taken over that same part of the ' +
      'drain and divided by the events applied in it. What these changes do and do not buy, and what 100K events/s takes, is in ' +
      '[docs/capacity.md](../docs/capacity.md).',
    '',
    '| variant | change | intake events/s | drain events/s (10%–90%) | first event after (s) | PostgreSQL | Kafka | relay | consumer | load | total CPU s per 1M events |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...runs.map((r) => {
      const c = endToEndCost(r);
      return `| ${r.name} | ${r.change} | ${f(r.intakeEventsPerSec)} | ${f(r.drain?.eventsPerSec)} | ${f(r.drain?.timeToFirstEventS, 2)} | ${f(c.postgres)} | ${f(c.kafka)} | ${f(c.relay)} | ${f(c.consumer)} | ${f(c.loadGenerator)} | ${f(c.total)} |`;
    }),
    '',
    'CPU per event is the sum of two windows of the same run: writing the backlog (first send to last commit, divided by the events ' +
      'committed) and draining it (10% to 90%, divided by the events applied in it). Each window\'s own figures are in `summary.json` ' +
      '(`drain.intakeCpuSecondsPerMillion` and `cpuSecondsPerMillion`).',
    '',
    ...capacityLines(runs.map((r) => ({ name: r.name, cost: endToEndCost(r) }))),
  ];
}

/** A drain run's cost per event end to end: writing the backlog plus draining it, per process. */
function endToEndCost(r: RunSummary): Record<Component, number | null> & { total: number | null } {
  const intake = r.drain?.intakeCpuSecondsPerMillion;
  const cost = Object.fromEntries(
    COMPONENTS.map((c) => {
      const a = r.cpuSecondsPerMillion[c];
      const b = intake ? intake[c] : 0;
      return [c, a === null || b === null ? null : Math.round((a + b) * 10) / 10];
    }),
  ) as Record<Component, number | null>;
  const known = COMPONENTS.map((c) => cost[c]);
  return { ...cost, total: known.every((v) => v !== null) ? Math.round(known.reduce((sum: number, v) => sum + v!, 0) * 10) / 10 : null };
}

/** The rate the capacity plan is for: 100,000 events per second. */
const TARGET_EVENTS_PER_SEC = 100_000;

/**
 * The measured cost per event turned into what the target takes: CPU seconds
 * per million events × (target ÷ 1M) is cores; 1M ÷ a Node process's CPU
 * seconds per million is the most one process (one core of JavaScript) does.
 */
function capacityLines(runs: readonly { name: string; cost: Record<Component, number | null> & { total: number | null } }[]): string[] {
  const scale = TARGET_EVENTS_PER_SEC / 1e6;
  const cores = (v: number | null) => (v === null ? 'n/a' : (v * scale).toFixed(1));
  const processes = (v: number | null) => (v === null || v === 0 ? 'n/a' : String(Math.ceil(v * scale)));
  const perProcess = (v: number | null) => (v === null || v === 0 ? 'n/a' : f(Math.round(1e6 / v)));
  return [
    `### What ${TARGET_EVENTS_PER_SEC.toLocaleString('en-US')} events/s would take at these costs`,
    '',
    `Cores = CPU seconds per million events × ${scale} (${TARGET_EVENTS_PER_SEC.toLocaleString('en-US')} events/s is ${scale} million per second). ` +
      'The relay and the consumer run their JavaScript on one core per process, so they also need at least as many processes as cores; ' +
      '1M ÷ their CPU seconds per million is what one such process does flat out. These variants use the CDC relay, and one replication ' +
      'slot is read by exactly one process: past that figure the outbox must be split across several slots (publications), which is not ' +
      'what was measured here. Costs measured on this machine, where every process competes for the same cores; ' +
      'see [docs/capacity.md](../docs/capacity.md) for what does not scale by adding cores.',
    '',
    '| variant | PostgreSQL cores | Kafka cores | relay cores (= processes) | consumer cores (= processes) | load cores | total cores | one relay process (one slot), events/s | one consumer process, events/s |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...runs.map((r) => {
      const c = r.cost;
      return (
        `| ${r.name} | ${cores(c.postgres)} | ${cores(c.kafka)} | ${cores(c.relay)} (${processes(c.relay)}) | ${cores(c.consumer)} (${processes(c.consumer)}) | ` +
        `${cores(c.loadGenerator)} | ${cores(c.total)} | ${perProcess(c.relay)} | ${perProcess(c.consumer)} |`
      );
    }),
    '',
  ];
}

interface HttpExtra {
  relay: string;
  p99LimitMs: number;
  modes: {
    mode: string;
    groupCommitMax: number;
    closedLoop: { connections: number; requestsPerSec: number; latencyMs: Record<string, number>; non2xx: number };
    ratePassingP99: number;
    search: { rate: number; achievedPerSec: number; p99Ms: number; passed: boolean }[];
  }[];
  fixedRate: {
    requestsPerSec: number;
    achievedPerSec: number;
    latencyMs: Record<string, number>;
    requestToAppliedMs: Record<string, number>;
    requestToReceiptMs: Record<string, number>;
    ordersWritten: number;
    ordersWrittenTotal: number;
    cpuWindowS: number;
    cpuSecondsPerMillionOrders: Record<string, number | null>;
    deliveredDistinct: number;
    duplicates: number;
    lost: number;
    non2xx: number;
    errors: number;
  };
}

function httpSection(summaries: Map<string, Summary>): string[] {
  const extra = current(summaries, 'http')?.extra as HttpExtra | undefined;
  if (!extra?.modes) return [];
  const r = extra.fixedRate;
  const row = (label: string, rate: number | null, l: Record<string, number>, non2xx: number | null) =>
    `| ${label} | ${rate === null ? '' : f(rate)} | ${f(l.p50)} | ${f(l.p90)} | ${f(l.p99)} | ${f(l.p999)} | ${f(l.max)} | ${non2xx ?? ''} |`;
  return [
    '## HTTP: `POST /orders`',
    '',
    `The order service with the ${extra.relay} relay and the consumer running throughout, two ways: *group commit* (orders that arrive ` +
      'while earlier ones are written share one statement and one transaction, each answered once its own order committed) and one ' +
      'transaction per order. For each, a closed loop (autocannon) gives its maximum, and a search on the harness\'s own open-loop ' +
      `timetable finds the highest rate whose response p99, measured from each request's scheduled time, stays within ${extra.p99LimitMs} ms.`,
    '',
    `| service | closed loop, requests/s | closed-loop p99 (ms) | requests/s with p99 ≤ ${extra.p99LimitMs} ms (open loop) |`,
    '|---|---:|---:|---:|',
    ...extra.modes.map((m) => `| ${m.mode} | ${f(m.closedLoop.requestsPerSec)} | ${f(m.closedLoop.latencyMs.p99)} | ${m.ratePassingP99 > 0 ? f(m.ratePassingP99) : 'none tried passed'} |`),
    '',
    `Then a fixed ${r.requestsPerSec} requests/s with group commit, on the same timetable: every request carries its scheduled time into ` +
      'its event (`x-intended-at`, forwarded by the relay), so request → applied runs from the schedule too. The phase starts after every ' +
      `earlier order was applied, and its CPU window (${f(r.cpuWindowS)} s) ends when its own last order was applied.`,
    '',
    '| measured | requests/s | p50 | p90 | p99 | p99.9 | max (ms) | non-2xx |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    row(`HTTP response, from the schedule (achieved ${f(r.achievedPerSec)}/s)`, r.requestsPerSec, r.latencyMs, r.non2xx),
    row('request → applied, from the schedule', null, r.requestToAppliedMs, null),
    row('request → consumer receipt', null, r.requestToReceiptMs, null),
    '',
    `Orders of the fixed-rate phase ${r.ordersWritten.toLocaleString('en-US')} (of ${r.ordersWrittenTotal.toLocaleString('en-US')} in all); ` +
      `applied ${r.deliveredDistinct.toLocaleString('en-US')} distinct, duplicates ${r.duplicates}, lost ${r.lost}. CPU seconds per million orders of that phase: ` +
      Object.entries(r.cpuSecondsPerMillionOrders)
        .map(([process, v]) => `${process === 'postgres' ? 'PostgreSQL' : process} ${f(v)}`)
        .join(', ') +
      '.',
    '',
    '<details><summary>Every step of the rate searches</summary>',
    '',
    '| service | requests/s offered | achieved | p99 (ms) | verdict |',
    '|---|---:|---:|---:|---|',
    ...extra.modes.flatMap((m) => m.search.map((step) => `| ${m.mode} | ${f(step.rate)} | ${f(step.achievedPerSec)} | ${f(step.p99Ms)} | ${step.passed ? 'within' : 'over'} |`)),
    '',
    '</details>',
    '',
  ];
}

/**
 * Relay-only and consumer-only drains: what one process of each carries.
 * `results/drain-<name>/` holds further drain runs (another client set, say),
 * each shown under its own heading with the command that made it.
 */
function drainSections(summaries: Map<string, Summary>): string[] {
  return [...summaries.keys()].filter((name) => name === 'drain' || name.startsWith('drain-')).sort().flatMap((name) => drainSection(summaries, name));
}

function drainSection(summaries: Map<string, Summary>, name: string): string[] {
  const summary = current(summaries, name);
  const extra = summary?.extra as { events: number; sampleMs?: number; minWindowReadings?: number; runs: DrainRun[]; profiled?: DrainRun[] } | undefined;
  if (!summary || !extra || extra.runs.length === 0) return [];
  const relays = groupBy(extra.runs, (run) => `${run.strategy} | ${run.kafkaClient}`);
  const consumers = groupBy(
    extra.runs.flatMap((run) => run.consumers.map((c) => ({ strategy: run.strategy, ...c }))),
    (c) => `${c.strategy} | ${c.client}`,
  );
  const med = (values: readonly (number | null | undefined)[]) => medianWithRange(values, f);
  const repeats = Math.max(...[...relays.values()].map((g) => g.length));
  return [
    name === 'drain' ? '## What one relay process and one consumer process carry' : `## Drain: \`${name}\``,
    '',
    `Command: \`${summary.command}\` at ${summary.environment.gitCommit?.slice(0, 7) ?? 'an unknown commit'}.`,
    '',
    `Relay-only drain: ${extra.events.toLocaleString('en-US')} events written 1,000 per transaction while no relay ran (the CDC slot existed first), ` +
      `then the relay process was spawned and Kafka's end offsets were read every ${extra.sampleMs ?? 100} ms. Rate and CPU from 10% to 90% of the events ` +
      `(n/a when that window held fewer than ${extra.minWindowReadings ?? 2} readings: too short to measure); ` +
      "CPU per process (PostgreSQL includes the walsender), and the relay's JavaScript thread apart (every replica's, for SKIP LOCKED): " +
      `what one process cannot scale past. Median of ${repeats} runs, the range in brackets.`,
    '',
    '| relay | Kafka client | events/s | relay CPU s / 1M | relay JS thread µs / event | PostgreSQL CPU s / 1M | Kafka CPU s / 1M | first event after (s) | missing |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|',
    ...[...relays].map(([key, runs]) => {
      const [strategy, client] = key.split(' | ');
      const r = runs.map((run) => run.relay);
      return (
        `| ${strategy} | ${client} | ${med(r.map((x) => x.eventsPerSec))} | ${med(r.map((x) => x.cpuSecondsPerMillion.relay))} | ${med(r.map((x) => x.jsThreadUsPerEvent))} | ` +
        `${med(r.map((x) => x.cpuSecondsPerMillion.postgres))} | ${med(r.map((x) => x.cpuSecondsPerMillion.kafka))} | ${med(r.map((x) => x.timeToFirstEventS))} | ${r.map((x) => x.missing).join(' / ')} |`
      );
    }),
    '',
    'Consumer-only drain: the consumer process applied the filled topic (of the first relay client\'s runs) from the beginning into inbox and ledger, ' +
      'one inbox transaction per Kafka batch, timed the same way from the inbox side. It records no latency (a backlog has none worth reporting), ' +
      'so its CPU is the consumer\'s and its bookkeeping\'s only.',
    '',
    '| relay (its topic) | consumer Kafka client | events/s | consumer CPU s / 1M | consumer JS thread µs / event | PostgreSQL CPU s / 1M | Kafka CPU s / 1M | missing |',
    '|---|---|---:|---:|---:|---:|---:|---:|',
    ...[...consumers].map(([key, drains]) => {
      const [strategy, client] = key.split(' | ');
      const d = drains.map((x) => x.figures);
      return (
        `| ${strategy} | ${client} | ${med(d.map((x) => x.eventsPerSec))} | ${med(d.map((x) => x.cpuSecondsPerMillion.consumer))} | ${med(d.map((x) => x.jsThreadUsPerEvent))} | ` +
        `${med(d.map((x) => x.cpuSecondsPerMillion.postgres))} | ${med(d.map((x) => x.cpuSecondsPerMillion.kafka))} | ${d.map((x) => x.missing).join(' / ')} |`
      );
    }),
    '',
    ...profileLines(extra.profiled ?? []),
  ];
}

function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    let group = groups.get(k);
    if (!group) groups.set(k, (group = []));
    group.push(item);
  }
  return groups;
}

/** The top frames of the profiled run of each relay and client (a run of its own, outside the figures). */
function profileLines(runs: readonly DrainRun[]): string[] {
  const table = (title: string, profile: ProfileSummary) => [
    `<details><summary>${title} (an extra run under the profiler): top frames by self time (${f(profile.busyMs)} ms busy)</summary>`,
    '',
    '| frame | self (ms) | share |',
    '|---|---:|---:|',
    ...profile.top.map((frame) => `| \`${frame.frame.replace(/\|/g, '\\|')}\` | ${f(frame.selfMs)} | ${(frame.selfShare * 100).toFixed(1)}% |`),
    '',
    '</details>',
    '',
  ];
  return runs.flatMap((run) => [
    ...(run.relayProfile ? table(`CPU profile of the ${run.strategy} relay on ${run.kafkaClient}`, run.relayProfile) : []),
    ...run.consumers.flatMap((c) => (c.profile ? table(`CPU profile of the consumer on ${c.client} (${run.strategy} topic)`, c.profile) : [])),
  ]);
}

function microSection(summaries: Map<string, Summary>): string[] {
  const extra = summaries.get('micro')?.extra as { tasks: { name: string; opsPerSec?: number; latencyUs?: { mean: number; p50: number; p99: number }; relativeMarginOfErrorPercent?: number }[] } | undefined;
  if (!extra) return [];
  return [
    '## Micro-benchmarks (tinybench)',
    '',
    'The per-event work on the hot paths, one core, after warm-up.',
    '',
    '| task | ops/s | mean (µs) | p50 (µs) | p99 (µs) | ± (rme %) |',
    '|---|---:|---:|---:|---:|---:|',
    ...extra.tasks.map((t) => `| ${t.name} | ${f(t.opsPerSec)} | ${f(t.latencyUs?.mean, 2)} | ${f(t.latencyUs?.p50, 2)} | ${f(t.latencyUs?.p99, 2)} | ${f(t.relativeMarginOfErrorPercent, 1)} |`),
    '',
  ];
}

function cleanupSection(summaries: Map<string, Summary>, charts: string): string[] {
  const summary = summaries.get('cleanup');
  const extra = summary?.extra as { retention: string; partitionWidth: string; rate: number; strategies: StrategyRun[] } | undefined;
  if (!summary || !extra) return [];
  const runs = extra.strategies;
  const curve = (pick: (s: CleanupSample) => number | null) =>
    runs.map((r) => ({ name: r.strategy, points: r.samples.flatMap((s): [number, number][] => (pick(s) === null ? [] : [[Math.round(s.rowsWritten / 1e5) / 10, pick(s)!]])) }));
  const x = 'million rows written';
  const lines = [
    '## Cleanup: DROP PARTITION vs batched DELETE vs none',
    '',
    ...legacyNote(summary),
    `The outbox grows through the real write path at ${extra.rate.toLocaleString('en-US')} events/s while the polling relay publishes and marks every row; ` +
      `${extra.partitionWidth} partitions, ${extra.retention} of retention. Every 10 s the run times the relay's claim query ` +
      '(the oldest unpublished rows) ten times and reads table size, dead tuples and autovacuum counters; the write path\'s p99 is ' +
      'the load generator\'s (intended send to COMMIT).',
    '',
    '| strategy | rows written | poll p50 / p99, first 10% (ms) | poll p50 / p99, last 10% (ms) | write p99 first / last 10% (ms) | outbox size at the end (MiB) | most dead tuples |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...runs.map(
      (r) =>
        `| ${r.strategy} | ${r.rowsWritten.toLocaleString('en-US')} | ${f(r.start.pollP50Ms, 2)} / ${f(r.start.pollP99Ms, 2)} | ${f(r.end.pollP50Ms, 2)} / ${f(r.end.pollP99Ms, 2)} | ` +
        `${f(r.start.writeP99Ms)} / ${f(r.end.writeP99Ms)} | ${f(r.finalTableMiB)} | ${r.maxDeadRows.toLocaleString('en-US')} |`,
    ),
    '',
  ];
  const charts_ = [
    ['cleanup-poll-p99', lineChart(curve((s) => s.pollMs.p99), 'Unsent-row poll p99 as the outbox grows', x, 'poll p99 (ms)', `the relay's claim query, ${extra.partitionWidth} partitions`)],
    ['cleanup-write-p99', lineChart(curve((s) => s.writeP99Ms), 'Write path p99 as the outbox grows', x, 'write p99 (ms)', 'intended send to COMMIT, 100 orders per transaction')],
    ['cleanup-size', lineChart(curve((s) => s.tableMiB + s.indexMiB), 'Outbox size (tables + indexes)', x, 'MiB')],
    ['cleanup-dead-tuples', lineChart(curve((s) => s.deadRows), 'Dead tuples in the outbox', x, 'dead tuples', 'left behind by marking and deleting until vacuum reclaims them')],
  ] as const;
  for (const [name, chart] of charts_) lines.push(`![${name}](${save(charts, name, chart)})`, '');
  return lines;
}

/** A peer's sustained rate; summaries written before the confirmation rule carried a delivered count instead. */
function sustainedOf(p: PeerResult): number {
  return p.sustainedRate ?? (p as PeerResult & { sustainedEventsPerSec?: number }).sustainedEventsPerSec ?? 0;
}

function peersSection(summaries: Map<string, Summary>, charts: string): string[] {
  const summary = summaries.get('peers');
  const extra = summary?.extra as { peers: PeerResult[]; debezium: string; ptp: string } | undefined;
  if (!summary || !extra) return [];
  const rate = extra.peers[0]?.commonRate.parameters.rate;
  const lines = [
    '## Peers side by side: Debezium and pg-transactional-outbox',
    '',
    ...legacyNote(summary),
    `Same machine, same run, same load generator and the same idempotent consumer. Debezium ${extra.debezium} (Kafka Connect standalone, ` +
      `Outbox Event Router) reads our outbox table; pg-transactional-outbox ${extra.ptp} gets an equivalent table of its own, created with ` +
      'its DatabaseSetup, and publishes through the same kafkajs producer settings. *Drain*: a pre-loaded backlog, relay started afterwards. ' +
      `*Sustained*: the step-up search of the saturation scenario. Latency and CPU: at a common ${rate} events/s. ` +
      '*Lost* counts events of the common-rate and drain runs that had not reached the consumer when nothing had arrived for the drain timeout ' +
      `(${extra.peers[0]?.commonRate.parameters.drainTimeoutS ?? 30} s); the checker is the same for every row.`,
    '',
    '| relay | drain events/s | sustained events/s | e2e p50 | p99 | p99.9 (ms) | relay CPU s / 1M | total CPU s / 1M | relay peak memory (MiB) | lost | duplicates |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...extra.peers.map((p) => {
      const r = p.commonRate;
      const sustained = sustainedOf(p);
      return (
        `| ${p.name} | ${f(p.drain?.eventsPerSec)} | ${sustained > 0 ? f(sustained) : `below ${f(p.sustainedSteps[0]?.rate ?? null)}`} | ${f(r.e2eMs.p50)} | ${f(r.e2eMs.p99)} | ${f(r.e2eMs.p999)} | ` +
        `${f(r.cpuSecondsPerMillion.relay)} | ${f(r.cpuSecondsPerMillion.total)} | ${f(p.peakRelayMemoryMiB)} | ${r.lost + (p.drain?.lost ?? 0)} | ${r.duplicates} |`
      );
    }),
    '',
    '<details><summary>How each relay was configured</summary>',
    '',
    ...extra.peers.map((p) => `- **${p.name}**: ${p.settings}`),
    '',
    '</details>',
    '',
  ];
  // Short names keep the legend on one line and the bar labels apart.
  const chartName = (name: string) => name.replace('ours: ', '').replace('debezium-', 'dbz ').replace('pg-transactional-outbox', 'ptp');
  const legend = `dbz = Debezium ${extra.debezium}, ptp = pg-transactional-outbox ${extra.ptp}, the rest are ours`;
  const names = extra.peers.map((p) => chartName(p.name));
  const throughput = bars(
    names,
    [
      { name: 'backlog drain (events/s)', values: extra.peers.map((p) => p.drain?.eventsPerSec ?? null) },
      { name: 'sustained (events/s)', values: extra.peers.map(sustainedOf) },
    ],
    'Throughput: our relays and their peers',
    'events per second',
    `same machine, same run, same consumer; ${legend}`,
  );
  lines.push(`![Peers throughput](${save(charts, 'peers-throughput', throughput)})`, '');
  const latency = latencyByPercentile(
    extra.peers.map((p) => ({ name: chartName(p.name), histogram: decodeHistogram(p.commonRate.histograms.e2e) })),
    'End-to-end latency by percentile: our relays and their peers',
    `${rate} events/s offered to each; ${legend}`,
  );
  lines.push(`![Peers latency](${save(charts, 'peers-latency', latency)})`, '');
  return lines;
}

/** `kind hit/injected, ...`; legacy results recorded a bare count of injected faults. */
export function formatFaults(faults: RowResult['faults'] | Record<string, number>): string {
  const text = Object.entries(faults)
    .map(([kind, n]) => (typeof n === 'number' ? `${kind} ${n}` : `${kind} ${n.hit}/${n.scheduled}`))
    .join(', ');
  return text || 'none';
}

function chaosSection(summaries: Map<string, Summary>): string[] {
  const summary = summaries.get('chaos') as (Summary & { seed: number; windowS: number }) | undefined;
  const rows = (summary?.extra as { rows?: RowResult[] } | undefined)?.rows;
  if (!summary || !rows) return [];
  return [
    '## Crash-injection matrix',
    '',
    ...legacyNote(summary),
    `Every row runs the writer, the relay(s) and the consumer as supervised processes on a PostgreSQL and a Kafka of its own, ` +
      `injects faults for ${summary.windowS} s on a schedule drawn from seed ${summary.seed}, then stops the faults, drains and checks the ` +
      'history: *lost* = committed but never delivered, *unexpected* = delivered but never committed, *duplicate deliveries* = ' +
      'deliveries beyond the first (discarded by the inbox), *applied twice* = ledger rows per event above one, *reorderings* = an ' +
      'aggregate version first delivered after a later one. Why each row behaves as it does: [docs/outbox.md](../docs/outbox.md). ' +
      `Replay: \`${summary.command}\`.`,
    '',
    '| row | what is done to it | faults (hit a process at work / injected) | committed | delivered | lost | duplicate deliveries | applied twice | reorderings | verdict |',
    '|---|---|---|---:|---:|---:|---:|---:|---:|---|',
    ...rows.map(
      (r) =>
        `| ${r.name} | ${r.description} | ${formatFaults(r.faults)} | ${r.report.committed} | ${r.report.delivered} | ` +
        `**${r.report.lost}** | ${r.report.duplicateDeliveries} | **${r.report.appliedTwice}** | ${r.report.reorderings} | ${r.passed ? 'as expected' : `FAILED: ${r.failures.join('; ')}`} |`,
    ),
    '',
  ];
}

/**
 * Summaries written by the harness before its measurement rules were
 * tightened (their environment has no server settings) are shown, but
 * labelled: their drain clocks, CPU windows and end points differ.
 */
function isLegacy(summary: Summary): boolean {
  return summary.environment.postgresSettings === undefined;
}

function legacyNote(summary: Summary): string[] {
  if (!isLegacy(summary)) return [];
  return [
    `> **Measured under the earlier rules** (${summary.date.slice(0, 10)}, commit ${summary.environment.gitCommit.slice(0, 10)}): drain clocks started ` +
      'when the relay printed its start-up line, CPU was taken from before the load to after the drain and divided by every delivered event, ' +
      'latency ended at the consumer\'s receipt, and a sustained rate was the best step\'s delivered count. Not comparable with the sections ' +
      `above; re-run with \`${summary.command}\` to measure it under the current ones.`,
    '',
  ];
}

/** A line at the top when any published summary was measured on a tree with uncommitted changes. */
function dirtyBanner(summaries: Map<string, Summary>): string[] {
  const dirty = [...summaries.values()].filter((s) => s.environment.gitDirty);
  if (dirty.length === 0) return [];
  return [
    `> **Measured with uncommitted changes** (\`--allow-dirty\`): ${dirty
      .map((s) => `${s.scenario} (commit ${s.environment.gitCommit.slice(0, 10)}${s.environment.gitChanges ? `; changed: ${s.environment.gitChanges.join(', ')}` : ''})`)
      .join('; ')}. These figures cannot be tied to a commit.`,
    '',
  ];
}

function environmentSection(summaries: Map<string, Summary>): string[] {
  // The newest current summary speaks for the machine; legacy ones lack the settings.
  const env = [...summaries.values()].filter((s) => !isLegacy(s)).sort((a, b) => b.date.localeCompare(a.date))[0]?.environment;
  if (!env) return [];
  const fsync = 'notMeasured' in env.fsync ? `not measured: ${env.fsync.notMeasured}` : `p50 ${env.fsync.p50Ms} ms, p99 ${env.fsync.p99Ms} ms, max ${env.fsync.maxMs} ms (${env.fsync.samples} × 8 KiB write + fdatasync)`;
  return [
    '## Environment',
    '',
    'Read from the machine and the servers when the newest of these results was measured; each `summary.json` holds its own.',
    '',
    `| | |`,
    `|---|---|`,
    `| date | ${env.date} |`,
    `| CPU | ${env.cpuModel}, ${env.cores} cores |`,
    `| memory | ${env.memoryGiB} GiB |`,
    `| OS | ${env.os} |`,
    `| Node.js | ${env.node} |`,
    `| PostgreSQL | ${env.postgres} |`,
    `| PostgreSQL settings | ${Object.entries(env.postgresSettings).map(([name, value]) => `${name} = ${value}`).join(', ')} |`,
    `| fsync latency of the data directory's disk | ${fsync} |`,
    `| Kafka | ${env.kafka} |`,
    `| Java | ${env.java} |`,
    `| git commit | ${env.gitCommit}${env.gitDirty ? ` (with uncommitted changes: ${env.gitChanges.join(', ')})` : ' (clean tree)'} |`,
    `| dependencies | ${Object.entries(env.dependencies).map(([name, version]) => `${name} ${version}`).join(', ')} |`,
    '',
    `Everything runs on this one machine at once: PostgreSQL, the Kafka broker, the relay, the consumer and the load generator ` +
      `compete for the same ${env.cores} cores, so absolute rates are this machine's; CPU seconds per million events are what transfers to other machines.`,
    '',
  ];
}

function reproduceSection(summaries: Map<string, Summary>): string[] {
  return [
    '## Reproduce',
    '',
    '```sh',
    'npm install',
    'npm run bench:all        # every scenario, then this report',
    '```',
    '',
    'or one scenario at a time (each writes `results/<scenario>/`), then `npm run bench:report`:',
    '',
    '```sh',
    ...[...summaries.values()].filter((s) => s.command).map((s) => s.command),
    '```',
    '',
  ];
}

export function buildReport(dir: string, extraSections: ((summaries: Map<string, Summary>, charts: string) => string[])[] = []): string {
  const summaries = loadSummaries(dir);
  const charts = path.join(dir, 'charts');
  mkdirSync(charts, { recursive: true });
  const env = [...summaries.values()].find((s) => s.environment)?.environment;
  const lines = [
    '# outbox-bench results',
    '',
    '<!-- Generated by `npm run bench:report` from results/*/summary.json; do not edit by hand. -->',
    '',
    env
      ? `Measured ${env.date.slice(0, 10)} on ${env.cpuModel} (${env.cores} cores, ${env.memoryGiB} GiB), ${env.postgres.startsWith('1') ? `PostgreSQL ${env.postgres}` : env.postgres}, ${env.kafka}, Node ${env.node}, commit ${env.gitCommit.slice(0, 10)}.`
      : 'No results yet: run `npm run bench:all`.',
    '',
    ...dirtyBanner(summaries),
    ...sideBySide(summaries, charts),
    ...saturationSection(summaries, charts),
    ...fastestPathSection(summaries),
    ...drainSections(summaries),
    ...httpSection(summaries),
    ...microSection(summaries),
    ...cleanupSection(summaries, charts),
    ...peersSection(summaries, charts),
    ...chaosSection(summaries),
    ...extraSections.flatMap((section) => section(summaries, charts)),
    ...notShownSection(summaries),
    ...environmentSection(summaries),
    ...reproduceSection(summaries),
  ];
  const text = `${lines.join('\n')}\n`;
  writeFileSync(path.join(dir, 'README.md'), text);
  return text;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const dir = path.resolve(process.argv[2] ?? path.join(PROJECT_ROOT, 'results'));
  buildReport(dir);
  process.stdout.write(`wrote ${path.join(dir, 'README.md')} and ${path.join(dir, 'charts')}/\n`);
}
