/**
 * The relays the peers comparison measures, in the report's order: our
 * relay modes (one driver, each with its parameters) and every peer's
 * driver, with the names --mode knows them by.
 */
import { OutboxBenchError } from '../../../src/errors.js';
import { DRIVERS, type DriverName, type RelayDriver } from '../../drivers/index.js';
import { defaultStoreOf } from '../../harness/driver-run.js';
import type { PipelineParameters } from '../../harness/pipeline.js';

export interface Relay {
  name: string;
  /** What --mode calls it. */
  key: string;
  /** A family --mode can name at once: ours, debezium, ptp. */
  family: 'ours' | 'debezium' | 'ptp';
  driver: RelayDriver;
  /** How it was configured, and exactly what differs from its defaults, for the report. */
  settings: string;
  parameters: Partial<PipelineParameters>;
  /** Left out unless named in --mode. */
  optional?: boolean;
}

/** One of our relay modes, with the settings it runs with. */
function ours(mode: PipelineParameters['relayMode'], settings: string, parameters: Partial<PipelineParameters> = {}): Relay {
  return { name: `ours: ${mode}`, key: mode, family: 'ours', driver: DRIVERS.ours, settings, parameters: { relayMode: mode, store: 'table', ...parameters } };
}

/** A peer's driver, named as the registry names it; its backlog decides where the load writes. */
function peer(family: Exclude<Relay['family'], 'ours'>, key: Exclude<DriverName, 'ours'>, optional = false): Relay {
  const driver = DRIVERS[key];
  return { name: driver.label ?? key, key, family, driver, settings: driver.settings, parameters: { store: defaultStoreOf(driver) }, ...(optional ? { optional } : {}) };
}

const RELAYS: Relay[] = [
  ours('polling', 'polling relay, 500 ms interval when idle, 1,000 rows per pass'),
  ours('skip-locked', '3 SKIP LOCKED replicas owning aggregate buckets', { replicas: 3 }),
  ours('cdc', 'CDC relay (pgoutput), outbox table'),
  ours('cdc-message', 'CDC relay, table-less pg_logical_emit_message events', { store: 'message' }),
  // Rationale: one shard per core of this machine.
  ours('cdc-sharded', 'CDC relay in 2 shards (one slot each, aggregates split by hash)', { replicas: 2 }),
  peer('debezium', 'debezium-throughput'),
  peer('debezium', 'debezium-latency'),
  peer('debezium', 'debezium-default', true),
  peer('debezium', 'debezium-latency-poll20', true),
  peer('debezium', 'debezium-latency-poll5', true),
  peer('ptp', 'ptp-polling'),
  peer('ptp', 'ptp-polling-batch10', true),
  peer('ptp', 'ptp-polling-batch5', true),
  peer('ptp', 'ptp-replication'),
];

/** The anchor of every drain comparison: our CDC relay. */
export function anchorRelay(): Relay {
  return RELAYS.find((r) => r.key === 'cdc')!;
}

/** A relay's name in the drains: our mode, with its process count when it runs several, or the peer's driver name. */
export function drainNameOf(relay: Relay): string {
  const replicas = relay.parameters.replicas;
  return relay.family === 'ours' && replicas !== undefined && replicas > 1 ? `${relay.key}:${replicas}` : relay.key;
}

/** What --mode names in this scenario. */
export const PEER_RELAY_KEYS: readonly string[] = RELAYS.map((r) => r.key);

/** How a relay is configured today (undefined for a name no longer measured): a result measured otherwise says so. */
export function currentSettings(name: string): string | undefined {
  return RELAYS.find((r) => r.name === name)?.settings;
}

/** Where a relay comes in the report (an unknown name, one measured by an older build, last). */
export function relayRank(name: string): number {
  const i = RELAYS.findIndex((r) => r.name === name);
  return i < 0 ? RELAYS.length : i;
}

/**
 * The relays a sitting measures: those named in --mode by key (or a
 * family: ours, debezium, ptp; a family leaves out its optional members),
 * else every one not marked optional.
 */
export function selectRelays(named: readonly string[]): Relay[] {
  if (named.length === 0) return RELAYS.filter((r) => !r.optional);
  const matches = (r: Relay, n: string) => r.key === n || r.name === n || (r.family === n && !r.optional);
  const unknown = named.filter((n) => !RELAYS.some((r) => matches(r, n)));
  if (unknown.length > 0) {
    throw new OutboxBenchError('USAGE', `peers: --mode ${unknown.join(', ')} names no relay; the relays are ${RELAYS.map((r) => r.key).join(', ')}, or the families ours, debezium, ptp`);
  }
  return RELAYS.filter((r) => named.some((n) => matches(r, n)));
}
