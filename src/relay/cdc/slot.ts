/**
 * All SQL about replication slots and publications: the CDC relays' slot and
 * publication are created on first start, checked on every start, and
 * refused (never silently recreated) when lost or gone, because a new slot
 * starts at the end of the WAL and skips events.
 */
import { replicationSql, type Sql } from '../../db.js';
import { OutboxBenchError } from '../../errors.js';
import { quoteIdentifier } from '../../identifiers.js';
import type { Logger } from '../../log.js';
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
  /** The relay mode, for the recovery command an error prints (default cdc). */
  relayMode?: string | undefined;
}

export interface SlotRow {
  active: boolean;
  activePid: number | null;
  walStatus: string | null;
  plugin: string | null;
  database: string | null;
  confirmedFlushLsn: string | null;
  invalidationReason: string | null;
}

/** What this schema's relay recorded about a slot (sql/004, sql/006). */
export interface SlotRecord {
  createdAt: Date;
  createdLsn: string;
  confirmedLsn: string | null;
  confirmedAt: Date | null;
  /** The snapshot the slot's incarnation started at; null for a slot created before it was recorded. */
  floorSnapshot: string | null;
  /** The last published horizon of this incarnation (null: none recorded yet). */
  horizonSnapshot: string | null;
  horizonLsn: string | null;
  horizonAt: Date | null;
  recovering: boolean;
  republishSnapshot: string | null;
}

/** The record of `slotName`, if this schema's relay ever created it. */
export async function slotRecord(sql: Sql, slotName: string): Promise<SlotRecord | undefined> {
  const [record] = await sql<SlotRecord[]>`
    SELECT created_at, created_lsn::text, confirmed_lsn::text, confirmed_at, floor_snapshot::text, horizon_snapshot::text,
           horizon_lsn::text, horizon_at, recovering, republish_snapshot::text
    FROM relay_cdc_slots WHERE slot_name = ${slotName}`;
  return record;
}

/** The slot as PostgreSQL has it (undefined: it does not exist). */
export async function serverSlot(sql: Sql, slotName: string): Promise<SlotRow | undefined> {
  const columns = await sql<{ name: string }[]>`SELECT column_name AS name FROM information_schema.columns WHERE table_schema = 'pg_catalog' AND table_name = 'pg_replication_slots'`;
  const hasReason = columns.some((c) => c.name === 'invalidation_reason');
  const [slot] = await sql.unsafe<SlotRow[]>(
    `SELECT active, active_pid, wal_status, plugin, database, confirmed_flush_lsn::text, ${hasReason ? 'invalidation_reason' : 'NULL::text AS invalidation_reason'}
     FROM pg_replication_slots WHERE slot_name = $1`,
    [slotName],
  );
  return slot;
}

/** Refuses a slot no relay of this database can read: another plugin's, or another database's (slot names are cluster-wide). */
export function assertRelaySlot(slotName: string, slot: SlotRow, database: string): void {
  if (slot.plugin !== 'pgoutput') {
    throw new OutboxBenchError('CONFIG_INVALID', `replication slot "${slotName}" uses the ${slot.plugin} plugin, not pgoutput; choose another --slot name`);
  }
  if (slot.database !== database) {
    throw new OutboxBenchError('CONFIG_INVALID', `replication slot "${slotName}" belongs to database ${slot.database}, not ${database}; choose another --slot name`);
  }
}

/** What prepareSlot found or made: the incarnation the relay runs on. */
export interface PreparedSlot {
  /** The slot's consistent point when it was created: names its incarnation in relay_cdc_slots (undefined: a slot this schema did not create). */
  createdLsn: string | undefined;
}

/**
 * Creates the publication and the slot on first start; refuses to run on a
 * server without wal_level=logical, on a lost slot, when a slot this relay
 * had is gone, or while a recovery of it is unfinished. Each error says what
 * happened and how to fix it.
 */
export async function prepareSlot(options: SlotOptions, log: Logger): Promise<PreparedSlot> {
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

  const slot = await serverSlot(sql, slotName);
  const known = await slotRecord(sql, slotName);
  const recovery = () => lostSlotAdvice(options, known);
  if (known?.recovering) {
    throw new OutboxBenchError(
      'SLOT_RECOVERING',
      `a recovery of replication slot "${slotName}" is unfinished: rows committed before its new start may not be re-published yet, so no relay may start on it. ` +
        `Fix: run ${recoverCommand(options)} again; it resumes where it stopped.`,
      { details: { slotName } },
    );
  }
  if (slot) {
    if (slot.walStatus === 'lost') {
      throw new OutboxBenchError(
        'SLOT_LOST',
        `replication slot "${slotName}" was invalidated (wal_status = 'lost'${slot.invalidationReason ? `, reason: ${slot.invalidationReason}` : ''}): ` +
          'PostgreSQL removed WAL the slot still needed, usually because it fell more than max_slot_wal_keep_size behind. ' +
          'Events committed since can no longer be read from the WAL, so the relay will not start on it and will not recreate it by itself. ' +
          recovery(),
        { details: { slotName, confirmedLsn: known?.confirmedLsn, horizonLsn: known?.horizonLsn } },
      );
    }
    assertRelaySlot(slotName, slot, settings.database);
    // A slot made by hand has no record: nothing about it is written, and a
    // recovery from its loss proves nothing and re-publishes every unpublished row.
    return { createdLsn: known?.createdLsn };
  }
  if (known && options.recreateSlot && (options.store ?? 'table') === 'table') {
    throw new OutboxBenchError(
      'USAGE',
      `--recreate-slot would start replication slot "${slotName}" at the end of the WAL and skip the outbox rows its predecessor had not delivered; ` +
        `run ${recoverCommand(options)} instead: it re-publishes them first.`,
    );
  }
  if (known && !options.recreateSlot) {
    throw new OutboxBenchError(
      'SLOT_MISSING',
      `replication slot "${slotName}" that this relay created on ${known.createdAt.toISOString()} no longer exists. ` +
        'A new slot would start at the end of the WAL and skip every event its predecessor had not delivered. Find out who dropped it. ' +
        recovery(),
      { details: { slotName } },
    );
  }
  // A crash between creating the slot and recording it must not leave the old
  // incarnation's floor and horizon to be credited with the new slot's work.
  if (known) {
    await sql`UPDATE relay_cdc_slots SET created_lsn = '0/0', floor_snapshot = NULL, horizon_snapshot = NULL, horizon_lsn = NULL, horizon_at = NULL WHERE slot_name = ${slotName}`;
  }
  const created = await createSlot(sql, slotName);
  await sql`
    INSERT INTO relay_cdc_slots (slot_name, created_lsn, floor_snapshot) VALUES (${slotName}, ${created.consistentPoint}::pg_lsn, ${created.snapshot}::pg_snapshot)
    ON CONFLICT (slot_name) DO UPDATE SET created_at = now(), created_lsn = excluded.created_lsn, floor_snapshot = excluded.floor_snapshot,
      confirmed_lsn = NULL, confirmed_at = NULL, horizon_snapshot = NULL, horizon_lsn = NULL, horizon_at = NULL, recovering = false, republish_snapshot = NULL`;
  log.info({ slot: slotName, lsn: created.consistentPoint }, 'created the replication slot');
  return { createdLsn: created.consistentPoint };
}

/** A new slot's start: its consistent point, and the snapshot it exported (what it will never decode). */
export interface CreatedSlot {
  consistentPoint: string;
  /** pg_snapshot text: exactly the transactions committed before the consistent point are visible in it. */
  snapshot: string;
}

/**
 * Creates a pgoutput slot over the replication protocol with an exported
 * snapshot, and reads that snapshot as a pg_snapshot: the line between what
 * the slot will decode and what it never will, which a recovery needs
 * exactly (pg_create_logical_replication_slot exports none). A failover slot
 * on PostgreSQL 17+: a standby with sync_replication_slots keeps a copy, so
 * the relay goes on from a promoted standby where it left off.
 */
export async function createSlot(sql: Sql, slotName: string): Promise<CreatedSlot> {
  const [server] = await sql<{ version: number }[]>`SELECT current_setting('server_version_num')::int AS version`;
  const version = server!.version;
  const options = version >= 170_000 ? "(SNAPSHOT 'export', FAILOVER true)" : version >= 150_000 ? "(SNAPSHOT 'export')" : 'EXPORT_SNAPSHOT';
  const replication = replicationSql(sql);
  try {
    // The exported snapshot lives while this connection stays idle: import it before anything else runs on it.
    const [slot] = await replication.unsafe<{ consistent_point: string; snapshot_name: string }[]>(
      `CREATE_REPLICATION_SLOT ${quoteIdentifier(slotName)} LOGICAL pgoutput ${options}`,
    );
    if (!slot || !/^[0-9A-F-]+$/i.test(slot.snapshot_name)) throw new OutboxBenchError('DATABASE', `CREATE_REPLICATION_SLOT ${slotName} returned no snapshot`);
    const snapshot = await sql.begin('isolation level repeatable read', async (tx) => {
      await tx.unsafe(`SET TRANSACTION SNAPSHOT '${slot.snapshot_name}'`);
      const [row] = await tx<{ snapshot: string }[]>`SELECT pg_current_snapshot()::text AS snapshot`;
      return row!.snapshot;
    });
    return { consistentPoint: slot.consistent_point, snapshot };
  } finally {
    await replication.end({ timeout: 5 });
  }
}

/** The command that carries out a recovery, with the flags that name the slot's relay. */
function recoverCommand(options: SlotOptions): string {
  return `\`outbox-bench relay --mode ${options.relayMode ?? 'cdc'} --schema ${options.schema} --recover-slot ${options.slotName}\` (with the relay's other flags)`;
}

/** What to do about the events a lost or dropped slot may never have delivered. */
export function lostSlotAdvice(options: SlotOptions, known: SlotRecord | undefined): string {
  const horizon = known?.horizonSnapshot
    ? `snapshot ${known.horizonSnapshot}: every transaction visible in it had reached Kafka when the relay confirmed ${known.horizonLsn} on ${known.horizonAt?.toISOString()}`
    : undefined;
  if ((options.store ?? 'table') === 'message') {
    return (
      'Its events cannot be re-published: a logical message lives only in the WAL, which PostgreSQL has removed, and no table holds it. ' +
      (horizon ? `Its last published horizon is ${horizon}; reconcile from your business tables every write not visible in that snapshot. ` : 'No published horizon of it is recorded; reconcile from your business tables every write since the slot was created. ') +
      `Then: SELECT pg_drop_replication_slot('${options.slotName}'); and start the relay with --recreate-slot.`
    );
  }
  const proven = !horizon
    ? 'none, because no published horizon of this slot is recorded'
    : !known?.floorSnapshot
      ? 'none, because the snapshot the slot started at is not recorded'
      : `those whose txid is visible in its last published horizon, ${horizon}, and not in the snapshot the slot started at, ${known.floorSnapshot}`;
  return (
    `Fix: stop every relay on this slot and run ${recoverCommand(options)}. It (1) marks published the outbox rows the slot's published horizon proves Kafka has: ${proven}; ` +
    '(2) drops the lost slot and creates a new one, recording its start and the snapshot it exports; (3) re-publishes with the polling relay every other unpublished row ' +
    `visible in that snapshot${options.rowFilter ? ` and matching ${options.rowFilter}` : ''}; (4) only then starts the CDC relay at the new slot's start. ` +
    'Duplicates are possible and harmless (the consumer dedupes by event id); nothing is marked that Kafka may lack.'
  );
}


/**
 * Creates the publication of the outbox, or checks the one there: rows arrive
 * under the parent table (publish_via_partition_root, or new partitions would
 * be missed), and a row filter must be the one asked for, because a filter
 * that changed under a running slot would silently move rows between slots.
 */
export async function ensurePublication(sql: Sql, options: { schema: string; publicationName: string; rowFilter: string | undefined }, log: Logger): Promise<void> {
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
