/**
 * Starting the relay a Config asks for, as the CLI and the benchmarks do.
 */
import { OutboxBenchError } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { Runtime } from '../runtime.js';
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
    default:
      throw new OutboxBenchError('USAGE', `relay mode ${config.relayMode} is not available yet`);
  }
}
