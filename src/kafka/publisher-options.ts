/**
 * What every Kafka client's publisher is built from (kafka/index.ts picks the
 * client; each client's file reads these without importing the registry).
 */
import type { KafkaClientName } from '../config.js';
import type { Logger } from '../log.js';
import type { TopicAdmin } from './topics.js';

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
