/**
 * All SQL about replication slots and publications: the CDC relays' slot and
 * publication are created on first start, checked on every start, and
 * refused (never silently recreated) when lost or gone, because a new slot
 * starts at the end of the WAL and skips events.
 */
import type { Sql } from '../db.js';
import { OutboxBenchError } from '../errors.js';
import { quoteIdentifier } from '../identifiers.js';
import type { Logger } from '../log.js';
import { parseLsn, ZERO_LSN, type Lsn } from './lsn.js';

export interface SlotOptions {
  sql: Sql;
  schema: string;
  slotName: string;
  publicationName: string;
  /** Create the slot even though this schema's relay had one before (after a loss was dealt with). */
  recreateSlot?: boolean | undefined;
  /**
   * A row filter on the outbox (PostgreSQL 15+): only rows it holds true for
   * reach this publication, so several slots can share the outbox out. Built
   * from columns and built-in immutable functions only (PostgreSQL's rule).
   */
  rowFilter?: string | undefined;
  /**
   * Where the relay's events live besides the WAL, which decides how events
   * a lost slot never delivered can be recovered: outbox rows can be
   * published again from the table; logical messages cannot (default table).
   */
  store?: 'table' | 'message' | undefined;
}

interface SlotRow {
  walStatus: string | null;
  plugin: string | null;
  database: string | null;
  confirmedFlushLsn: string | null;
  invalidationReason: string | null;
}

/**
 * Creates the publication and the slot on first start; refuses to run on a
 * server without wal_level=logical, on a lost slot, or when a slot this relay
 * had is gone. Each error says what happened and how to fix it.
 */
export async function prepareSlot(options: SlotOptions, log: Logger): Promise<void> {
  const { sql, slotName, publicationName, schema } = options;
  const [settings] = await sql<{ walLevel: string; database: string }[]>`SELECT current_setting('wal_level') AS wal_level, current_database() AS database`;
  if (settings?.walLevel !== 'logical') {
    throw new OutboxBenchError(
      'WAL_LEVEL_NOT_LOGICAL',
      `the CDC relay needs wal_level=logical, the server runs with wal_level=${settings?.walLevel}. ` +
        "Fix: ALTER SYSTEM SET wal_level = 'logical'; then restart PostgreSQL.",
    );
  }

  await ensurePublication(sql, { schema, publicationName, rowFilter: options.rowFilter }, log);

  const columns = await sql<{ name: string }[]>`SELECT column_name AS name FROM information_schema.columns WHERE table_schema = 'pg_catalog' AND table_name = 'pg_replication_slots'`;
  const hasReason = columns.some((c) => c.name === 'invalidation_reason');
  const [slot] = await sql.unsafe<SlotRow[]>(
    `SELECT wal_status, plugin, database, confirmed_flush_lsn::text, ${hasReason ? 'invalidation_reason' : 'NULL::text AS invalidation_reason'}
     FROM pg_replication_slots WHERE slot_name = $1`,
    [slotName],
  );
  const [known] = await sql<{ confirmedLsn: string | null; confirmedAt: Date | null; createdAt: Date }[]>`
    SELECT confirmed_lsn::text, confirmed_at, created_at FROM relay_cdc_slots WHERE slot_name = ${slotName}`;
  // From when events may not have reached Kafka: the last confirmation the relay recorded, or the slot's creation.
  const since = known ? (known.confirmedAt ?? known.createdAt).toISOString() : undefined;
  const recovery = recoveryOf(options.store ?? 'table', schema, since);
  if (slot) {
    if (slot.walStatus === 'lost') {
      throw new OutboxBenchError(
        'SLOT_LOST',
        `replication slot "${slotName}" was invalidated (wal_status = 'lost'${slot.invalidationReason ? `, reason: ${slot.invalidationReason}` : ''}): ` +
          'PostgreSQL removed WAL the slot still needed, usually because it fell more than max_slot_wal_keep_size behind. ' +
          `Events committed after ${since ? `${since} (confirmed position ${known?.confirmedLsn ?? 'none recorded'})` : 'its last confirmed position'} ` +
          'can no longer be read from the WAL, so the relay will not start on it and will not recreate it by itself. ' +
          `Fix: SELECT pg_drop_replication_slot('${slotName}'); start the relay with --recreate-slot; then ${recovery}`,
        { details: { slotName, confirmedLsn: known?.confirmedLsn } },
      );
    }
    if (slot.plugin !== 'pgoutput') {
      throw new OutboxBenchError('CONFIG_INVALID', `replication slot "${slotName}" uses the ${slot.plugin} plugin, not pgoutput; choose another --slot name`);
    }
    if (slot.database !== settings.database) {
      throw new OutboxBenchError('CONFIG_INVALID', `replication slot "${slotName}" belongs to database ${slot.database}, not ${settings.database}; choose another --slot name`);
    }
    return;
  }
  if (known && !options.recreateSlot) {
    throw new OutboxBenchError(
      'SLOT_MISSING',
      `replication slot "${slotName}" that this relay created on ${known.createdAt.toISOString()} no longer exists. ` +
        'A new slot would start at the end of the WAL and skip every event committed since ' +
        `${known.confirmedAt ? `${known.confirmedAt.toISOString()} (confirmed position ${known.confirmedLsn})` : 'the slot was last confirmed'}. ` +
        `Fix: find out who dropped it; start the relay with --recreate-slot; then ${recovery}`,
      { details: { slotName } },
    );
  }
  // A failover slot (PostgreSQL 17+): a standby with sync_replication_slots
  // keeps a copy, so the relay goes on from a promoted standby where it left
  // off. Without such a standby the flag changes nothing.
  const [server] = await sql<{ failover: boolean }[]>`SELECT current_setting('server_version_num')::int >= 170000 AS failover`;
  const [created] = server!.failover
    ? await sql<{ lsn: string }[]>`SELECT lsn::text FROM pg_create_logical_replication_slot(${slotName}, 'pgoutput', false, false, true)`
    : await sql<{ lsn: string }[]>`SELECT lsn::text FROM pg_create_logical_replication_slot(${slotName}, 'pgoutput')`;
  await sql`
    INSERT INTO relay_cdc_slots (slot_name, created_lsn) VALUES (${slotName}, ${created!.lsn}::pg_lsn)
    ON CONFLICT (slot_name) DO UPDATE SET created_at = now(), created_lsn = excluded.created_lsn, confirmed_lsn = NULL, confirmed_at = NULL`;
  log.info({ slot: slotName, lsn: created?.lsn }, 'created the replication slot');
}

/** What to do about the events a lost or dropped slot may never have delivered. */
function recoveryOf(store: 'table' | 'message', schema: string, since: string | undefined): string {
  const from = since ?? 'the slot was created';
  if (store === 'table' && since === undefined) {
    return (
      `re-publish every unpublished outbox row with \`outbox-bench relay --mode polling --schema ${schema}\` until it is idle: no confirmation ` +
      'of this slot is recorded, so none can be ruled out (duplicates are harmless: the consumer dedupes by event id).'
    );
  }
  if (store === 'message') {
    return (
      `reconcile the table-less events committed since ${from} from your business tables: they cannot be re-published, because a ` +
      'logical message lives only in the WAL, which PostgreSQL has removed, and no table holds it.'
    );
  }
  return (
    `re-publish the outbox rows committed since ${from}: the CDC relays never mark rows, so first mark the older ones ` +
    `(UPDATE ${schema}.outbox SET published_at = now() WHERE published_at IS NULL AND created_at < '${from}'), then run ` +
    `\`outbox-bench relay --mode polling --schema ${schema}\` until it is idle (duplicates are harmless: the consumer dedupes by event id).`
  );
}

/**
 * Creates the publication of the outbox, or checks the one there: rows arrive
 * under the parent table (publish_via_partition_root, or new partitions would
 * be missed), and a row filter must be the one asked for, because a filter
 * that changed under a running slot would silently move rows between slots.
 */
async function ensurePublication(sql: Sql, options: { schema: string; publicationName: string; rowFilter: string | undefined }, log: Logger): Promise<void> {
  const { schema, publicationName, rowFilter } = options;
  const table = `${quoteIdentifier(schema)}.outbox`;
  const quotedPublication = quoteIdentifier(publicationName);
  const [publication] = await sql<{ viaRoot: boolean }[]>`SELECT pubviaroot AS via_root FROM pg_publication WHERE pubname = ${publicationName}`;
  if (!publication) {
    await sql.unsafe(`CREATE PUBLICATION ${quotedPublication} FOR TABLE ${table}${rowFilter ? ` WHERE (${rowFilter})` : ''} WITH (publish = 'insert', publish_via_partition_root = true)`);
    log.info({ publication: publicationName, rowFilter }, 'created the publication');
    return;
  }
  if (!publication.viaRoot) await sql.unsafe(`ALTER PUBLICATION ${quotedPublication} SET (publish_via_partition_root = true)`);
  // A publication outlives a dropped and recreated outbox table, without it.
  const [member] = await sql<{ rowFilter: string | null }[]>`
    SELECT rowfilter AS row_filter FROM pg_publication_tables WHERE pubname = ${publicationName} AND schemaname = ${schema} AND tablename = 'outbox'`;
  if (!member) {
    await sql.unsafe(`ALTER PUBLICATION ${quotedPublication} ADD TABLE ${table}${rowFilter ? ` WHERE (${rowFilter})` : ''}`);
    return;
  }
  if (filterKey(member.rowFilter) !== filterKey(rowFilter)) {
    throw new OutboxBenchError(
      'CONFIG_INVALID',
      `publication "${publicationName}" filters the outbox with ${member.rowFilter ?? 'no row filter'}, this relay needs ${rowFilter ?? 'none'}: ` +
        'the shard count (or the relay mode) changed under existing slots, and resharding is not supported. ' +
        `Fix: stop the relays once they have caught up; drop their slots (pg_drop_replication_slot), their publications (DROP PUBLICATION) ` +
        `and their rows in ${schema}.relay_cdc_slots (or the relay refuses the missing slots); then start with the new setting. ` +
        'Events written while no slot exists reach no slot and must be re-published from the outbox table.',
      { details: { publicationName } },
    );
  }
}

/**
 * A row filter with white space and parentheses removed: PostgreSQL prints a
 * stored filter fully parenthesised, and the filters compared here are the
 * relays' own, which differ only in their numbers when they differ at all.
 */
function filterKey(filter: string | null | undefined): string | null {
  return filter ? filter.replace(/[\s()]/g, '') : null;
}

/** The slot's confirmed position (0/0 if it has none or does not exist). */
export async function slotConfirmedLsn(sql: Sql, slotName: string): Promise<Lsn> {
  const [row] = await sql<{ lsn: string | null }[]>`SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = ${slotName}`;
  return row?.lsn ? parseLsn(row.lsn) : ZERO_LSN;
}

/** WAL bytes between the server's current position and the slot's confirmed one. */
export async function slotLagBytes(sql: Sql, slotName: string): Promise<number | null> {
  const [row] = await sql<{ lag: number | null }[]>`
    SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint AS lag FROM pg_replication_slots WHERE slot_name = ${slotName}`;
  return row?.lag ?? null;
}

/**
 * How far the slot furthest behind among `slots` is: WAL bytes not yet
 * confirmed, WAL bytes it makes PostgreSQL keep (from its restart_lsn), and
 * the least WAL that can still be written before one is invalidated
 * (safe_wal_size; null without max_slot_wal_keep_size). Nulls when none exists.
 */
export async function slotsBehind(sql: Sql, slots: readonly string[]): Promise<{ bytes: number | null; retainedBytes: number | null; safeBytes: number | null }> {
  const [row] = await sql<{ bytes: number | null; retainedBytes: number | null; safeBytes: number | null }[]>`
    SELECT max(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn))::float8 AS bytes,
           max(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn))::float8 AS retained_bytes,
           min(safe_wal_size)::float8 AS safe_bytes
    FROM pg_replication_slots WHERE slot_name = ANY(${slots as string[]})`;
  return { bytes: row?.bytes ?? null, retainedBytes: row?.retainedBytes ?? null, safeBytes: row?.safeBytes ?? null };
}

/**
 * Drops the replication slots no process is reading: the one named `name`, or
 * every one whose name starts with `prefix`. A slot in use is left alone: its
 * reader still needs it, and PostgreSQL would refuse anyway. Resolves with how
 * many were dropped.
 */
export async function dropIdleSlots(sql: Sql, match: { name: string } | { prefix: string }): Promise<number> {
  const rows =
    'name' in match
      ? await sql`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = ${match.name} AND NOT active`
      : await sql`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE starts_with(slot_name, ${match.prefix}) AND NOT active`;
  return rows.length;
}

/**
 * Drops the publications named `name`, or every one whose name starts with
 * `prefix` (benchmarks and tests clean up after themselves with it).
 */
export async function dropPublications(sql: Sql, match: { name: string } | { prefix: string }): Promise<number> {
  const rows =
    'name' in match
      ? await sql<{ name: string }[]>`SELECT pubname AS name FROM pg_publication WHERE pubname = ${match.name}`
      : await sql<{ name: string }[]>`SELECT pubname AS name FROM pg_publication WHERE starts_with(pubname, ${match.prefix})`;
  // Names come from the catalog, and were plain identifiers when created.
  for (const row of rows) await sql.unsafe(`DROP PUBLICATION IF EXISTS "${row.name.replaceAll('"', '""')}"`);
  return rows.length;
}
