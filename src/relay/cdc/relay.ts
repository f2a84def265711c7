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
 * The reconnect loop, the publish loop and the keepalive answers share one
 * confirmed position and one connection generation, and each rule about when
 * a position may be confirmed is only right together with the others, so
 * they stay in this file. What stands alone is apart: decoding (pgoutput.ts),
 * assembling transactions (transaction-reader.ts), the commit-order queue
 * (commit-queue.ts), slots and publications (slot.ts), and what is recorded
 * of the slot's progress (slot-progress.ts).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { LogicalReplicationService } from 'pg-logical-replication';
import { backoffMs, RETRY_BACKOFF, WakeableSleep } from '../../backoff.js';
import { failpoint, FailpointCrash } from '../../chaos/failpoints.js';
import { describeError, OutboxBenchError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { nowMs } from '../../events.js';
import { withDefaults, type CdcRelayOptions, type ResolvedCdcRelayOptions } from './options.js';
import { BatchingDelay, checkDelayAgainstTimeout } from './batching.js';
import { CommitQueue, type QueuedTransaction } from './commit-queue.js';
import { formatLsn, parseLsn, ZERO_LSN, type Lsn } from './lsn.js';
import { OutboxPlugin, PgoutputDecoder, type PgoutputMessage } from './pgoutput.js';
import { prepareSlot, slotConfirmedLsn } from './slot.js';
import { SlotProgress } from './slot-progress.js';
import { TransactionReader } from './transaction-reader.js';

export type { CdcRelayOptions } from './options.js';
export { CONFIRMED_RECORD_INTERVAL_MS, HEARTBEAT_PREFIX } from './slot-progress.js';

/** Slot problems no retry can fix; the relay stops and says what to do. */
const FATAL_SLOT_ERRORS = new Set(['SLOT_LOST', 'SLOT_MISSING', 'SLOT_RECOVERING', 'WAL_LEVEL_NOT_LOGICAL', 'CONFIG_INVALID']);

/** The walsender's connection, reached to pause reading (backpressure). */
interface StreamHolder {
  _connection?: { stream?: { pause(): void; resume(): void } } | null;
}

export class CdcRelay {
  published = 0;
  readonly #options: ResolvedCdcRelayOptions;
  readonly #log: Logger;
  #stopped = false;
  #loop: Promise<void> | undefined;
  /** The wait before a retry, which a stop ends. */
  readonly #retryWait = new WakeableSleep();
  #crashed: FailpointCrash | undefined;
  /** What the server has been told is durably handled. */
  #confirmed: Lsn = ZERO_LSN;
  /** Set by start(): what is recorded in relay_cdc_slots. */
  #progress: SlotProgress | undefined;
  // Per connection:
  #service: LogicalReplicationService | undefined;
  #generation = 0;
  readonly #queue = new CommitQueue();
  readonly #reader: TransactionReader;
  readonly #batching: BatchingDelay;
  #paused = false;
  #publishing = false;
  #streaming = false;
  #lastStatusAt = 0;

  constructor(options: CdcRelayOptions) {
    this.#options = withDefaults(options);
    this.#log = options.log.child({ component: 'relay', relay: this.#options.label, slot: options.slotName });
    this.#batching = new BatchingDelay({ delayMs: this.#options.batchDelayMs, maxEvents: this.#options.batchSize, maxBytes: this.#options.batchBytes });
    this.#reader = new TransactionReader({
      ...this.#options,
      recordTimes: this.#options.stages !== undefined,
      log: this.#log,
      committed: (transaction) => this.#enqueue(transaction),
    });
  }

  /** Transactions that went to disk while they were read. */
  get spilledTransactions(): number {
    return this.#reader.spilledTransactions;
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
    const [server] = await this.#options.sql<{ version: number }[]>`SELECT current_setting('server_version_num')::int AS version`;
    await checkDelayAgainstTimeout(this.#options.sql, this.#options.batchDelayMs, this.#log);
    this.#progress = new SlotProgress({ ...this.#options, log: this.#log, createdLsn: prepared.createdLsn, serverVersion: server?.version ?? 0 });
    this.#loop = this.#run();
  }

  /** Settles when the relay stops: resolves after stop(), rejects on a fatal error (lost slot). */
  get done(): Promise<void> {
    return this.#loop ?? Promise.resolve();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#retryWait.wake();
    this.#batching.release();
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
          await this.#retryWait.sleep(delay);
        }
      }
    } finally {
      clearInterval(heartbeat);
      clearInterval(status);
      this.#batching.release();
      this.#queue.clear();
      this.#reader.drop();
      this.#log.info({ published: this.published, confirmed: this.confirmedLsn }, 'CDC relay stopped');
    }
  }

  /** One replication connection, from the slot's confirmed position until it ends. */
  async #stream(): Promise<void> {
    const generation = ++this.#generation;
    this.#queue.clear();
    this.#reader.drop();
    this.#paused = false;
    // Status updates need a position to report from the first keepalive on:
    // with nothing confirmed yet (Kafka down since start, say) the relay would
    // stay silent and the walsender would time the connection out. The slot's
    // own confirmed position is always safe to repeat.
    await this.#progress?.checkIncarnation();
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
      if (generation === this.#generation) this.#reader.read(lsn, message);
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
      this.#batching.release(); // a hold of this connection's queue ends with it
      await service.stop().catch(() => {});
      if (this.#crashed) throw this.#crashed;
    }
  }

  #enqueue(transaction: QueuedTransaction): void {
    this.#queue.push(transaction);
    if (!this.#paused && this.#queue.buffered > this.#options.maxBufferedEvents) {
      this.#paused = true;
      this.#socket()?.pause();
      this.#log.debug({ buffered: this.#queue.buffered }, 'Kafka is behind; pausing the WAL stream');
    }
    this.#batching.queued(this.#queue);
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
        const hold = this.#batching.remainingMs(this.#queue);
        if (hold > 0) {
          // The queue is not empty meanwhile, so keepalives confirm nothing past it (#onKeepalive).
          await this.#batching.hold(hold);
          continue;
        }
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
          await this.#retryWait.sleep(delay);
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
    const idle = this.#queue.isEmpty && !this.#reader.reading && !this.#publishing;
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
    this.#progress?.confirmed(this.#confirmed);
  }

  async #heartbeat(): Promise<void> {
    if (!this.#stopped) await this.#progress?.fence(this.#confirmed);
  }
}
