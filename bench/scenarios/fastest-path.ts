/**
 * Toward 100K events/s: the fastest path (batched intake + CDC), each change
 * found by profiling measured against the baseline in the same run, on the
 * same backlog. The backlog drain isolates what the relay and the consumer
 * can move; the intake is measured separately (its rate is in the table).
 */
import { runPipeline, type PipelineParameters } from '../harness/pipeline.js';
import { COMPONENTS, type Component } from '../harness/sampler.js';
import { summarizeRun, type RunSummary } from '../harness/summary.js';
import { current, f, type ReportContext } from '../report/kit.js';
import type { Scenario } from '../scenario.js';
import { DRIVERS } from '../drivers/index.js';

interface Variant {
  name: string;
  change: string;
  parameters: Partial<PipelineParameters>;
}

const VARIANTS: Variant[] = [
  {
    name: 'baseline',
    change: '10 orders per transaction; one idempotent producer; offsets committed after every batch; 1000 events per Kafka request',
    parameters: { ordersPerTransaction: 10, publishers: 1, consumerCommitIntervalMs: 100, batchSize: 1_000 },
  },
  { name: '+batched intake', change: '1000 orders per transaction (one statement, unnest)', parameters: { ordersPerTransaction: 1_000, publishers: 1, consumerCommitIntervalMs: 100, batchSize: 1_000 } },
  { name: '+4 producers', change: 'the relay publishes through 4 producers in parallel, each aggregate always on the same one', parameters: { ordersPerTransaction: 1_000, publishers: 4, consumerCommitIntervalMs: 100, batchSize: 1_000 } },
  { name: '+offsets every 250 ms', change: 'the consumer commits offsets at most every 250 ms (the inbox absorbs the larger replay)', parameters: { ordersPerTransaction: 1_000, publishers: 4, consumerCommitIntervalMs: 250, batchSize: 1_000 } },
  { name: '+5000 per request', change: 'the relay hands Kafka up to 5000 events per request', parameters: { ordersPerTransaction: 1_000, publishers: 4, consumerCommitIntervalMs: 250, batchSize: 5_000 } },
];

/** A variant's run as the summary holds it. */
type VariantRun = RunSummary & { change: string; intakeEventsPerSec: number };

function report(context: ReportContext, folder: string): string[] {
  const summary = current(context, folder);
  if (!summary) return [];
  const runs = summary.runs as VariantRun[];
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

export const fastestPath: Scenario = {
  name: 'fastest-path',
  description: 'batched intake + CDC: each optimisation against the baseline, same backlog, same run',
  defaults: { relayMode: 'cdc', store: 'table', drainTimeoutS: 60 },
  flags: {
    backlog: { description: 'events pre-loaded for each variant', defaultValue: 200_000, min: 1_000, max: 10_000_000, formerly: ['path-backlog'] },
  },
  async run(context) {
    const backlog = context.option('backlog');
    const runs = [];
    const lines = ['fastest path: batched intake (1000 orders per transaction) + CDC relay, backlog drained by relay and consumer'];
    for (const variant of VARIANTS) {
      const durationS = Math.max(1, Math.ceil(backlog / 50_000));
      const result = await runPipeline(
        {
          infra: context.infra,
          log: context.log,
          name: `fastest-${variant.name.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '').toLowerCase()}`,
          rawDir: `${context.outDir}/raw/${variant.name.replace(/[^a-z0-9]+/gi, '-')}`,
          quiet: context.quiet,
          driver: DRIVERS.ours,
        },
        { ...context.parameters, ...variant.parameters, rate: backlog / durationS, warmupS: 0, durationS, relayAfterLoad: true },
      );
      const summary = summarizeRun(variant.name, result);
      runs.push({ ...summary, change: variant.change, intakeEventsPerSec: result.committedPerSec } satisfies VariantRun);
      lines.push(
        `  ${variant.name.padEnd(24)} intake ${String(result.committedPerSec).padStart(6)} events/s, drain ${String(result.drain?.eventsPerSec ?? 0).padStart(6)} events/s from 10% to 90% ` +
          `(first event after ${result.drain?.timeToFirstEventS ?? '?'} s, all ${result.drain?.backlog ?? 0} in ${result.drain?.seconds ?? '?'} s); ` +
          `drain CPU s per 1M (10%-90%): ${Object.entries(summary.cpuSecondsPerMillion).map(([k, v]) => `${k} ${v ?? 'n/a'}`).join(', ')}; lost ${result.lost}`,
      );
    }
    return { title: 'Toward 100K events/s: the fastest path, change by change', runs, lines };
  },
  report,
};
