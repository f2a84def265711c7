/**
 * The shapes an event takes on its way through the pipeline, and the Kafka
 * header names that carry its identity (Debezium's outbox router puts the
 * event id in an `id` header too, so its consumers read ours unchanged).
 */

/** An event as the write path hands it to the outbox. */
export interface OutboxEventInput {
  readonly eventId: string;
  readonly aggregateType: string;
  readonly aggregateId: string;
  readonly aggregateVersion: number;
  readonly eventType: string;
  /** Serialised JSON; stored as jsonb. */
  readonly payload: string;
  /** Extra Kafka headers (trace context, load-generator timestamps). */
  readonly headers?: Readonly<Record<string, string>>;
}

/** A row of the outbox table, as the table relays claim it. `payload` stays JSON text. */
export interface OutboxRow extends Omit<OutboxEventInput, 'headers'> {
  readonly id: number;
  readonly createdAt: Date;
  readonly headers: Readonly<Record<string, unknown>>;
}

/**
 * An event as it goes to Kafka: what every relay hands a producer. Text or
 * bytes (the CDC relay forwards views into the WAL), never parsed again.
 */
export interface WireEvent {
  readonly topic: string;
  /** The aggregate id: one aggregate, one partition, one order. */
  readonly key: Buffer | string;
  /** The payload exactly as stored. */
  readonly value: Buffer | string;
  readonly headers: Readonly<Record<string, Buffer | string>>;
}

export const HEADERS = Object.freeze({
  eventId: 'id',
  eventType: 'eventType',
  aggregateType: 'aggregateType',
  aggregateVersion: 'aggregateVersion',
  /** Epoch ms (fractional) at which the load generator meant to send the order. */
  intendedAt: 'x-intended-at',
});

/** The default topic routing: Debezium's `outbox.event.<aggregateType>`. */
export function topicFor(prefix: string, aggregateType: string): string {
  return `${prefix}${aggregateType}`;
}

/** Epoch milliseconds with sub-millisecond precision, comparable across processes on one host. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}
