/**
 * postgres.js pools and the migrator. Every pool is bound to one schema via
 * search_path, so the SQL in sql/ and src/queries.ts stays unqualified and a
 * test can run the whole pipeline in a schema of its own.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import postgres from 'postgres';
import { PROJECT_ROOT } from './config.js';
import { OutboxBenchError, describeError } from './errors.js';
import { quoteIdentifier } from './identifiers.js';

export type Sql = postgres.Sql;
export type TransactionSql = postgres.TransactionSql;

export interface SqlOptions {
  /** Pool size (default 4). */
  max?: number;
  /** Shows up in pg_stat_activity, so a relay replica can be told apart. */
  applicationName?: string;
  /**
   * PostgreSQL terminates the session when it sits idle inside a transaction
   * this long: the lease of the SKIP LOCKED relays (0 disables it).
   */
  idleInTransactionTimeoutMs?: number;
  /** Seconds to wait for a connection (default 10). */
  connectTimeoutSeconds?: number;
  /**
   * Send every parameter as the text it is, whatever type PostgreSQL
   * describes, as pgbench does (for workload scripts): postgres.js would
   * otherwise convert by the described type (a boolean from JavaScript truth,
   * json by JSON.stringify, a date from epoch milliseconds).
   */
  textParameters?: boolean;
}

const asText = (value: unknown) => String(value);

/** Serialisers of the types postgres.js converts, replaced by plain text; results of these types stay text too. */
const TEXT_PARAMETERS = {
  textBoolean: { to: 16, from: [16], serialize: asText, parse: (value: string) => value },
  textJson: { to: 114, from: [114, 3802], serialize: asText, parse: (value: string) => value },
  textTime: { to: 1184, from: [1082, 1114, 1184], serialize: asText, parse: (value: string) => value },
  textBytea: { to: 17, from: [17], serialize: asText, parse: (value: string) => value },
};

// Rationale: postgres.js waits 3^n / 100 s (up to 20 s) before its n-th
// reconnection after consecutive errors, counted across the pool. A writer or
// relay that keeps trying through a 3 s PostgreSQL restart makes enough
// attempts to wait 4-7 s after the server is back (the crash matrix's writer
// once committed nothing for 2 s after a restart because of it). Doubling from
// 0.1 s with a 1 s ceiling resumes within a second of the server's return and
// still tries at most once a second per connection while it is gone.
const RECONNECT_FIRST_S = 0.1;
const RECONNECT_MAX_S = 1;

/** Seconds before the next connection attempt after `retries` consecutive errors, jittered to 50-100%. */
export function reconnectDelaySeconds(retries: number): number {
  return (0.5 + Math.random() / 2) * Math.min(RECONNECT_FIRST_S * 2 ** Math.max(0, retries - 1), RECONNECT_MAX_S);
}

export function createSql(url: string, schema: string, options: SqlOptions = {}): Sql {
  const connection: Record<string, string> = {
    search_path: schema,
    application_name: options.applicationName ?? 'outbox-bench',
  };
  if (options.idleInTransactionTimeoutMs !== undefined) {
    connection.idle_in_transaction_session_timeout = String(options.idleInTransactionTimeoutMs);
  }
  return postgres(url, {
    max: options.max ?? 4,
    connect_timeout: options.connectTimeoutSeconds ?? 10,
    backoff: reconnectDelaySeconds,
    connection,
    onnotice: () => {},
    // snake_case columns arrive as camelCase properties (done once per result
    // description, not per row).
    transform: { column: { from: postgres.toCamel } },
    types: {
      // int8 as a JS number: outbox ids and counts stay far below 2^53, and
      // numbers are cheaper to carry around than strings or BigInts.
      bigint: { to: 20, from: [20], serialize: (value: number) => String(value), parse: (value: string) => Number(value) },
      ...(options.textParameters ? TEXT_PARAMETERS : {}),
    },
  });
}

/**
 * A one-connection client in replication mode on the same server as `sql`,
 * for replication commands (CREATE_REPLICATION_SLOT ... SNAPSHOT 'export'),
 * which the SQL function interface cannot do. postgres.js builds its own
 * logical-replication client the same way, from the pool's parsed options.
 */
export function replicationSql(sql: Sql): Sql {
  const options = sql.options as unknown as postgres.Options<Record<string, postgres.PostgresType>> & { connection?: Record<string, string> };
  return postgres({
    ...options,
    max: 1,
    // Replication commands answer with snake_case columns read as they are.
    transform: { column: {}, value: {}, row: {} },
    fetch_types: false,
    idle_timeout: undefined,
    max_lifetime: null,
    connection: { ...options.connection, replication: 'database' },
  } as postgres.Options<Record<string, postgres.PostgresType>>);
}

export interface Migration {
  version: number;
  name: string;
  file: string;
}

export const SQL_DIR = path.join(PROJECT_ROOT, 'sql');

/** The numbered files of sql/, in order. */
export function listMigrations(dir = SQL_DIR): Migration[] {
  return readdirSync(dir)
    .map((file) => /^(\d{3})_([a-z0-9_]+)\.sql$/.exec(file))
    .filter((match): match is RegExpExecArray => match !== null)
    .map((match) => ({ version: Number(match[1]), name: match[2]!, file: path.join(dir, match[0]) }))
    .sort((a, b) => a.version - b.version);
}

export interface MigrateOptions {
  schema: string;
  /** Width of one outbox partition ("1 day"). */
  partitionWidth: string;
  /** Partitions to create ahead of the current one. */
  partitionsAhead: number;
}

/**
 * Applies the numbered files of sql/ that the schema has not seen yet, each in
 * its own transaction, then makes sure outbox partitions exist. Idempotent and
 * safe to run from several processes at once (an advisory lock serialises it).
 */
export async function migrate(sql: Sql, options: MigrateOptions): Promise<{ applied: string[] }> {
  const applied: string[] = [];
  try {
    await sql.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(hashtext(${`outbox-bench.migrate.${options.schema}`}))`;
      await tx.unsafe(`CREATE SCHEMA IF NOT EXISTS ${quoteIdentifier(options.schema)}`);
      await tx.unsafe(`SET LOCAL search_path TO ${quoteIdentifier(options.schema)}`);
      await tx.unsafe(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      const done = new Set((await tx<{ version: number }[]>`SELECT version FROM schema_migrations`).map((row) => row.version));
      for (const migration of listMigrations()) {
        if (done.has(migration.version)) continue;
        await tx.unsafe(readFileSync(migration.file, 'utf8'));
        await tx`INSERT INTO schema_migrations (version, name) VALUES (${migration.version}, ${migration.name})`;
        applied.push(`${String(migration.version).padStart(3, '0')}_${migration.name}`);
      }
    });
    await ensurePartitions(sql, options.partitionWidth, options.partitionsAhead);
  } catch (error) {
    throw new OutboxBenchError('DATABASE', `migrating schema "${options.schema}" failed: ${describeError(error)}`, { cause: error });
  }
  return { applied };
}

/** Creates the current outbox partition and `ahead` more; returns how many were new. */
export async function ensurePartitions(sql: Sql, width: string, ahead: number, from: Date = new Date()): Promise<number> {
  const [row] = await sql<{ created: number }[]>`SELECT outbox_ensure_partitions(${width}::interval, ${ahead}, ${from}) AS created`;
  return row?.created ?? 0;
}

/** Drops a schema and everything in it (tests clean up after themselves). */
export async function dropSchema(sql: Sql, schema: string): Promise<void> {
  await sql.unsafe(`DROP SCHEMA IF EXISTS ${quoteIdentifier(schema)} CASCADE`);
}
