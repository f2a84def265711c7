/**
 * The relays side by side: the one section that several scenarios share
 * (polling, skip-locked and cdc measure the same workload, and their runs are
 * read together), so it lives apart from any one of them.
 */
import { decodeHistogram } from '../../src/latency.js';
import { relayModeInfo } from '../../src/relay/modes.js';
import { bars, latencyByPercentile, throughputAndLag } from './charts.js';
import type { RunSummary } from '../harness/summary.js';
import { current, f, save, type ReportContext } from './kit.js';

/** The scenarios whose runs this section puts side by side, in its order. */
export const RELAY_SCENARIOS = ['polling', 'skip-locked', 'cdc'] as const;

/** The common-rate runs of the strategy scenarios, in a fixed order. */
function strategyRuns(context: ReportContext): RunSummary[] {
  return RELAY_SCENARIOS.flatMap((name) => current(context, name)?.runs ?? []);
}

export function relaysSideBySide(context: ReportContext): string[] {
  const runs = strategyRuns(context);
  if (runs.length === 0) return [];
  return [...mainTable(runs), ...spreadTable(runs), ...stagesTable(runs), ...chartSections(context, runs)];
}

/** The common workload, and every relay's figures from its median run. */
function mainTable(runs: RunSummary[]): string[] {
  const p = runs[0]!.parameters;
  return [
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
}

/** The spread over a relay's repeated runs. */
function spreadTable(runs: RunSummary[]): string[] {
  const repeated = runs.filter((r) => r.spread && r.spread.runs > 1);
  if (repeated.length === 0) return [];
  const range = (values: readonly (number | null)[]) => {
    const known = values.filter((v): v is number => v !== null);
    return known.length === 0 ? 'n/a' : `${f(Math.min(...known))} – ${f(Math.max(...known))}`;
  };
  return [
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
  ];
}

/** Where the time goes, stage by stage, as the relays recorded it. */
function stagesTable(runs: RunSummary[]): string[] {
  const budgeted = runs.filter((r) => r.stages);
  if (budgeted.length === 0) return [];
  const cell = (s: { ms: { count: number; p50: number; p99: number } }) => (s.ms.count === 0 ? 'n/a' : `${f(s.ms.p50)} / ${f(s.ms.p99)}`);
  return [
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
  ];
}

/** The latency, CPU and timeline charts of the relays' runs. */
function chartSections(context: ReportContext, runs: RunSummary[]): string[] {
  const { charts } = context;
  const p = runs[0]!.parameters;
  const lines: string[] = [];
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
    const inWal = relayModeInfo(r.relay).lagUnit === 'wal-bytes';
    const timeline = throughputAndLag(
      [{ name: r.name, points: r.timeline.map((t) => [t.t, t.delivered]) }],
      [{ name: r.name, points: r.timeline.map((t) => [t.t, inWal ? Math.round((t.lagBytes ?? 0) / 1024) : t.lagEvents ?? 0]) }],
      `${r.name}: applied events per second and relay lag`,
      inWal ? 'KiB of WAL' : 'unpublished events',
      `warm-up ${r.parameters.warmupS} s, then ${r.parameters.durationS} s measured`,
    );
    lines.push(`![${r.name} throughput and lag](${save(charts, `timeline-${r.name}`, timeline)})`, '');
  }
  return lines;
}
