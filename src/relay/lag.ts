/**
 * Relay lag, sampled into the Prometheus gauges: committed events not yet
 * published (table relays) or WAL bytes behind the slot (CDC relays).
 */
import type { RelayMode } from '../config.js';
import type { Sql } from '../db.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { outboxBacklog } from '../queries.js';
import { slotLagBytes } from './cdc.js';

// Rationale: once a second matches Prometheus scrape resolution; the count
// reads only the partial index of unpublished rows, so it stays cheap.
const SAMPLE_MS = 1_000;

export function startLagMonitor(options: { sql: Sql; mode: RelayMode; slotName: string; metrics: Metrics; log: Logger }): () => void {
  const { sql, mode, metrics } = options;
  const relay = mode;
  let running = false;
  const timer = setInterval(async () => {
    if (running) return;
    running = true;
    try {
      if (mode === 'cdc' || mode === 'cdc-message') {
        const bytes = await slotLagBytes(sql, options.slotName);
        if (bytes !== null) metrics.relayLagBytes.set({ relay }, bytes);
      } else {
        const backlog = await outboxBacklog(sql);
        metrics.relayLagEvents.set({ relay }, backlog.unpublished);
        metrics.relayLagSeconds.set({ relay }, backlog.oldestCreatedAt ? Math.max(0, (Date.now() - backlog.oldestCreatedAt.getTime()) / 1_000) : 0);
      }
    } catch (error) {
      options.log.debug({ err: String(error) }, 'lag sample failed');
    } finally {
      running = false;
    }
  }, SAMPLE_MS);
  timer.unref();
  return () => clearInterval(timer);
}
