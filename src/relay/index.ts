/**
 * Starting the relay a Config asks for, as the CLI and the benchmarks do.
 * What the mode is and how it works come from the registry (modes.ts); what
 * is decided here is the same for every mode: a mode that runs several
 * processes gets a supervisor (unless this is one of its processes), the
 * lag gauge is fed, and per-stage latencies are written when it stops.
 */
import { OutboxBenchError } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { Runtime } from '../runtime.js';
import { startLagMonitor } from './lag.js';
import type { RelayHandle } from './contract.js';
import { checkRelaySettings, loadRelayMode, relayProcesses } from './modes.js';
import { ReplicaSupervisor } from './replicas.js';
import { stageRecorderFor } from './stages.js';

export type { RelayHandle } from './contract.js';

export interface RunRelayOptions {
  metrics?: Metrics | undefined;
  /** Table relays: write claim evidence into this folder (one JSON Lines file per process). */
  evidenceFile?: string | undefined;
  /** Set in a child process of a supervisor: which of the mode's processes this one is. */
  processIndex?: number | undefined;
  /** CDC: create the slot although this schema's relay had one (after a loss was dealt with). */
  recreateSlot?: boolean | undefined;
  /** CDC: recover this lost slot (slot-recovery.ts) before the relay starts. */
  recoverSlot?: string | undefined;
}

export async function startRelay(runtime: Runtime, options: RunRelayOptions = {}): Promise<RelayHandle> {
  const { config, log } = runtime;
  checkRelaySettings(config);
  const mode = await loadRelayMode(config.relayMode);
  const supervised = options.processIndex === undefined && relayProcesses(config) > 1;
  if (options.recoverSlot !== undefined) {
    if (!mode.recover) throw new OutboxBenchError('USAGE', `--recover-slot is for the CDC modes; ${config.relayMode} reads no replication slot`);
    if (options.processIndex !== undefined) throw new OutboxBenchError('USAGE', '--recover-slot runs in the relay command itself, not in one of its processes');
    const report = await mode.recover(runtime, options.recoverSlot);
    log.info({ ...report }, `recovered slot ${report.slotName}: ${report.marked} rows proven delivered and marked, ${report.republished} re-published; CDC resumes at ${report.startLsn}`);
  }
  // Lag is read for the metrics endpoint only, once per relay (not per
  // process): on a big backlog the count of unpublished rows is itself real
  // work for PostgreSQL.
  if (options.metrics && options.processIndex === undefined && config.metricsPort !== undefined) {
    const stopLag = startLagMonitor({ sql: runtime.sql({ max: 1, applicationName: 'outbox-bench-lag' }), lag: (sql) => mode.lag(sql, config), label: config.relayMode, metrics: options.metrics, log });
    runtime.shutdown.add('lag monitor', stopLag);
  }
  if (supervised) {
    // What every process needs exists before any starts (and is checked once, with one error).
    await mode.provision(runtime.sql({ max: 1, applicationName: 'outbox-bench-provision' }), config, log, { recreateSlot: options.recreateSlot ?? false });
    const supervisor = new ReplicaSupervisor({
      config,
      databaseUrl: runtime.infra.databaseUrl,
      kafkaBrokers: runtime.infra.kafkaBrokers,
      log,
      evidenceDir: options.evidenceFile,
      sql: options.evidenceFile ? runtime.sql({ max: 1, applicationName: 'outbox-bench-evidence' }) : undefined,
    });
    supervisor.start();
    // Registered before the wait: Ctrl-C while the processes start stops them too.
    runtime.shutdown.add('relay processes', () => supervisor.stop());
    // Ready when every process is (one that cannot start is restarted with backoff, and logged).
    await Promise.race([supervisor.ready(), supervisor.done]);
    return { stop: () => supervisor.stop(), done: supervisor.done };
  }
  // Each process records its own stages.
  const stages = stageRecorderFor(config.stagesFile);
  const handle = await mode.start(runtime, {
    index: options.processIndex ?? 0,
    metrics: options.metrics,
    evidenceFile: options.evidenceFile,
    recreateSlot: options.recreateSlot,
    stages,
  });
  return {
    done: handle.done,
    stop: async () => {
      await handle.stop();
      stages?.write();
    },
  };
}
