/**
 * The benchmark's consumer, in a process of its own so that its CPU time is
 * its own: the real idempotent consumer (inbox + side effect), plus a record
 * of when each load-generator order first arrived. Talks to the harness over
 * the fork() IPC channel.
 */
import { IdempotentConsumer, type Delivery } from '../../src/consumer/consumer.js';
import { createSql } from '../../src/db.js';
import { resolveConfig, type ConsumerKafkaClientName } from '../../src/config.js';
import { consumersFor, type FetchSettings } from '../../src/kafka/consumers.js';
import { createHistogram, encodeHistogram, recordMs, summarizeMs } from '../../src/latency.js';
import { createLogger } from '../../src/log.js';
import { nowMs } from '../../src/events.js';
import { parseLoadEventId } from './load-ids.js';
import { intendedTime, type Prewarm } from './load-worker.js';

export interface ConsumerTask {
  databaseUrl: string;
  kafkaBrokers: string[];
  schema: string;
  topic: string;
  groupId: string;
  measureFrom: number;
  measureTo: number;
  /** The load's run tag and timetable: which ids are ours, and when each was due. */
  runTag: string;
  startAt: number;
  perWorkerRate: number;
  prewarm?: Prewarm | undefined;
  /** Orders each load worker will attempt: the load plan's figure, sizing the receipt arrays. */
  ordersPerWorker: readonly number[];
  /**
   * Events that are not the load generator's (HTTP load) are counted by
   * event id instead, and their latency measured from x-intended-at.
   */
  countById?: boolean;
  /** See IdempotentConsumerOptions.commitIntervalMs. */
  commitIntervalMs?: number;
  /** How the broker answers its fetches (default: config.ts's). */
  fetch?: FetchSettings | undefined;
  /** The consumer's Kafka client (default: the configured one, as the relay's child resolves its own). */
  kafkaClient?: ConsumerKafkaClientName;
  /** How often progress is reported, ms (default 1,000; drains want finer). */
  progressIntervalMs?: number;
  /**
   * Record latency histograms (default true). A drain measures what the
   * consumer costs, and latency from a backlog's intended times means
   * nothing; four histogram records per event would be the harness's cost
   * counted as the consumer's.
   */
  latency?: boolean;
}

export interface ConsumerProgress {
  type: 'progress';
  /** Epoch ms of the report. */
  at: number;
  received: number;
  distinct: number;
  duplicates: number;
  /** Null while no event of the measured window has arrived. */
  p99Ms: number | null;
}

export interface ConsumerFinal {
  type: 'final';
  received: number;
  applied: number;
  duplicates: number;
  rejected: number;
  /** Deliveries whose event id is not an order of this run's load plan (0, unless counting by id). */
  foreign: number;
  /** Distinct event ids delivered (countById only). */
  distinctIds: number;
  /** Epoch ms at which this consumer applied each order (inbox committed), NaN if it did not; [worker][seq]. */
  appliedAt: Float64Array[];
  /** Intended send -> applied, measured window (encoded HDR, µs). */
  endToEnd: string;
  /** Intended send -> received by the consumer, measured window (encoded HDR, µs). */
  receipt: string;
  /** The consumer's stages, measured window: Kafka record timestamp -> receipt, receipt -> applied (encoded HDR, µs). */
  kafkaToConsumer: string;
  receiptToApplied: string;
}

export type ToConsumer =
  | { type: 'start'; task: ConsumerTask }
  /** Moves the measured window (a phase whose times were not known at start). */
  | { type: 'window'; measureFrom: number; measureTo: number }
  | { type: 'finish' };
export type FromConsumer = { type: 'ready' } | ConsumerProgress | ConsumerFinal | { type: 'error'; message: string };

function send(message: FromConsumer): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) resolve();
    // Resolves once the message is handed to the IPC channel, so a disconnect
    // right after it cannot drop it.
    else process.send(message, undefined, {}, () => resolve());
  });
}

/** What the consumer counts and times of the deliveries it sees. */
class DeliveryTally {
  readonly appliedAt: Float64Array[];
  readonly endToEnd = createHistogram();
  readonly receipt = createHistogram();
  readonly kafkaToConsumer = createHistogram();
  readonly receiptToApplied = createHistogram();
  readonly ids = new Set<string>();
  distinct = 0;
  foreign = 0;
  received = 0;
  duplicates = 0;
  measureFrom: number;
  measureTo: number;
  readonly #task: ConsumerTask;
  readonly #latency: boolean;

  constructor(task: ConsumerTask) {
    this.#task = task;
    this.#latency = task.latency ?? true;
    this.appliedAt = task.ordersPerWorker.map((n) => new Float64Array(n).fill(Number.NaN));
    ({ measureFrom: this.measureFrom, measureTo: this.measureTo } = task);
  }

  onDelivery(delivery: Delivery): void {
    this.received += 1;
    if (!delivery.applied) this.duplicates += 1;
    // Only the delivery that applied an event counts: with several
    // consumers in the group, each event is applied by exactly one of them.
    if (!delivery.applied) return;
    if (this.#task.countById) {
      if (this.ids.has(delivery.eventId)) return;
      this.ids.add(delivery.eventId);
      this.#firstSeen(delivery, delivery.intendedAt);
      return;
    }
    const order = parseLoadEventId(this.#task.runTag, delivery.eventId);
    const lane = order ? this.appliedAt[order.worker] : undefined;
    if (!order || !lane || order.seq >= lane.length) {
      // Not an order of this run's plan: the harness cannot account for it,
      // and the run fails rather than quietly counting it somewhere.
      this.foreign += 1;
      return;
    }
    lane[order.seq] = delivery.appliedAt;
    this.#firstSeen(delivery, intendedTime(this.#task, order.seq));
  }

  #firstSeen(delivery: Delivery, intendedAt: number | undefined): void {
    this.distinct += 1;
    if (!this.#latency || intendedAt === undefined || intendedAt < this.measureFrom || intendedAt >= this.measureTo) return;
    recordMs(this.endToEnd, delivery.appliedAt - intendedAt);
    recordMs(this.receipt, delivery.receivedAt - intendedAt);
    recordMs(this.kafkaToConsumer, Math.max(0, delivery.receivedAt - delivery.recordAt));
    recordMs(this.receiptToApplied, delivery.appliedAt - delivery.receivedAt);
  }
}

async function run(task: ConsumerTask): Promise<void> {
  const log = createLogger('warn', 'bench-consumer');
  const sql = createSql(task.databaseUrl, task.schema, { max: 2, applicationName: 'outbox-bench-consumer' });
  const tally = new DeliveryTally(task);
  const consumer = new IdempotentConsumer({
    source: await consumersFor(task.kafkaClient ?? resolveConfig().consumerKafkaClient, { brokers: task.kafkaBrokers, clientId: 'outbox-bench-consumer', log, fetch: task.fetch }),
    sql,
    groupId: task.groupId,
    topics: [task.topic],
    commitIntervalMs: task.commitIntervalMs,
    log,
    onDelivery: (delivery: Delivery) => tally.onDelivery(delivery),
  });
  await consumer.start();
  await send({ type: 'ready' });
  const progress = setInterval(() => {
    const p99Ms = tally.endToEnd.totalCount > 0 ? summarizeMs(tally.endToEnd).p99 : null;
    void send({ type: 'progress', at: nowMs(), received: tally.received, distinct: tally.distinct, duplicates: tally.duplicates, p99Ms });
  }, task.progressIntervalMs ?? 1_000);

  await new Promise<void>((resolve) => {
    process.on('message', (message: ToConsumer) => {
      if (message.type === 'window') ({ measureFrom: tally.measureFrom, measureTo: tally.measureTo } = message);
      if (message.type === 'finish') resolve();
    });
  });
  clearInterval(progress);
  await consumer.stop();
  await sql.end({ timeout: 5 });
  await send({
    type: 'final',
    received: tally.received,
    applied: consumer.stats.applied,
    duplicates: consumer.stats.duplicates,
    rejected: consumer.stats.rejected,
    foreign: tally.foreign,
    distinctIds: tally.ids.size,
    appliedAt: tally.appliedAt,
    endToEnd: encodeHistogram(tally.endToEnd),
    receipt: encodeHistogram(tally.receipt),
    kafkaToConsumer: encodeHistogram(tally.kafkaToConsumer),
    receiptToApplied: encodeHistogram(tally.receiptToApplied),
  });
}

process.once('message', (message: ToConsumer) => {
  if (message.type !== 'start') return;
  run(message.task).then(
    () => process.disconnect?.(),
    async (error: unknown) => {
      await send({ type: 'error', message: String((error as Error).stack ?? error) });
      process.exitCode = 1;
      process.disconnect?.();
    },
  );
});
// Stopped by the harness while at work: exit rather than die by the signal,
// so that `--cpu-prof` still writes its profile.
process.once('SIGTERM', () => process.exit(143));
// The harness died: do not linger as an orphan.
process.on('disconnect', () => setTimeout(() => process.exit(process.exitCode ?? 0), 2_000).unref());
