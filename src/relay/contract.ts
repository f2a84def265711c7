/**
 * The relay contract: what a relay mode is and does, as types every mode
 * implements and every caller (the CLI, the supervisor, cleanup, the
 * benchmarks) reads. A mode's file imports this file, never the registry
 * (modes.ts), so the registry can load modes without an import circle.
 */
import type { Config } from '../config.js';
import type { Sql } from '../db.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { Runtime } from '../runtime.js';
import type { StageRecorder } from './stages.js';

/** Where a mode's writers put events: outbox rows, or logical messages in the WAL. */
export type EventStore = 'table' | 'message';

/** The evidence that an outbox row was delivered, for cleanup: its mark, or every slot's confirmed position. */
export type DeliveryProof = 'published-at' | 'replication-slots';

/** Relay lag: unpublished events (table relays) or WAL bytes not yet confirmed (CDC relays). */
export interface LagReading {
  events: number | null;
  bytes: number | null;
  /** Table relays: age of the oldest unpublished row, s. */
  oldestSeconds?: number | null;
  /** CDC relays: WAL bytes the slot furthest behind makes PostgreSQL keep (current position minus its restart_lsn). */
  retainedBytes?: number | null;
  /** CDC relays: WAL bytes left before that slot is invalidated (null without max_slot_wal_keep_size). */
  safeBytes?: number | null;
}

/** The settings every mode's work reads; a child relay process gets these. */
export type RelaySettings = Pick<
  Config,
  'relayMode' | 'schema' | 'replicas' | 'buckets' | 'batchSize' | 'pollIntervalMs' | 'leaseMs' | 'slotName' | 'publicationName'
>;

/**
 * Everything a relay process reads: a supervisor hands exactly these to each
 * replica or shard it starts (config.settingsEnv), servers included.
 */
export const RELAY_PROCESS_SETTINGS: readonly (keyof Config)[] = Object.freeze([
  'databaseUrl',
  'kafkaBrokers',
  'relayMode',
  'replicas',
  'buckets',
  'batchSize',
  'batchDelayMs',
  'batchBytes',
  'publishers',
  'spillAfterEvents',
  'pollIntervalMs',
  'leaseMs',
  'schema',
  'partitionWidth',
  'partitionsAhead',
  'topicPrefix',
  'topicPartitions',
  'slotName',
  'publicationName',
  'kafkaClient',
  'kafkaHeaders',
  'forwardHeaders',
  'stagesFile',
  'logLevel',
  'logFormat',
]);

export interface RelayHandle {
  /** Stops the relay (finishing the pass in progress) and its processes. */
  stop(): Promise<void>;
  /** Settles when the relay ends on its own (a crash, a fatal error). */
  readonly done: Promise<void>;
}

export interface StartRelayOptions {
  metrics?: Metrics | undefined;
  /** Table relays: write claim evidence into this folder (one JSON Lines file per process). */
  evidenceFile?: string | undefined;
  /** Which of the mode's processes this is (0 when it runs one). */
  index: number;
  /** CDC: create the slot although this schema's relay had one (after a loss was dealt with). */
  recreateSlot?: boolean | undefined;
  /** Benchmarks: where each event's time goes (commit -> relay -> Kafka ack). */
  stages?: StageRecorder | undefined;
}

/** How a mode does its work; each mode's file exports one. */
export interface RelayModeBehaviour {
  /** Starts process `options.index` of the mode in this process. */
  start(runtime: Runtime, options: StartRelayOptions): Promise<RelayHandle>;
  /**
   * Creates what must exist before the first event is written (slots,
   * publications, bucket rows); idempotent. A slot this schema's relay had and
   * lost is refused, unless `recreateSlot` (`--recreate-slot`) says it was dealt with.
   */
  provision(sql: Sql, settings: RelaySettings, log: Logger, options?: { recreateSlot?: boolean }): Promise<void>;
  /** Drops what provision created where no relay still uses it (benchmarks and tests clean up with it). */
  release(sql: Sql, settings: RelaySettings): Promise<void>;
  /** The lag now, summed over the mode's processes (CDC: the slot furthest behind). */
  lag(sql: Sql, settings: RelaySettings): Promise<LagReading>;
  /** The replication slots the mode reads, by process index (none for table relays). */
  slots(settings: RelaySettings): string[];
  /**
   * CDC modes: recovers the lost slot `slotName` of this mode (`--recover-slot`,
   * slot-recovery.ts) before the relay starts; undefined for modes without slots.
   */
  recover?(runtime: Runtime, slotName: string): Promise<SlotRecoveryReport>;
}

export interface RelayModeInfo {
  readonly name: string;
  /** One line for --help and reports. */
  readonly summary: string;
  readonly store: EventStore;
  /** Whether events of one aggregate reach Kafka in version order (the negative control: no). */
  readonly ordered: boolean;
  readonly deliveryProof: DeliveryProof;
  /** What `lag()` counts. */
  readonly lagUnit: 'events' | 'wal-bytes';
  /**
   * `one`: a single relay process. `replicas`: `--replicas` processes, started
   * and restarted by a supervisor, each told its index.
   */
  readonly processes: 'one' | 'replicas';
  /** What one of its processes is called in logs and reports. */
  readonly processNoun: 'relay' | 'replica' | 'shard';
  /** Whether its passes can be recorded as claim evidence (`--evidence`). */
  readonly claimEvidence: boolean;
  /** Settings that do not fit the mode, as a message naming the flag; undefined when they fit. */
  check?(config: Config): string | undefined;
  load(): Promise<RelayModeBehaviour>;
}

export interface SlotRecoveryReport {
  slotName: string;
  /** Rows marked published because the lost incarnation's horizon proves Kafka has them. */
  marked: number;
  /** Rows the polling pass loop published again. */
  republished: number;
  /** The horizon the marking used (null: none recorded, nothing was marked). */
  horizon: { snapshot: string; lsn: string | null; at: Date | null } | null;
  /** Where the new slot starts: the CDC relay resumes there. */
  startLsn: string | null;
  /** Whether this run finished a recovery an earlier one had started. */
  resumed: boolean;
}

/**
 * The application_name of process `index`'s database sessions: how an
 * operator (or the crash matrix) finds a relay process in pg_stat_activity.
 */
export function relayApplicationName(mode: string, index: number): string {
  return `outbox-bench-relay-${mode}-${index}`;
}

/** The Kafka client id of process `index`'s producer. */
export function relayClientId(index: number): string {
  return `outbox-bench-relay-${index}`;
}
