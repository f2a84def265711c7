/**
 * What a command needs once its servers are up: pools bound to the schema, a
 * Kafka client, a publisher, the migrated schema. Everything it creates is
 * registered on the shutdown stack, so it is closed in reverse order on exit.
 */
import type { Kafka } from 'kafkajs';
import type { Config } from './config.js';
import { createSql, migrate, type Sql, type SqlOptions } from './db.js';
import { topicFor } from './events.js';
import { acquireInfra, type AcquireOptions, type Infra } from './infra/index.js';
import { createKafkaClient } from './kafka-client.js';
import type { ShutdownStack } from './lifecycle.js';
import type { Logger } from './log.js';
import { createPublisher, TopicAdmin } from './kafka/index.js';
import { ShardedPublisher, type EventPublisher } from './relay/publisher.js';
import { WireEncoder } from './relay/wire.js';

export interface Runtime {
  readonly config: Config;
  readonly log: Logger;
  readonly infra: Infra;
  readonly shutdown: ShutdownStack;
  /** A new pool on the configured schema, closed at shutdown. */
  sql(options?: SqlOptions): Sql;
  /** A kafkajs client for the configured brokers. */
  kafka(clientId: string): Kafka;
  /** A publisher on the configured Kafka client (sharded over --publishers producers), closed at shutdown. */
  publisher(clientId?: string): Promise<EventPublisher>;
  /** What goes to Kafka for an event: `<topicPrefix><aggregateType>`, the configured headers. */
  wire(): WireEncoder;
  /** Creates a topic with the configured partitions unless it exists. */
  ensureTopic(topic: string): Promise<void>;
  /** Applies sql/ migrations and tops up outbox partitions. */
  migrate(): Promise<void>;
  /** The topic of an aggregate type. */
  topic(aggregateType: string): string;
}

export interface OpenRuntimeOptions extends Omit<AcquireOptions, 'config' | 'log'> {
  config: Config;
  log: Logger;
  shutdown: ShutdownStack;
}

export async function openRuntime(options: OpenRuntimeOptions): Promise<Runtime> {
  const { config, log, shutdown } = options;
  const infra = await acquireInfra(options);
  shutdown.add('servers', () => infra.release());
  let migrationPool: Sql | undefined;
  let topics: TopicAdmin | undefined;
  const runtime: Runtime = {
    config,
    log,
    infra,
    shutdown,
    sql(sqlOptions = {}) {
      const sql = createSql(infra.databaseUrl, config.schema, sqlOptions);
      shutdown.add('postgres pool', () => sql.end({ timeout: 5 }));
      return sql;
    },
    kafka(clientId) {
      return createKafkaClient({ brokers: infra.kafkaBrokers, log, clientId });
    },
    async publisher(clientId = 'outbox-bench-relay') {
      if (!topics) {
        const created = new TopicAdmin(runtime.kafka('outbox-bench-topics'), config.topicPartitions);
        shutdown.add('kafka topic admin', () => created.close());
        topics = created;
      }
      const admin = topics;
      const one = (suffix: string) => createPublisher({ client: config.kafkaClient, brokers: infra.kafkaBrokers, clientId: `${clientId}${suffix}`, log, topics: admin });
      const publisher = config.publishers === 1 ? await one('') : new ShardedPublisher(await Promise.all(Array.from({ length: config.publishers }, (_, i) => one(`-${i}`))));
      shutdown.add('kafka publisher', () => publisher.close());
      return publisher;
    },
    wire() {
      return new WireEncoder({ route: (aggregateType) => topicFor(config.topicPrefix, aggregateType), headers: config.kafkaHeaders, forward: config.forwardHeaders });
    },
    async ensureTopic(topic) {
      const admin = new TopicAdmin(runtime.kafka('outbox-bench-setup'), config.topicPartitions);
      try {
        await admin.ensure(topic);
      } finally {
        await admin.close();
      }
    },
    async migrate() {
      migrationPool ??= runtime.sql({ max: 1, applicationName: 'outbox-bench-migrate' });
      const { applied } = await migrate(migrationPool, {
        schema: config.schema,
        partitionWidth: config.partitionWidth,
        partitionsAhead: config.partitionsAhead,
      });
      if (applied.length > 0) log.info({ schema: config.schema, applied }, 'schema migrated');
    },
    topic(aggregateType) {
      return topicFor(config.topicPrefix, aggregateType);
    },
  };
  return runtime;
}
