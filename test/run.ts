/**
 * `npm test`: starts PostgreSQL and Kafka once (or uses DATABASE_URL /
 * KAFKA_BROKERS / servers left by `infra up`), runs every compiled test file
 * with node:test against them, and stops what it started, also on Ctrl-C.
 *
 *   node dist/test/run.js [file-filter ...]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolveConfig } from '../src/config.js';
import { createSql } from '../src/db.js';
import { describeError } from '../src/errors.js';
import { acquireInfra } from '../src/infra/index.js';
import { ShutdownStack, installSignalHandlers } from '../src/lifecycle.js';
import { createLogger } from '../src/log.js';
import { dropIdleSlots } from '../src/relay/slot.js';

const here = path.dirname(fileURLToPath(import.meta.url));

async function main(): Promise<number> {
  const filters = process.argv.slice(2);
  const files = readdirSync(here)
    .filter((file) => file.endsWith('.test.js'))
    .filter((file) => filters.length === 0 || filters.some((f) => file.includes(f)))
    .sort()
    .map((file) => path.join(here, file));
  if (files.length === 0) {
    process.stderr.write(`no test files match ${filters.join(' ')}\n`);
    return 2;
  }

  // Rationale: the suite starts brokers dozens of times (its own, the chaos
  // rows' clusters and restarts, the CLI's); their client-compiler-only JIT
  // halves the CPU of each start. Behaviour is the same broker's; benchmarks
  // refuse this setting. Set OUTBOX_BENCH_KAFKA_JIT=full to test with the full JIT.
  process.env.OUTBOX_BENCH_KAFKA_JIT ??= 'quick-start';
  const config = resolveConfig();
  const log = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
  const shutdown = new ShutdownStack(log);
  installSignalHandlers(shutdown, log);
  try {
    process.stderr.write('test servers: starting PostgreSQL and Kafka (or using the configured ones)...\n');
    const infra = await acquireInfra({ config, log });
    shutdown.add('servers', () => infra.release());
    if (!infra.postgres.external) await dropLeftoverSlots(infra.databaseUrl);
    const env = { ...process.env, DATABASE_URL: infra.databaseUrl, KAFKA_BROKERS: infra.kafkaBrokers.join(',') };
    const alone = files.filter((file) => ALONE.includes(path.basename(file)));
    const own = files.filter((file) => OWN_SERVERS.includes(path.basename(file)));
    const shared = files.filter((file) => !own.includes(file) && !alone.includes(file));
    const lanes: { child: ChildProcess; exit: Promise<number> }[] = [];
    // The lanes' after() hooks still use the servers: they stop before the servers do.
    shutdown.add('test files', async () => {
      await Promise.all(lanes.map((lane) => stopLane(lane)));
    });
    let aloneCode = 0;
    if (alone.length > 0) {
      const lane = runLane(alone, env);
      lanes.push(lane);
      aloneCode = await lane.exit;
      if (shutdown.started) return aloneCode || 1;
    }
    // The lane of its own writes to a file, shown whole once it ends, so the
    // two lanes' reports never interleave.
    const ownReport = own.length > 0 && shared.length > 0 ? path.join(mkdtempSync(path.join(os.tmpdir(), 'outbox-bench-tests-')), 'report.txt') : undefined;
    if (ownReport) process.stderr.write(`test lanes: ${own.map((f) => path.basename(f)).join(', ')} beside the other files (${alone.map((f) => path.basename(f)).join(', ')} ran first, alone); its report follows theirs\n`);
    if (ownReport) {
      // A shutdown step, so an interrupted run (Ctrl-C, a CI timeout) still shows what the lane said.
      shutdown.add('lane report', () => {
        process.stdout.write(`\n${readFileSync(ownReport, 'utf8')}`);
        rmSync(path.dirname(ownReport), { recursive: true, force: true });
      });
    }
    const others = [...shared, ...own];
    const rest = ownReport ? [runLane(shared, env), runLane(own, env, ownReport)] : others.length > 0 ? [runLane(others, env)] : [];
    lanes.push(...rest);
    const codes = [aloneCode, ...(await Promise.all(rest.map((lane) => lane.exit)))];
    return codes.find((c) => c !== 0) ?? 0;
  } catch (error) {
    process.stderr.write(`test servers could not be started: ${describeError(error)}\n`);
    return 1;
  } finally {
    await shutdown.run();
  }
}

// Rationale: test files run one at a time within a lane. Each is mostly
// waiting on the servers, but on 2 cores parallel files make timing-sensitive
// waits flaky. The crash-injection matrix is the exception worth a lane of its
// own: it starts, kills and restarts servers of its own (no other file uses
// them), it is over a third of the suite's time, spent mostly waiting, and
// its rows assert what was lost or doubled, not how fast.
const OWN_SERVERS: readonly string[] = ['chaos.test.js'];
// The benchmark harness's tests check that a run's window holds what its
// rate offered (a writer at 400/s commits ~1,200 in 3 s): beside the matrix's
// server starts they were starved (932), so they run first, on their own.
const ALONE: readonly string[] = ['bench.test.js'];

// Rationale: a test file's after() hooks stop the processes and drop the
// schemas it made; 30 s covers a loaded machine, after which it is killed.
const LANE_STOP_GRACE_MS = 30_000;

async function stopLane(lane: { child: ChildProcess; exit: Promise<number> }): Promise<void> {
  if (lane.child.exitCode !== null || lane.child.signalCode !== null) return;
  lane.child.kill('SIGTERM');
  const timer = setTimeout(() => lane.child.kill('SIGKILL'), LANE_STOP_GRACE_MS);
  await lane.exit;
  clearTimeout(timer);
}

function runLane(files: string[], env: NodeJS.ProcessEnv, reportFile?: string): { child: ChildProcess; exit: Promise<number> } {
  const out = reportFile === undefined ? 'inherit' : openSync(reportFile, 'w');
  const child = spawn(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files], { env, stdio: ['inherit', out, out] });
  if (typeof out === 'number') closeSync(out);
  const exit = new Promise<number>((resolve) => child.once('exit', (exitCode, signal) => resolve(exitCode ?? (signal ? 1 : 0))));
  return { child, exit };
}

/**
 * A test run that was killed (Ctrl-C twice, SIGKILL) cannot drop its tests'
 * replication slots, and an inactive slot pins WAL forever. Tests name theirs
 * `t_<random>_...`; on the project's own server nobody else does.
 */
async function dropLeftoverSlots(databaseUrl: string): Promise<void> {
  const sql = createSql(databaseUrl, 'public', { max: 1 });
  try {
    await dropIdleSlots(sql, { prefix: 't_' });
  } finally {
    await sql.end({ timeout: 5 });
  }
}

main().then((code) => process.exit(code));
