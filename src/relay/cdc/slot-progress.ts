/**
 * What a CDC relay records of its progress in relay_cdc_slots (sql/006), on
 * the slot incarnation it started on: the confirmed position, for people and
 * for a recovery's message, and the published horizon, from fences.
 */
import type { Sql } from '../../db.js';
import { describeError, OutboxBenchError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { formatLsn, parseLsn, ZERO_LSN, type Lsn } from './lsn.js';
import { slotRecord } from './slot.js';

/**
 * Prefix of the relay's own non-transactional heartbeat messages. Each is
 * also a fence: the snapshot taken by the statement that emits it shows only
 * transactions whose commit records lie before the message, so once the
 * relay confirms the message's LSN every transaction visible in that snapshot
 * has reached Kafka, and the snapshot becomes the slot's published horizon
 * (sql/006, slot-recovery.ts).
 */
export const HEARTBEAT_PREFIX = 'outbox-bench-heartbeat';

/**
 * How often the confirmed position is written to relay_cdc_slots, at most.
 * Rationale: the slot itself holds the position; this copy is for people and
 * for a recovery's message, so a write every 10 s costs nothing measurable.
 */
export const CONFIRMED_RECORD_INTERVAL_MS = 10_000;

// Rationale: a fence every heartbeat (5 s) waits here until the relay has
// confirmed past it. While Kafka is away none is confirmed; 64 cover five
// minutes, and the newest are the ones left out, so a relay that lags for
// longer still promotes its oldest fences as it catches up.
const MAX_PENDING_FENCES = 64;

export class SlotProgress {
  readonly #sql: Sql;
  readonly #slotName: string;
  readonly #log: Logger;
  /** The slot incarnation progress is recorded on (undefined: a slot this schema did not create, nothing is recorded). */
  readonly #createdLsn: string | undefined;
  /** PostgreSQL 17+ flushes a non-transactional message on request, so a fence is confirmable without waiting for other WAL. */
  readonly #flushFences: boolean;
  /** Fences emitted and not yet confirmed past, oldest first. */
  readonly #fences: { lsn: Lsn; snapshot: string }[] = [];
  #lastRecorded = 0;
  #recordedLsn: Lsn = ZERO_LSN;

  constructor(options: { sql: Sql; slotName: string; log: Logger; createdLsn: string | undefined; serverVersion: number }) {
    this.#sql = options.sql;
    this.#slotName = options.slotName;
    this.#log = options.log;
    this.#createdLsn = options.createdLsn;
    this.#flushFences = options.serverVersion >= 170_000;
  }

  /**
   * Every (re)connection reads the slot this relay started on, or none: never
   * a recovery's new slot while rows before its start are still being
   * re-published (that would break per-aggregate order), and never a slot
   * recreated meanwhile (its horizons would be credited to the wrong floor).
   */
  async checkIncarnation(): Promise<void> {
    const slotName = this.#slotName;
    const record = await slotRecord(this.#sql, slotName);
    if (record?.recovering) {
      throw new OutboxBenchError('SLOT_RECOVERING', `a recovery of replication slot "${slotName}" began while this relay was disconnected: let it finish (relay --recover-slot ${slotName}), then start the relay again`);
    }
    if (this.#createdLsn !== undefined && record && record.createdLsn !== this.#createdLsn) {
      throw new OutboxBenchError(
        'SLOT_MISSING',
        `replication slot "${slotName}" was recreated while this relay was disconnected (it started on the slot created at ${this.#createdLsn}, the slot now was created at ${record.createdLsn}): start the relay again`,
      );
    }
  }

  /** After each status update: promotes the fences `confirmed` has passed, and writes the position when it moved (at most every CONFIRMED_RECORD_INTERVAL_MS). */
  confirmed(confirmed: Lsn): void {
    this.#promoteFences(confirmed);
    // Written only when the position moved: confirmed_at says when it last did.
    if (confirmed === this.#recordedLsn || Date.now() - this.#lastRecorded <= CONFIRMED_RECORD_INTERVAL_MS || this.#createdLsn === undefined) return;
    this.#lastRecorded = Date.now();
    this.#recordedLsn = confirmed;
    const lsn = formatLsn(confirmed);
    void this.#sql`
      UPDATE relay_cdc_slots SET confirmed_lsn = ${lsn}::pg_lsn, confirmed_at = now()
      WHERE slot_name = ${this.#slotName} AND created_lsn = ${this.#createdLsn}::pg_lsn AND (confirmed_lsn IS NULL OR confirmed_lsn < ${lsn}::pg_lsn)`.catch(() => {});
  }

  /** The heartbeat: emits a fence, then promotes what `confirmed` has passed. */
  async fence(confirmed: Lsn): Promise<void> {
    try {
      // One statement: its snapshot is taken before the message is written.
      const sql = this.#sql;
      const [fence] = this.#flushFences
        ? await sql<{ snapshot: string; lsn: string }[]>`SELECT pg_current_snapshot()::text AS snapshot, pg_logical_emit_message(false, ${HEARTBEAT_PREFIX}, '', true)::text AS lsn`
        : await sql<{ snapshot: string; lsn: string }[]>`SELECT pg_current_snapshot()::text AS snapshot, pg_logical_emit_message(false, ${HEARTBEAT_PREFIX}, '')::text AS lsn`;
      if (fence && this.#fences.length < MAX_PENDING_FENCES) this.#fences.push({ lsn: parseLsn(fence.lsn), snapshot: fence.snapshot });
      this.#promoteFences(confirmed);
    } catch (error) {
      this.#log.debug({ err: describeError(error) }, 'heartbeat failed');
    }
  }

  /** Stores the newest fence the confirmed position has passed as the slot's published horizon. */
  #promoteFences(confirmed: Lsn): void {
    let passed: { lsn: Lsn; snapshot: string } | undefined;
    while (this.#fences.length > 0 && this.#fences[0]!.lsn <= confirmed) passed = this.#fences.shift();
    if (!passed || this.#createdLsn === undefined) return;
    const lsn = formatLsn(passed.lsn);
    void this.#sql`
      UPDATE relay_cdc_slots SET horizon_snapshot = ${passed.snapshot}::pg_snapshot, horizon_lsn = ${lsn}::pg_lsn, horizon_at = now()
      WHERE slot_name = ${this.#slotName} AND created_lsn = ${this.#createdLsn}::pg_lsn AND NOT recovering
        AND (horizon_lsn IS NULL OR horizon_lsn < ${lsn}::pg_lsn)`.catch((error: unknown) => this.#log.debug({ err: describeError(error) }, 'recording the published horizon failed'));
  }
}
