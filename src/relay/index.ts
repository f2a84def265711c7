/**
 * Starting the relay a Config asks for, as the CLI and the benchmarks do.
 */
import { OutboxBenchError } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { Runtime } from '../runtime.js';
import { CdcRelay } from './cdc.js';
import { createPollingRelay } from './polling.js';
import { ReplicaSupervisor } from './replicas.js';
import { bucketedStrategy, naiveSkipLockedStrategy, prepareBuckets } from './skip-locked.js';
import { TableRelay } from './table-relay.js';
import { evidencePath } from './evidence.js';
import { startLagMonitor } from './lag.js';
import { stageRecorderFor } from './stages.js';

export interface RelayHandle {
  /** Stops the relay (finishing the pass in progress) and its replicas. */
  stop(): Promise<void>;
  /** Settles when the relay ends on its own (a crash, a fatal error). */
  readonly done: Promise<void>;
}

export interface StartRelayOptions {
  metrics?: Metrics | undefined;
  /** Table relays: write claim evidence into this folder (one JSON Lines file per replica). */
  evidenceFile?: string | undefined;
  /** Set in a replica child process: which of --replicas this one is. */
  replicaIndex?: number | undefined;
  /** CDC: create the slot although this schema's relay had one (after a loss was dealt with). */
  recreateSlot?: boolean | undefined;
}

export async function startRelay(runtime: Runtime, options: StartRelayOptions = {}): Promise<RelayHandle> {
  const { config, log } = runtime;
  // A supervisor's replicas record their own stages.
  const stages = options.replicaIndex === undefined && config.replicas > 1 && config.relayMode.includes('skip-locked') ? undefined : stageRecorderFor(config.stagesFile);
  const withStages = (handle: RelayHandle): RelayHandle => ({
    done: handle.done,
    stop: async () => {
      await handle.stop();
      stages?.write();
    },
  });
  // Lag is read for the metrics endpoint only: on a big backlog the count of
  // unpublished rows is itself real work for PostgreSQL.
  if (options.metrics && options.replicaIndex === undefined && config.metricsPort !== undefined) {
    const stopLag = startLagMonitor({ sql: runtime.sql({ max: 1, applicationName: 'outbox-bench-lag' }), mode: config.relayMode, slotName: config.slotName, metrics: options.metrics, log });
    runtime.shutdown.add('lag monitor', stopLag);
  }
  switch (config.relayMode) {
    case 'polling': {
      const relay = createPollingRelay({
        sql: runtime.sql({ max: 2, applicationName: 'outbox-bench-relay-polling' }),
        publisher: await runtime.publisher(),
        wire: runtime.wire(),
        log,
        batchSize: config.batchSize,
        intervalMs: config.pollIntervalMs,
        metrics: options.metrics,
        evidenceFile: options.evidenceFile ? evidencePath(options.evidenceFile, 0) : undefined,
        stages,
      });
      relay.start();
      return withStages({ stop: () => relay.stop(), done: new Promise(() => {}) });
    }
    case 'skip-locked':
    case 'naive-skip-locked': {
      if (options.replicaIndex === undefined && config.replicas > 1) {
        const supervisor = new ReplicaSupervisor({
          config,
          databaseUrl: runtime.infra.databaseUrl,
          kafkaBrokers: runtime.infra.kafkaBrokers,
          log,
          evidenceDir: options.evidenceFile,
          sql: options.evidenceFile ? runtime.sql({ max: 1, applicationName: 'outbox-bench-evidence' }) : undefined,
        });
        if (config.relayMode === 'skip-locked') await prepareBuckets(runtime.sql({ max: 1 }), config.buckets);
        supervisor.start();
        // Registered before the wait: Ctrl-C while replicas start stops them too.
        runtime.shutdown.add('relay replicas', () => supervisor.stop());
        // Ready when every replica is (one that cannot start is restarted with backoff, and logged).
        await supervisor.ready();
        return { stop: () => supervisor.stop(), done: new Promise(() => {}) };
      }
      const replicaIndex = options.replicaIndex ?? 0;
      const sql = runtime.sql({
        max: 2,
        applicationName: `outbox-bench-relay-${config.relayMode}-${replicaIndex}`,
        // The lease: a replica stalled inside its pass is cut off by the server.
        idleInTransactionTimeoutMs: config.leaseMs,
      });
      const strategy =
        config.relayMode === 'skip-locked'
          ? bucketedStrategy({ buckets: config.buckets, replicas: config.replicas, replicaIndex })
          : naiveSkipLockedStrategy;
      if (config.relayMode === 'skip-locked') await prepareBuckets(sql, config.buckets);
      const relay = new TableRelay({
        sql,
        publisher: await runtime.publisher(`outbox-bench-relay-${replicaIndex}`),
        wire: runtime.wire(),
        strategy,
        log,
        batchSize: config.batchSize,
        intervalMs: config.pollIntervalMs,
        replicaId: `${config.relayMode}-${replicaIndex}`,
        leaseMs: config.leaseMs,
        metrics: options.metrics,
        evidenceFile: options.evidenceFile ? evidencePath(options.evidenceFile, replicaIndex) : undefined,
        stages,
      });
      relay.start();
      return withStages({ stop: () => relay.stop(), done: new Promise(() => {}) });
    }
    case 'cdc':
    case 'cdc-message': {
      // One relay serves both: outbox rows arrive as inserts, table-less events
      // as logical messages; the mode only names what the writers use.
      const relay = new CdcRelay({
        databaseUrl: runtime.infra.databaseUrl,
        sql: runtime.sql({ max: 2, applicationName: 'outbox-bench-relay-cdc' }),
        schema: config.schema,
        publisher: await runtime.publisher(),
        wire: runtime.wire(),
        slotName: config.slotName,
        publicationName: config.publicationName,
        log,
        metrics: options.metrics,
        batchSize: config.batchSize,
        recreateSlot: options.recreateSlot ?? false,
        stages,
      });
      await relay.start();
      return withStages({ stop: () => relay.stop(), done: relay.done });
    }
    default:
      throw new OutboxBenchError('USAGE', `relay mode ${config.relayMode} is not available yet`);
  }
}
