/**
 * Getting the two servers every command needs: the ones the user configured
 * (DATABASE_URL, KAFKA_BROKERS), the ones `infra up` left running, or fresh
 * local ones that this process owns and stops when it is done.
 */
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import postgres from 'postgres';
import type { Config } from '../config.js';
import { OutboxBenchError, describeError } from '../errors.js';
import { createKafkaClient } from '../kafka-client.js';
import type { Logger } from '../log.js';
import { ExternalKafka, LocalKafka, type KafkaServer } from './kafka.js';
import { LocalKafkaCluster } from './kafka-cluster.js';
import { ExternalPostgres, LocalPostgres, type PostgresServer } from './postgres.js';
import { isProcessAlive } from './processes.js';

export { LocalKafka, ExternalKafka, ensureKafkaJars, type KafkaServer } from './kafka.js';
export { LocalKafkaCluster } from './kafka-cluster.js';
export { LocalPostgres, ExternalPostgres, type PostgresServer } from './postgres.js';

/** Who started each local server, so a later command knows whether it may stop it. */
interface InfraState {
  postgres?: { port: number; ownerPid: number; detached: boolean };
  kafka?: { port: number; ownerPid: number; detached: boolean };
}

function statePath(config: Config): string {
  return path.join(config.dataDir, 'infra.json');
}

function readState(config: Config): InfraState {
  try {
    return JSON.parse(readFileSync(statePath(config), 'utf8')) as InfraState;
  } catch {
    return {};
  }
}

async function updateState(config: Config, update: (state: InfraState) => void): Promise<void> {
  const state = readState(config);
  update(state);
  await fs.mkdir(config.dataDir, { recursive: true });
  await fs.writeFile(statePath(config), `${JSON.stringify(state, null, 2)}\n`);
}

export interface Infra {
  readonly databaseUrl: string;
  readonly kafkaBrokers: readonly string[];
  readonly postgres: PostgresServer;
  readonly kafka: KafkaServer;
  /** Stops the servers this call started, unless they were started detached. */
  release(): Promise<void>;
}

export interface AcquireOptions {
  config: Config;
  log: Logger;
  /** Leave started servers running after this process exits (`infra up`). */
  detached?: boolean;
  /** Fail unless PostgreSQL runs with wal_level=logical (CDC needs it). */
  requireLogicalWal?: boolean;
  /** Which servers are needed (default both). */
  need?: { postgres?: boolean; kafka?: boolean };
}

export async function acquireInfra(options: AcquireOptions): Promise<Infra> {
  const { log } = options;
  const needPostgres = options.need?.postgres ?? true;
  const needKafka = options.need?.kafka ?? true;
  const releases: (() => Promise<void>)[] = [];
  const release = async () => {
    while (releases.length > 0) await releases.pop()!();
  };
  try {
    const pg = needPostgres ? await acquirePostgres(options, releases) : new ExternalPostgres('');
    if (needPostgres) await checkPostgres(pg, options.requireLogicalWal ?? true);
    const kafka = needKafka ? await acquireKafka(options, releases) : new ExternalKafka([]);
    if (needKafka && kafka.external) await checkKafka(kafka, log);
    return { databaseUrl: pg.url, kafkaBrokers: kafka.brokers, postgres: pg, kafka, release };
  } catch (error) {
    await release();
    throw error;
  }
}

async function acquirePostgres(options: AcquireOptions, releases: (() => Promise<void>)[]): Promise<PostgresServer> {
  const { config, log } = options;
  if (config.databaseUrl) return new ExternalPostgres(config.databaseUrl);
  const local = new LocalPostgres({ config, log, detached: options.detached ?? false });
  await acquireLocal(options, releases, { kind: 'postgres', name: 'PostgreSQL', port: config.pgPort, location: local.dataDir, server: local });
  return local;
}

async function acquireKafka(options: AcquireOptions, releases: (() => Promise<void>)[]): Promise<KafkaServer> {
  const { config, log } = options;
  if (config.kafkaBrokers) return new ExternalKafka(config.kafkaBrokers);
  const local = localKafka(config, log, options.detached ?? false);
  await acquireLocal(options, releases, { kind: 'kafka', name: config.kafkaNodes > 1 ? `Kafka cluster (${config.kafkaNodes} brokers)` : 'Kafka', port: config.kafkaPort, location: local.home, server: local });
  return local;
}

/** The local Kafka the settings ask for: one broker, or a cluster of --kafka-nodes. */
function localKafka(config: Config, log: Logger, detached = false): LocalKafka | LocalKafkaCluster {
  return config.kafkaNodes > 1 ? new LocalKafkaCluster({ config, log, detached }) : new LocalKafka({ config, log, detached });
}

interface LocalServer {
  kind: keyof InfraState;
  name: string;
  port: number;
  location: string;
  server: { pid(): number | undefined; start(): Promise<void>; stop(): Promise<void> };
}

/**
 * Reuses a server `infra up` left running, refuses one another live run owns,
 * stops one a dead run left behind, and otherwise starts a fresh one, owned
 * by this process unless detached.
 */
async function acquireLocal(options: AcquireOptions, releases: (() => Promise<void>)[], local: LocalServer): Promise<void> {
  const { config, log } = options;
  const detached = options.detached ?? false;
  const recorded = readState(config)[local.kind];
  if (local.server.pid() !== undefined) {
    if (recorded?.detached) {
      if (recorded.port !== local.port) {
        throw new OutboxBenchError(
          'CONFIG_INVALID',
          `the local ${local.name} started by \`infra up\` listens on port ${recorded.port}, not ${local.port}; run \`outbox-bench infra down\` first to change ports`,
        );
      }
      log.debug(`using the ${local.name} left running by \`infra up\``);
      return;
    }
    if (recorded && recorded.ownerPid !== process.pid && isProcessAlive(recorded.ownerPid)) {
      throw new OutboxBenchError(
        'PORT_IN_USE',
        `the local ${local.name} in ${local.location} is in use by another outbox-bench process (pid ${recorded.ownerPid}); wait for it to finish, or run \`npm run infra:up\` once to share the servers between runs`,
      );
    }
    log.warn({ location: local.location }, `a previous run left ${local.name} running; stopping it`);
    await local.server.stop();
  }
  await local.server.start();
  await updateState(config, (state) => {
    state[local.kind] = { port: local.port, ownerPid: process.pid, detached };
  });
  if (!detached) {
    releases.push(async () => {
      await local.server.stop();
      await updateState(config, (state) => delete state[local.kind]);
    });
  }
}

/** Stops local servers whoever started them (`infra down`). */
export async function stopLocalInfra(config: Config, log: Logger): Promise<{ postgres: boolean; kafka: boolean }> {
  // Whichever kind `infra up` started: the single broker or a cluster.
  const kafkas = [new LocalKafka({ config, log }), new LocalKafkaCluster({ config, log })];
  const pg = new LocalPostgres({ config, log });
  const kafkaWasRunning = kafkas.some((kafka) => kafka.pid() !== undefined);
  const pgWasRunning = pg.isRunning();
  for (const kafka of kafkas) await kafka.stop('graceful');
  await pg.stop('fast');
  await updateState(config, (state) => {
    delete state.kafka;
    delete state.postgres;
  });
  return { postgres: pgWasRunning, kafka: kafkaWasRunning };
}

export interface InfraStatus {
  postgres: { running: boolean; pid?: number | undefined; port: number; detached?: boolean | undefined };
  kafka: { running: boolean; pid?: number | undefined; port: number; detached?: boolean | undefined };
}

export function localInfraStatus(config: Config, log: Logger): InfraStatus {
  const state = readState(config);
  const pgPid = new LocalPostgres({ config, log }).pid();
  const kafkaPid = new LocalKafka({ config, log }).pid() ?? new LocalKafkaCluster({ config, log }).pid();
  return {
    postgres: { running: pgPid !== undefined, pid: pgPid, port: state.postgres?.port ?? config.pgPort, detached: state.postgres?.detached },
    kafka: { running: kafkaPid !== undefined, pid: kafkaPid, port: state.kafka?.port ?? config.kafkaPort, detached: state.kafka?.detached },
  };
}

/**
 * Checks a PostgreSQL server answers and, when asked, that logical decoding
 * is possible, with the fix spelled out.
 */
export async function checkPostgres(server: PostgresServer, requireLogicalWal: boolean): Promise<void> {
  const sql = postgres(server.url, { max: 1, connect_timeout: 10, onnotice: () => {} });
  try {
    let walLevel: string;
    try {
      const [row] = await sql<{ wal_level: string }[]>`SELECT current_setting('wal_level') AS wal_level`;
      walLevel = row?.wal_level ?? 'unknown';
    } catch (error) {
      const where = server.external ? 'DATABASE_URL' : 'the local PostgreSQL';
      throw new OutboxBenchError('NOT_READY', `cannot connect to ${where} (${redactUrl(server.url)}): ${describeError(error)}`, {
        cause: error,
        retriable: true,
      });
    }
    if (requireLogicalWal && walLevel !== 'logical') {
      throw new OutboxBenchError(
        'WAL_LEVEL_NOT_LOGICAL',
        `PostgreSQL at ${redactUrl(server.url)} runs with wal_level=${walLevel}; the CDC relay and the benchmarks need wal_level=logical. ` +
          "Fix: run `ALTER SYSTEM SET wal_level = 'logical';` as a superuser and restart the server " +
          '(or start it with `-c wal_level=logical`; managed services call it "logical replication" in their settings).',
        { details: { walLevel } },
      );
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
}

async function checkKafka(server: KafkaServer, log: Logger): Promise<void> {
  const admin = createKafkaClient({ brokers: server.brokers, log, clientId: 'outbox-bench-check', quiet: true, retries: 2 }).admin();
  try {
    await admin.connect();
    await admin.describeCluster();
  } catch (error) {
    throw new OutboxBenchError('NOT_READY', `cannot reach Kafka at KAFKA_BROKERS=${server.brokers.join(',')}: ${describeError(error)}`, {
      cause: error,
      retriable: true,
    });
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

/** Hides the password of a connection URL in messages. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return url;
  }
}
