/**
 * The public API of outbox-bench as a library: the pieces a service reuses to
 * run a transactional outbox of its own. Everything else is internal.
 */

// Configuration and errors
export { resolveConfig, DEFAULTS, type Config, type RelayMode, type KafkaClientName, type HeaderSet } from './config.js';
export { OutboxBenchError, isOutboxBenchError, type ErrorCode } from './errors.js';

// Schema and the write path
export { createSql, migrate, ensurePartitions, type Sql, type TransactionSql } from './db.js';
export { HEADERS, topicFor, type OutboxEventInput, type OutboxRow, type WireEvent } from './events.js';
export {
  writeOutboxEvents,
  placeOrder,
  placeOrders,
  amendOrders,
  placeOrdersDualWrite,
  type OutboxStore,
  type PlaceOrderInput,
  type WrittenEvent,
} from './orders/write-path.js';
export { createOrderService } from './orders/http.js';
export { GroupCommitter } from './orders/group-commit.js';

// Relays
export { ShardedPublisher, type EventPublisher, type TopicRouter } from './relay/publisher.js';
export { createPublisher, TopicAdmin, partitionOf, type PublisherOptions } from './kafka/index.js';
export { KafkajsPublisher } from './kafka/kafkajs.js';
export { WireEncoder, type WireOptions } from './relay/wire.js';
export { TableRelay, type ClaimStrategy, type TableRelayOptions } from './relay/table/relay.js';
export { createPollingRelay, pollingStrategy } from './relay/table/polling.js';
export { bucketedStrategy, naiveSkipLockedStrategy, prepareBuckets } from './relay/table/skip-locked.js';
export { CdcRelay, type CdcRelayOptions } from './relay/cdc/relay.js';
export { prepareSlot, slotLagBytes } from './relay/cdc/slot.js';
export { RELAY_MODES, relayModeInfo, loadRelayMode, type RelayModeInfo, type RelayModeBehaviour } from './relay/modes.js';
export { checkClaims, readEvidence, type ClaimReport } from './relay/table/evidence.js';

// Consumer
export { IdempotentConsumer, type Delivery, type IdempotentConsumerOptions } from './consumer/consumer.js';

// Checks and observability
export { OrderingChecker, type OrderingViolation } from './chaos/ordering.js';
export { Metrics, METRIC_NAMES } from './metrics.js';
