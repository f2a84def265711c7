/**
 * The Kafka clients a relay can publish through, chosen by name
 * (`--kafka-client`). They share one contract (relay/publisher.ts) and one
 * set of guarantees: idempotent producer, acks from all in-sync replicas,
 * per-key order, Java-compatible murmur2 partitioning, and a publish that
 * resolves only once Kafka acknowledged every event of it.
 */
import type { KafkaClientName } from '../config.js';
import { createKafkaClient } from '../kafka-client.js';
import type { EventPublisher } from '../relay/publisher.js';
import { PartitionBoundedPublisher } from './batch-limit.js';
import { KafkajsPublisher } from './kafkajs.js';
import type { PublisherOptions } from './publisher-options.js';
import type { TopicAdmin } from './topics.js';

export type { PublisherOptions } from './publisher-options.js';

export { TopicAdmin } from './topics.js';
export { partitionOf } from './murmur2.js';

type PublisherFactory = (options: PublisherOptions) => Promise<EventPublisher>;

// kafkajs and @platformatic/kafka put a whole publish into one request, so a
// big one is split to stay within the broker's record-batch limit; librdkafka
// batches by batch.size and message.max.bytes itself.
function partitionBounded(publisher: EventPublisher, topics: TopicAdmin): EventPublisher {
  return new PartitionBoundedPublisher(publisher, (topic) => topics.partitionCount(topic));
}

function kafkajs(partitioner: 'java' | 'imul'): PublisherFactory {
  return async (o) =>
    partitionBounded(
      new KafkajsPublisher({
        kafka: createKafkaClient({ brokers: o.brokers, log: o.log, clientId: o.clientId, ...(o.retries !== undefined ? { retries: o.retries } : {}) }),
        topics: o.topics,
        partitioner,
        ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
      }),
      o.topics,
    );
}

function confluent(api: 'native' | 'kafkajs'): PublisherFactory {
  // Loaded on use: the native binding exists only where it was built.
  return async (o) => (await import('./confluent.js')).createConfluentPublisher({ ...o, api });
}

/** Every relay Kafka client by name (config.ts KAFKA_CLIENTS); the compiler checks none is missing. */
const PUBLISHERS = {
  kafkajs: kafkajs('java'),
  'kafkajs-imul': kafkajs('imul'),
  confluent: confluent('native'),
  'confluent-kafkajs': confluent('kafkajs'),
  platformatic: async (o) => partitionBounded(new (await import('./platformatic.js')).PlatformaticPublisher(o), o.topics),
} satisfies Record<KafkaClientName, PublisherFactory>;

export async function createPublisher(options: PublisherOptions): Promise<EventPublisher> {
  return PUBLISHERS[options.client](options);
}
