/**
 * Recovering from a lost (or dropped) replication slot without losing events:
 * `outbox-bench relay --mode cdc --recover-slot <slot>`.
 *
 * The CDC relays never mark outbox rows, so after a loss the rows Kafka has
 * must be told from the ones it lacks by proof, not by time (a timestamp
 * cannot say whether a row's transaction committed before the relay's last
 * confirmation). The proof is the slot's published horizon (cdc.ts records
 * it): a snapshot H whose every visible transaction the relay saw Kafka
 * acknowledge, and the snapshot F the slot's incarnation started at. A row is
 * proven delivered when its transaction (txid, sql/006) is visible in H and
 * not in F; everything else unpublished is re-published.
 *
 * The steps, each safe to repeat after a crash (relay_cdc_slots.recovering
 * keeps every relay off the slot until the last one is done):
 *  1. mark the proven rows, and flag the recovery, in one transaction;
 *  2. drop the lost slot and create a new one, recording its start C and the
 *     snapshot E it exports (exactly what it will not decode);
 *  3. re-publish with the polling relay's pass loop the unpublished rows
 *     visible in E (within the slot's row filter), oldest first;
 *  4. clear the flag: the CDC relay may start at C.
 * Only one publisher runs at a time for the slot's aggregates, so
 * per-aggregate order holds. A recovery may duplicate, never lose.
 */
import type { Sql, TransactionSql } from '../../db.js';
import { OutboxBenchError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import { markProvenPublished, selectUnpublishedVisibleIn } from '../../queries.js';
import type { SlotRecoveryReport } from '../contract.js';
import type { EventPublisher } from '../publisher.js';
import { assertRelaySlot, createSlot, ensurePublication, lostSlotAdvice, serverSlot, slotRecord, type SlotOptions } from './slot.js';
import { TableRelay, type ClaimStrategy } from '../table/relay.js';
import type { WireEncoder } from '../wire.js';

export interface SlotRecoveryOptions {
  sql: Sql;
  schema: string;
  slotName: string;
  publicationName: string;
  /** The lost slot's row filter (a shard of cdc-sharded): only its rows are marked and re-published. */
  rowFilter?: string | undefined;
  store: 'table' | 'message';
  /** The relay mode, for messages. */
  relayMode: string;
  publisher: EventPublisher;
  wire: WireEncoder;
  /** Rows per re-publishing pass. */
  batchSize: number;
  log: Logger;
  metrics?: Metrics | undefined;
}


/** Carries out the recovery of `options.slotName`; see the file's header for the steps. */
export async function recoverSlot(options: SlotRecoveryOptions): Promise<SlotRecoveryReport> {
  const { sql, slotName, log } = options;
  const slotOptions: SlotOptions = { ...options, recreateSlot: true };
  if (options.store === 'message') {
    throw new OutboxBenchError('USAGE', `--recover-slot re-publishes outbox rows, and ${options.relayMode} writes none. ${lostSlotAdvice(slotOptions, await slotRecord(sql, slotName))}`);
  }
  const lock = await sql.reserve();
  try {
    const [locked] = await lock<{ ok: boolean }[]>`SELECT pg_try_advisory_lock(hashtext(${`outbox-bench.recover.${slotName}`})) AS ok`;
    if (!locked?.ok) throw new OutboxBenchError('USAGE', `another recovery of replication slot "${slotName}" is running`);
    return await recoverLocked(options, log);
  } finally {
    await lock`SELECT pg_advisory_unlock_all()`.catch(() => {});
    lock.release();
  }
}

async function recoverLocked(options: SlotRecoveryOptions, log: Logger): Promise<SlotRecoveryReport> {
  const { sql, slotName } = options;
  const slot = await serverSlot(sql, slotName);
  const record = await slotRecord(sql, slotName);
  if (slot?.active) {
    throw new OutboxBenchError('USAGE', `replication slot "${slotName}" is being read (walsender pid ${slot.activePid}): stop its relay before recovering it`);
  }
  const [here] = await sql<{ database: string }[]>`SELECT current_database() AS database`;
  // Never drop a slot that is not this relay's kind to read.
  if (slot) assertRelaySlot(slotName, slot, here!.database);
  const resumed = record?.recovering === true;
  if (slot && slot.walStatus !== 'lost' && !resumed) {
    throw new OutboxBenchError('USAGE', `replication slot "${slotName}" is not lost (wal_status = '${slot.walStatus}'): there is nothing to recover; start the relay as usual`);
  }

  const horizon = record?.horizonSnapshot ? { snapshot: record.horizonSnapshot, lsn: record.horizonLsn, at: record.horizonAt } : null;
  let marked = 0;
  if (!resumed) {
    marked = await sql.begin(async (tx) => {
      const proven =
        horizon && record?.floorSnapshot ? await markProvenPublished(tx, { horizon: horizon.snapshot, floor: record.floorSnapshot, rowFilter: options.rowFilter }) : 0;
      await flagRecovery(tx, slotName);
      return proven;
    });
    log.info({ slot: slotName, marked, horizon: horizon?.snapshot ?? null, horizonLsn: horizon?.lsn ?? null, floor: record?.floorSnapshot ?? null }, 'recovery: marked the rows the published horizon proves Kafka has');
  }

  let republishFrom = resumed && slot && slot.walStatus !== 'lost' ? record?.republishSnapshot ?? null : null;
  let startLsn = republishFrom ? record?.createdLsn ?? null : null;
  if (!republishFrom) {
    // A lost slot, or one an interrupted recovery created before it recorded
    // the slot's snapshot: nothing has read it, so it is replaced.
    await ensurePublication(sql, { schema: options.schema, publicationName: options.publicationName, rowFilter: options.rowFilter }, log);
    if (slot) await sql`SELECT pg_drop_replication_slot(${slotName})`;
    const created = await createSlot(sql, slotName);
    await sql`
      UPDATE relay_cdc_slots SET created_at = now(), created_lsn = ${created.consistentPoint}::pg_lsn, floor_snapshot = ${created.snapshot}::pg_snapshot,
        republish_snapshot = ${created.snapshot}::pg_snapshot, confirmed_lsn = NULL, confirmed_at = NULL
      WHERE slot_name = ${slotName}`;
    republishFrom = created.snapshot;
    startLsn = created.consistentPoint;
    log.info({ slot: slotName, lsn: startLsn, snapshot: republishFrom }, 'recovery: created the new slot');
  }

  // Moved past a page only once its pass committed: a failed pass is claimed again.
  let afterId = 0;
  const relay = new TableRelay({
    sql,
    publisher: options.publisher,
    wire: options.wire,
    strategy: republishing(republishFrom, options.rowFilter, () => afterId),
    onPass: (rows) => (afterId = rows.reduce((last, row) => Math.max(last, row.id), afterId)),
    log,
    batchSize: options.batchSize,
    intervalMs: 0,
    replicaId: `recover-${slotName}`,
    metrics: options.metrics,
  });
  let republished = 0;
  for (let pass = await relay.runPass(); pass.published > 0; pass = await relay.runPass()) republished += pass.published;
  await sql`UPDATE relay_cdc_slots SET recovering = false, republish_snapshot = NULL WHERE slot_name = ${slotName}`;
  log.info({ slot: slotName, marked, republished, startLsn }, 'recovery done: the CDC relay may start on the new slot');
  return { slotName, marked, republished, horizon, startLsn, resumed };
}

/**
 * Keeps every relay off the slot until the recovery is done, and forgets the
 * lost incarnation's proof (its rows are marked in the same transaction).
 */
async function flagRecovery(tx: TransactionSql, slotName: string): Promise<void> {
  await tx`
    INSERT INTO relay_cdc_slots (slot_name, created_lsn, recovering) VALUES (${slotName}, '0/0', true)
    ON CONFLICT (slot_name) DO UPDATE SET recovering = true, floor_snapshot = NULL, horizon_snapshot = NULL, horizon_lsn = NULL, horizon_at = NULL, republish_snapshot = NULL`;
}

/** The polling relay's claim, narrowed to what the new slot will not decode, from the id after the last published page. */
function republishing(snapshot: string, rowFilter: string | undefined, afterId: () => number): ClaimStrategy {
  return Object.freeze({
    name: 'recover-slot',
    async claim(tx: TransactionSql, limit: number) {
      return { rows: await selectUnpublishedVisibleIn(tx, snapshot, rowFilter, afterId(), limit) };
    },
  });
}
