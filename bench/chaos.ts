/**
 * `npm run chaos`: the crash-injection matrix. Starts a PostgreSQL and a Kafka
 * of its own (they get killed), runs every row on the same seeded schedule,
 * prints the matrix, writes results/chaos/summary.json and refreshes
 * results/README.md.
 *
 *   node dist/bench/chaos.js [--rows name,name] [--seed N] [--window-s 20] [--drain-s 60] [--tps 40]
 *   node dist/bench/chaos.js --soak 100 [--rows name,name] ...
 *
 * The soak runs every row until at least that many faults hit a process at
 * work, at 1,000 events/s, and merges its rows into results/chaos-soak/ (a
 * row run again replaces its earlier result), so rows can run in separate
 * sittings.
 */
import { randomInt } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { MATRIX, runRow, startChaosServers, type ChaosServers, type RowResult, type RowSpec } from './chaos/matrix.js';
import { DEFAULTS, PROJECT_ROOT, parseWholeFlag, resolveConfig } from '../src/config.js';
import { describeError } from '../src/errors.js';
import { ShutdownStack, installSignalHandlers } from '../src/lifecycle.js';
import { createLogger } from '../src/log.js';
import { createSql } from '../src/db.js';
import { assertCleanTree, assertFullKafkaJit, captureEnvironment } from './harness/environment.js';
import { buildReport, formatFaults } from './report.js';

const HELP = `Usage: node dist/bench/chaos.js [flags]        (npm run chaos)

Runs the crash-injection matrix on a PostgreSQL and a Kafka of its own and checks, per row,
what was lost, delivered twice, applied twice or reordered.

Flags:
  --rows <a,b>        only these rows (default all): ${MATRIX.map((r) => r.name).join(', ')}
  --seed <n>          seed of the fault schedules and failpoints (default random, printed)
  --window-s <n>      seconds of faults per row (default 20; with --soak, the most a row may take: default 3600)
  --drain-s <n>       give up draining after this many seconds without progress (default 60)
  --tps <n>           writer transactions per second, 5 events each (default 40; with --soak 200, i.e. 1,000 events/s)
  --soak <n>          run each outbox row (not postgres-failover: it fails over once) until at least n faults
                      hit a process at work (all its kinds, failpoints included); rows merge into
                      results/chaos-soak/, a row run again replaces its result
  --out <dir>         results folder (default results/)
  --allow-dirty       publish although tracked files outside results/ have uncommitted changes (the report says so)
  --help              show this help

Its servers take ports from ${DEFAULTS.chaosPortBase} up (3,600 of them); OUTBOX_BENCH_CHAOS_PORT_BASE moves
them, so two sittings can run side by side with bases 4,000 apart.`;

function whole(name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  return raw === undefined ? fallback : parseWholeFlag(name, raw, min, max);
}

export function formatMatrix(results: readonly RowResult[]): string[] {
  const header = ['row', 'faults (hit/injected)', 'committed', 'delivered', 'lost', 'unexpected', 'dup. deliveries', 'applied twice', 'reorderings', 'verdict'];
  const rows = results.map((r) => [
    r.name,
    formatFaults(r.faults),
    String(r.report.committed),
    String(r.report.delivered),
    String(r.report.lost),
    String(r.report.unexpected),
    String(r.report.duplicateDeliveries),
    String(r.report.appliedTwice),
    String(r.report.reorderings),
    r.passed ? 'as expected' : `FAILED: ${r.failures.join('; ')}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 || i === 1 || i === cells.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), ...rows.map(line)];
}

// Rationale: at 1,000 events/s a relay is inside a pass most of the time, so
// faults hit; five events per transaction is the matrix's usual shape.
const SOAK_TPS = 200;
// Rationale: the slowest row (a Kafka kill every 10-15 s) reaches 100 hits in
// about 25 minutes; an hour leaves room before a row is called short.
const SOAK_MAX_WINDOW_S = 3_600;

/** A soak row with the run it came from, so rows of several sittings can be told apart. */
type SoakRow = RowResult & { run: { command: string; date: string; gitCommit: string } };

/** The soak rows already published, with this sitting's replacing any of the same name, in matrix order. */
function mergeSoakRows(file: string, results: readonly RowResult[], run: SoakRow['run']): SoakRow[] {
  const earlier = existsSync(file) ? ((JSON.parse(readFileSync(file, 'utf8')) as { extra?: { rows?: SoakRow[] } }).extra?.rows ?? []) : [];
  const byName = new Map(earlier.map((row) => [row.name, row]));
  for (const result of results) byName.set(result.name, { ...result, run });
  return MATRIX.flatMap((spec) => byName.get(spec.name) ?? []);
}

async function main(): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: process.argv.slice(2),
      options: {
        rows: { type: 'string' },
        seed: { type: 'string' },
        'window-s': { type: 'string' },
        'drain-s': { type: 'string' },
        tps: { type: 'string' },
        soak: { type: 'string' },
        out: { type: 'string' },
        'allow-dirty': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (error) {
    process.stderr.write(`chaos: ${(error as Error).message}\n${HELP}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  let seed: number;
  let windowS: number;
  let drainS: number;
  let tps: number;
  let targetHits: number | undefined;
  // A soak runs the outbox rows that can take faults again and again: a
  // failover leaves no standby to fail over to a second time.
  const soakable = (r: RowSpec) => r.expect.lost === 'none' && r.postgres !== 'failover';
  const soakRequested = typeof values.soak === 'string';
  const rowNames =
    typeof values.rows === 'string'
      ? values.rows.split(',').map((s) => s.trim()).filter(Boolean)
      : MATRIX.filter((r) => !soakRequested || soakable(r)).map((r) => r.name);
  try {
    seed = whole('seed', values.seed as string | undefined, randomInt(1, 2 ** 31 - 1), 0, 2 ** 31);
    targetHits = typeof values.soak === 'string' ? parseWholeFlag('soak', values.soak, 1, 100_000) : undefined;
    const soak = targetHits !== undefined;
    windowS = whole('window-s', values['window-s'] as string | undefined, soak ? SOAK_MAX_WINDOW_S : 20, 3, 86_400);
    drainS = whole('drain-s', values['drain-s'] as string | undefined, 60, 5, 3_600);
    tps = whole('tps', values.tps as string | undefined, soak ? SOAK_TPS : 40, 1, 1_000);
    const unknown = rowNames.filter((name) => !MATRIX.some((r) => r.name === name));
    if (unknown.length > 0) throw new Error(`--rows: unknown ${unknown.join(', ')}`);
    const once = soak ? MATRIX.filter((r) => rowNames.includes(r.name) && !soakable(r)).map((r) => r.name) : [];
    if (once.length > 0) throw new Error(`--soak: ${once.join(', ')} cannot take faults again and again (a failover happens once; the naive dual write is not an outbox); leave it out of --rows`);
    // Its rows publish latencies around faults, and it always starts brokers of its own.
    assertFullKafkaJit({ kafkaJit: resolveConfig().kafkaJit, kafkaBrokers: undefined });
    assertCleanTree(values['allow-dirty'] === true);
  } catch (error) {
    process.stderr.write(`chaos: ${describeError(error)}\n`);
    return 2;
  }

  const config = resolveConfig();
  const log = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel, 'chaos', config.logFormat);
  const shutdown = new ShutdownStack(log);
  installSignalHandlers(shutdown, log);
  const workDir = path.join(config.dataDir, 'chaos');
  const outDir = path.resolve((values.out as string | undefined) ?? path.join(PROJECT_ROOT, 'results'));
  try {
    rmSync(workDir, { recursive: true, force: true });
    mkdirSync(workDir, { recursive: true });
    process.stderr.write(`chaos: seed ${seed} (replay with --seed ${seed}); starting a PostgreSQL and a Kafka of its own (a 3-broker cluster for the cluster rows) in ${workDir}\n`);
    // Each kind of servers once, when the first row that needs it comes.
    const started = new Map<string, Promise<ChaosServers>>();
    const serversFor = (spec: RowSpec): Promise<ChaosServers> => {
      const kind = spec.kafka ?? spec.postgres ?? 'single';
      let servers = started.get(kind);
      if (!servers) {
        servers = startChaosServers(workDir, log, { kafkaNodes: kind === 'cluster' ? 3 : 1, standby: kind === 'failover', portBase: config.chaosPortBase });
        started.set(kind, servers);
        shutdown.add(`chaos servers (${kind})`, async () => (await servers!.catch(() => undefined))?.stop());
      }
      return servers;
    };
    const rowsToRun = MATRIX.filter((r) => rowNames.includes(r.name));
    const first = await serversFor(rowsToRun[0] ?? MATRIX[0]!);
    const probe = createSql(first.databaseUrl, 'public', { max: 1 });
    const environment = await captureEnvironment(probe, first.config, { postgres: first.postgres, kafka: first.kafka, kafkaBrokers: first.kafka.brokers });
    await probe.end({ timeout: 5 });
    const results: RowResult[] = [];
    for (const spec of rowsToRun) {
      const servers = await serversFor(spec);
      process.stderr.write(`chaos: ${spec.name}: ${spec.description}\n`);
      const result = await runRow(spec, { servers, workDir, seed, faultWindowS: windowS, targetHits, drainTimeoutS: drainS, transactionsPerSecond: tps, log });
      results.push(result);
      process.stderr.write(`  ${result.passed ? 'as expected' : `FAILED: ${result.failures.join('; ')}`} (committed ${result.report.committed}, lost ${result.report.lost}, duplicate deliveries ${result.report.duplicateDeliveries}, applied twice ${result.report.appliedTwice}, reorderings ${result.report.reorderings})\n`);
      const { baseline, faults } = result.latency;
      if (faults.length > 0) {
        const worst = Math.round(Math.max(...faults.map((f) => f.maxMs ?? 0)));
        const gap = Math.round(Math.max(...faults.map((f) => f.commitGapMs ?? 0)));
        const kinds = [...new Set(faults.map((f) => f.kind))].join('/');
        process.stderr.write(`  latency: commit -> receipt p99 ${Math.round(baseline.p99Ms ?? 0)} ms before faults; worst ${worst} ms in the 10 s after a ${kinds}; writes stopped up to ${gap} ms\n`);
      }
    }
    process.stdout.write(`${formatMatrix(results).join('\n')}\n`);
    const dir = path.join(outDir, targetHits === undefined ? 'chaos' : 'chaos-soak');
    mkdirSync(dir, { recursive: true });
    const command = `npm run chaos -- ${targetHits === undefined ? '' : `--soak ${targetHits} `}--seed ${seed} --window-s ${windowS} --tps ${tps}`;
    const rows = targetHits === undefined ? results : mergeSoakRows(path.join(dir, 'summary.json'), results, { command, date: new Date().toISOString(), gitCommit: environment.gitCommit });
    writeFileSync(
      path.join(dir, 'summary.json'),
      `${JSON.stringify({ scenario: targetHits === undefined ? 'chaos' : 'chaos-soak', title: targetHits === undefined ? 'Crash-injection matrix' : 'Crash-injection soak', date: new Date().toISOString(), command, seed, windowS, transactionsPerSecond: tps, targetHits, runs: [], extra: { rows }, environment }, null, 2)}\n`,
    );
    buildReport(outDir);
    process.stdout.write(`results: ${path.relative(process.cwd(), dir)}/summary.json and results/README.md\n`);
    return results.every((r) => r.passed) ? 0 : 1;
  } catch (error) {
    process.stderr.write(`chaos: ${describeError(error)}\n`);
    return 1;
  } finally {
    await shutdown.run();
  }
}

main().then((code) => process.exit(code));
