/**
 * The public API of outbox-bench as a library (`import ... from 'outbox-bench'`):
 * what a service needs to run a transactional outbox of its own. It writes
 * events in its own transactions, starts the relay its Config names, and
 * consumes with the inbox. The modes' classes, the benchmark baselines (dual
 * write, naive SKIP LOCKED) and the harness's checks (claim evidence, the
 * ordering checker) stay internal, so the harness can change them freely.
 * test/public-api.test.ts uses this file through the package's name.
 */

// Configuration, errors, logging and shutdown
export { resolveConfig, DEFAULTS, type Config, type ResolveConfigInput, type RelayMode, type KafkaClientName, type ConsumerKafkaClientName, type HeaderSet } from './config.js';
export { OutboxBenchError, isOutboxBenchError, describeError, type ErrorCode } from './errors.js';
export { createLogger, type Logger } from './log.js';
export { ShutdownStack, installSignalHandlers } from './lifecycle.js';
export { openRuntime, type Runtime, type OpenRuntimeOptions } from './runtime.js';

// Schema and the write path
export { createSql, migrate, ensurePartitions, type Sql, type SqlOptions, type TransactionSql, type MigrateOptions } from './db.js';
export { HEADERS, topicFor, type OutboxEventInput, type WireEvent } from './events.js';
export {
  writeOutboxEvents,
  placeOrder,
  placeOrders,
  amendOrders,
  type OutboxStore,
  type PlaceOrderInput,
  type AmendOrderInput,
  type WrittenEvent,
} from './orders/write-path.js';

// The relay and the publisher it sends with
export { startRelay, type RunRelayOptions, type RelayHandle } from './relay/index.js';
export { createPublisher, TopicAdmin, type PublisherOptions } from './kafka/index.js';
export type { EventPublisher } from './relay/publisher.js';
export { WireEncoder, type WireOptions } from './relay/wire.js';

// The consumer
export { IdempotentConsumer, type Delivery, type ConsumerStats, type IdempotentConsumerOptions } from './consumer/consumer.js';
export { consumersFor, kafkajsConsumers, type ConsumerSource } from './kafka/consumers.js';

// Metrics
export { Metrics, METRIC_NAMES } from './metrics.js';
