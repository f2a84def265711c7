/**
 * The idempotent consumer. For each batch Kafka hands over, one database
 * transaction records every event id in the inbox (ON CONFLICT DO NOTHING) and
 * applies the side effect only for the ids that were new; only after that
 * commit is the Kafka offset committed. A crash before the offset commit means
 * the batch comes again, and the inbox turns it into counted duplicates.
 *
 * Offsets are committed beside the fetching, not inside it: one commit in
 * flight at a time carries the newest applied offset of every partition. An
 * offset commit is a write to the broker's offsets topic (5 ms and more), and
 * awaiting it per batch held up the next fetch: at 2,000 events/s on 6
 * partitions that wait was most of an event's time from Kafka to the consumer.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { KafkaMessage } from 'kafkajs';
import { failpoint, FailpointCrash } from '../chaos/failpoints.js';
import type { Sql } from '../db.js';
import { describeError } from '../errors.js';
import { HEADERS, nowMs } from '../events.js';
import type { BatchConsumer, ConsumerSource, EachBatchPayload } from '../kafka/consumers.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { UUID_TEXT, type DeliveredEvent } from '../queries.js';
import { InboxWriter } from './inbox-writer.js';

/** One delivery of one event, as the history of a run records it. */
export interface Delivery extends DeliveredEvent {
  topic: string;
  partition: number;
  offset: string;
  /** Epoch ms of the Kafka record's timestamp (the broker's append time on topics set to LogAppendTime). */
  recordAt: number;
  /** Epoch ms when the consumer received it (the batch was handed over by Kafka). */
  receivedAt: number;
  /** Epoch ms when its inbox transaction had committed: the event is applied (or known a duplicate). */
  appliedAt: number;
  /** Epoch ms the sender meant to send it, when an `x-intended-at` header says so. */
  intendedAt: number | undefined;
  /** False when the inbox already knew the event id (a duplicate). */
  applied: boolean;
}

export interface ConsumerStats {
  received: number;
  applied: number;
  duplicates: number;
  rejected: number;
}

export interface IdempotentConsumerOptions {
  /** The Kafka client's consumers (kafka/consumers.ts: kafkajsConsumers, consumersFor). */
  source: ConsumerSource;
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
  /** Partitions' batches handed over at once (they share inbox transactions; default 16). */
  concurrency?: number | undefined;
  /**
   * Commit Kafka offsets at most this often, ms (0 = as often as one commit
   * after another allows; default 100). A crash re-delivers up to this much
   * more, which the inbox absorbs; in exchange the broker writes fewer offset
   * commits. Commits never hold up fetching, so this costs no latency.
   */
  commitIntervalMs?: number | undefined;
}

// Rationale: a fetch returns batches of several partitions; handed over all at
// once, they share one inbox transaction (inbox-writer.ts) instead of queueing
// one behind another. 16 covers the partitions one consumer process holds
// here (6 per topic by default); order is per partition, so it is unaffected.
const DEFAULT_CONCURRENCY = 16;

// Rationale: measured at 2,000 events/s (bench:cdc), committing every 100 ms
// instead of back to back cut the broker's CPU per event by a quarter and the
// consumer's by a tenth, with the same latency; a crash replays at most about
// 100 ms of events more, which the inbox absorbs.
const DEFAULT_COMMIT_INTERVAL_MS = 100;

// Rationale: a database blip should not make kafkajs re-fetch and rebalance;
// retry the batch transaction in place a few times first.
const DB_RETRIES = 5;

/** The outbox headers of a record, read in one pass (the first of a repeated header). */
interface OutboxHeaders {
  eventId: string | undefined;
  version: string | undefined;
  eventType: string | undefined;
  intendedAt: string | undefined;
}

function readHeaders(headers: KafkaMessage['headers']): OutboxHeaders {
  const found: OutboxHeaders = { eventId: undefined, version: undefined, eventType: undefined, intendedAt: undefined };
  // One walk over the few headers a record has: four lookups by name cost
  // more, most of them for names that are absent (7% of a drain's consumer).
  for (const name in headers) {
    const raw = headers[name];
    const value = (Array.isArray(raw) ? raw[0] : raw)?.toString();
    if (name === HEADERS.eventId) found.eventId ??= value;
    else if (name === HEADERS.aggregateVersion) found.version ??= value;
    else if (name === HEADERS.eventType) found.eventType ??= value;
    else if (name === HEADERS.intendedAt) found.intendedAt ??= value;
  }
  return found;
}

/**
 * The amount of an order event, read off its JSON payload without parsing
 * it: `amountCents` (placed) or `deltaCents` (amended), an integer. The
 * payload is jsonb output (`"key": value`) or JSON.stringify's (`"key":value`).
 */
export function amountOf(payload: Buffer | null): number | null {
  if (!payload) return null;
  for (const key of AMOUNT_KEYS) {
    let at = payload.indexOf(key);
    if (at < 0) continue;
    at += key.length;
    while (payload[at] === 0x20) at += 1;
    if (payload[at] !== 0x3a) continue; // ':'
    at += 1;
    while (payload[at] === 0x20) at += 1;
    let negative = false;
    if (payload[at] === 0x2d) {
      negative = true;
      at += 1;
    }
    let value = 0;
    let digits = 0;
    for (; payload[at]! >= 0x30 && payload[at]! <= 0x39; at++, digits++) value = value * 10 + (payload[at]! - 0x30);
    if (digits > 0 && digits <= 15) return negative ? -value : value;
  }
  return null;
}

const AMOUNT_KEYS = [Buffer.from('"amountCents"'), Buffer.from('"deltaCents"')];

export class IdempotentConsumer {
  readonly stats: ConsumerStats = { received: 0, applied: 0, duplicates: 0, rejected: 0 };
  readonly #options: IdempotentConsumerOptions;
  readonly #log: Logger;
  #consumer: BatchConsumer | undefined;
  #crashed: FailpointCrash | undefined;
  #onCrash: (() => void) | undefined;
  /** Offsets applied but not committed yet, by "topic:partition". */
  readonly #pendingOffsets = new Map<string, { topic: string; partition: number; offset: string }>();
  #lastCommit = 0;
  readonly #inbox: InboxWriter;
  /** The commit loop, while one runs. */
  #committing: Promise<void> | undefined;

  constructor(options: IdempotentConsumerOptions) {
    this.#options = options;
    this.#log = options.log.child({ component: 'consumer', group: options.groupId });
    this.#inbox = new InboxWriter(options.sql);
  }

  get crashed(): FailpointCrash | undefined {
    return this.#crashed;
  }

  /** Called if kafkajs gives up on the consumer (a crash it will not restart from). */
  onCrash(callback: () => void): void {
    this.#onCrash = callback;
  }

  async start(): Promise<void> {
    const consumer = this.#options.source(this.#options.groupId);
    this.#consumer = consumer;
    consumer.onCrash((error, restart) => {
      this.#log.warn({ err: String(error), restart }, 'Kafka consumer crashed');
      if (!restart) this.#onCrash?.();
    });
    await consumer.connect();
    await consumer.subscribe(this.#options.topics, this.#options.fromBeginning ?? true);
    await consumer.run({ concurrency: this.#options.concurrency ?? DEFAULT_CONCURRENCY, eachBatch: (payload) => this.#onBatch(payload) });
    this.#log.info({ topics: this.#options.topics }, 'consumer started');
  }

  async stop(): Promise<void> {
    const consumer = this.#consumer;
    this.#consumer = undefined;
    await this.#committing;
    if (consumer && !this.#crashed) await this.#commitPending(consumer).catch(() => {});
    await consumer?.disconnect();
  }

  /** Starts the commit loop unless one runs; it ends when nothing is pending. */
  #scheduleCommit(): void {
    const consumer = this.#consumer;
    if (this.#committing || !consumer) return;
    this.#committing = (async () => {
      while (this.#pendingOffsets.size > 0 && this.#consumer === consumer) {
        const wait = this.#lastCommit + (this.#options.commitIntervalMs ?? DEFAULT_COMMIT_INTERVAL_MS) - Date.now();
        if (wait > 0) await sleep(wait);
        try {
          await this.#commitPending(consumer);
        } catch (error) {
          // Not retried: the partition's next batch commits a newer offset, and
          // if there is none (a rebalance took the partition) the batches since
          // the last commit are delivered again, which the inbox absorbs.
          this.#log.debug({ err: describeError(error) }, 'offset commit failed');
          return;
        }
      }
    })().finally(() => {
      this.#committing = undefined;
    });
  }

  async #commitPending(consumer: BatchConsumer): Promise<void> {
    if (this.#pendingOffsets.size === 0) return;
    const offsets = [...this.#pendingOffsets.values()];
    this.#pendingOffsets.clear();
    this.#lastCommit = Date.now();
    await consumer.commitOffsets(offsets);
  }

  async #onBatch({ batch, heartbeat, isRunning, isStale, resolveOffset }: EachBatchPayload): Promise<void> {
    if (batch.messages.length === 0 || !isRunning() || isStale()) return;
    const receivedAt = nowMs();
    const deliveries: Delivery[] = [];
    for (const message of batch.messages) {
      const headers = readHeaders(message.headers);
      const eventId = headers.eventId;
      const version = Number(headers.version);
      const aggregateId = message.key?.toString();
      // A malformed id would fail the whole batch's transaction forever; it is
      // rejected alone, like a message without the outbox headers.
      if (!eventId || !UUID_TEXT.test(eventId) || !aggregateId || !Number.isInteger(version)) {
        this.stats.rejected += 1;
        this.#options.metrics?.consumerRejected.inc();
        this.#log.warn({ topic: batch.topic, partition: batch.partition, offset: message.offset }, 'message without valid outbox headers (id, aggregateVersion, key); skipped');
        continue;
      }
      deliveries.push({
        eventId,
        aggregateId,
        aggregateVersion: version,
        // The event type travels only with `--kafka-headers all`; the ledger records it when it does.
        eventType: headers.eventType ?? null,
        amountCents: amountOf(message.value),
        topic: batch.topic,
        partition: batch.partition,
        offset: message.offset,
        recordAt: Number(message.timestamp),
        receivedAt,
        appliedAt: Number.NaN,
        intendedAt: headers.intendedAt === undefined ? undefined : Number(headers.intendedAt),
        applied: false,
      });
    }

    this.#options.onReceive?.(deliveries);
    const applied = deliveries.length === 0 ? [] : await this.#applyWithRetry(deliveries, heartbeat);
    const appliedAt = nowMs();
    let duplicates = 0;
    for (let i = 0; i < deliveries.length; i++) {
      const delivery = deliveries[i]!;
      delivery.appliedAt = appliedAt;
      delivery.applied = applied[i]!;
      if (!delivery.applied) duplicates += 1;
      this.#options.onDelivery?.(delivery);
    }
    this.stats.received += deliveries.length;
    this.stats.applied += deliveries.length - duplicates;
    this.stats.duplicates += duplicates;
    this.#options.metrics?.consumerReceived.inc(deliveries.length);
    this.#options.metrics?.consumerApplied.inc(deliveries.length - duplicates);
    if (duplicates > 0) {
      this.#options.metrics?.consumerDuplicates.inc(duplicates);
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
    this.#scheduleCommit();
    // Tell kafkajs' fetch position too, or it hands us the same batch again.
    resolveOffset(last.offset);
  }

  async #applyWithRetry(events: readonly DeliveredEvent[], heartbeat: () => Promise<void>): Promise<boolean[]> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#inbox.apply(events);
      } catch (error) {
        if (attempt >= DB_RETRIES) throw error;
        this.#log.warn({ err: describeError(error), attempt }, 'inbox transaction failed; retrying');
        await sleep(200 * attempt);
        await heartbeat().catch(() => {});
      }
    }
  }
}
