/**
 * What the outbox costs the write path: the same order workload, same rate,
 * same run, written three ways (the business row alone; with an outbox row;
 * with a logical decoding message), then again with a relay reading what
 * the writes leave (its reads, and for the polling relay its marks, land on
 * PostgreSQL beside the writes). Per way: commit latency from the intended
 * send (open loop), PostgreSQL CPU-s and WAL bytes per order over the
 * measured window, and the highest rate this machine takes for that write.
 */
import type { Piscina } from 'piscina';
import { nowMs, sleepUntil } from '../../src/events.js';
import { createHistogram, decodeHistogram, encodeHistogram, summarizeMs, type LatencySummaryMs } from '../../src/latency.js';
import { relayModeInfo, type RelayMode } from '../../src/relay/modes.js';
import { kafkaCpu, pgCpu, relayCpu } from '../harness/drain-figures.js';
import { newRunTag } from '../harness/load-ids.js';
import { intendedTime, planLoad, type LoadResult, type LoadTask } from '../harness/load-worker.js';
import { DRIVERS } from '../drivers/index.js';
import type { RunningRelay } from '../drivers/types.js';
import { driverRunOf, stopRelay } from '../harness/driver-run.js';
import { loadPool, runLoad } from '../harness/pipeline.js';
import { processCpuSeconds } from '../harness/process-stats.js';
import { openRun } from '../harness/run-setup.js';
import { bars } from '../report/charts.js';
import { current, f, save, type ReportContext } from '../report/kit.js';
import type { Scenario, ScenarioContext } from '../scenario.js';
import { p99LimitFlag, searchRateFlags } from '../scenario-flags.js';
import { OutboxBenchError } from '../../src/errors.js';

/** One way of writing an order, and the relay reading it (if any). */
interface WriteWay {
  name: string;
  store: LoadTask['store'];
  relay?: RelayMode;
}

const WAYS: readonly WriteWay[] = [
  { name: 'business row alone', store: 'none' },
  { name: '+ outbox row', store: 'table' },
  { name: '+ logical message', store: 'message' },
  { name: '+ outbox row, polling relay', store: 'table', relay: 'polling' },
  { name: '+ outbox row, CDC relay', store: 'table', relay: 'cdc' },
  { name: '+ logical message, CDC relay', store: 'message', relay: 'cdc-message' },
];

// Rationale: an order that commits within a second of its window's end was
// written at the offered rate; later ones queued behind a saturated writer.
const GRACE_MS = 1_000;
// Rationale: the same share the relays' sustained search asks of deliveries.
const MIN_COMMITTED_SHARE = 0.98;

export interface WriteMeasurement {
  way: string;
  store: LoadTask['store'];
  relay: RelayMode | null;
  rate: number;
  /** Orders whose commit returned inside the measured window (the divisor of CPU and WAL). */
  ordersInWindow: number;
  /** Share of the orders intended in the window that committed by its end + GRACE_MS. */
  committedShare: number;
  failed: number;
  /** Intended send -> commit returned, measured window. */
  commitMs: LatencySummaryMs;
  histogram: string;
  /** CPU seconds per million orders over the window, by process; the load generator is this process's worker threads. */
  cpuSecondsPerMillion: { postgres: number | null; relay: number | null; kafka: number | null; loadGenerator: number | null };
  walBytesPerOrder: number;
  errors: string[];
}

export interface MaxRate {
  way: string;
  /** The highest offered rate that passed twice (0: none did). */
  rate: number;
  steps: { rate: number; committedShare: number; p99Ms: number; passed: boolean }[];
}

/** One way, measured `repeats` times (the ways interleaved, so drift spreads over all of them). */
export interface WayRuns {
  way: string;
  store: LoadTask['store'];
  relay: RelayMode | null;
  runs: WriteMeasurement[];
}

/** What the write-cost scenario writes into its summary's `extra`. */
export interface WriteCostResult {
  rate: number;
  p99LimitMs: number;
  repeats: number;
  ways: WayRuns[];
  maxRates: MaxRate[];
}

/** Median and range of one figure over a way's runs (null when a run has none). */
function spreadOf(runs: readonly WriteMeasurement[], pick: (m: WriteMeasurement) => number | null): { median: number; min: number; max: number } | null {
  const values = runs.map(pick);
  if (values.length === 0 || values.some((v) => v === null)) return null;
  const sorted = (values as number[]).slice().sort((a, b) => a - b);
  return { median: sorted[Math.floor((sorted.length - 1) / 2)]!, min: sorted[0]!, max: sorted.at(-1)! };
}

interface Reading {
  postgres: number;
  kafka: number;
  relay: number;
  load: number;
  walLsn: string;
}

/** Writes `rate` orders/s one way for warm-up + duration, and measures the window. */
export async function measureWrites(context: ScenarioContext, pool: Piscina, way: WriteWay, rate: number, warmupS: number, durationS: number): Promise<WriteMeasurement> {
  const { infra, log } = context;
  const p = { ...context.parameters, rate, warmupS, durationS, ordersPerTransaction: 1, eventsPerAggregate: 1 };
  const name = `write-cost-${way.store}-${way.relay ?? 'none'}`;
  // Our relay in the way's mode, or none: the write path's cost with and without a reader.
  const relayed = way.relay ? { ...p, relayMode: way.relay } : undefined;
  const driver = DRIVERS.ours;
  const run = await openRun({ infra, log, name, partitions: p.partitions, relay: relayed ? driver.provisioning(relayed) : undefined });
  let relay: RunningRelay | undefined;
  try {
    if (relayed) relay = await driver.start(driverRunOf({ infra, log, rawDir: `${context.outDir}/raw/${name}` }, run, relayed));
    const plan = planLoad(p);
    const startAt = nowMs() + 1_000;
    const measureFrom = startAt + warmupS * 1_000;
    const measureTo = measureFrom + durationS * 1_000;
    const read = async (): Promise<Reading> => {
      const [row] = await run.sql<{ lsn: string }[]>`SELECT pg_current_wal_lsn()::text AS lsn`;
      return { postgres: pgCpu(infra), kafka: kafkaCpu(infra), relay: relay ? relayCpu(relay.child.pid).total : 0, load: processCpuSeconds(process.pid) ?? Number.NaN, walLsn: row!.lsn };
    };
    const readings = (async () => {
      await sleepUntil(measureFrom);
      const first = await read();
      await sleepUntil(measureTo);
      return [first, await read()] as const;
    })();
    const results = await runLoad(pool, { databaseUrl: infra.databaseUrl, schema: run.schema, runTag: newRunTag(), plan, startAt, measureFrom, measureTo, p, store: way.store });
    const [from, to] = await readings;
    const [wal] = await run.sql<{ bytes: string }[]>`SELECT pg_wal_lsn_diff(${to.walLsn}::pg_lsn, ${from.walLsn}::pg_lsn)::text AS bytes`;
    return summarize(way, rate, results, plan.perWorkerRate, { startAt, measureFrom, measureTo }, from, to, Number(wal!.bytes));
  } finally {
    if (relay) await stopRelay(relay).catch(() => {});
    await run.close();
  }
}

function summarize(
  way: WriteWay,
  rate: number,
  results: readonly LoadResult[],
  perWorkerRate: number,
  window: { startAt: number; measureFrom: number; measureTo: number },
  from: Reading,
  to: Reading,
  walBytes: number,
): WriteMeasurement {
  let ordersInWindow = 0;
  let intended = 0;
  let inTime = 0;
  const histogram = createHistogram();
  for (const result of results) {
    histogram.add(decodeHistogram(result.commitLatency));
    result.commitAt.forEach((at, seq) => {
      if (at >= window.measureFrom && at < window.measureTo) ordersInWindow += 1;
      const due = intendedTime({ startAt: window.startAt, perWorkerRate }, seq);
      if (due < window.measureFrom || due >= window.measureTo) return;
      intended += 1;
      if (at <= window.measureTo + GRACE_MS) inTime += 1;
    });
  }
  // A server this process did not start (DATABASE_URL) has no process to read: null, not a guess.
  const perMillion = (seconds: number) => (Number.isFinite(seconds) ? Math.round((seconds / Math.max(1, ordersInWindow)) * 1e6 * 10) / 10 : null);
  return {
    way: way.name,
    store: way.store,
    relay: way.relay ?? null,
    rate,
    ordersInWindow,
    committedShare: intended === 0 ? 0 : inTime / intended,
    failed: results.reduce((sum, r) => sum + r.failed, 0),
    commitMs: summarizeMs(histogram),
    histogram: encodeHistogram(histogram),
    cpuSecondsPerMillion: {
      postgres: perMillion(to.postgres - from.postgres),
      relay: way.relay ? perMillion(to.relay - from.relay) : null,
      kafka: way.relay ? perMillion(to.kafka - from.kafka) : null,
      loadGenerator: perMillion(to.load - from.load),
    },
    walBytesPerOrder: Math.round(walBytes / Math.max(1, ordersInWindow)),
    errors: [...new Set(results.flatMap((r) => r.errors))],
  };
}

const passes = (m: WriteMeasurement, p99LimitMs: number) => m.committedShare >= MIN_COMMITTED_SHARE && m.failed === 0 && m.commitMs.p99 <= p99LimitMs;

/** Steps the rate up (×1.6) until a step fails, then runs the highest passing one again: the rate is one that passed twice. */
async function searchMaxRate(context: ScenarioContext, pool: Piscina, way: WriteWay, options: { startRate: number; maxRate: number; p99LimitMs: number; stepS: number }): Promise<MaxRate> {
  const steps: MaxRate['steps'] = [];
  const step = async (rate: number) => {
    const m = await measureWrites(context, pool, way, rate, 2, options.stepS);
    const passed = passes(m, options.p99LimitMs);
    steps.push({ rate, committedShare: Math.round(m.committedShare * 1_000) / 1_000, p99Ms: m.commitMs.p99, passed });
    process.stderr.write(`  ${way.name} at ${rate}/s: ${(m.committedShare * 100).toFixed(1)}% committed in time, commit p99 ${m.commitMs.p99} ms -> ${passed ? 'passes' : 'fails'}\n`);
    return passed;
  };
  for (let rate = options.startRate; rate <= options.maxRate; rate = Math.round(rate * 1.6)) {
    if (!(await step(rate))) break;
  }
  // The top rate again; if it fails this time, the next lower one that passed, once more.
  const passedOnce = steps.filter((s) => s.passed).map((s) => s.rate).sort((a, b) => b - a);
  for (const rate of passedOnce) {
    if (await step(rate)) return { way: way.name, rate, steps };
  }
  return { way: way.name, rate: 0, steps };
}

function report(context: ReportContext, folder: string): string[] {
  const summary = current<WriteCostResult>(context, folder);
  const extra = summary?.extra;
  if (!summary || !extra?.ways) return [];
  const baseline = extra.ways.find((w) => w.store === 'none');
  // A figure's median with its range over the runs, and what the median adds to the business row alone's.
  const cell = (w: WayRuns, pick: (m: WriteMeasurement) => number | null, digits = 1) => {
    const mine = spreadOf(w.runs, pick);
    if (!mine) return 'n/a';
    const range = w.runs.length > 1 ? ` [${f(mine.min, digits)}–${f(mine.max, digits)}]` : '';
    const base = baseline && w !== baseline ? spreadOf(baseline.runs, pick) : null;
    const d = base ? mine.median - base.median : null;
    return `${f(mine.median, digits)}${range}${d === null ? '' : ` (${d >= 0 ? '+' : '−'}${f(Math.abs(d), digits)})`}`;
  };
  const max = (w: WayRuns) => extra.maxRates.find((r) => r.way === w.way);
  const lines = [
    '## What the outbox costs your transaction',
    '',
    `The same workload (one new order per transaction, ${summary.parameters.connectionsPerWorker} connections, open loop) at ${f(extra.rate)} orders/s, ` +
      `${summary.parameters.durationS} s measured after ${summary.parameters.warmupS} s of warm-up, written each way in turn, ${extra.repeats} times over ` +
      '(the ways interleaved); then with a relay reading what the writes leave. Each figure is the median of the runs, ' +
      '[lowest–highest], and (in brackets) what the median adds to the business row alone\'s. Commit latency runs from the intended send ' +
      'to the commit returning; CPU and WAL are taken over the measured window and divided by the orders committed in it (PostgreSQL CPU ' +
      'includes the relay\'s reads and marks). The highest rate is the highest offered rate ' +
      `(×1.6 steps from ${f(extra.maxRates[0]?.steps[0]?.rate)}, one search per way) at which ${MIN_COMMITTED_SHARE * 100}% of a 10 s window's orders committed within ` +
      `${GRACE_MS / 1_000} s of its end, none failed and the commit p99 stayed under ${extra.p99LimitMs} ms, passed twice; the load generator shares the machine.`,
    '',
    '| way | commit p50 (ms) | p99 | p99.9 | PostgreSQL CPU-s / 1M orders | relay CPU-s / 1M | WAL bytes / order | highest rate (orders/s) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...extra.ways.map(
      (w) =>
        `| ${w.way} | ${cell(w, (m) => m.commitMs.p50, 2)} | ${cell(w, (m) => m.commitMs.p99, 2)} | ${cell(w, (m) => m.commitMs.p999, 2)} | ` +
        `${cell(w, (m) => m.cpuSecondsPerMillion.postgres)} | ${w.relay ? cell(w, (m) => m.cpuSecondsPerMillion.relay) : 'n/a'} | ` +
        `${cell(w, (m) => m.walBytesPerOrder)} | ${max(w) ? (max(w)!.rate > 0 ? f(max(w)!.rate) : 'none passed twice') : 'not searched'} |`,
    ),
    '',
    '<details><summary>Every step of the highest-rate searches</summary>',
    '',
    '| way | offered (orders/s) | committed in time | commit p99 (ms) | verdict |',
    '|---|---:|---:|---:|---|',
    ...extra.maxRates.flatMap((r) => r.steps.map((step) => `| ${r.way} | ${f(step.rate)} | ${(step.committedShare * 100).toFixed(1)}% | ${f(step.p99Ms, 2)} | ${step.passed ? 'passes' : 'fails'} |`)),
    '',
    '</details>',
    '',
  ];
  const median = (w: WayRuns, pick: (m: WriteMeasurement) => number | null) => spreadOf(w.runs, pick)?.median ?? null;
  const chart = bars(
    extra.ways.map((w) => w.way),
    [
      { name: 'PostgreSQL CPU-s / 1M orders', values: extra.ways.map((w) => median(w, (m) => m.cpuSecondsPerMillion.postgres)) },
      { name: 'relay CPU-s / 1M orders', values: extra.ways.map((w) => (w.relay ? median(w, (m) => m.cpuSecondsPerMillion.relay) : null)) },
    ],
    'What each way of writing costs, per million orders (median run)',
    'CPU seconds',
    `${f(extra.rate)} orders/s, one order per transaction`,
  );
  lines.push(`![What the outbox costs the write path](${save(context.charts, 'write-cost', chart)})`, '');
  return lines;
}

export const writeCost: Scenario = {
  name: 'write-cost',
  description: 'what the outbox costs the write path: business row alone, + outbox row, + logical message, then each with its relay running',
  // Rationale: one order per transaction is the business transaction as a
  // service has it; 2,000/s is the rate of the relay scenarios.
  defaults: { rate: 2_000, warmupS: 5, durationS: 20, ordersPerTransaction: 1, eventsPerAggregate: 1 },
  flags: {
    'p99-limit-ms': p99LimitFlag('the commit', 100, 60_000, 'write-p99-limit-ms'),
    ...searchRateFlags('orders/s', { start: 2_000, max: 100_000 }, 'write'),
    // Rationale: 10 s per search step holds 20,000+ orders from the first step on.
    'write-step-s': { description: 'measured seconds per step of the search', defaultValue: 10, min: 1, max: 600 },
  },
  async run(context) {
    const p = context.parameters;
    // Its baseline is the business write without its event, which a script that writes both has no form of.
    if (p.workload) throw new OutboxBenchError('USAGE', `write-cost compares the built-in order write with and without its event; --workload sql:${p.workload.file} has no eventless form`);
    for (const way of WAYS) if (way.relay) relayModeInfo(way.relay);
    const pool = loadPool(p.workers);
    try {
      const ways: WayRuns[] = WAYS.map((way) => ({ way: way.name, store: way.store, relay: way.relay ?? null, runs: [] }));
      for (let run = 1; run <= context.repeats; run++) {
        for (const [i, way] of WAYS.entries()) {
          process.stderr.write(`write-cost: run ${run}/${context.repeats}: ${way.name} at ${p.rate} orders/s\n`);
          ways[i]!.runs.push(await measureWrites(context, pool, way, p.rate, p.warmupS, p.durationS));
        }
      }
      const p99LimitMs = context.option('p99-limit-ms');
      const maxRates: MaxRate[] = [];
      for (const way of WAYS.filter((w) => !w.relay)) {
        process.stderr.write(`write-cost: the highest rate of ${way.name}\n`);
        maxRates.push(await searchMaxRate(context, pool, way, { startRate: context.option('start-rate'), maxRate: context.option('max-rate'), p99LimitMs, stepS: context.option('write-step-s') }));
      }
      const lines = ways.map((w) => {
        const m = (pick: (x: WriteMeasurement) => number | null) => spreadOf(w.runs, pick)?.median ?? 'n/a';
        const top = maxRates.find((r) => r.way === w.way);
        return (
          `${w.way} (median of ${w.runs.length}): commit p50 ${m((x) => x.commitMs.p50)} / p99 ${m((x) => x.commitMs.p99)} / p99.9 ${m((x) => x.commitMs.p999)} ms; ` +
          `PostgreSQL ${m((x) => x.cpuSecondsPerMillion.postgres)} CPU-s / 1M orders${w.relay ? `, relay ${m((x) => x.cpuSecondsPerMillion.relay)}` : ''}; ` +
          `${m((x) => x.walBytesPerOrder)} WAL bytes / order${top ? `; highest rate ${top.rate}/s` : ''}`
        );
      });
      return { title: 'What the outbox costs the write path', runs: [], extra: { rate: p.rate, p99LimitMs, repeats: context.repeats, ways, maxRates } satisfies WriteCostResult, lines };
    } finally {
      await pool.destroy();
    }
  },
  report,
};
