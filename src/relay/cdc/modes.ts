/**
 * The CDC relay modes on one slot: `cdc` (outbox rows) and `cdc-message`
 * (table-less logical messages). One relay serves both, because both arrive
 * through the same slot; the mode names what the writers use. Also the parts
 * every CDC mode shares: starting one relay on a slot, the lag of a set of
 * slots, and cleaning them up.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Sql } from '../../db.js';
import type { Logger } from '../../log.js';
import type { Runtime } from '../../runtime.js';
import { CdcRelay } from './relay.js';
import { relayApplicationName, relayClientId, type EventStore, type LagReading, type RelayHandle, type RelayModeBehaviour, type RelaySettings, type SlotRecoveryReport, type StartRelayOptions } from '../contract.js';
import { OutboxBenchError } from '../../errors.js';
import { dropIdleSlots, dropPublications, prepareSlot, slotsBehind } from './slot.js';
import { recoverSlot } from './slot-recovery.js';

/** One CDC relay process: its slot, its publication (with a row filter when the outbox is shared out). */
export interface CdcProcess {
  slotName: string;
  publicationName: string;
  rowFilter?: string | undefined;
  publishLogicalMessages: boolean;
  /** What the writers use, for the recovery a lost slot's error describes. */
  store: EventStore;
}

/** Starts the CDC relay of process `options.index` on its own slot. */
export async function startCdcRelay(runtime: Runtime, options: StartRelayOptions, process: CdcProcess): Promise<RelayHandle> {
  const { config, log } = runtime;
  const applicationName = relayApplicationName(config.relayMode, options.index);
  const relay = new CdcRelay({
    databaseUrl: runtime.infra.databaseUrl,
    sql: runtime.sql({ max: 2, applicationName }),
    schema: config.schema,
    publisher: await runtime.publisher(relayClientId(options.index)),
    wire: runtime.wire(),
    ...process,
    label: config.relayMode,
    applicationName,
    log,
    metrics: options.metrics,
    batchSize: config.batchSize,
    batchDelayMs: config.batchDelayMs,
    batchBytes: config.batchBytes,
    // 0 keeps every transaction in memory, however large.
    spillAfterEvents: config.spillAfterEvents === 0 ? Number.POSITIVE_INFINITY : config.spillAfterEvents,
    recreateSlot: options.recreateSlot ?? false,
    stages: options.stages,
  });
  await relay.start();
  return { stop: () => relay.stop(), done: relay.done };
}

/** The lag, retained WAL and safe WAL of the slots, each of the slot furthest behind. */
export async function slotsLag(sql: Sql, slots: readonly string[]): Promise<LagReading> {
  return { events: null, ...(await slotsBehind(sql, slots)) };
}

// Rationale: a walsender outlives its relay process by a moment (it notices
// the closed socket on its next read); a few seconds covers a loaded machine.
const RELEASE_WAIT_MS = 5_000;

/**
 * Drops the slots and publications of `processes`. A slot still read by a
 * walsender is waited for briefly (its relay was just stopped) and left alone
 * if it stays active: someone still needs it.
 */
export async function releaseCdc(sql: Sql, processes: readonly CdcProcess[]): Promise<void> {
  const deadline = Date.now() + RELEASE_WAIT_MS;
  for (const { slotName, publicationName } of processes) {
    while (Date.now() < deadline && (await sql`SELECT 1 FROM pg_replication_slots WHERE slot_name = ${slotName} AND active`).length > 0) await sleep(100);
    await dropIdleSlots(sql, { name: slotName });
    await dropPublications(sql, { name: publicationName });
  }
}

/**
 * Creates the publications and slots of `processes` that do not exist yet,
 * with the checks of a relay's own start: a slot this schema's relay had and
 * lost is refused here too, never recreated.
 */
export async function provisionCdc(
  sql: Sql,
  settings: Pick<RelaySettings, 'schema' | 'relayMode'>,
  processes: readonly CdcProcess[],
  log: Logger,
  options: { recreateSlot?: boolean } = {},
): Promise<void> {
  for (const p of processes) {
    const { slotName, publicationName, rowFilter, store } = p;
    await prepareSlot({ sql, schema: settings.schema, relayMode: settings.relayMode, slotName, publicationName, rowFilter, store, recreateSlot: options.recreateSlot ?? false }, log);
  }
}

/** Recovers the lost slot `slotName`, one of `processes` (slot-recovery.ts), publishing on this process's Kafka client. */
export async function recoverCdc(runtime: Runtime, processes: readonly CdcProcess[], slotName: string): Promise<SlotRecoveryReport> {
  const target = processes.find((p) => p.slotName === slotName);
  if (!target) {
    throw new OutboxBenchError('USAGE', `--recover-slot ${slotName}: ${runtime.config.relayMode} reads ${processes.map((p) => p.slotName).join(', ')} with these settings`);
  }
  const { config, log } = runtime;
  return recoverSlot({
    sql: runtime.sql({ max: 2, applicationName: `outbox-bench-recover-${slotName}` }),
    schema: config.schema,
    relayMode: config.relayMode,
    ...target,
    publisher: await runtime.publisher(`outbox-bench-recover-${slotName}`),
    wire: runtime.wire(),
    batchSize: config.batchSize,
    log,
  });
}

/** A CDC mode on one slot, publishing table-less events too; `store` is what its writers use. */
function singleSlotMode(store: EventStore): RelayModeBehaviour {
  const processOf = (settings: RelaySettings): CdcProcess => ({ slotName: settings.slotName, publicationName: settings.publicationName, publishLogicalMessages: true, store });
  return Object.freeze({
    start: (runtime: Runtime, options: StartRelayOptions) => startCdcRelay(runtime, options, processOf(runtime.config)),
    provision: (sql: Sql, settings: RelaySettings, log, options) => provisionCdc(sql, settings, [processOf(settings)], log, options),
    release: (sql: Sql, settings: RelaySettings) => releaseCdc(sql, [processOf(settings)]),
    lag: (sql: Sql, settings: RelaySettings) => slotsLag(sql, [settings.slotName]),
    slots: (settings: RelaySettings) => [settings.slotName],
    recover: (runtime: Runtime, slotName: string) => recoverCdc(runtime, [processOf(runtime.config)], slotName),
  } satisfies RelayModeBehaviour);
}

export const cdcMode: RelayModeBehaviour = singleSlotMode('table');
export const cdcMessageMode: RelayModeBehaviour = singleSlotMode('message');
