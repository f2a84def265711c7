/**
 * pg-transactional-outbox as a driver, in its polling mode (with a batch of
 * its own) and its logical replication mode: the library's relay runs in a
 * process of its own (ptp-relay.ts), the load writes into the library's
 * table (ptp-write.ts), and its MESSAGE_NOT_FOUND warnings are its evidence.
 */
import { fork } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Sql } from '../../src/db.js';
import { nowMs } from '../../src/events.js';
import { waitForReady } from '../../src/readiness.js';
import type { LagReading } from '../../src/relay/modes.js';
import { slotLagBytes } from '../../src/relay/cdc/slot.js';
import { stopChild } from '../harness/processes.js';
import { MESSAGE_NOT_FOUND, PTP_POLLING_CLEANUP, PTP_POLLING_FUNCTION_VERSION, PTP_POLLING_SETTINGS, setupPtp, type PtpMode, type PtpPollingSettings, type PtpRelayTask } from './ptp-relay.js';
import { PTP_TABLE } from './ptp-write.js';
import { replicationNames } from './slots.js';
import { refuseOurSettings } from './start-options.js';
import type { DriverRun, RelayDriver, StartOptions } from './types.js';

export const PTP_VERSION = '0.5.7';

const RELAY_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'ptp-relay.js');
const WRITE_PATH = new URL('./ptp-write.js', import.meta.url).href;
// Rationale: the library connects, and in replication mode starts streaming
// from its slot, before it reports ready; a loaded 2-core machine needs a while.
const START_TIMEOUT_MS = 60_000;

export type PtpVariant = { mode: 'polling'; polling: PtpPollingSettings } | { mode: 'replication' };

/** Its polling listener with these settings, or its replication listener. */
export function ptpPolling(polling: PtpPollingSettings): PtpVariant {
  return { mode: 'polling', polling };
}

function labelOf(variant: PtpVariant): string {
  if (variant.mode === 'replication') return 'pg-transactional-outbox replication';
  const batch = variant.polling.nextMessagesBatchSize === PTP_POLLING_SETTINGS.nextMessagesBatchSize ? '' : `, batch ${variant.polling.nextMessagesBatchSize}`;
  return `pg-transactional-outbox polling${batch}`;
}

function settingsOf(variant: PtpVariant): string {
  if (variant.mode === 'replication') {
    return (
      "changed from the library's defaults: the segment-mutex concurrency controller (default: one global mutex), concurrent handler sends coalesced into one " +
      'Kafka request; unchanged: retries, poisonous-message protection, restart delays; segment = aggregate id, so one aggregate is still handled in order'
    );
  }
  const { polling } = variant;
  return (
    `${PTP_POLLING_FUNCTION_VERSION}'s polling function (its lock-collision fix) under ${PTP_VERSION}'s JavaScript; ` +
    `changed from the library's defaults: nextMessagesBatchSize ${polling.nextMessagesBatchSize} (default 5), nextMessagesPollingIntervalInMs ` +
    `${polling.nextMessagesPollingIntervalInMs} (default 500), a handler pool of ${polling.nextMessagesBatchSize} connections, one per message of a batch (pg's default 10), ` +
    `processed rows deleted after ${PTP_POLLING_CLEANUP.messageCleanupProcessedInSec} s, swept every ${PTP_POLLING_CLEANUP.messageCleanupIntervalInMs / 1_000} s ` +
    "(the README's advice; default 7 days), concurrent handler sends coalesced into one Kafka request (the handler's own choice); " +
    'unchanged: retries, poisonous-message protection, lock time; segment = aggregate id'
  );
}

/** The library's MESSAGE_NOT_FOUND warnings in a run's log: how many, and the first few lines as they were logged. */
function notFoundEvidence(file: string): { messageNotFound: number; lines: string[] } {
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const lines = text.split('\n').filter((line) => line.includes(MESSAGE_NOT_FOUND));
  return { messageNotFound: lines.length, lines: lines.slice(0, 3) };
}

/** Its polling mode's backlog: the rows it has not marked processed. */
async function unprocessedRows(sql: Sql): Promise<LagReading> {
  const [row] = await sql.unsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM ${PTP_TABLE} WHERE processed_at IS NULL`);
  return { events: row?.n ?? null, bytes: null };
}

export function ptpDriver(variant: PtpVariant): RelayDriver {
  const label = labelOf(variant);
  const { slot, publication } = replicationNames(label);
  const mode: PtpMode = variant.mode;
  const start = async (run: DriverRun, options?: StartOptions) => {
    refuseOurSettings(label, options, 'node');
    mkdirSync(run.rawDir, { recursive: true });
    const task: PtpRelayTask = {
      mode,
      databaseUrl: run.infra.databaseUrl,
      kafkaBrokers: [...run.infra.kafkaBrokers],
      schema: run.schema,
      topicPrefix: run.topicPrefix,
      partitions: run.parameters.partitions,
      slot,
      publication,
      kafkaClient: run.parameters.kafkaClient ?? run.config.kafkaClient,
      ...(variant.mode === 'polling' ? { polling: variant.polling } : {}),
    };
    const logFile = path.join(run.rawDir, 'ptp-relay.log');
    const libraryLog = path.join(run.rawDir, 'ptp-library.log');
    const spawnedAt = nowMs();
    // The library logs with pino to stdout: its own file, read for the report.
    const child = fork(RELAY_SCRIPT, [JSON.stringify(task)], { execArgv: options?.execArgv ?? [], stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    child.stdout!.pipe(createWriteStream(libraryLog));
    child.stderr!.pipe(createWriteStream(logFile));
    options?.onSpawned?.({ child, spawnedAt });
    try {
      await waitForReady(child, { timeoutMs: START_TIMEOUT_MS, describe: `the pg-transactional-outbox relay (log: ${logFile})` });
    } catch (error) {
      // Not yet the run's to stop: this start never returned it.
      await stopChild(child).catch(() => {});
      throw error;
    }
    return { child, spawnedAt, evidence: () => notFoundEvidence(libraryLog) };
  };
  return {
    label,
    settings: settingsOf(variant),
    backlog: { kind: 'own', store: 'ptp', module: WRITE_PATH },
    usesOurKafkaClient: true,
    runtime: 'node',
    windowEvidence: false,
    lagFromDelivery: false,
    // Rationale: its polling function sorts every unprocessed row on each
    // call, so a backlog slows it further: offered 1,000/s it fell to ~50/s
    // and a failed step's drain took tens of minutes. Its earlier maximum, at
    // the library's defaults, was ~100/s.
    ...(variant.mode === 'polling' ? { searchStart: 100 } : {}),
    provisioning: () => undefined,
    prepare: (run) => setupPtp(run.sql, run.schema, mode, slot, publication),
    start,
    lag: async (run) => (mode === 'replication' ? { events: null, bytes: await slotLagBytes(run.sql, slot) } : unprocessedRows(run.sql)),
    explainLoss: (evidence) => {
      const skipped = evidence['messageNotFound'];
      return typeof skipped === 'number' && skipped > 0 ? `the library logged ${skipped} ${MESSAGE_NOT_FOUND} warnings` : undefined;
    },
  };
}
