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
 * The registry imports no relay code at load time (each mode's file is
 * loaded on first use), and a mode's file imports the contract (contract.ts),
 * not this registry: the mode names live in config.ts, which imports neither.
 */
import { RELAY_MODES, type Config, type RelayMode } from '../config.js';
import { OutboxBenchError } from '../errors.js';
import type { RelayModeBehaviour, RelayModeInfo } from './contract.js';

export type {
  DeliveryProof,
  EventStore,
  LagReading,
  RelayHandle,
  RelayModeBehaviour,
  RelayModeInfo,
  RelaySettings,
  SlotRecoveryReport,
  StartRelayOptions,
} from './contract.js';
export { RELAY_PROCESS_SETTINGS, relayApplicationName, relayClientId } from './contract.js';

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
    load: async () => (await import('./table/polling.js')).pollingMode,
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
    load: async () => (await import('./table/skip-locked.js')).skipLockedMode,
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
    load: async () => (await import('./table/skip-locked.js')).naiveSkipLockedMode,
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
    load: async () => (await import('./cdc/modes.js')).cdcMode,
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
    load: async () => (await import('./cdc/modes.js')).cdcMessageMode,
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
    load: async () => (await import('./cdc/sharded.js')).cdcShardedMode,
  },
} as const satisfies Record<RelayMode, RelayModeInfo>;

export { RELAY_MODES, type RelayMode };

export function isRelayMode(name: string): name is RelayMode {
  return Object.hasOwn(modes, name);
}

/**
 * The checks a mode makes of the other settings (config.ts checks each value
 * alone and knows the modes only by name); a CONFIG_INVALID error naming the
 * flag to fix. The CLI runs it before any server starts, startRelay again.
 */
export function checkRelaySettings(config: Config): void {
  const misfit = relayModeInfo(config.relayMode).check?.(config);
  if (misfit) throw new OutboxBenchError('CONFIG_INVALID', misfit);
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

/** "skip-locked x3", "cdc": a mode with its process count, for labels. */
export function relayLabel(settings: Pick<Config, 'relayMode' | 'replicas'>): string {
  const processes = relayProcesses(settings);
  return relayModeInfo(settings.relayMode).processes === 'replicas' ? `${settings.relayMode} x${processes}` : settings.relayMode;
}
