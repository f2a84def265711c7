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

/**
 * The clock every process of a run reads: the host's monotonic clock (one
 * clock for all its processes) plus one anchor, the epoch time of its zero.
 * The first process takes the anchor from the wall clock and hands it to
 * the processes it starts through the environment. Each process's own
 * `performance.timeOrigin` would not do: it is that process's wall-clock
 * reading at its start, so two processes started either side of a
 * wall-clock step (NTP, a virtual machine resumed after a pause) disagree by
 * the step, and a consumer started after a 35 s step once made every
 * latency of a benchmark read 35 s.
 */
export const CLOCK_ANCHOR_ENV = 'OUTBOX_BENCH_CLOCK_ANCHOR_MS';

const monotonicMs = () => Number(process.hrtime.bigint()) / 1e6;

function inheritedAnchor(): number {
  const given = Number(process.env[CLOCK_ANCHOR_ENV]);
  if (Number.isFinite(given) && given > 0) return given;
  const anchor = Date.now() - monotonicMs();
  process.env[CLOCK_ANCHOR_ENV] = String(anchor);
  return anchor;
}

let clockAnchorMs = inheritedAnchor();

/** Epoch milliseconds with sub-millisecond precision, comparable across the processes of one run. */
export function nowMs(): number {
  return clockAnchorMs + monotonicMs();
}

/** Resolves at epoch ms `at` on nowMs's clock (at once if that has passed). */
export function sleepUntil(at: number): Promise<void> {
  return new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, at - nowMs())));
}

/**
 * Re-takes the anchor from the wall clock, for the processes started from
 * now on (the benchmark harness, at the start of each run, while none of
 * its processes runs): times compared with the servers' own wall-clock
 * stamps (commit times, Kafka's append times) stay aligned across hours of
 * runs. Returns how far the wall clock had moved from the old anchor, ms.
 */
export function reanchorClock(): number {
  const previous = clockAnchorMs;
  clockAnchorMs = Date.now() - monotonicMs();
  process.env[CLOCK_ANCHOR_ENV] = String(clockAnchorMs);
  return clockAnchorMs - previous;
}
