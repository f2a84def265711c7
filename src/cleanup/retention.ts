/**
 * Cleanup of delivered outbox history, two ways, and of the inbox.
 *
 * DROP PARTITION: a partition older than the retention window is detached and
 * dropped, in one transaction with the lock and the check, but only when every
 * row in it was delivered:
 *  - table relays: no row in it is unpublished;
 *  - CDC relays: every transaction that wrote into it committed below a WAL
 *    position that every replication slot of the relay has confirmed.
 * Batched DELETE: the same rule, row by row, in short bounded transactions.
 *
 * Neither ever waits long for a lock: lock_timeout makes a busy moment a
 * "try again later" instead of a queue of blocked writers behind the cleanup.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Sql } from '../db.js';
import { ensurePartitions } from '../db.js';
import { describeError } from '../errors.js';
import { quoteIdentifier } from '../identifiers.js';
import type { Logger } from '../log.js';
import { parseLsn } from '../relay/cdc/lsn.js';

/** How delivery is proven: rows marked published, or replication slots past them. */
export type { DeliveryProof } from '../relay/contract.js';
import type { DeliveryProof } from '../relay/contract.js';

export interface RetentionOptions {
  sql: Sql;
  /** Delivered history older than this is removed ("1 day", "5 minutes"). */
  retention: string;
  proof: DeliveryProof;
  log: Logger;
  /** Give up on a lock after this long and try again next time, ms. */
  lockTimeoutMs?: number;
  /** CDC: how long to wait for the slots to confirm past a partition, ms. */
  slotWaitMs?: number;
}

export interface PartitionDecision {
  partition: string;
  rangeEnd: Date;
  dropped: boolean;
  reason?: string;
}

// Rationale: a few ms is what a detach takes; 200 ms of waiting for a lock is
// already an outlier worth skipping rather than queueing writers behind.
const DEFAULT_LOCK_TIMEOUT_MS = 200;
const DEFAULT_SLOT_WAIT_MS = 10_000;

interface Horizon {
  /** Every transaction that could still write rows created before `before` has ended... */
  before: Date;
  /** ...and all of them committed below this WAL position. */
  walLsn: string;
}

/**
 * A WAL position below which every transaction that wrote rows created before
 * `cutoff` has committed, or the reason there is none yet. Outbox rows take
 * created_at = now() = their transaction's start, so once no transaction that
 * started before the cutoff is running, none can add such rows any more.
 */
async function horizonFor(sql: Sql, cutoff: Date): Promise<Horizon | string> {
  const [row] = await sql<{ oldest: Date | null; lsn: string }[]>`
    SELECT (SELECT min(xact_start) FROM pg_stat_activity
            WHERE xact_start IS NOT NULL AND datname = current_database() AND backend_type = 'client backend'
              AND pid <> pg_backend_pid()) AS oldest,
           pg_current_wal_insert_lsn()::text AS lsn`;
  if (row?.oldest && row.oldest <= cutoff) return `a transaction started at ${row.oldest.toISOString()} is still running and may write into it`;
  return { before: cutoff, walLsn: row!.lsn };
}

/** Waits until every slot of this schema's CDC relay has confirmed `lsn`; the reason if not. */
async function slotsPast(sql: Sql, lsn: string, waitMs: number): Promise<string | undefined> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    // A slot being recovered proves nothing yet: rows before its new start may still wait to be re-published.
    const slots = await sql<{ slotName: string; confirmed: string | null; walStatus: string | null }[]>`
      SELECT k.slot_name, CASE WHEN NOT k.recovering THEN s.confirmed_flush_lsn::text END AS confirmed, s.wal_status
      FROM relay_cdc_slots k LEFT JOIN pg_replication_slots s ON s.slot_name = k.slot_name`;
    if (slots.length === 0) return 'no replication slot of this schema proves delivery (has the CDC relay run?)';
    const behind = slots.filter((s) => s.confirmed === null || s.walStatus === 'lost' || parseLsn(s.confirmed) < parseLsn(lsn));
    if (behind.length === 0) return undefined;
    if (Date.now() > deadline) {
      return `replication slot(s) ${behind.map((s) => `${s.slotName} (${s.confirmed ?? 'missing'}${s.walStatus === 'lost' ? ', lost' : ''})`).join(', ')} have not confirmed ${lsn} yet`;
    }
    await sleep(200);
  }
}

function isLockTimeout(error: unknown): boolean {
  return (error as { code?: string }).code === '55P03';
}

/**
 * Drops the partitions older than the retention window whose every row was
 * delivered. Returns what it decided for each candidate, and why.
 */
export async function dropDeliveredPartitions(options: RetentionOptions): Promise<PartitionDecision[]> {
  const { sql, log } = options;
  const candidates = await sql<{ partitionName: string; rangeEnd: Date }[]>`
    SELECT partition_name, range_end FROM outbox_partitions
    WHERE range_end <= now() - ${options.retention}::interval
    ORDER BY range_start`;
  const decisions: PartitionDecision[] = [];
  for (const { partitionName, rangeEnd } of candidates) {
    const keep = (reason: string) => decisions.push({ partition: partitionName, rangeEnd, dropped: false, reason });
    if (options.proof === 'replication-slots') {
      const horizon = await horizonFor(sql, rangeEnd);
      if (typeof horizon === 'string') {
        keep(horizon);
        continue;
      }
      const behind = await slotsPast(sql, horizon.walLsn, options.slotWaitMs ?? DEFAULT_SLOT_WAIT_MS);
      if (behind) {
        keep(behind);
        continue;
      }
    }
    try {
      const outcome = await sql.begin(async (tx) => {
        await tx.unsafe(`SET LOCAL lock_timeout = ${Math.round(options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS)}`);
        // Parent first, then the partition: the order every query takes them in.
        await tx.unsafe('LOCK TABLE ONLY outbox IN ACCESS EXCLUSIVE MODE');
        await tx.unsafe(`LOCK TABLE ${quoteIdentifier(partitionName)} IN ACCESS EXCLUSIVE MODE`);
        if (options.proof === 'published-at') {
          const [row] = await tx.unsafe<{ unpublished: number }[]>(`SELECT count(*)::int AS unpublished FROM ${quoteIdentifier(partitionName)} WHERE published_at IS NULL`);
          if (row && row.unpublished > 0) return `${row.unpublished} row(s) not published yet`;
        }
        await tx.unsafe(`ALTER TABLE outbox DETACH PARTITION ${quoteIdentifier(partitionName)}`);
        await tx.unsafe(`DROP TABLE ${quoteIdentifier(partitionName)}`);
        return undefined;
      });
      if (outcome) keep(outcome);
      else {
        decisions.push({ partition: partitionName, rangeEnd, dropped: true });
        log.info({ partition: partitionName }, 'dropped a delivered outbox partition');
      }
    } catch (error) {
      if (isLockTimeout(error)) keep(`busy: no lock within ${options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS} ms, will retry`);
      else throw error;
    }
  }
  return decisions;
}

export interface DeleteOptions extends RetentionOptions {
  /** Rows per DELETE statement (and transaction). */
  batchSize: number;
  /** Pause between batches, ms: room for the write path and for vacuum. */
  pauseMs?: number;
  /** Stop after this many batches (one call of the loop), then come back later. */
  maxBatches?: number;
}

/**
 * Deletes delivered rows older than the retention window, a bounded batch per
 * short transaction, oldest first. Returns how many rows it deleted.
 */
export async function deleteDeliveredBatched(options: DeleteOptions): Promise<{ deleted: number; batches: number; reason?: string }> {
  const { sql } = options;
  const [now] = await sql<{ cutoff: Date }[]>`SELECT now() - ${options.retention}::interval AS cutoff`;
  const cutoff = now!.cutoff;
  if (options.proof === 'replication-slots') {
    const horizon = await horizonFor(sql, cutoff);
    if (typeof horizon === 'string') return { deleted: 0, batches: 0, reason: horizon };
    const behind = await slotsPast(sql, horizon.walLsn, options.slotWaitMs ?? DEFAULT_SLOT_WAIT_MS);
    if (behind) return { deleted: 0, batches: 0, reason: behind };
  }
  const published = options.proof === 'published-at';
  let deleted = 0;
  let batches = 0;
  for (;;) {
    if (options.maxBatches !== undefined && batches >= options.maxBatches) break;
    let count: number;
    try {
      const result = await sql.begin(async (tx) => {
        await tx.unsafe(`SET LOCAL lock_timeout = ${Math.round(options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS)}`);
        return tx`
          DELETE FROM outbox
          WHERE (id, created_at) IN (
            SELECT id, created_at FROM outbox
            WHERE created_at < ${cutoff} AND (${!published} OR published_at IS NOT NULL)
            ORDER BY id
            LIMIT ${options.batchSize})`;
      });
      count = result.count;
    } catch (error) {
      if (isLockTimeout(error)) break;
      throw error;
    }
    batches += 1;
    deleted += count;
    if (count < options.batchSize) break;
    if (options.pauseMs) await sleep(options.pauseMs);
  }
  return { deleted, batches };
}

/**
 * Forgets processed event ids older than `olderThan`, a bounded batch per
 * transaction. The consumer keeps inserting meanwhile: both touch different
 * rows, so neither waits for the other.
 */
export async function sweepInbox(sql: Sql, olderThan: string, batchSize = 5_000): Promise<number> {
  let removed = 0;
  for (;;) {
    const result = await sql`
      DELETE FROM inbox WHERE event_id IN (
        SELECT event_id FROM inbox WHERE processed_at < now() - ${olderThan}::interval ORDER BY processed_at LIMIT ${batchSize})`;
    removed += result.count;
    if (result.count < batchSize) return removed;
  }
}

export type CleanupStrategy = 'drop-partition' | 'batched-delete' | 'none';

export interface CleanupLoopOptions extends RetentionOptions {
  strategy: CleanupStrategy;
  partitionWidth: string;
  partitionsAhead: number;
  /** How often the loop runs, ms. */
  intervalMs: number;
  batchSize: number;
  /** Sweep the inbox of ids older than this, if set. */
  inboxRetention?: string | undefined;
  onRun?: (result: { dropped: number; deleted: number; swept: number; kept: PartitionDecision[] }) => void;
}

/**
 * The background loop beside the relays: keep partitions created ahead, apply
 * the cleanup strategy, sweep the inbox. Errors are logged and retried on the
 * next round; cleanup must never take the pipeline down with it.
 */
export class CleanupLoop {
  readonly #options: CleanupLoopOptions;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;

  constructor(options: CleanupLoopOptions) {
    this.#options = options;
  }

  start(): void {
    const tick = () => {
      if (this.#stopped) return;
      this.#running = this.runOnce().finally(() => {
        if (!this.#stopped) this.#timer = setTimeout(tick, this.#options.intervalMs);
      });
    };
    tick();
  }

  async runOnce(): Promise<void> {
    const { sql, log } = this.#options;
    try {
      await ensurePartitions(sql, this.#options.partitionWidth, this.#options.partitionsAhead);
      let dropped = 0;
      let deleted = 0;
      let kept: PartitionDecision[] = [];
      if (this.#options.strategy === 'drop-partition') {
        const decisions = await dropDeliveredPartitions(this.#options);
        dropped = decisions.filter((d) => d.dropped).length;
        kept = decisions.filter((d) => !d.dropped);
        for (const d of kept) log.info({ partition: d.partition, reason: d.reason }, 'kept an expired outbox partition');
      } else if (this.#options.strategy === 'batched-delete') {
        deleted = (await deleteDeliveredBatched({ ...this.#options, pauseMs: 10, maxBatches: 200 })).deleted;
      }
      const swept = this.#options.inboxRetention ? await sweepInbox(sql, this.#options.inboxRetention, this.#options.batchSize) : 0;
      this.#options.onRun?.({ dropped, deleted, swept, kept });
    } catch (error) {
      log.warn({ err: describeError(error) }, 'cleanup round failed; retrying next round');
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#running;
  }
}
