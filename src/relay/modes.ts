/**
 * The relay modes, in one registry: what each mode is (the store its writers
 * use, whether it keeps per-aggregate order, how many processes it runs, how
 * its lag is counted, what proves a row delivered) and, loaded on demand from
 * the mode's own file, how it does its work (start, provision, lag, release).
 *
 * Everything that depends on the mode (the CLI, the replica supervisor,
 * cleanup, the lag gauge, the benchmark harness, the crash matrix, the
 * report) asks this registry instead of testing the mode's name. A new mode
 * is its own file plus one entry here.
 *
 * The registry imports no relay code at load time: config.ts validates
 * `--mode` against it, and the relays import config.ts.
 */
import type { Config } from '../config.js';
import type { Sql } from '../db.js';
import { OutboxBenchError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { Runtime } from '../runtime.js';
import type { SlotRecoveryReport } from './slot-recovery.js';
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

const modes = {
  polling: {
    name: 'polling',
    summary: 'one poller every --interval-ms claims the oldest unpublished rows (a backlog drains without waiting)',
    store: 'table',
    ordered: true,
    deliveryProof: 'published-at',
    lagUnit: 'events',
    processes: 'one',
    processNoun: 'relay',
    claimEvidence: true,
    load: async () => (await import('./polling.js')).pollingMode,
  },
  'skip-locked': {
    name: 'skip-locked',
    summary: '--replicas processes lock disjoint aggregate-hash buckets with FOR UPDATE SKIP LOCKED (per-aggregate order kept)',
    store: 'table',
    ordered: true,
    deliveryProof: 'published-at',
    lagUnit: 'events',
    processes: 'replicas',
    processNoun: 'replica',
    claimEvidence: true,
    check: (config) =>
      config.buckets < config.replicas ? `flag --buckets: ${config.buckets} buckets cannot keep ${config.replicas} replicas busy; use at least --replicas` : undefined,
    load: async () => (await import('./skip-locked.js')).skipLockedMode,
  },
  'naive-skip-locked': {
    name: 'naive-skip-locked',
    summary: '--replicas processes claim ORDER BY id LIMIT n FOR UPDATE SKIP LOCKED (reorders hot aggregates: the negative control)',
    store: 'table',
    ordered: false,
    deliveryProof: 'published-at',
    lagUnit: 'events',
    processes: 'replicas',
    processNoun: 'replica',
    claimEvidence: true,
    load: async () => (await import('./skip-locked.js')).naiveSkipLockedMode,
  },
  cdc: {
    name: 'cdc',
    summary: 'logical replication (pgoutput) of the outbox table from one slot (--slot, --publication)',
    store: 'table',
    ordered: true,
    deliveryProof: 'replication-slots',
    lagUnit: 'wal-bytes',
    processes: 'one',
    processNoun: 'relay',
    claimEvidence: false,
    load: async () => (await import('./cdc-modes.js')).cdcMode,
  },
  'cdc-message': {
    name: 'cdc-message',
    summary: 'logical replication of table-less pg_logical_emit_message events from one slot',
    store: 'message',
    ordered: true,
    deliveryProof: 'replication-slots',
    lagUnit: 'wal-bytes',
    processes: 'one',
    processNoun: 'relay',
    claimEvidence: false,
    load: async () => (await import('./cdc-modes.js')).cdcMessageMode,
  },
  'cdc-sharded': {
    name: 'cdc-sharded',
    summary: 'the outbox table shared out over --replicas slots by aggregate hash, one relay process per slot (per-aggregate order kept)',
    store: 'table',
    ordered: true,
    deliveryProof: 'replication-slots',
    lagUnit: 'wal-bytes',
    processes: 'replicas',
    processNoun: 'shard',
    claimEvidence: false,
    // Shard slots are named <slot>_<index>, and a slot name has at most 63 bytes.
    check: (config) =>
      `${config.slotName}_${config.replicas - 1}`.length > 63 || `${config.publicationName}_${config.replicas - 1}`.length > 63
        ? 'flag --slot / --publication: with --replicas shards the names gain a _<index> suffix; keep them under 61 characters'
        : undefined,
    load: async () => (await import('./cdc-sharded.js')).cdcShardedMode,
  },
} as const satisfies Record<string, RelayModeInfo>;

export type RelayMode = keyof typeof modes;

/** Every mode's name, in the order --help lists them. */
export const RELAY_MODES = Object.freeze(Object.keys(modes)) as readonly RelayMode[];

export function isRelayMode(name: string): name is RelayMode {
  return Object.hasOwn(modes, name);
}

/** What a mode is; throws a USAGE error naming the known modes for an unknown one. */
export function relayModeInfo(name: string): RelayModeInfo {
  if (!isRelayMode(name)) throw new OutboxBenchError('USAGE', `relay mode "${name}" is not one of ${RELAY_MODES.join(', ')}`);
  return modes[name];
}

/** What a mode is and how it works (its file is loaded on first use). */
export async function loadRelayMode(name: string): Promise<RelayModeInfo & RelayModeBehaviour> {
  const info = relayModeInfo(name);
  return { ...info, ...(await info.load()) };
}

/** How many relay processes the settings run for their mode. */
export function relayProcesses(settings: Pick<Config, 'relayMode' | 'replicas'>): number {
  return relayModeInfo(settings.relayMode).processes === 'replicas' ? settings.replicas : 1;
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

/** "skip-locked x3", "cdc": a mode with its process count, for labels. */
export function relayLabel(settings: Pick<Config, 'relayMode' | 'replicas'>): string {
  const processes = relayProcesses(settings);
  return relayModeInfo(settings.relayMode).processes === 'replicas' ? `${settings.relayMode} x${processes}` : settings.relayMode;
}
