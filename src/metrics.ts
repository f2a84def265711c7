/**
 * Prometheus metrics (prom-client) of the relays and the consumer, one
 * registry per process, served on an optional --metrics-port.
 */
import http from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export const METRIC_NAMES = Object.freeze({
  relayPublished: 'outbox_relay_published_events_total',
  relayPasses: 'outbox_relay_passes_total',
  relayErrors: 'outbox_relay_errors_total',
  relayPublishSeconds: 'outbox_relay_publish_duration_seconds',
  relayLagEvents: 'outbox_relay_lag_events',
  relayLagSeconds: 'outbox_relay_lag_seconds',
  relayLagBytes: 'outbox_relay_lag_wal_bytes',
  relaySlotRetainedBytes: 'outbox_relay_slot_retained_wal_bytes',
  relaySlotSafeBytes: 'outbox_relay_slot_safe_wal_bytes',
  consumerReceived: 'outbox_consumer_received_events_total',
  consumerApplied: 'outbox_consumer_applied_events_total',
  consumerDuplicates: 'outbox_consumer_duplicate_events_total',
  consumerRejected: 'outbox_consumer_rejected_messages_total',
});

export class Metrics {
  readonly registry = new Registry();
  readonly relayPublished: Counter<'relay'>;
  readonly relayPasses: Counter<'relay'>;
  readonly relayErrors: Counter<'relay' | 'kind'>;
  readonly relayPublishSeconds: Histogram<'relay'>;
  readonly relayLagEvents: Gauge<'relay'>;
  readonly relayLagSeconds: Gauge<'relay'>;
  readonly relayLagBytes: Gauge<'relay'>;
  readonly relaySlotRetainedBytes: Gauge<'relay'>;
  readonly relaySlotSafeBytes: Gauge<'relay'>;
  readonly consumerReceived: Counter;
  readonly consumerApplied: Counter;
  readonly consumerDuplicates: Counter;
  readonly consumerRejected: Counter;

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (options.defaultMetrics) collectDefaultMetrics({ register: this.registry });
    this.relayPublished = new Counter({ name: METRIC_NAMES.relayPublished, help: 'Events the relay published and Kafka acknowledged', labelNames: ['relay'], registers });
    this.relayPasses = new Counter({ name: METRIC_NAMES.relayPasses, help: 'Relay passes (claim, publish, mark) that published at least one event', labelNames: ['relay'], registers });
    this.relayErrors = new Counter({ name: METRIC_NAMES.relayErrors, help: 'Relay failures (then retried with backoff)', labelNames: ['relay', 'kind'], registers });
    this.relayPublishSeconds = new Histogram({
      name: METRIC_NAMES.relayPublishSeconds,
      help: 'Time from handing a batch to Kafka to its acknowledgement',
      labelNames: ['relay'],
      // Rationale: loopback acks take ~1-20 ms; the top buckets catch retries
      // and broker restarts.
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.relayLagEvents = new Gauge({ name: METRIC_NAMES.relayLagEvents, help: 'Committed events not yet published (table relays)', labelNames: ['relay'], registers });
    this.relayLagSeconds = new Gauge({ name: METRIC_NAMES.relayLagSeconds, help: 'Age of the oldest unpublished event', labelNames: ['relay'], registers });
    this.relayLagBytes = new Gauge({ name: METRIC_NAMES.relayLagBytes, help: 'WAL bytes between the current WAL position and the slot confirmed position (CDC relays)', labelNames: ['relay'], registers });
    this.relaySlotRetainedBytes = new Gauge({
      name: METRIC_NAMES.relaySlotRetainedBytes,
      help: 'WAL bytes PostgreSQL keeps for the relay slot furthest behind (current position minus its restart_lsn): disk the slot pins (CDC relays)',
      labelNames: ['relay'],
      registers,
    });
    this.relaySlotSafeBytes = new Gauge({
      name: METRIC_NAMES.relaySlotSafeBytes,
      help: 'WAL bytes that can still be written before the slot furthest behind is invalidated (safe_wal_size; absent without max_slot_wal_keep_size)',
      labelNames: ['relay'],
      registers,
    });
    this.consumerReceived = new Counter({ name: METRIC_NAMES.consumerReceived, help: 'Events the consumer received (duplicates included)', registers });
    this.consumerApplied = new Counter({ name: METRIC_NAMES.consumerApplied, help: 'Events whose side effect the consumer applied', registers });
    this.consumerDuplicates = new Counter({ name: METRIC_NAMES.consumerDuplicates, help: 'Events the inbox recognised as already processed and discarded', registers });
    this.consumerRejected = new Counter({ name: METRIC_NAMES.consumerRejected, help: 'Messages without the outbox headers, skipped', registers });
  }

  /** Serves GET /metrics; resolves with a function that closes the server. */
  async serve(port: number, host = '127.0.0.1'): Promise<{ port: number; close: () => Promise<void> }> {
    const server = http.createServer((req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404).end();
        return;
      }
      this.registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(body),
        (error: unknown) => res.writeHead(500).end(String(error)),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, resolve);
    });
    const address = server.address();
    return {
      port: typeof address === 'object' && address ? address.port : port,
      close: () => new Promise((resolve) => server.close(() => resolve())),
    };
  }
}
