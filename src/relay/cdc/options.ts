/**
 * What a CDC relay is built from, and the defaults of what it may leave out.
 */
import { DEFAULTS } from '../../config.js';
import type { Sql } from '../../db.js';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { EventPublisher } from '../publisher.js';
import type { StageRecorder } from '../stages.js';
import type { WireEncoder } from '../wire.js';

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
   * Batching delay, ms: what is queued waits for more commits until its
   * oldest transaction has been queued this long (time spent awaiting the
   * previous publish counts), or `batchSize` events or `batchBytes` bytes are
   * queued, whichever comes first. 0 sends each commit as it arrives. Held
   * events stay in the commit queue: nothing past them is confirmed, and a
   * crash during the hold replays them.
   */
  batchDelayMs?: number;
  /** Bytes (keys and values, about) that end a batching delay early. */
  batchBytes?: number;
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

type Defaulted = 'batchDelayMs' | 'batchBytes' | 'maxBufferedEvents' | 'spillAfterEvents' | 'heartbeatIntervalMs' | 'statusIntervalMs' | 'publishLogicalMessages' | 'label';

export type ResolvedCdcRelayOptions = Required<Pick<CdcRelayOptions, Defaulted>> & CdcRelayOptions;

export function withDefaults(options: CdcRelayOptions): ResolvedCdcRelayOptions {
  return {
    spillAfterEvents: options.maxBufferedEvents ?? DEFAULT_MAX_BUFFERED,
    maxBufferedEvents: DEFAULT_MAX_BUFFERED,
    batchDelayMs: DEFAULTS.batchDelayMs,
    batchBytes: DEFAULTS.batchBytes,
    heartbeatIntervalMs: DEFAULT_HEARTBEAT_MS,
    statusIntervalMs: DEFAULT_STATUS_MS,
    publishLogicalMessages: true,
    label: 'cdc',
    ...options,
  };
}
