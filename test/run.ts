/**
 * `npm test`: starts PostgreSQL and Kafka once (or uses DATABASE_URL /
 * KAFKA_BROKERS / servers left by `infra up`), runs every compiled test file
 * with node:test against them, and stops what it started, also on Ctrl-C.
 *
 *   node dist/test/run.js [file-filter ...]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stopChild } from '../bench/harness/processes.js';
import { PROJECT_ROOT, resolveConfig } from '../src/config.js';
import { createSql } from '../src/db.js';
import { describeError } from '../src/errors.js';
import { acquireInfra } from '../src/infra/index.js';
import { ShutdownStack, installSignalHandlers } from '../src/lifecycle.js';
import { createLogger } from '../src/log.js';
import { dropIdleSlots } from '../src/relay/cdc/slot.js';
import { DEFAULT_PORT_BASE, PORT_SLICE_ENV, runPorts, startRetryingBind } from './ports.js';

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
  // Test servers listen below the ephemeral range (test/ports.ts); ports set
  // explicitly still win. Users' defaults (`infra up`, benchmarks) are not touched.
  const ports = runPorts(Number(process.env.OUTBOX_TEST_PORT_BASE ?? DEFAULT_PORT_BASE));
  process.env.OUTBOX_BENCH_PG_PORT ??= String(ports.postgres);
  process.env.OUTBOX_BENCH_KAFKA_PORT ??= String(ports.kafka);
  process.env.OUTBOX_BENCH_KAFKA_CONTROLLER_PORT ??= String(ports.kafkaController);
  process.env.OUTBOX_BENCH_CHAOS_PORT_BASE ??= String(ports.chaosBase);
  // One folder per run, so a failure's evidence is never mixed with an earlier run's.
  process.env.OUTBOX_TEST_ARTIFACTS ??= path.join(PROJECT_ROOT, '.test-artifacts', new Date().toISOString().replace(/[:.]/g, '-'));
  const artifacts = process.env.OUTBOX_TEST_ARTIFACTS;
  const config = resolveConfig();
  const log = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
  const shutdown = new ShutdownStack(log);
  installSignalHandlers(shutdown, log);
  try {
    process.stderr.write('test servers: starting PostgreSQL and Kafka (or using the configured ones)...\n');
    const infra = await startRetryingBind(() => acquireInfra({ config, log }));
    shutdown.add('servers', () => infra.release());
    if (!infra.postgres.external) await dropLeftoverSlots(infra.databaseUrl);
    const env = { ...process.env, DATABASE_URL: infra.databaseUrl, KAFKA_BROKERS: infra.kafkaBrokers.join(',') };
    const failed: string[] = [];
    const totals = { passed: 0, failed: 0 };
    const times: string[] = [];
    for (const [index, file] of files.entries()) {
      const started = performance.now();
      const [from, to] = ports.slice(index);
      const tests = runTestFile(file, { ...env, [PORT_SLICE_ENV]: `${from}-${to}` });
      // The file's after() hooks still use the servers: it stops before the servers do.
      const unregister = shutdown.add('test file', () => stopChild(tests.child));
      const exit = await tests.exit;
      const tally = tallyOf(tests.report());
      totals.passed += tally.passed;
      // A file that failed without a failing test (a crash, the timeout) counts as one failure.
      totals.failed += exit !== 0 ? Math.max(1, tally.failed) : tally.failed;
      if (exit !== 0) failed.push(path.basename(file));
      times.push(`${path.basename(file, '.test.js')} ${((performance.now() - started) / 1_000).toFixed(1)} s${exit !== 0 ? ' (failed)' : ''}`);
      unregister();
      if (shutdown.started) break;
    }
    // Each file's time, then one closing line for the whole run: each file's runner prints only its own totals.
    process.stdout.write(`\nfile times: ${times.join(', ')}\n${totals.passed} passed, ${totals.failed} failed\n`);
    if (failed.length === 0) {
      removeIfEmpty(artifacts);
      return 0;
    }
    process.stderr.write(`\nfailed: ${failed.join(', ')}\ntest artifacts: ${artifacts}\n`);
    return 1;
  } catch (error) {
    process.stderr.write(`test servers could not be started: ${describeError(error)}\n`);
    return 1;
  } finally {
    await shutdown.run();
  }
}

// Rationale: test files run one at a time. Each is mostly waiting on the
// servers, but on 2 cores parallel files make timing-sensitive checks flaky:
// with the crash matrix running beside the other files the suite
// took 10.5 instead of 15 minutes, and each of three fresh-clone runs failed
// one other check (a writer starved below its rate, a SKIP LOCKED replica
// that never got a batch, a stalled consumer's catch-up). One `node --test`
// per file, so that each gets its own port slice through its environment.
//
// Rationale for the timeout: a hang fails its file instead of spending CI's
// 90 minutes. Node 20 applies --test-timeout to each file as a whole under
// --test (later versions to each test). The slowest files took 277 s (the
// crash matrix) and 223 s (the benchmark harness) on 2026-12-06's 2-core
// host, the slowest test 50 s; 15 minutes is three times the slowest file.
const TEST_TIMEOUT_MS = 15 * 60_000;

// Rationale: the spec reporter's totals are its last few lines; 8 KiB of the
// report's tail holds them with room for a long failure summary before them.
const REPORT_TAIL_BYTES = 8_192;

/** Runs one file, its spec report passed through to the terminal; `report()` is the report's tail. */
function runTestFile(file: string, env: NodeJS.ProcessEnv): { child: ChildProcess; exit: Promise<number>; report(): string } {
  const child = spawn(process.execPath, ['--test', `--test-timeout=${TEST_TIMEOUT_MS}`, '--test-reporter=spec', file], { env, stdio: ['inherit', 'pipe', 'inherit'] });
  let tail = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    process.stdout.write(chunk);
    tail = (tail + chunk).slice(-REPORT_TAIL_BYTES);
  });
  const exit = new Promise<number>((resolve) => child.once('close', (exitCode, signal) => resolve(exitCode ?? (signal ? 1 : 0))));
  return { child, exit, report: () => tail };
}

/** Passed and failed tests of one file, from the totals its spec report ends with (zeros if it has none). */
function tallyOf(report: string): { passed: number; failed: number } {
  const count = (name: string) => Number(new RegExp(`^ℹ ${name} (\\d+)$`, 'm').exec(report)?.[1] ?? 0);
  return { passed: count('pass'), failed: count('fail') };
}

/** A run's artifacts folder, and the `.test-artifacts` above it, when nothing was kept. */
function removeIfEmpty(folder: string): void {
  for (const dir of [folder, path.dirname(folder)]) {
    try {
      rmdirSync(dir);
    } catch {
      return;
    }
  }
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
