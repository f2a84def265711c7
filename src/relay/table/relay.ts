/**
 * The pass loop shared by the relays that read the outbox table (polling,
 * SKIP LOCKED replicas). A pass is one transaction:
 *
 *   BEGIN; claim rows; publish them and wait for Kafka's acks; mark them published; COMMIT
 *
 * Whatever dies in between (the relay, Kafka, the connection), the marks are
 * rolled back with the transaction and the rows are claimed again later:
 * at-least-once, never lost. How rows are claimed is the strategy's business.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { backoffMs } from '../../backoff.js';
import { failpoint, FailpointCrash } from '../../chaos/failpoints.js';
import type { Sql, TransactionSql } from '../../db.js';
import { describeError } from '../../errors.js';
import type { OutboxRow } from '../../events.js';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import { markPublished, outboxBacklog } from '../../queries.js';
import type { Runtime } from '../../runtime.js';
import { evidencePath, serverClock, type PassEvidence } from './evidence.js';
import { relayApplicationName, relayClientId, type LagReading, type RelayHandle, type RelayModeBehaviour, type StartRelayOptions } from '../contract.js';
import type { EventPublisher } from '../publisher.js';
import type { StageRecorder } from '../stages.js';
import type { WireEncoder } from '../wire.js';

export interface Claim {
  rows: OutboxRow[];
  /** Buckets owned during this pass (ordered strategy only). */
  buckets?: number[];
}

export interface ClaimStrategy {
  readonly name: string;
  /** Runs inside the pass transaction; whatever it locks is held until commit. */
  claim(tx: TransactionSql, limit: number): Promise<Claim>;
}

export interface TableRelayOptions {
  sql: Sql;
  publisher: EventPublisher;
  /** Turns claimed rows into what goes to Kafka (topic, key, payload, headers). */
  wire: WireEncoder;
  strategy: ClaimStrategy;
  log: Logger;
  /** Rows per pass. */
  batchSize: number;
  /** Pause after a pass that was not full, ms. */
  intervalMs: number;
  /** Identifies this replica in logs, metrics and evidence. */
  replicaId?: string;
  metrics?: Metrics | undefined;
  /** Append every pass's claim and release to this JSON Lines file (costs two clock reads per pass). */
  evidenceFile?: string | undefined;
  /** The session's lease (idle_in_transaction_session_timeout), ms, recorded in the evidence. */
  leaseMs?: number | undefined;
  /** Benchmarks: where each event's time goes (insert -> claim -> Kafka ack). */
  stages?: StageRecorder | undefined;
  /** Called after each successful pass (tests, progress). */
  onPass?: (published: readonly OutboxRow[]) => void;
}

export interface PassResult {
  published: number;
  /** True when the pass returned a full batch: more is probably waiting. */
  full: boolean;
}


export class TableRelay {
  readonly replicaId: string;
  readonly #options: TableRelayOptions;
  readonly #log: Logger;
  #evidence: WriteStream | undefined;
  #pass = 0;
  #loop: Promise<void> | undefined;
  #abort = new AbortController();
  #crashed: FailpointCrash | undefined;
  published = 0;

  constructor(options: TableRelayOptions) {
    this.#options = options;
    this.replicaId = options.replicaId ?? `${options.strategy.name}-${process.pid}`;
    this.#log = options.log.child({ component: 'relay', relay: options.strategy.name, replica: this.replicaId });
    if (options.evidenceFile) this.#evidence = createWriteStream(options.evidenceFile, { flags: 'a' });
  }

  /** The failpoint crash that stopped the loop, if one did. */
  get crashed(): FailpointCrash | undefined {
    return this.#crashed;
  }

  get running(): boolean {
    return this.#loop !== undefined && !this.#abort.signal.aborted;
  }

  start(): void {
    if (this.#loop) return;
    this.#log.info({ batchSize: this.#options.batchSize, intervalMs: this.#options.intervalMs }, 'relay started');
    this.#loop = this.#run();
  }

  /** Finishes the pass in progress, then stops. */
  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#loop;
    await new Promise<void>((resolve) => (this.#evidence ? this.#evidence.end(resolve) : resolve()));
    this.#evidence = undefined;
  }

  async #run(): Promise<void> {
    const signal = this.#abort.signal;
    let failures = 0;
    while (!signal.aborted) {
      let result: PassResult;
      try {
        result = await this.runPass();
        failures = 0;
      } catch (error) {
        if (error instanceof FailpointCrash) {
          // An in-process "crash": stop like a killed relay would, mid-pass.
          this.#crashed = error;
          this.#log.warn({ failpoint: error.failpoint }, 'relay crashed at a failpoint');
          this.#abort.abort();
          return;
        }
        failures += 1;
        const delay = backoffMs(failures);
        this.#options.metrics?.relayErrors.inc({ relay: this.#options.strategy.name, kind: (error as { code?: string }).code ?? 'unknown' });
        this.#log.warn({ err: describeError(error), retryInMs: Math.round(delay), failures }, 'relay pass failed; nothing was marked, retrying');
        await sleep(delay, undefined, { signal }).catch(() => {});
        continue;
      }
      if (!result.full) await sleep(this.#options.intervalMs, undefined, { signal }).catch(() => {});
    }
    this.#log.info({ published: this.published }, 'relay stopped');
  }

  /** One claim-publish-mark transaction. Exposed for tests and benchmarks. */
  async runPass(): Promise<PassResult> {
    const { sql, strategy, publisher, batchSize, metrics } = this.#options;
    const pass = ++this.#pass;
    const evidence = this.#evidence !== undefined;
    let claimed: Claim | undefined;
    let releasedAt: number | undefined;
    try {
      const published = await sql.begin(async (tx) => {
        claimed = await strategy.claim(tx, batchSize);
        if (claimed.rows.length === 0) return [];
        if (evidence) {
          // Read after the claim returned: the locks are held by now.
          const clock = await serverClock(tx);
          this.#record({
            type: 'claim',
            replica: this.replicaId,
            pid: process.pid,
            pass,
            claimedAt: clock.at,
            backendPid: clock.backendPid,
            ...(this.#options.leaseMs !== undefined ? { leaseMs: this.#options.leaseMs } : {}),
            eventIds: claimed.rows.map((r) => r.eventId),
            ...(claimed.buckets ? { buckets: claimed.buckets } : {}),
          });
        }
        const claimedAt = Date.now();
        const started = performance.now();
        await publisher.publish(claimed.rows.map((row) => this.#options.wire.fromEvent(row)));
        metrics?.relayPublishSeconds.observe({ relay: strategy.name }, (performance.now() - started) / 1_000);
        if (this.#options.stages) {
          const ackedAt = Date.now();
          for (const row of claimed.rows) this.#options.stages.record(row.createdAt.getTime(), claimedAt, ackedAt);
        }
        failpoint('relay.after-publish-before-mark');
        await markPublished(tx, claimed.rows);
        // Read before COMMIT: the locks are still held.
        if (evidence) releasedAt = (await serverClock(tx)).at;
        return claimed.rows;
      });
      if (published.length > 0) {
        this.#record({ type: 'release', replica: this.replicaId, pid: process.pid, pass, outcome: 'published', ...(releasedAt !== undefined ? { releasedAt } : {}) });
        this.published += published.length;
        metrics?.relayPublished.inc({ relay: strategy.name }, published.length);
        metrics?.relayPasses.inc({ relay: strategy.name });
        this.#options.onPass?.(published);
      }
      return { published: published.length, full: published.length >= batchSize };
    } catch (error) {
      if (claimed && claimed.rows.length > 0) {
        this.#record({ type: 'release', replica: this.replicaId, pid: process.pid, pass, outcome: 'failed', failedAt: Date.now(), error: describeError(error) });
      }
      throw error;
    }
  }

  #record(line: PassEvidence): void {
    this.#evidence?.write(`${JSON.stringify(line)}\n`);
  }
}

/**
 * Starts process `options.index` of a table-relay mode with its claim
 * strategy: the part of starting that polling and the SKIP LOCKED modes share.
 * `leased` runs the relay's sessions with the lease (--lease-ms): a process
 * stalled inside its pass is cut off by the server and its marks never commit.
 * `prepare` runs on the relay's pool before the first pass.
 */
export async function startTableRelay(
  runtime: Runtime,
  options: StartRelayOptions,
  strategy: ClaimStrategy,
  how: { leased: boolean; prepare?: (sql: Sql) => Promise<void> },
): Promise<RelayHandle> {
  const { config, log } = runtime;
  const { leased } = how;
  const sql = runtime.sql({
    max: 2,
    applicationName: relayApplicationName(config.relayMode, options.index),
    ...(leased ? { idleInTransactionTimeoutMs: config.leaseMs } : {}),
  });
  await how.prepare?.(sql);
  const relay = new TableRelay({
    sql,
    replicaId: `${config.relayMode}-${options.index}`,
    publisher: await runtime.publisher(relayClientId(options.index)),
    wire: runtime.wire(),
    strategy,
    log,
    batchSize: config.batchSize,
    intervalMs: config.pollIntervalMs,
    ...(leased ? { leaseMs: config.leaseMs } : {}),
    metrics: options.metrics,
    evidenceFile: options.evidenceFile ? evidencePath(options.evidenceFile, options.index) : undefined,
    stages: options.stages,
  });
  relay.start();
  return { stop: () => relay.stop(), done: new Promise(() => {}) };
}

/** The table relays' lag: committed rows not yet published, and how old the oldest is. */
export async function tableRelayLag(sql: Sql): Promise<LagReading> {
  const backlog = await outboxBacklog(sql);
  return { events: backlog.unpublished, bytes: null, oldestSeconds: backlog.oldestCreatedAt ? Math.max(0, (Date.now() - backlog.oldestCreatedAt.getTime()) / 1_000) : 0 };
}

/**
 * A table-relay mode: it reads the outbox table, so it has no slots to
 * release and its lag is the unpublished rows; `provision` is what it needs
 * before the first write besides the schema (bucket rows), if anything.
 */
export function tableMode(start: RelayModeBehaviour['start'], provision: RelayModeBehaviour['provision'] = async () => {}): RelayModeBehaviour {
  return Object.freeze({ start, provision, release: async () => {}, lag: tableRelayLag, slots: () => [] });
}

