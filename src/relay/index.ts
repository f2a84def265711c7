/**
 * Starting the relay a Config asks for, as the CLI and the benchmarks do.
 */
import { OutboxBenchError } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { Runtime } from '../runtime.js';
import { CdcRelay } from './cdc.js';
import { createPollingRelay } from './polling.js';

export interface RelayHandle {
  /** Stops the relay (finishing the pass in progress) and its replicas. */
  stop(): Promise<void>;
  /** Settles when the relay ends on its own (a crash, a fatal error). */
  readonly done: Promise<void>;
}

export interface StartRelayOptions {
  metrics?: Metrics | undefined;
  evidenceFile?: string | undefined;
  /** Set in a replica child process: which of --replicas this one is. */
  replicaIndex?: number | undefined;
  /** CDC: create the slot although this schema's relay had one (after a loss was dealt with). */
  recreateSlot?: boolean | undefined;
}

export async function startRelay(runtime: Runtime, options: StartRelayOptions = {}): Promise<RelayHandle> {
  const { config, log } = runtime;
  switch (config.relayMode) {
    case 'polling': {
      const relay = createPollingRelay({
        sql: runtime.sql({ max: 2, applicationName: 'outbox-bench-relay-polling' }),
        publisher: runtime.publisher(),
        log,
        batchSize: config.batchSize,
        intervalMs: config.pollIntervalMs,
        metrics: options.metrics,
        evidenceFile: options.evidenceFile,
      });
      relay.start();
      return { stop: () => relay.stop(), done: new Promise(() => {}) };
    }
    case 'cdc':
    case 'cdc-message': {
      // One relay serves both: outbox rows arrive as inserts, table-less events
      // as logical messages; the mode only names what the writers use.
      const relay = new CdcRelay({
        databaseUrl: runtime.infra.databaseUrl,
        sql: runtime.sql({ max: 2, applicationName: 'outbox-bench-relay-cdc' }),
        schema: config.schema,
        publisher: runtime.publisher(),
        slotName: config.slotName,
        publicationName: config.publicationName,
        log,
        metrics: options.metrics,
        batchSize: config.batchSize,
        recreateSlot: options.recreateSlot ?? false,
      });
      await relay.start();
      return { stop: () => relay.stop(), done: relay.done };
    }
    default:
      throw new OutboxBenchError('USAGE', `relay mode ${config.relayMode} is not available yet`);
  }
}
