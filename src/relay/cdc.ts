/**
 * The CDC relay: logical replication (pgoutput, via pg-logical-replication)
 * of the outbox table and of `pg_logical_emit_message(true, 'outbox', ...)`
 * events, published to Kafka.
 *
 * Acknowledgement is the whole point. The slot's confirmed position only ever
 * moves to the end LSN of transactions whose every event Kafka has
 * acknowledged, in commit order, so a crash anywhere replays rather than
 * skips:
 *
 *  - pg-logical-replication runs with `acknowledge: { auto: false,
 *    timeoutSeconds: 0 }`: its auto mode acks on receipt, and its timer acks
 *    the last *received* LSN (kibae/pg-logical-replication#174).
 *  - Every (re)connection starts at 0/0, i.e. at the slot's confirmed
 *    position: the library would otherwise restart from the last LSN it
 *    received, past unpublished transactions.
 *  - Keepalives are answered here; an idle relay confirms the server's
 *    position (and emits heartbeats) so a quiet outbox does not pin WAL.
 *  - A lost or vanished slot stops the relay with the fix; it is never
 *    silently recreated (a new slot starts at the end of WAL and skips).
 *
 * Why one file of about 480 lines: the reconnect loop, the publish loop and
 * the keepalive answers share one confirmed position and one connection
 * generation, and each rule about when a position may be confirmed is only
 * right together with the others. What stands alone is apart: decoding
 * (pgoutput.ts), slots and publications (slot.ts), the commit-order queue
 * (commit-queue.ts).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { LogicalReplicationService, PgoutputPlugin } from 'pg-logical-replication';
import { backoffMs, RETRY_BACKOFF } from '../backoff.js';
import { failpoint, FailpointCrash } from '../chaos/failpoints.js';
import type { Sql } from '../db.js';
import { describeError, OutboxBenchError } from '../errors.js';
import { nowMs, type WireEvent } from '../events.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { decodeOutboxFrame } from '../outbox-frame.js';
import { OUTBOX_MESSAGE_PREFIX } from '../queries.js';
import { CommitQueue, type QueuedTransaction } from './commit-queue.js';
import { MemoryEvents, SpillFile } from './spill.js';
import { formatLsn, parseLsn, ZERO_LSN, type Lsn } from './lsn.js';
import { PgoutputDecoder, type PgoutputMessage } from './pgoutput.js';
import type { EventPublisher } from './publisher.js';
import { prepareSlot, slotConfirmedLsn, slotRecord } from './slot.js';
import type { StageRecorder } from './stages.js';
import type { WireEncoder } from './wire.js';

/**
 * Prefix of the relay's own non-transactional heartbeat messages. Each is
 * also a fence: the snapshot taken by the statement that emits it shows only
 * transactions whose commit records lie before the message, so once the
 * relay confirms the message's LSN every transaction visible in that snapshot
 * has reached Kafka, and the snapshot becomes the slot's published horizon
 * (sql/006, slot-recovery.ts).
 */
export const HEARTBEAT_PREFIX = 'outbox-bench-heartbeat';

export interface CdcRelayOptions {
  /** Connection URL; the replication connection is opened with it. */
  databaseUrl: string;
  /** A pool on the schema, for slot management, heartbeats and lag. */
  sql: Sql;
  schema: string;
  publisher: EventPublisher;
  /** Turns decoded events into what goes to Kafka (topic, key, payload, headers). */
  wire: WireEncoder;
  slotName: string;
  publicationName: string;
  log: Logger;
  metrics?: Metrics | undefined;
  /** Most events per Kafka batch. */
  batchSize: number;
  /**
   * Stop reading WAL while this many committed events wait for Kafka. One
   * transaction is always read whole (it cannot be published before its
   * commit arrives), so the bound is this plus the largest transaction.
   */
  maxBufferedEvents?: number;
  /**
   * A transaction with more events than this goes to a file while it is read
   * (spill.ts): it cannot be published before its commit, and backpressure
   * cannot act inside it, so this bounds the relay's memory (default: the
   * buffer bound, maxBufferedEvents).
   */
  spillAfterEvents?: number;
  /** Where spilled transactions go (default the OS's temporary folder). */
  spillDir?: string;
  /** Emit a heartbeat message this often so an idle slot keeps advancing, ms. */
  heartbeatIntervalMs?: number;
  /** Send a status update at least this often, ms. */
  statusIntervalMs?: number;
  /** Create the slot even though this schema's relay had one before (after a loss was dealt with). */
  recreateSlot?: boolean;
  /** What the writers use: decides the recovery a lost slot's error describes (see slot.ts). */
  store?: 'table' | 'message' | undefined;
  /** Only outbox rows this row filter holds for reach the slot (sharded CDC; see slot.ts). */
  rowFilter?: string | undefined;
  /**
   * Publish table-less events (logical messages with the outbox prefix).
   * Every slot receives every logical message, so of several relays sharing
   * the outbox out, exactly one may (default true).
   */
  publishLogicalMessages?: boolean;
  /** The relay's name in logs and metric labels (default `cdc`). */
  label?: string;
  /** The application_name of its sessions. */
  applicationName?: string;
  /** Benchmarks: where each event's time goes (commit -> relay -> Kafka ack). */
  stages?: StageRecorder | undefined;
}

// Rationale: 50K events of ~0.5 KiB is ~25 MiB of heap, a second or two of
// work at the rates measured here; beyond that, reading ahead buys nothing.
const DEFAULT_MAX_BUFFERED = 50_000;
// Rationale: often enough that an idle slot never holds more than a few
// seconds of other tables' WAL; cheap (one tiny WAL record).
const DEFAULT_HEARTBEAT_MS = 5_000;
// Rationale: well inside wal_sender_timeout (60 s by default).
const DEFAULT_STATUS_MS = 10_000;
/**
 * How often the confirmed position is written to relay_cdc_slots, at most.
 * Rationale: the slot itself holds the position; this copy is for people and
 * for a recovery's message, so a write every 10 s costs nothing measurable.
 */
export const CONFIRMED_RECORD_INTERVAL_MS = 10_000;

/** Slot problems no retry can fix; the relay stops and says what to do. */
const FATAL_SLOT_ERRORS = new Set(['SLOT_LOST', 'SLOT_MISSING', 'SLOT_RECOVERING', 'WAL_LEVEL_NOT_LOGICAL', 'CONFIG_INVALID']);

// Rationale: a fence every heartbeat (5 s) waits here until the relay has
// confirmed past it. While Kafka is away none is confirmed; 64 cover five
// minutes, and the newest are the ones left out, so a relay that lags for
// longer still promotes its oldest fences as it catches up.
const MAX_PENDING_FENCES = 64;

/** The walsender's connection, reached to pause reading (backpressure). */
interface StreamHolder {
  _connection?: { stream?: { pause(): void; resume(): void } } | null;
}

type Defaulted = 'maxBufferedEvents' | 'spillAfterEvents' | 'heartbeatIntervalMs' | 'statusIntervalMs' | 'publishLogicalMessages' | 'label';

/** The transaction being read: its events in memory until it grows past the spill threshold, then on disk. */
interface OpenTransaction {
  events: WireEvent[];
  spill: SpillFile | undefined;
}

export class CdcRelay {
  published = 0;
  readonly #options: Required<Pick<CdcRelayOptions, Defaulted>> & CdcRelayOptions;
  readonly #log: Logger;
  #stopped = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #crashed: FailpointCrash | undefined;
  /** What the server has been told is durably handled. */
  #confirmed: Lsn = ZERO_LSN;
  #lastRecorded = 0;
  #recordedLsn: Lsn = ZERO_LSN;
  /** The slot incarnation this relay records its progress on (undefined: a slot this schema did not create). */
  #createdLsn: string | undefined;
  /** PostgreSQL 17+ flushes a non-transactional message on request, so a fence is confirmable without waiting for other WAL. */
  #flushFences = false;
  /** Fences emitted and not yet confirmed past, oldest first. */
  readonly #fences: { lsn: Lsn; snapshot: string }[] = [];
  // Per connection:
  #service: LogicalReplicationService | undefined;
  #generation = 0;
  readonly #queue = new CommitQueue();
  #current: OpenTransaction | undefined;
  /** Transactions that went to disk while they were read. */
  spilledTransactions = 0;
  #paused = false;
  #publishing = false;
  #streaming = false;
  #lastStatusAt = 0;

  constructor(options: CdcRelayOptions) {
    this.#options = {
      spillAfterEvents: options.maxBufferedEvents ?? DEFAULT_MAX_BUFFERED,
      maxBufferedEvents: DEFAULT_MAX_BUFFERED,
      heartbeatIntervalMs: DEFAULT_HEARTBEAT_MS,
      statusIntervalMs: DEFAULT_STATUS_MS,
      publishLogicalMessages: true,
      label: 'cdc',
      ...options,
    };
    this.#log = options.log.child({ component: 'relay', relay: this.#options.label, slot: options.slotName });
  }

  get crashed(): FailpointCrash | undefined {
    return this.#crashed;
  }

  /** Committed events received and not yet acknowledged by Kafka. */
  get bufferedEvents(): number {
    return this.#queue.buffered;
  }

  /** The position last confirmed to PostgreSQL. */
  get confirmedLsn(): string {
    return formatLsn(this.#confirmed);
  }

  /**
   * Checks wal_level, creates the publication and slot if this is the first
   * start, refuses a lost or vanished slot, then starts streaming. Resolves
   * once the slot is checked and the stream is being opened (it connects,
   * and reconnects, on its own); `done` settles when the relay ends.
   */
  async start(): Promise<void> {
    const prepared = await prepareSlot({ ...this.#options, relayMode: this.#options.label }, this.#log);
    this.#createdLsn = prepared.createdLsn;
    const [server] = await this.#options.sql<{ version: number }[]>`SELECT current_setting('server_version_num')::int AS version`;
    this.#flushFences = (server?.version ?? 0) >= 170_000;
    this.#loop = this.#run();
  }

  /** Settles when the relay stops: resolves after stop(), rejects on a fatal error (lost slot). */
  get done(): Promise<void> {
    return this.#loop ?? Promise.resolve();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#wake?.();
    const loop = this.#loop?.catch(() => {});
    if (!loop) return;
    // The library opens its connection inside subscribe(), and a stop() that
    // lands while it connects makes it lose the connected client (it nulls its
    // reference and leaks an idle walsender). So a stream that is still
    // connecting is left alone: it stops itself on replicationStart, or fails.
    let settled = false;
    void loop.then(() => (settled = true));
    while (!settled) {
      if (this.#streaming) await this.#service?.stop().catch(() => {});
      await Promise.race([loop, sleep(100)]);
    }
  }

  async #run(): Promise<void> {
    let failures = 0;
    const heartbeat = setInterval(() => void this.#heartbeat(), this.#options.heartbeatIntervalMs);
    const status = setInterval(() => this.#sendStatus(false), Math.min(this.#options.statusIntervalMs, 1_000));
    try {
      while (!this.#stopped) {
        const started = Date.now();
        try {
          await this.#stream();
        } catch (error) {
          if (this.#stopped) break;
          if (error instanceof FailpointCrash) {
            this.#crashed = error;
            this.#log.warn({ failpoint: error.failpoint }, 'CDC relay crashed at a failpoint');
            return;
          }
          if (error instanceof OutboxBenchError && FATAL_SLOT_ERRORS.has(error.code)) throw error;
          // The slot may have been invalidated or dropped while we were connected:
          // that is fatal. The server being unreachable is not: keep retrying.
          try {
            await prepareSlot({ ...this.#options, relayMode: this.#options.label, recreateSlot: false }, this.#log);
          } catch (slotError) {
            if (slotError instanceof OutboxBenchError && FATAL_SLOT_ERRORS.has(slotError.code)) throw slotError;
          }
          this.#options.metrics?.relayErrors.inc({ relay: this.#options.label, kind: (error as { code?: string }).code ?? 'replication' });
          if (Date.now() - started > 30_000) failures = 0;
          failures += 1;
          const delay = backoffMs(failures);
          this.#log.warn(
            { err: describeError(error), retryInMs: Math.round(delay), confirmed: this.confirmedLsn },
            'replication connection lost; reconnecting from the confirmed position (unconfirmed transactions are replayed)',
          );
          await this.#sleep(delay);
        }
      }
    } finally {
      clearInterval(heartbeat);
      clearInterval(status);
      this.#queue.clear();
      this.#dropCurrent();
      this.#log.info({ published: this.published, confirmed: this.confirmedLsn }, 'CDC relay stopped');
    }
  }

  async #sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.#wake = undefined;
  }

  /** One replication connection, from the slot's confirmed position until it ends. */
  async #stream(): Promise<void> {
    const generation = ++this.#generation;
    this.#queue.clear();
    this.#dropCurrent();
    this.#paused = false;
    // Status updates need a position to report from the first keepalive on:
    // with nothing confirmed yet (Kafka down since start, say) the relay would
    // stay silent and the walsender would time the connection out. The slot's
    // own confirmed position is always safe to repeat.
    await this.#checkIncarnation();
    const slotConfirmed = await slotConfirmedLsn(this.#options.sql, this.#options.slotName);
    if (slotConfirmed > this.#confirmed) this.#confirmed = slotConfirmed;
    const service = new LogicalReplicationService(
      // A connect that hangs (a dead network) fails after 10 s and is retried.
      { connectionString: this.#options.databaseUrl, application_name: this.#options.applicationName ?? `outbox-bench-cdc-${this.#options.slotName}`, connectionTimeoutMillis: 10_000 },
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: false } },
    );
    this.#service = service;
    let streamError: unknown;
    service.on('error', (error: Error) => {
      streamError ??= error;
    });
    service.on('data', (lsn: string, message: PgoutputMessage) => {
      if (generation === this.#generation) this.#onMessage(lsn, message);
    });
    service.on('heartbeat', (lsn: string, _timestamp: number, shouldRespond: boolean) => {
      if (generation === this.#generation) this.#onKeepalive(parseLsn(lsn), shouldRespond);
    });
    service.on('start', () => {
      this.#streaming = true;
      if (this.#stopped) void service.stop();
      else this.#log.info({ confirmed: this.confirmedLsn }, 'replication streaming');
    });
    // The library keeps the connection and its protocol; decoding is ours
    // (pgoutput.ts), with a decoder per connection: relation ids are announced per connection.
    const plugin = new OutboxPlugin(new PgoutputDecoder(this.#options.schema), { protoVersion: 1, publicationNames: [this.#options.publicationName], messages: true });
    try {
      // 0/0 = "from the slot's confirmed position", never from the library's memory.
      await service.subscribe(plugin, this.#options.slotName, '0/00000000');
      if (streamError) throw streamError;
      if (!this.#stopped) throw new OutboxBenchError('DATABASE', 'the replication stream ended', { retriable: true });
    } finally {
      this.#generation += 1; // late publishes of this connection must not ack on the next one
      this.#streaming = false;
      await service.stop().catch(() => {});
      if (this.#crashed) throw this.#crashed;
    }
  }

  /**
   * Every (re)connection reads the slot this relay started on, or none: never
   * a recovery's new slot while rows before its start are still being
   * re-published (that would break per-aggregate order), and never a slot
   * recreated meanwhile (its horizons would be credited to the wrong floor).
   */
  async #checkIncarnation(): Promise<void> {
    const { slotName } = this.#options;
    const record = await slotRecord(this.#options.sql, slotName);
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

  #onMessage(lsn: string, message: PgoutputMessage): void {
    switch (message.tag) {
      case 'begin':
        this.#dropCurrent();
        this.#current = { events: [], spill: undefined };
        return;
      case 'insert':
        if (this.#current) this.#add(this.#current, this.#options.wire.fromColumns(message.row));
        return;
      case 'message':
        this.#onLogicalMessage(lsn, message);
        return;
      case 'commit': {
        const open = this.#current;
        this.#current = undefined;
        if (!open) return;
        open.spill?.finish();
        const transaction: QueuedTransaction = { endLsn: message.endLsn, events: open.spill ?? new MemoryEvents(open.events), published: 0 };
        if (this.#options.stages) {
          transaction.committedAt = message.committedAt;
          transaction.receivedAt = nowMs();
        }
        this.#enqueue(transaction);
        return;
      }
      default:
        return;
    }
  }

  #onLogicalMessage(lsn: string, message: Extract<PgoutputMessage, { tag: 'message' }>): void {
    if (message.prefix === OUTBOX_MESSAGE_PREFIX) {
      // Another relay of the shared-out outbox publishes these; this one only
      // lets them pass, so its slot still advances past them.
      if (!this.#options.publishLogicalMessages) return;
      const event = this.#options.wire.fromColumns(decodeOutboxFrame(message.content));
      if (message.transactional && this.#current) this.#add(this.#current, event);
      else this.#enqueue({ endLsn: message.lsn || parseLsn(lsn), events: new MemoryEvents([event]), published: 0 });
      return;
    }
    if (message.prefix === HEARTBEAT_PREFIX && !message.transactional) {
      // Confirmable once everything before it is published: the slot advances
      // past WAL of tables outside the publication.
      this.#enqueue({ endLsn: message.lsn || parseLsn(lsn), events: new MemoryEvents([]), published: 0 });
    }
  }

  /** Adds an event to the transaction being read, moving it to disk once it grows past the threshold. */
  #add(open: OpenTransaction, event: WireEvent): void {
    if (open.spill) {
      open.spill.append(event);
      return;
    }
    open.events.push(event);
    if (open.events.length < this.#options.spillAfterEvents) return;
    open.spill = new SpillFile(this.#options.spillDir);
    for (const held of open.events) open.spill.append(held);
    open.events = [];
    this.spilledTransactions += 1;
    this.#log.info({ events: open.spill.length, file: open.spill.file }, 'a large transaction goes to disk until it commits');
  }

  /** Forgets the transaction being read (a reconnect reads it again), and its file. */
  #dropCurrent(): void {
    this.#current?.spill?.close();
    this.#current = undefined;
  }

  #enqueue(transaction: QueuedTransaction): void {
    this.#queue.push(transaction);
    if (!this.#paused && this.#queue.buffered > this.#options.maxBufferedEvents) {
      this.#paused = true;
      this.#socket()?.pause();
      this.#log.debug({ buffered: this.#queue.buffered }, 'Kafka is behind; pausing the WAL stream');
    }
    void this.#publishLoop();
  }

  #socket(): { pause(): void; resume(): void } | undefined {
    // pg-logical-replication does not expose its socket; without pausing it
    // the relay would buffer without bound whenever Kafka is slower than WAL.
    return (this.#service as unknown as StreamHolder | undefined)?._connection?.stream ?? undefined;
  }

  /** Publishes the head of the queue batch by batch, confirming whole transactions in order. */
  async #publishLoop(): Promise<void> {
    if (this.#publishing) return;
    this.#publishing = true;
    const generation = this.#generation;
    let failures = 0;
    try {
      while (!this.#stopped && generation === this.#generation && !this.#queue.isEmpty) {
        this.#confirmFinishedHead();
        const batch = this.#queue.nextBatch(this.#options.batchSize);
        if (batch.length === 0) continue;
        try {
          const started = performance.now();
          await this.#options.publisher.publish(batch);
          this.#options.metrics?.relayPublishSeconds.observe({ relay: this.#options.label }, (performance.now() - started) / 1_000);
          failures = 0;
        } catch (error) {
          failures += 1;
          this.#options.metrics?.relayErrors.inc({ relay: this.#options.label, kind: (error as { code?: string }).code ?? 'publish' });
          const delay = backoffMs(failures, { ...RETRY_BACKOFF, jitter: false });
          this.#log.warn({ err: describeError(error), retryInMs: delay, confirmed: this.confirmedLsn }, 'publish failed; nothing confirmed past it, retrying');
          await this.#sleep(delay);
          continue;
        }
        if (generation !== this.#generation) return;
        try {
          failpoint('cdc.after-publish-before-ack');
        } catch (error) {
          if (error instanceof FailpointCrash) {
            this.#crashed = error;
            void this.#service?.stop();
            return;
          }
          throw error;
        }
        this.#acknowledged(batch.length);
        this.published += batch.length;
        this.#options.metrics?.relayPublished.inc({ relay: this.#options.label }, batch.length);
        this.#options.metrics?.relayPasses.inc({ relay: this.#options.label });
        this.#confirmFinishedHead();
      }
      this.#confirmFinishedHead();
    } finally {
      this.#publishing = false;
      // A reconnect while this loop awaited Kafka: the new connection's
      // transactions found the flag set and did not start a loop of their own.
      if (generation !== this.#generation && !this.#stopped && !this.#queue.isEmpty) void this.#publishLoop();
    }
  }

  #acknowledged(count: number): void {
    this.#queue.acknowledge(count);
    if (this.#paused && this.#queue.buffered <= this.#options.maxBufferedEvents / 2) {
      this.#paused = false;
      this.#socket()?.resume();
    }
  }

  /** Drops fully published transactions from the head and confirms the last one's end LSN. */
  #confirmFinishedHead(): void {
    const stages = this.#options.stages;
    const confirmable = this.#queue.takeFinished(
      stages && ((done) => done.committedAt !== undefined && done.events.length > 0 && stages.record(done.committedAt, done.receivedAt!, nowMs(), done.events.length)),
    );
    if (confirmable !== undefined && confirmable > this.#confirmed) {
      this.#confirmed = confirmable;
      this.#sendStatus(true);
    }
  }

  #onKeepalive(serverLsn: Lsn, shouldRespond: boolean): void {
    // Nothing received is unpublished and no transaction is half-read: all WAL
    // the server sent before this keepalive is handled, so its position is safe.
    // The position may fall inside a transaction the walsender has not finished
    // reading; that is fine, because a replay skips only transactions whose
    // COMMIT record starts before the confirmed position, and a transaction's
    // changes are sent before any keepalive that reports its commit as read.
    const idle = this.#queue.isEmpty && this.#current === undefined && !this.#publishing;
    if (idle && serverLsn > this.#confirmed) {
      this.#confirmed = serverLsn;
      this.#sendStatus(true);
    } else if (shouldRespond) {
      this.#sendStatus(true);
    }
  }

  #sendStatus(force: boolean): void {
    const service = this.#service;
    // #confirmed holds the slot's own position from before the first
    // connection on (#stream), so replies go out from the first keepalive even
    // when Kafka has acknowledged nothing yet. It is 0/0 only for a slot with
    // no position, and then there is nothing that may be confirmed: the
    // library cannot send 0/0 (it adds 1), and 0/1 would move an older
    // server's slot back.
    if (!service || this.#confirmed === ZERO_LSN) return;
    if (!force && Date.now() - this.#lastStatusAt < this.#options.statusIntervalMs) return;
    this.#lastStatusAt = Date.now();
    // acknowledge(x) reports x + 1 as written/flushed/applied; we mean exactly
    // #confirmed (a commit's end LSN already points past its record).
    void service.acknowledge(formatLsn(this.#confirmed - 1n)).catch(() => {});
    this.#promoteFences();
    // Written only when the position moved: confirmed_at says when it last did.
    if (this.#confirmed !== this.#recordedLsn && Date.now() - this.#lastRecorded > CONFIRMED_RECORD_INTERVAL_MS && this.#createdLsn !== undefined) {
      this.#lastRecorded = Date.now();
      this.#recordedLsn = this.#confirmed;
      const lsn = formatLsn(this.#confirmed);
      void this.#options.sql`
        UPDATE relay_cdc_slots SET confirmed_lsn = ${lsn}::pg_lsn, confirmed_at = now()
        WHERE slot_name = ${this.#options.slotName} AND created_lsn = ${this.#createdLsn}::pg_lsn AND (confirmed_lsn IS NULL OR confirmed_lsn < ${lsn}::pg_lsn)`.catch(() => {});
    }
  }

  /** Stores the newest fence the confirmed position has passed as the slot's published horizon. */
  #promoteFences(): void {
    let passed: { lsn: Lsn; snapshot: string } | undefined;
    while (this.#fences.length > 0 && this.#fences[0]!.lsn <= this.#confirmed) passed = this.#fences.shift();
    if (!passed || this.#createdLsn === undefined) return;
    const lsn = formatLsn(passed.lsn);
    void this.#options.sql`
      UPDATE relay_cdc_slots SET horizon_snapshot = ${passed.snapshot}::pg_snapshot, horizon_lsn = ${lsn}::pg_lsn, horizon_at = now()
      WHERE slot_name = ${this.#options.slotName} AND created_lsn = ${this.#createdLsn}::pg_lsn AND NOT recovering
        AND (horizon_lsn IS NULL OR horizon_lsn < ${lsn}::pg_lsn)`.catch((error: unknown) => this.#log.debug({ err: describeError(error) }, 'recording the published horizon failed'));
  }

  async #heartbeat(): Promise<void> {
    if (this.#stopped) return;
    try {
      // One statement: its snapshot is taken before the message is written.
      const sql = this.#options.sql;
      const [fence] = this.#flushFences
        ? await sql<{ snapshot: string; lsn: string }[]>`SELECT pg_current_snapshot()::text AS snapshot, pg_logical_emit_message(false, ${HEARTBEAT_PREFIX}, '', true)::text AS lsn`
        : await sql<{ snapshot: string; lsn: string }[]>`SELECT pg_current_snapshot()::text AS snapshot, pg_logical_emit_message(false, ${HEARTBEAT_PREFIX}, '')::text AS lsn`;
      if (fence && this.#fences.length < MAX_PENDING_FENCES) this.#fences.push({ lsn: parseLsn(fence.lsn), snapshot: fence.snapshot });
      this.#promoteFences();
    } catch (error) {
      this.#log.debug({ err: describeError(error) }, 'heartbeat failed');
    }
  }
}

/**
 * pg-logical-replication's pgoutput plugin with our decoder: the library
 * starts replication with the plugin's options and hands every WAL message
 * to parse(); the relay receives what the decoder returns.
 */
class OutboxPlugin extends PgoutputPlugin {
  readonly #decoder: PgoutputDecoder;

  constructor(decoder: PgoutputDecoder, options: ConstructorParameters<typeof PgoutputPlugin>[0]) {
    super(options);
    this.#decoder = decoder;
  }

  // The library types parse() as returning its own message shape; the relay's
  // 'data' listener receives this decoder's instead.
  override parse(buffer: Buffer): ReturnType<PgoutputPlugin['parse']> {
    return this.#decoder.decode(buffer) as unknown as ReturnType<PgoutputPlugin['parse']>;
  }
}
