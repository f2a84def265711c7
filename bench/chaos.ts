/**
 * `npm run chaos`: the crash-injection matrix. Starts a PostgreSQL and a Kafka
 * of its own (they get killed), runs every row on the same seeded schedule,
 * prints the matrix, writes results/chaos/summary.json and refreshes
 * results/README.md.
 *
 *   node dist/bench/chaos.js [--rows name,name] [--seed N] [--window-s 20] [--drain-s 60] [--tps 40]
 */
import { randomInt } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { MATRIX, runRow, startChaosServers, type RowResult } from './chaos/matrix.js';
import { PROJECT_ROOT, parseWholeFlag, resolveConfig } from '../src/config.js';
import { describeError } from '../src/errors.js';
import { ShutdownStack, installSignalHandlers } from '../src/lifecycle.js';
import { createLogger } from '../src/log.js';
import { createSql } from '../src/db.js';
import { assertCleanTree, captureEnvironment } from './harness/environment.js';
import { buildReport, formatFaults } from './report.js';

const HELP = `Usage: node dist/bench/chaos.js [flags]        (npm run chaos)

Runs the crash-injection matrix on a PostgreSQL and a Kafka of its own and checks, per row,
what was lost, delivered twice, applied twice or reordered.

Flags:
  --rows <a,b>        only these rows (default all): ${MATRIX.map((r) => r.name).join(', ')}
  --seed <n>          seed of the fault schedules and failpoints (default random, printed)
  --window-s <n>      seconds of faults per row (default 20)
  --drain-s <n>       give up draining after this many seconds without progress (default 60)
  --tps <n>           writer transactions per second, 5 events each (default 40)
  --out <dir>         results folder (default results/)
  --allow-dirty       publish although tracked files outside results/ have uncommitted changes (the report says so)
  --help              show this help`;

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

async function main(): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: process.argv.slice(2),
      options: { rows: { type: 'string' }, seed: { type: 'string' }, 'window-s': { type: 'string' }, 'drain-s': { type: 'string' }, tps: { type: 'string' }, out: { type: 'string' }, 'allow-dirty': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
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
  const rowNames = typeof values.rows === 'string' ? values.rows.split(',').map((s) => s.trim()).filter(Boolean) : MATRIX.map((r) => r.name);
  try {
    seed = whole('seed', values.seed as string | undefined, randomInt(1, 2 ** 31 - 1), 0, 2 ** 31);
    windowS = whole('window-s', values['window-s'] as string | undefined, 20, 3, 3_600);
    drainS = whole('drain-s', values['drain-s'] as string | undefined, 60, 5, 3_600);
    tps = whole('tps', values.tps as string | undefined, 40, 1, 1_000);
    const unknown = rowNames.filter((name) => !MATRIX.some((r) => r.name === name));
    if (unknown.length > 0) throw new Error(`--rows: unknown ${unknown.join(', ')}`);
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
    process.stderr.write(`chaos: seed ${seed} (replay with --seed ${seed}); starting a PostgreSQL and a Kafka of its own in ${workDir}\n`);
    const servers = await startChaosServers(workDir, log);
    shutdown.add('chaos servers', () => servers.stop());
    const probe = createSql(servers.postgres.url, 'public', { max: 1 });
    const environment = await captureEnvironment(probe, servers.config, { postgres: servers.postgres, kafka: servers.kafka, kafkaBrokers: servers.kafka.brokers });
    await probe.end({ timeout: 5 });
    const results: RowResult[] = [];
    for (const spec of MATRIX.filter((r) => rowNames.includes(r.name))) {
      process.stderr.write(`chaos: ${spec.name}: ${spec.description}\n`);
      const result = await runRow(spec, { servers, workDir, seed, faultWindowS: windowS, drainTimeoutS: drainS, transactionsPerSecond: tps, log });
      results.push(result);
      process.stderr.write(`  ${result.passed ? 'as expected' : `FAILED: ${result.failures.join('; ')}`} (committed ${result.report.committed}, lost ${result.report.lost}, duplicate deliveries ${result.report.duplicateDeliveries}, applied twice ${result.report.appliedTwice}, reorderings ${result.report.reorderings})\n`);
    }
    process.stdout.write(`${formatMatrix(results).join('\n')}\n`);
    const dir = path.join(outDir, 'chaos');
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      path.join(dir, 'summary.json'),
      `${JSON.stringify({ scenario: 'chaos', title: 'Crash-injection matrix', date: new Date().toISOString(), command: `npm run chaos -- --seed ${seed} --window-s ${windowS} --tps ${tps}`, seed, windowS, transactionsPerSecond: tps, runs: [], extra: { rows: results }, environment }, null, 2)}\n`,
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
