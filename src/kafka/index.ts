/**
 * The Kafka clients a relay can publish through, chosen by name
 * (`--kafka-client`). They share one contract (relay/publisher.ts) and one
 * set of guarantees: idempotent producer, acks from all in-sync replicas,
 * per-key order, Java-compatible murmur2 partitioning, and a publish that
 * resolves only once Kafka acknowledged every event of it.
 */
import type { KafkaClientName } from '../config.js';
import { createKafkaClient } from '../kafka-client.js';
import type { Logger } from '../log.js';
import type { EventPublisher } from '../relay/publisher.js';
import { PartitionBoundedPublisher } from './batch-limit.js';
import { KafkajsPublisher } from './kafkajs.js';
import type { TopicAdmin } from './topics.js';

export { TopicAdmin } from './topics.js';
export { partitionOf } from './murmur2.js';

export interface PublisherOptions {
  client: KafkaClientName;
  brokers: readonly string[];
  clientId: string;
  log: Logger;
  topics: TopicAdmin;
  /** Per-request timeout, ms (default 30 000). */
  timeoutMs?: number;
  /** kafkajs connection retries (tests of outages lower it). */
  retries?: number;
}

export async function createPublisher(o: PublisherOptions): Promise<EventPublisher> {
  // kafkajs and @platformatic/kafka put a whole publish into one request, so
  // a big one is split to stay within the broker's record-batch limit.
  const bounded = (publisher: EventPublisher) => new PartitionBoundedPublisher(publisher, (topic) => o.topics.partitionCount(topic));
  switch (o.client) {
    case 'kafkajs':
    case 'kafkajs-imul':
      return bounded(new KafkajsPublisher({
        kafka: createKafkaClient({ brokers: o.brokers, log: o.log, clientId: o.clientId, ...(o.retries !== undefined ? { retries: o.retries } : {}) }),
        topics: o.topics,
        partitioner: o.client === 'kafkajs-imul' ? 'imul' : 'java',
        ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
      }));
    case 'confluent':
    case 'confluent-kafkajs': {
      // librdkafka batches by batch.size and message.max.bytes itself.
      const { createConfluentPublisher } = await import('./confluent.js');
      return createConfluentPublisher({ ...o, api: o.client === 'confluent' ? 'native' : 'kafkajs' });
    }
    case 'platformatic': {
      const { PlatformaticPublisher } = await import('./platformatic.js');
      return bounded(new PlatformaticPublisher(o));
    }
  }
}
