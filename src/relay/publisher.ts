/**
 * Publishing outbox events to Kafka, behind a small interface so another
 * client (kafkajs is no longer maintained upstream) can be measured later.
 */
import { Partitioners, type Admin, type Kafka, type Message, type Producer } from 'kafkajs';
import { OutboxBenchError, describeError } from '../errors.js';
import { HEADERS, type OutboxMessage } from '../events.js';

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
  return {
    // The key is the aggregate id: one aggregate, one partition, one order.
    key: message.aggregateId,
    value: message.payload,
    headers: {
      ...message.headers,
      [HEADERS.eventId]: message.eventId,
      [HEADERS.eventType]: message.eventType,
      [HEADERS.aggregateType]: message.aggregateType,
      [HEADERS.aggregateVersion]: String(message.aggregateVersion),
    },
  };
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
      try {
        await this.#admin.createTopics({ topics: [{ topic, numPartitions: this.#partitions }], waitForLeaders: true });
      } catch (error) {
        // Another relay may have created it between our check and our call.
        if (!/already exists/i.test(describeError(error))) throw error;
      }
    }
    this.#knownTopics.add(topic);
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
