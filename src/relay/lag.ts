/**
 * Relay lag, sampled into the Prometheus gauges: committed events not yet
 * published (table relays) or WAL bytes behind the slot (CDC relays), as the
 * mode measures it.
 */
import type { Sql } from '../db.js';
import { describeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { LagReading } from './contract.js';

// Rationale: once a second matches Prometheus scrape resolution; the count
// reads only the partial index of unpublished rows, so it stays cheap.
const SAMPLE_MS = 1_000;

export interface LagMonitorOptions {
  sql: Sql;
  /** The mode's lag probe. */
  lag(sql: Sql): Promise<LagReading>;
  /** The relay label of the gauges. */
  label: string;
  metrics: Metrics;
  log: Logger;
}

export function startLagMonitor(options: LagMonitorOptions): () => void {
  const { sql, metrics, label: relay } = options;
  let running = false;
  const timer = setInterval(async () => {
    if (running) return;
    running = true;
    try {
      const reading = await options.lag(sql);
      if (reading.bytes !== null) metrics.relayLagBytes.set({ relay }, reading.bytes);
      if (reading.events !== null) metrics.relayLagEvents.set({ relay }, reading.events);
      if (reading.oldestSeconds !== undefined && reading.oldestSeconds !== null) metrics.relayLagSeconds.set({ relay }, reading.oldestSeconds);
      if (reading.retainedBytes !== undefined && reading.retainedBytes !== null) metrics.relaySlotRetainedBytes.set({ relay }, reading.retainedBytes);
      if (reading.safeBytes !== undefined && reading.safeBytes !== null) metrics.relaySlotSafeBytes.set({ relay }, reading.safeBytes);
    } catch (error) {
      options.log.debug({ err: describeError(error) }, 'lag sample failed');
    } finally {
      running = false;
    }
  }, SAMPLE_MS);
  timer.unref();
  return () => clearInterval(timer);
}
