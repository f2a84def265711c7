/**
 * Publishing with kafkajs (pure JavaScript). Idempotent, acks from all
 * in-sync replicas, one request in flight (kafkajs keeps order across
 * retries only then). Two partitioners that agree on every key: kafkajs'
 * own Java-compatible one (murmur2 on a BigInt-backed Long) and the same
 * function with Math.imul.
 */
import { Partitioners, type Kafka, type Message, type Producer } from 'kafkajs';
import { OutboxBenchError, describeError } from '../errors.js';
import type { WireEvent } from '../events.js';
import type { EventPublisher } from '../relay/publisher.js';
import { partitionOf } from './murmur2.js';
import type { TopicAdmin } from './topics.js';

export interface KafkajsPublisherOptions {
  kafka: Kafka;
  topics: TopicAdmin;
  /** `java`: kafkajs' DefaultPartitioner; `imul`: the same murmur2 with Math.imul. */
  partitioner?: 'java' | 'imul';
  /** kafkajs' per-request timeout, ms (default 30 000). */
  timeoutMs?: number;
}

const imulPartitioner = () => ({ partitionMetadata, message }: { partitionMetadata: unknown[]; message: Message }) =>
  message.key === null || message.key === undefined ? 0 : partitionOf(message.key, partitionMetadata.length);

export class KafkajsPublisher implements EventPublisher {
  readonly #options: KafkajsPublisherOptions;
  #producer: Producer | undefined;
  #connecting: Promise<Producer> | undefined;

  constructor(options: KafkajsPublisherOptions) {
    this.#options = options;
  }

  async #connected(): Promise<Producer> {
    if (this.#producer) return this.#producer;
    this.#connecting ??= (async () => {
      const producer = this.#options.kafka.producer({
        // Idempotence needs acks=-1 and one request in flight to keep order
        // across retries (kafkajs does not reorder only with maxInFlight 1).
        idempotent: true,
        maxInFlightRequests: 1,
        // Pinned: every replica must hash keys the way the Java client does.
        createPartitioner: this.#options.partitioner === 'imul' ? imulPartitioner : Partitioners.DefaultPartitioner,
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

  async publish(events: readonly WireEvent[]): Promise<void> {
    if (events.length === 0) return;
    const byTopic = new Map<string, Message[]>();
    for (const event of events) {
      let list = byTopic.get(event.topic);
      if (!list) byTopic.set(event.topic, (list = []));
      list.push({ key: event.key, value: event.value, headers: event.headers as Message['headers'] });
    }
    try {
      for (const topic of byTopic.keys()) await this.#options.topics.ensure(topic);
      const producer = await this.#connected();
      await producer.sendBatch({ acks: -1, timeout: this.#options.timeoutMs ?? 30_000, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
    } catch (error) {
      throw publishFailed(events.length, error);
    }
  }

  async close(): Promise<void> {
    const producer = this.#producer;
    this.#producer = undefined;
    this.#connecting = undefined;
    await producer?.disconnect().catch(() => {});
  }
}

/** Any failure to publish, as the error the relays retry on. */
export function publishFailed(count: number, error: unknown): OutboxBenchError {
  if (error instanceof OutboxBenchError) return error;
  return new OutboxBenchError('PUBLISH_FAILED', `Kafka did not acknowledge ${count} message(s): ${describeError(error)}`, { cause: error, retriable: true });
}
