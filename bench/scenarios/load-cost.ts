/**
 * What the load generator costs the machine it measures, against pgbench:
 * the same transaction (a workload script, by default
 * bench/workloads/order-outbox.sql) at the same rate and connections on the
 * same server, written by our worker pool and by pgbench (`-M prepared`,
 * open loop with `-R`), and the built-in orders beside them. No relay, no
 * consumer: the writers alone. Per transaction committed in the measured
 * window: the writer's CPU (our whole process, as every run counts it;
 * pgbench's process from /proc) and PostgreSQL's, which shows the two sent
 * the server the same work. The writers interleaved round by round; the
 * ratio to pgbench is taken within each round.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/config.js';
import { OutboxBenchError } from '../../src/errors.js';
import { nowMs, sleepUntil } from '../../src/events.js';
import { pgCpu } from '../harness/drain-figures.js';
import { newRunTag } from '../harness/load-ids.js';
import { planLoad } from '../harness/load-worker.js';
import { checkWorkload, loadPool, runLoad, type PipelineParameters } from '../harness/pipeline.js';
import { processCpuSeconds } from '../harness/process-stats.js';
import { openRun } from '../harness/run-setup.js';
import { workloadFromFlag, type SqlWorkload } from '../harness/sql-workload.js';
import { midpointSpread, type Spread } from '../harness/stats.js';
import { current, f, type ReportContext } from '../report/kit.js';
import type { Scenario, ScenarioContext } from '../scenario.js';
import { oneOf } from '../scenario-flags.js';

const WRITERS = ['ours: built-in orders', 'ours: script', 'pgbench: script'] as const;
type Writer = (typeof WRITERS)[number];

const DEFAULT_SCRIPT = path.join('bench', 'workloads', 'order-outbox.sql');

export interface LoadCostRun {
  writer: Writer;
  round: number;
  /** Transactions that began inside the measured window (their order's created_at). */
  transactions: number;
  /** CPU seconds per million such transactions. */
  writerCpuPerMillion: number;
  postgresCpuPerMillion: number | null;
}

export interface LoadCostResult {
  script: string;
  rate: number;
  connections: number;
  runs: LoadCostRun[];
}

/** One writer for warm-up + window in a fresh schema: its CPU and PostgreSQL's over the window, per transaction. */
async function measure(context: ScenarioContext, writer: Writer, p: PipelineParameters, script: SqlWorkload, round: number): Promise<LoadCostRun> {
  const { infra, log } = context;
  const run = await openRun({ infra, log, name: `load-cost-${writer.split(':')[0]}`, partitions: p.partitions, relay: undefined });
  try {
    const { workload: _script, ...builtIn } = p;
    const params: PipelineParameters = writer === 'ours: built-in orders' ? builtIn : { ...builtIn, workload: script };
    await checkWorkload({ databaseUrl: infra.databaseUrl, schema: run.schema, p: params, store: 'table' });
    const startAt = nowMs() + 1_000;
    const measureFrom = startAt + p.warmupS * 1_000;
    const measureTo = measureFrom + p.durationS * 1_000;
    let writerCpu: () => number;
    let done: Promise<unknown>;
    let pgbench: Pgbench | undefined;
    if (writer === 'pgbench: script') {
      pgbench = startPgbench(infra.databaseUrl, run.schema, script, p, startAt);
      const pid = pgbench.pid;
      writerCpu = () => processCpuSeconds(pid) ?? Number.NaN;
      done = pgbench.exited;
    } else {
      const pool = loadPool(p.workers);
      writerCpu = () => processCpuSeconds(process.pid) ?? Number.NaN;
      done = runLoad(pool, { databaseUrl: infra.databaseUrl, schema: run.schema, runTag: newRunTag(), plan: planLoad(params), startAt, measureFrom, measureTo, p: params }).finally(() => pool.destroy());
    }
    // A writer that fails early fails the measurement now, not after the window (and never unhandled).
    const failed = done.then(
      () => undefined,
      (error: unknown) => error,
    );
    const until = async (at: number) => {
      const early = await Promise.race([sleepUntil(at).then(() => undefined), failed]);
      if (early !== undefined) throw early;
    };
    let from: { writer: number; postgres: number };
    let to: { writer: number; postgres: number };
    try {
      await until(measureFrom);
      from = { writer: writerCpu(), postgres: pgCpu(infra) };
      await until(measureTo);
      to = { writer: writerCpu(), postgres: pgCpu(infra) };
      await done;
    } finally {
      pgbench?.stop();
    }
    const [row] = await run.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM orders WHERE created_at >= to_timestamp(${measureFrom / 1_000}) AND created_at < to_timestamp(${measureTo / 1_000})`;
    const transactions = row?.n ?? 0;
    if (transactions === 0) throw new OutboxBenchError('CHECK_FAILED', `load-cost: ${writer} committed no transaction in the measured window`);
    const perMillion = (seconds: number) => Math.round((seconds / transactions) * 1e6 * 10) / 10;
    const postgres = to.postgres - from.postgres;
    return { writer, round, transactions, writerCpuPerMillion: perMillion(to.writer - from.writer), postgresCpuPerMillion: Number.isFinite(postgres) ? perMillion(postgres) : null };
  } finally {
    await run.close();
  }
}

interface Pgbench {
  pid: number;
  exited: Promise<void>;
  /** Ends it if it still runs (a measurement that failed). */
  stop(): void;
}

/**
 * pgbench on the script: the harness's variables given as constants (`-D`;
 * the outbox has no unique event id, and nothing reads these events), its
 * run starting at `startAt` and lasting the warm-up and the window. The
 * database URL goes to pgbench whole (libpq reads it as it is); the run's
 * schema through PGOPTIONS.
 */
function startPgbench(databaseUrl: string, schema: string, script: SqlWorkload, p: PipelineParameters, startAt: number): Pgbench {
  const seconds = Math.ceil((startAt - nowMs()) / 1_000 + p.warmupS + p.durationS + 1);
  const args = [
    ...['-n', '-M', 'prepared', '-c', String(p.connectionsPerWorker * p.workers), '-j', '1', '-R', String(p.rate), '-T', String(seconds), '-f', script.file],
    ...['-D', `event_id=${randomUUID()}`, '-D', `intended_at=${new Date(startAt).toISOString()}`],
    databaseUrl,
  ];
  const child = spawn('pgbench', args, { env: { ...process.env, PGOPTIONS: `-c search_path=${schema}` }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', (error) => reject(new OutboxBenchError('USAGE', `load-cost needs pgbench on PATH (Debian: apt-get install postgresql-client): ${error.message}`)));
    child.on('exit', (code, signal) => (code === 0 ? resolve() : reject(new OutboxBenchError('CHECK_FAILED', `pgbench exited with ${code ?? signal}:\n${output.trim()}`))));
  });
  return {
    pid: child.pid ?? -1,
    exited,
    stop: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    },
  };
}

/** Median [lowest–highest] of each writer's runs, and its ratio to pgbench's within each round. */
function figures(result: LoadCostResult, writer: Writer) {
  const runs = result.runs.filter((r) => r.writer === writer);
  const ratios = runs.flatMap((r) => {
    const pgbench = result.runs.find((x) => x.writer === 'pgbench: script' && x.round === r.round);
    return pgbench ? [r.writerCpuPerMillion / pgbench.writerCpuPerMillion] : [];
  });
  return {
    writer: midpointSpread(runs.map((r) => r.writerCpuPerMillion)),
    postgres: midpointSpread(runs.flatMap((r) => (r.postgresCpuPerMillion === null ? [] : [r.postgresCpuPerMillion]))),
    ratio: midpointSpread(ratios),
  };
}

const cell = (s: Spread | undefined, digits = 1, suffix = '') =>
  s === undefined ? 'n/a' : `${f(s.median, digits)}${suffix} [${f(s.min, digits)}–${f(s.max, digits)}]`;

function report(context: ReportContext, folder: string): string[] {
  const summary = current<LoadCostResult>(context, folder);
  const extra = summary?.extra;
  if (!summary || !extra) return [];
  const rounds = new Set(extra.runs.map((r) => r.round)).size;
  return [
    '## What the load generator costs',
    '',
    `The writers alone (no relay, no consumer) at ${f(extra.rate)} transactions/s, one event each, ${extra.connections} connections, ` +
      `${summary.parameters.durationS} s measured after ${summary.parameters.warmupS} s of warm-up, ${rounds} rounds with the writers interleaved: ` +
      `our worker pool with the built-in orders and with \`${extra.script}\`, and pgbench (\`-M prepared\`, \`-R\`) with the same script. ` +
      "CPU is taken over the window and divided by the transactions that began in it: ours is the benchmark process's (every thread, " +
      "as every run counts its load generator), pgbench's its process's. PostgreSQL's shows whether the writers sent it the same work. " +
      'Median [lowest–highest]; the ratio is taken within each round.',
    '',
    '| writer | writer CPU-s / 1M transactions | ratio to pgbench | PostgreSQL CPU-s / 1M transactions |',
    '|---|---:|---:|---:|',
    ...WRITERS.map((writer) => {
      const fig = figures(extra, writer);
      return `| ${writer} | ${cell(fig.writer)} | ${writer.startsWith('pgbench') ? '1' : cell(fig.ratio, 2, '×')} | ${cell(fig.postgres)} |`;
    }),
    '',
  ];
}

export const loadCost: Scenario = {
  name: 'load-cost',
  takesWorkload: true,
  description: "the load generator's CPU per transaction against pgbench's: the same transaction, rate and server, no relay",
  // Rationale: one event per transaction at 2,000/s is the shape and rate the
  // frontier's required targets are set at, where the writer costs the most per event.
  defaults: { rate: 2_000, warmupS: 5, durationS: 20, ordersPerTransaction: 1, eventsPerAggregate: 1 },
  standalone: true,
  flags: {
    writers: { kind: 'list', description: `writers to measure: ${WRITERS.join(', ')} (pgbench's ratio needs pgbench)`, defaultText: 'all', check: oneOf([...WRITERS]) },
  },
  async run(context) {
    const p = context.parameters;
    if (p.ordersPerTransaction !== 1) throw new OutboxBenchError('USAGE', 'load-cost compares one event per transaction: pgbench runs a script once per transaction');
    const script = p.workload ?? workloadFromFlag(`sql:${path.relative(process.cwd(), path.join(PROJECT_ROOT, DEFAULT_SCRIPT)) || DEFAULT_SCRIPT}`)!;
    if (script.store !== 'table') throw new OutboxBenchError('USAGE', `load-cost counts the orders its script writes beside outbox rows; ${script.file} writes logical messages`);
    const writers = context.list('writers', [...WRITERS]);
    const runs: LoadCostRun[] = [];
    for (let round = 1; round <= context.repeats; round++) {
      // Each round starts with another writer, so none always runs first on a host still settling.
      const order = WRITERS.map((_, i) => WRITERS[(i + round - 1) % WRITERS.length]!).filter((w) => writers.includes(w));
      for (const writer of order) {
        process.stderr.write(`load-cost: round ${round}/${context.repeats}: ${writer} at ${p.rate} transactions/s\n`);
        runs.push(await measure(context, writer, p, script, round));
      }
    }
    const extra: LoadCostResult = { script: script.file, rate: p.rate, connections: p.connectionsPerWorker * p.workers, runs };
    const lines = WRITERS.map((writer) => {
      const fig = figures(extra, writer);
      return `${writer}: ${cell(fig.writer)} CPU-s per million transactions${writer.startsWith('pgbench') ? '' : `, ${cell(fig.ratio, 2, '×')} pgbench's`}; PostgreSQL ${cell(fig.postgres)}`;
    });
    return { title: "What the load generator costs, against pgbench", runs: [], extra, lines };
  },
  report,
};
