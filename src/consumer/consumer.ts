/**
 * The idempotent consumer. For each batch Kafka hands over, one database
 * transaction records every event id in the inbox (ON CONFLICT DO NOTHING) and
 * applies the side effect only for the ids that were new; only after that
 * commit is the Kafka offset committed. A crash before the offset commit means
 * the batch comes again, and the inbox turns it into counted duplicates.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Consumer, EachBatchPayload, Kafka, KafkaMessage } from 'kafkajs';
import { failpoint, FailpointCrash } from '../chaos/failpoints.js';
import type { Sql } from '../db.js';
import { describeError } from '../errors.js';
import { HEADERS, nowMs } from '../events.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { applyOnce, type DeliveredEvent } from '../queries.js';

/** One delivery of one event, as the history of a run records it. */
export interface Delivery {
  eventId: string;
  aggregateId: string;
  aggregateVersion: number;
  eventType: string;
  topic: string;
  partition: number;
  offset: string;
  /** Epoch ms when the consumer received it (the batch was handed over by Kafka). */
  receivedAt: number;
  /** Epoch ms when its inbox transaction had committed: the event is applied (or known a duplicate). */
  appliedAt: number;
  /** Epoch ms the load generator meant to send it, when it said so. */
  intendedAt: number | undefined;
  /** False when the inbox already knew the event id (a duplicate). */
  applied: boolean;
  /** Every Kafka header of the message. */
  headers: Readonly<Record<string, string>>;
}

export interface ConsumerStats {
  received: number;
  applied: number;
  duplicates: number;
  rejected: number;
}

export interface IdempotentConsumerOptions {
  kafka: Kafka;
  sql: Sql;
  groupId: string;
  topics: readonly string[];
  log: Logger;
  metrics?: Metrics | undefined;
  /** Read topics from the start when the group has no committed offset (default true). */
  fromBeginning?: boolean;
  /** Called for every delivery after its transaction committed (`appliedAt` is set). */
  onDelivery?: ((delivery: Delivery) => void) | undefined;
  /** Called with each batch as received, before its transaction (crash-test histories). */
  onReceive?: ((deliveries: readonly Delivery[]) => void) | undefined;
  /** Partitions processed at once, each batch in its own transaction (default 4). */
  concurrency?: number | undefined;
  /**
   * Commit Kafka offsets at most this often, ms (0 = after every batch). A
   * crash re-delivers up to this much more, which the inbox absorbs; in
   * exchange the broker writes far fewer offset commits at high rates.
   */
  commitIntervalMs?: number | undefined;
}

// Rationale: a fetch returns batches of several partitions; applying them one
// after another puts one inbox transaction (a commit, ~2-10 ms) per partition
// in every event's latency. Four in parallel covers the 3-6 partitions used
// here; order is per partition, so it is unaffected.
const DEFAULT_CONCURRENCY = 4;

// Rationale: a database blip should not make kafkajs re-fetch and rebalance;
// retry the batch transaction in place a few times first.
const DB_RETRIES = 5;

/** Kafka headers as strings (the first value of a repeated header). */
export function decodeHeaders(message: KafkaMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(message.headers ?? {})) {
    const first = Array.isArray(value) ? value[0] : value;
    if (first !== undefined) headers[name] = first.toString();
  }
  return headers;
}

export class IdempotentConsumer {
  readonly stats: ConsumerStats = { received: 0, applied: 0, duplicates: 0, rejected: 0 };
  readonly #o: IdempotentConsumerOptions;
  readonly #log: Logger;
  #consumer: Consumer | undefined;
  #crashed: FailpointCrash | undefined;
  #onCrash: (() => void) | undefined;
  /** Offsets applied but not committed yet, by "topic:partition". */
  readonly #pendingOffsets = new Map<string, { topic: string; partition: number; offset: string }>();
  #lastCommit = 0;

  constructor(options: IdempotentConsumerOptions) {
    this.#o = options;
    this.#log = options.log.child({ component: 'consumer', group: options.groupId });
  }

  get crashed(): FailpointCrash | undefined {
    return this.#crashed;
  }

  /** Called if kafkajs gives up on the consumer (a crash it will not restart from). */
  onCrash(callback: () => void): void {
    this.#onCrash = callback;
  }

  async start(): Promise<void> {
    const consumer = this.#o.kafka.consumer({
      groupId: this.#o.groupId,
      // Rationale: fetch up to 4 MiB per partition per request so batches of
      // a few thousand ~300-byte events arrive in one piece at high rates.
      maxBytesPerPartition: 4 * 1024 * 1024,
      allowAutoTopicCreation: false,
    });
    this.#consumer = consumer;
    consumer.on(consumer.events.CRASH, (event) => {
      this.#log.warn({ err: String(event.payload.error), restart: event.payload.restart }, 'kafkajs consumer crashed');
      if (!event.payload.restart) this.#onCrash?.();
    });
    await consumer.connect();
    for (const topic of this.#o.topics) await consumer.subscribe({ topic, fromBeginning: this.#o.fromBeginning ?? true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.#o.concurrency ?? DEFAULT_CONCURRENCY,
      eachBatch: (payload) => this.#onBatch(payload),
    });
    this.#log.info({ topics: this.#o.topics }, 'consumer started');
  }

  async stop(): Promise<void> {
    const consumer = this.#consumer;
    if (consumer && !this.#crashed) await this.#commitPending(consumer).catch(() => {});
    this.#consumer = undefined;
    await consumer?.disconnect();
  }

  async #commitPending(consumer: Consumer): Promise<void> {
    if (this.#pendingOffsets.size === 0) return;
    const offsets = [...this.#pendingOffsets.values()];
    this.#pendingOffsets.clear();
    this.#lastCommit = Date.now();
    await consumer.commitOffsets(offsets);
  }

  async #onBatch({ batch, heartbeat, isRunning, isStale, resolveOffset }: EachBatchPayload): Promise<void> {
    if (batch.messages.length === 0 || !isRunning() || isStale()) return;
    const receivedAt = nowMs();
    const events: DeliveredEvent[] = [];
    const deliveries: Delivery[] = [];
    for (const message of batch.messages) {
      const headers = decodeHeaders(message);
      const eventId = headers[HEADERS.eventId];
      const version = Number(headers[HEADERS.aggregateVersion]);
      const aggregateId = message.key?.toString();
      if (!eventId || !aggregateId || !Number.isInteger(version)) {
        this.stats.rejected += 1;
        this.#o.metrics?.consumerRejected.inc();
        this.#log.warn({ topic: batch.topic, partition: batch.partition, offset: message.offset }, 'message without outbox headers; skipped');
        continue;
      }
      const eventType = headers[HEADERS.eventType] ?? 'unknown';
      const intended = headers[HEADERS.intendedAt];
      let amountCents: number | null = null;
      try {
        const body = JSON.parse(message.value?.toString() ?? 'null') as { amountCents?: unknown; deltaCents?: unknown } | null;
        const amount = body?.amountCents ?? body?.deltaCents;
        if (typeof amount === 'number') amountCents = amount;
      } catch {
        // A payload that is not JSON is still an event: the ledger records it without an amount.
      }
      events.push({ eventId, orderId: aggregateId, aggregateVersion: version, eventType, amountCents });
      deliveries.push({
        eventId,
        aggregateId,
        aggregateVersion: version,
        eventType,
        topic: batch.topic,
        partition: batch.partition,
        offset: message.offset,
        receivedAt,
        appliedAt: Number.NaN,
        intendedAt: intended === undefined ? undefined : Number(intended),
        applied: false,
        headers,
      });
    }

    this.#o.onReceive?.(deliveries);
    const applied = await this.#applyWithRetry(events, heartbeat);
    const appliedAt = nowMs();
    const seenInBatch = new Set<string>();
    for (const delivery of deliveries) {
      delivery.appliedAt = appliedAt;
      // An id applied by this batch counts once; a repeat inside the same
      // batch is as much a duplicate as one from an earlier batch.
      delivery.applied = applied.has(delivery.eventId) && !seenInBatch.has(delivery.eventId);
      seenInBatch.add(delivery.eventId);
      this.stats.received += 1;
      if (delivery.applied) this.stats.applied += 1;
      else this.stats.duplicates += 1;
      this.#o.onDelivery?.(delivery);
    }
    const duplicates = deliveries.length - deliveries.filter((d) => d.applied).length;
    this.#o.metrics?.consumerReceived.inc(deliveries.length);
    this.#o.metrics?.consumerApplied.inc(deliveries.length - duplicates);
    if (duplicates > 0) {
      this.#o.metrics?.consumerDuplicates.inc(duplicates);
      this.#log.debug({ duplicates, partition: batch.partition }, 'inbox discarded duplicate deliveries');
    }

    try {
      failpoint('consumer.after-apply-before-offset');
    } catch (error) {
      if (error instanceof FailpointCrash) {
        // In-process crash: stop without committing the offset.
        this.#crashed = error;
        void this.stop();
        return;
      }
      throw error;
    }
    const last = batch.messages[batch.messages.length - 1]!;
    this.#pendingOffsets.set(`${batch.topic}:${batch.partition}`, { topic: batch.topic, partition: batch.partition, offset: (BigInt(last.offset) + 1n).toString() });
    if (this.#consumer && Date.now() - this.#lastCommit >= (this.#o.commitIntervalMs ?? 0)) await this.#commitPending(this.#consumer);
    // Tell kafkajs' fetch position too, or it hands us the same batch again.
    resolveOffset(last.offset);
  }

  async #applyWithRetry(events: DeliveredEvent[], heartbeat: () => Promise<void>): Promise<Set<string>> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await applyOnce(this.#o.sql, events);
      } catch (error) {
        if (attempt >= DB_RETRIES) throw error;
        this.#log.warn({ err: describeError(error), attempt }, 'inbox transaction failed; retrying');
        await sleep(200 * attempt);
        await heartbeat().catch(() => {});
      }
    }
  }
}
