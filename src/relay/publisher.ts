/**
 * Publishing outbox events to Kafka, behind a small interface so another
 * client (kafkajs is no longer maintained upstream) can be measured later.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Partitioners, type Admin, type Kafka, type Message, type Producer } from 'kafkajs';
import { OutboxBenchError, describeError } from '../errors.js';
import { HEADERS, type OutboxMessage } from '../events.js';

// Rationale: a single KRaft broker hosts a new topic's partitions within a
// second or so; 10 s of 100 ms polls covers a loaded machine, and a broker
// that needs longer is reported instead of waited on.
const TOPIC_LEADER_POLL_MS = 100;
const TOPIC_LEADER_ATTEMPTS = 100;
const TRANSIENT_TOPIC_ERROR = /does not host this topic-partition|no leader|leader not available|not available/i;

export interface EventPublisher {
  /**
   * Resolves once Kafka has acknowledged every message (acks = all), in order
   * per aggregate; rejects with PUBLISH_FAILED otherwise, in which case any
   * subset may have been written (the caller re-publishes: at-least-once).
   */
  publish(messages: readonly OutboxMessage[]): Promise<void>;
  close(): Promise<void>;
}

/** Maps an aggregate type to its topic. */
export type TopicRouter = (aggregateType: string) => string;

export interface KafkajsPublisherOptions {
  kafka: Kafka;
  route: TopicRouter;
  /** Partitions of topics this publisher creates on first use. */
  partitions: number;
  /** kafkajs' per-request timeout, ms (default 30 000). */
  timeoutMs?: number;
}

export function toKafkaMessage(message: OutboxMessage): Message {
  // Built by assignment rather than object spread: this runs once per event,
  // and the spread showed up in the relay's CPU profile.
  const headers: Record<string, string> = {};
  for (const name in message.headers) headers[name] = message.headers[name]!;
  headers[HEADERS.eventId] = message.eventId;
  headers[HEADERS.eventType] = message.eventType;
  headers[HEADERS.aggregateType] = message.aggregateType;
  headers[HEADERS.aggregateVersion] = String(message.aggregateVersion);
  // The key is the aggregate id: one aggregate, one partition, one order.
  return { key: message.aggregateId, value: message.payload, headers };
}

export class KafkajsPublisher implements EventPublisher {
  readonly #kafka: Kafka;
  readonly #route: TopicRouter;
  readonly #partitions: number;
  readonly #timeoutMs: number;
  readonly #knownTopics = new Set<string>();
  #producer: Producer | undefined;
  #admin: Admin | undefined;
  #connecting: Promise<Producer> | undefined;

  constructor(options: KafkajsPublisherOptions) {
    this.#kafka = options.kafka;
    this.#route = options.route;
    this.#partitions = options.partitions;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
  }

  async #connected(): Promise<Producer> {
    if (this.#producer) return this.#producer;
    this.#connecting ??= (async () => {
      const producer = this.#kafka.producer({
        // Idempotence needs acks=-1 and one request in flight to keep order
        // across retries (kafkajs does not reorder only with maxInFlight 1).
        idempotent: true,
        maxInFlightRequests: 1,
        // Pinned: kafkajs v2 changed its default partitioner; every replica
        // must hash keys the same way (this one matches the Java client).
        createPartitioner: Partitioners.DefaultPartitioner,
        allowAutoTopicCreation: false,
        retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 5_000 },
      });
      try {
        await producer.connect();
      } catch (error) {
        this.#connecting = undefined;
        throw new OutboxBenchError('PUBLISH_FAILED', `cannot connect the Kafka producer: ${describeError(error)}`, { cause: error, retriable: true });
      }
      this.#producer = producer;
      return producer;
    })();
    return this.#connecting;
  }

  /** Creates the topic on first use (idempotent; an existing topic is left as is). */
  async ensureTopic(topic: string): Promise<void> {
    if (this.#knownTopics.has(topic)) return;
    this.#admin ??= this.#kafka.admin();
    await this.#admin.connect();
    const existing = await this.#admin.listTopics();
    if (!existing.includes(topic)) {
      // kafkajs reports "already exists" (another relay won the race) by
      // resolving false, not by throwing.
      await this.#admin.createTopics({ topics: [{ topic, numPartitions: this.#partitions }] });
      await this.#waitForLeaders(topic);
    }
    this.#knownTopics.add(topic);
  }

  /**
   * Right after a create the broker can answer metadata requests before it
   * hosts the new partitions ("does not host this topic-partition"); the
   * first produce would fail. Wait until every partition has a leader.
   */
  async #waitForLeaders(topic: string): Promise<void> {
    let last: unknown;
    for (let attempt = 1; attempt <= TOPIC_LEADER_ATTEMPTS; attempt++) {
      try {
        const { topics } = await this.#admin!.fetchTopicMetadata({ topics: [topic] });
        const partitions = topics[0]?.partitions ?? [];
        if (partitions.length > 0 && partitions.every((p) => p.leader >= 0)) return;
        last = undefined;
      } catch (error) {
        const retriable = (error as { retriable?: boolean }).retriable === true || TRANSIENT_TOPIC_ERROR.test(describeError(error));
        if (!retriable) throw error;
        last = error;
      }
      await sleep(TOPIC_LEADER_POLL_MS);
    }
    throw new OutboxBenchError(
      'NOT_READY',
      `topic ${topic} was created but not every partition has a leader after ${(TOPIC_LEADER_ATTEMPTS * TOPIC_LEADER_POLL_MS) / 1_000} s` +
        (last ? `: ${describeError(last)}` : ''),
      { retriable: true, ...(last ? { cause: last } : {}) },
    );
  }

  async publish(messages: readonly OutboxMessage[]): Promise<void> {
    if (messages.length === 0) return;
    const byTopic = new Map<string, Message[]>();
    for (const message of messages) {
      const topic = this.#route(message.aggregateType);
      let list = byTopic.get(topic);
      if (!list) byTopic.set(topic, (list = []));
      list.push(toKafkaMessage(message));
    }
    try {
      for (const topic of byTopic.keys()) await this.ensureTopic(topic);
      const producer = await this.#connected();
      await producer.sendBatch({
        acks: -1,
        timeout: this.#timeoutMs,
        topicMessages: [...byTopic].map(([topic, list]) => ({ topic, messages: list })),
      });
    } catch (error) {
      if (error instanceof OutboxBenchError) throw error;
      throw new OutboxBenchError('PUBLISH_FAILED', `Kafka did not acknowledge ${messages.length} message(s): ${describeError(error)}`, {
        cause: error,
        retriable: true,
      });
    }
  }

  async close(): Promise<void> {
    const producer = this.#producer;
    this.#producer = undefined;
    this.#connecting = undefined;
    await Promise.allSettled([producer?.disconnect(), this.#admin?.disconnect()]);
  }
}

/**
 * Publishes through several producers at once. Each aggregate always goes
 * through the same one (by hash of its id), so its events stay in order: each
 * producer sends one request at a time. What runs in parallel are the Kafka
 * round trips of different aggregates, which a single idempotent producer
 * (one request in flight) has to wait for one after another.
 */
export class ShardedPublisher implements EventPublisher {
  readonly #shards: readonly EventPublisher[];

  constructor(shards: readonly EventPublisher[]) {
    if (shards.length === 0) throw new OutboxBenchError('CONFIG_INVALID', 'a sharded publisher needs at least one publisher');
    this.#shards = shards;
  }

  async publish(messages: readonly OutboxMessage[]): Promise<void> {
    if (this.#shards.length === 1) return this.#shards[0]!.publish(messages);
    const parts: OutboxMessage[][] = this.#shards.map(() => []);
    for (const message of messages) parts[shardOf(message.aggregateId, this.#shards.length)]!.push(message);
    // All parts are attempted; any failure fails the whole call, so the caller
    // re-publishes everything (duplicates, never a gap in an aggregate's order).
    const results = await Promise.allSettled(parts.map((part, i) => (part.length > 0 ? this.#shards[i]!.publish(part) : undefined)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.#shards.map((shard) => shard.close()));
  }
}

/** FNV-1a of the aggregate id: cheap, stable across processes and restarts. */
export function shardOf(aggregateId: string, shards: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < aggregateId.length; i++) {
    hash ^= aggregateId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % shards;
}
