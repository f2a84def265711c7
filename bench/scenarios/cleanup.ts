/**
 * Cleanup under load: the outbox grows to millions of rows through the real
 * write path while the polling relay publishes and marks them, once with no
 * cleanup, once with batched DELETE, once with DROP PARTITION (minute-wide
 * partitions, two minutes of retention). Sampled over time: the unsent-row
 * poll's latency, the write path's p99, table and index size, dead tuples,
 * autovacuum runs.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Piscina } from 'piscina';
import type { Sql } from '../../src/db.js';
import { nowMs } from '../../src/events.js';
import { createHistogram, recordMs, summarizeMs, type Histogram } from '../../src/latency.js';
import { selectOldestUnpublished } from '../../src/queries.js';
import { newRunTag } from '../harness/load-ids.js';
import { planLoad } from '../harness/load-worker.js';
import { DRIVERS } from '../drivers/index.js';
import type { RunningRelay } from '../drivers/types.js';
import { driverRunOf, stopRelay } from '../harness/driver-run.js';
import { checkWorkload, loadPool, runLoad } from '../harness/pipeline.js';
import { openRun } from '../harness/run-setup.js';
import { lines as lineChart } from '../report/charts.js';
import { anySummary, f, legacyNote, save, type ReportContext } from '../report/kit.js';
import type { Scenario, ScenarioContext } from '../scenario.js';

const STRATEGIES = ['none', 'batched-delete', 'drop-partition'] as const;
type Strategy = (typeof STRATEGIES)[number];

/** Retention and partition width of the run: minutes, so cleanup happens many times in one run. */
const RETENTION = '2 minutes';
const WIDTH = '1 minute';

export interface CleanupSample {
  /** Seconds since the load started. */
  t: number;
  /** Outbox rows written so far (the id sequence). */
  rowsWritten: number;
  liveRows: number;
  deadRows: number;
  unpublished: number;
  tableMiB: number;
  indexMiB: number;
  autovacuumRuns: number;
  vacuumsRunning: number;
  partitions: number;
  /** The relay's claim query (1000 oldest unpublished), over the last interval. */
  pollMs: { p50: number; p99: number; max: number };
  /** The write path (intended send -> COMMIT), over the last interval. */
  writeP99Ms: number | null;
}

async function sampleTables(sql: Sql): Promise<Omit<CleanupSample, 't' | 'pollMs' | 'writeP99Ms'>> {
  const [row] = await sql<{
    rowsWritten: number;
    liveRows: number;
    deadRows: number;
    tableBytes: number;
    indexBytes: number;
    autovacuumRuns: number;
    vacuumsRunning: number;
    partitions: number;
    unpublished: number;
  }[]>`
    SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM outbox_id_seq) AS rows_written,
           coalesce(sum(s.n_live_tup), 0)::bigint AS live_rows,
           coalesce(sum(s.n_dead_tup), 0)::bigint AS dead_rows,
           coalesce(sum(pg_table_size(s.relid)), 0)::bigint AS table_bytes,
           coalesce(sum(pg_indexes_size(s.relid)), 0)::bigint AS index_bytes,
           coalesce(sum(s.autovacuum_count), 0)::bigint AS autovacuum_runs,
           (SELECT count(*) FROM pg_stat_progress_vacuum WHERE datname = current_database())::int AS vacuums_running,
           count(*)::int AS partitions,
           (SELECT count(*) FROM outbox WHERE published_at IS NULL)::bigint AS unpublished
    FROM pg_stat_user_tables s
    WHERE s.schemaname = current_schema() AND s.relname LIKE 'outbox_p%'`;
  const mib = (bytes: number) => Math.round((bytes / 1024 ** 2) * 10) / 10;
  return {
    rowsWritten: row!.rowsWritten,
    liveRows: row!.liveRows,
    deadRows: row!.deadRows,
    unpublished: row!.unpublished,
    tableMiB: mib(row!.tableBytes),
    indexMiB: mib(row!.indexBytes),
    autovacuumRuns: row!.autovacuumRuns,
    vacuumsRunning: row!.vacuumsRunning,
    partitions: row!.partitions,
  };
}

export interface StrategyRun {
  strategy: Strategy;
  rowsWritten: number;
  samples: CleanupSample[];
  /** Poll and write latency over the first and the last tenth of the rows. */
  start: { pollP50Ms: number; pollP99Ms: number; writeP99Ms: number };
  end: { pollP50Ms: number; pollP99Ms: number; writeP99Ms: number };
  finalTableMiB: number;
  maxDeadRows: number;
}

/** What the cleanup scenario writes into its summary's `extra`. */
interface CleanupResult {
  retention: string;
  partitionWidth: string;
  rate: number;
  strategies: StrategyRun[];
}

function report(context: ReportContext, folder: string): string[] {
  const summary = anySummary<CleanupResult>(context, folder);
  const extra = summary?.extra;
  if (!summary || !extra) return [];
  const { charts } = context;
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

type TimedCleanupSample = CleanupSample & { at: number };

/** Samples the unsent-row poll and the table while the writers run. */
async function samplePolls(
  context: ScenarioContext,
  sql: Sql,
  strategy: string,
  window: { startAt: number; durationMs: number; batchSize: number; done: () => boolean },
): Promise<TimedCleanupSample[]> {
  const samples: TimedCleanupSample[] = [];
  // Rationale: every 10 s gives ~100 points over a 10M-row run; each
  // sample runs the poll query 10 times for a stable p99 of the interval.
  const SAMPLE_MS = 10_000;
  let last = nowMs();
  while (!window.done()) {
    const poll: Histogram = createHistogram();
    const until = Math.min(last + SAMPLE_MS, window.startAt + window.durationMs + 1_000);
    while (nowMs() < until && !window.done()) {
      const started = nowMs();
      await sql.begin((tx) => selectOldestUnpublished(tx, window.batchSize, 'none'));
      recordMs(poll, nowMs() - started);
      await sleep(Math.max(0, (until - last) / 10 - (nowMs() - started)));
    }
    const tables = await sampleTables(sql);
    const pollMs = summarizeMs(poll);
    last = nowMs();
    samples.push({ ...tables, t: Math.round((last - window.startAt) / 1_000), at: last, pollMs: { p50: pollMs.p50, p99: pollMs.p99, max: pollMs.max }, writeP99Ms: null });
    if (!context.quiet) {
      process.stderr.write(
        `  ${strategy.padEnd(15)} ${String(samples.at(-1)!.t).padStart(5)} s  ${(tables.rowsWritten / 1e6).toFixed(2)}M rows written  ${tables.liveRows} live  ${tables.deadRows} dead  ` +
          `${(tables.tableMiB + tables.indexMiB).toFixed(1)} MiB  poll p99 ${pollMs.p99} ms  unpublished ${tables.unpublished}\n`,
      );
    }
  }
  return samples;
}

/** One strategy's figures: each sample's write p99, and the first and last tenth of the run. */
function strategyRun(strategy: Strategy, samples: TimedCleanupSample[], loadResults: Awaited<ReturnType<typeof runLoad>>): StrategyRun {
  // Attribute each transaction's write latency to the sample interval it was intended in.
  const writeBySample = samples.map(() => createHistogram());
  for (const result of loadResults) {
    for (let i = 0; i < result.transactions.length; i += 2) {
      const intended = result.transactions[i]!;
      const index = samples.findIndex((s) => s.at >= intended);
      recordMs(writeBySample[index === -1 ? samples.length - 1 : index]!, result.transactions[i + 1]!);
    }
  }
  samples.forEach((s, i) => (s.writeP99Ms = writeBySample[i]!.totalCount > 0 ? summarizeMs(writeBySample[i]!).p99 : null));
  const rowsWritten = samples.at(-1)?.rowsWritten ?? 0;
  // The first and the last tenth of the samples (at least one each).
  const tenth = Math.max(1, Math.floor(samples.length / 10));
  const summarize = (part: CleanupSample[]) => {
    const median = (values: number[]) => (values.length === 0 ? 0 : [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!);
    return {
      pollP50Ms: median(part.map((s) => s.pollMs.p50)),
      pollP99Ms: median(part.map((s) => s.pollMs.p99)),
      writeP99Ms: median(part.flatMap((s) => (s.writeP99Ms === null ? [] : [s.writeP99Ms]))),
    };
  };
  const run: StrategyRun = {
    strategy,
    rowsWritten,
    samples: samples.map(({ at: _at, ...rest }) => rest),
    start: summarize(samples.slice(0, tenth)),
    end: summarize(samples.slice(-tenth)),
    finalTableMiB: Math.round(((samples.at(-1)?.tableMiB ?? 0) + (samples.at(-1)?.indexMiB ?? 0)) * 10) / 10,
    maxDeadRows: Math.max(0, ...samples.map((s) => s.deadRows)),
  };
  return run;
}

export const cleanup: Scenario = {
  name: 'cleanup',
  takesWorkload: true,
  description: 'outbox grown to 10M rows under no cleanup, batched DELETE and DROP PARTITION: poll and write latency over time',
  standalone: true,
  defaults: { relayMode: 'polling', store: 'table', ordersPerTransaction: 100, batchSize: 2_000, pollIntervalMs: 100, warmupS: 0 },
  flags: {
    'cleanup-rows': { description: 'rows written per strategy', defaultValue: 10_000_000, min: 10_000, max: 1_000_000_000 },
    'cleanup-rate': { description: 'events per second written', defaultValue: 8_000, min: 100, max: 1_000_000 },
  },
  async run(context) {
    const { infra, log } = context;
    const rows = context.option('cleanup-rows');
    const rate = context.option('cleanup-rate');
    const results: StrategyRun[] = [];
    const lines: string[] = [`cleanup: ${rows.toLocaleString('en-US')} rows per strategy at ${rate}/s, ${WIDTH} partitions, ${RETENTION} retention, polling relay`];
    for (const strategy of STRATEGIES) {
      const rawDir = path.join(context.outDir, 'raw', strategy);
      mkdirSync(rawDir, { recursive: true });
      const p = { ...context.parameters, rate, warmupS: 0, durationS: rows / rate, eventsPerAggregate: 1, keySpace: 1, hotKeyShare: 0, hotKeys: 1 };
      // Our relay, with its cleanup loop beside it: the strategy measured is its flag.
      const driver = DRIVERS.ours;
      const setup = await openRun({ infra, log, name: 'cleanup', partitions: p.partitions, relay: driver.provisioning(p), partitionWidth: WIDTH, partitionsAhead: 3 });
      const { sql, schema } = setup;
      let relay: RunningRelay | undefined;
      let pool: Piscina | undefined;
      try {
        await checkWorkload({ databaseUrl: infra.databaseUrl, schema, p });
        relay = await driver.start(driverRunOf({ infra, log, rawDir }, setup, p), {
          settings: { retention: RETENTION, logLevel: 'info' },
          args: ['--cleanup', strategy, '--cleanup-interval-ms', '15000'],
        });

        const durationMs = p.durationS * 1_000;
        const plan = planLoad(p);
        const startAt = nowMs() + 2_000;
        pool = loadPool(p.workers);
        const loads = runLoad(pool, { databaseUrl: infra.databaseUrl, schema, runTag: newRunTag(), plan, startAt, measureFrom: startAt, measureTo: startAt + durationMs, p });
        let done = false;
        // Settles the flag either way; a failed load is rethrown where it is awaited below.
        loads.then(() => (done = true), () => (done = true));
        const samples = await samplePolls(context, sql, strategy, { startAt, durationMs, batchSize: p.batchSize, done: () => done });
        const run = strategyRun(strategy, samples, await loads);
        const { rowsWritten } = run;
        results.push(run);
        lines.push(
          `  ${strategy.padEnd(15)} ${(rowsWritten / 1e6).toFixed(1)}M rows: poll p99 ${run.start.pollP99Ms} -> ${run.end.pollP99Ms} ms, ` +
            `write p99 ${run.start.writeP99Ms} -> ${run.end.writeP99Ms} ms, outbox ${run.finalTableMiB} MiB at the end, dead rows up to ${run.maxDeadRows}`,
        );
      } finally {
        await pool?.destroy().catch(() => {});
        if (relay) await stopRelay(relay).catch(() => {});
        await setup.close();
      }
    }
    return { title: 'Cleanup under load: no cleanup vs batched DELETE vs DROP PARTITION', runs: [], extra: { retention: RETENTION, partitionWidth: WIDTH, rate, strategies: results } satisfies CleanupResult, lines };
  },
  report,
};
