/**
 * What a relay's driver is given of a run (see bench/drivers/types.ts): the
 * run's servers, schema, topic and settings, and where its files go. Every
 * run that starts a relay, the pipeline's and a scenario's own, builds it here.
 */
import path from 'node:path';
import { resolveConfig, type Config } from '../../src/config.js';
import { OutboxBenchError } from '../../src/errors.js';
import type { Infra } from '../../src/infra/index.js';
import type { Logger } from '../../src/log.js';
import type { DriverParameters, DriverRun, LoadStore, RelayDriver } from '../drivers/types.js';
import { stopChild, type StartedRelay } from './processes.js';
import type { RunSetup } from './run-setup.js';

export interface DriverRunContext {
  infra: Infra;
  log: Logger;
  /** Where the relay's own logs and files go. */
  rawDir: string;
  /** The configuration a driver reads (default: resolved from the environment, as the benchmark runner does). */
  config?: Config;
  /** Set when the run reads the relay's stage timings; otherwise none are recorded. */
  recordStages?: boolean;
}

export function driverRunOf(context: DriverRunContext, run: RunSetup, parameters: DriverParameters): DriverRun {
  return {
    infra: context.infra,
    log: context.log,
    sql: run.sql,
    schema: run.schema,
    topicPrefix: run.topicPrefix,
    rawDir: context.rawDir,
    // Read only by a driver that needs it: our relay's runs take theirs from the run's environment.
    get config() {
      return context.config ?? resolveConfig();
    },
    parameters,
    ...(context.recordStages ? { stagesPrefix: path.join(context.rawDir, 'stages') } : {}),
    env: (extra) => run.env(extra),
    modeLag: () => run.lag(),
  };
}

/** The store a driver's backlog is written to when nothing else chooses it: its own, or our outbox table for a relay that reads whatever the run writes. */
export function defaultStoreOf(driver: RelayDriver): LoadStore {
  return driver.backlog.kind === 'run-store' ? 'table' : driver.backlog.store;
}

/** The relay's own write path, when its backlog is handed over that way; a run whose store it does not read is refused. */
export function writePathOf(driver: RelayDriver, store: LoadStore): string | undefined {
  const { backlog } = driver;
  if (backlog.kind === 'run-store') return undefined;
  if (store !== backlog.store) throw new OutboxBenchError('USAGE', `${driver.label ?? 'this relay'} reads its events from the ${backlog.store} store only; the run writes to ${store}`);
  return backlog.kind === 'own' ? backlog.module : undefined;
}

/** Stops a relay a scenario started: the processes that watch it, then its process tree. */
export async function stopRelay(relay: StartedRelay): Promise<void> {
  await Promise.all((relay.helpers ?? []).map((helper) => stopChild(helper).catch(() => {})));
  await stopChild(relay.child);
}
