/**
 * The benchmark's consumer, in a process of its own so that its CPU time is
 * its own: the real idempotent consumer (inbox + side effect), plus a record
 * of when each load-generator order first arrived. Talks to the harness over
 * the fork() IPC channel.
 */
import { IdempotentConsumer, type Delivery } from '../../src/consumer/consumer.js';
import { createSql } from '../../src/db.js';
import { createKafkaClient } from '../../src/kafka-client.js';
import { createHistogram, encodeHistogram, recordMs, summarizeMs } from '../../src/latency.js';
import { createLogger } from '../../src/log.js';
import { HEADERS } from '../../src/events.js';
import { LOAD_SEQ_HEADER } from './load-worker.js';

/** The header a peer relay may carry the outbox `headers` column in, as JSON. */
export const PACKED_HEADERS = 'outboxHeaders';

export interface ConsumerTask {
  databaseUrl: string;
  kafkaBrokers: string[];
  schema: string;
  topic: string;
  groupId: string;
  measureFrom: number;
  measureTo: number;
  /** Orders each load worker will attempt: the load plan's figure, sizing the receipt arrays. */
  ordersPerWorker: readonly number[];
  /**
   * Events that carry no load-generator sequence (HTTP load) are counted by
   * event id instead, and their latency measured from x-intended-at.
   */
  countById?: boolean;
  /** See IdempotentConsumerOptions.commitIntervalMs. */
  commitIntervalMs?: number;
}

export interface ConsumerProgress {
  type: 'progress';
  received: number;
  distinct: number;
  duplicates: number;
  p99Ms: number;
}

export interface ConsumerFinal {
  type: 'final';
  received: number;
  applied: number;
  duplicates: number;
  rejected: number;
  /** Deliveries that carried no load-generator sequence, or one outside the plan (0, unless counting by id). */
  foreign: number;
  /** Distinct event ids delivered (countById only). */
  distinctIds: number;
  /** Epoch ms at which each order was first applied (inbox committed), NaN if never; [worker][seq]. */
  appliedAt: Float64Array[];
  /** Intended send -> applied, measured window (encoded HDR, µs). */
  endToEnd: string;
  /** Intended send -> received by the consumer, measured window (encoded HDR, µs). */
  receipt: string;
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

async function run(task: ConsumerTask): Promise<void> {
  const log = createLogger('warn', 'bench-consumer');
  const sql = createSql(task.databaseUrl, task.schema, { max: 2, applicationName: 'outbox-bench-consumer' });
  const appliedAt = task.ordersPerWorker.map((n) => new Float64Array(n).fill(Number.NaN));
  const endToEnd = createHistogram();
  const receipt = createHistogram();
  let distinct = 0;
  let foreign = 0;
  const ids = new Set<string>();
  let received = 0;
  let duplicates = 0;
  let { measureFrom, measureTo } = task;
  const inWindow = (intended: number | undefined): intended is number => intended !== undefined && intended >= measureFrom && intended < measureTo;
  const firstSeen = (delivery: Delivery) => {
    distinct += 1;
    if (inWindow(delivery.intendedAt)) {
      recordMs(endToEnd, delivery.appliedAt - delivery.intendedAt);
      recordMs(receipt, delivery.receivedAt - delivery.intendedAt);
    }
  };

  const consumer = new IdempotentConsumer({
    kafka: createKafkaClient({ brokers: task.kafkaBrokers, log, clientId: 'outbox-bench-consumer' }),
    sql,
    groupId: task.groupId,
    topics: [task.topic],
    commitIntervalMs: task.commitIntervalMs,
    log,
    onDelivery: (delivery: Delivery) => {
      received += 1;
      if (!delivery.applied) duplicates += 1;
      // Debezium's outbox router cannot spread a jsonb column over several
      // headers; the peers benchmark places the outbox headers column whole
      // in one header instead.
      const packed = delivery.headers[PACKED_HEADERS];
      if (packed !== undefined && delivery.headers[LOAD_SEQ_HEADER] === undefined) {
        const unpacked = JSON.parse(packed) as Record<string, string>;
        delivery = { ...delivery, headers: { ...delivery.headers, ...unpacked }, intendedAt: unpacked[HEADERS.intendedAt] === undefined ? undefined : Number(unpacked[HEADERS.intendedAt]) };
      }
      if (task.countById) {
        if (ids.has(delivery.eventId)) return;
        ids.add(delivery.eventId);
        firstSeen(delivery);
        return;
      }
      const seqHeader = delivery.headers[LOAD_SEQ_HEADER];
      const match = seqHeader ? /^(\d+):(\d+)$/.exec(seqHeader) : null;
      const lane = match ? appliedAt[Number(match[1])] : undefined;
      const seq = match ? Number(match[2]) : -1;
      if (!lane || seq < 0 || seq >= lane.length) {
        // Not an event of this run's plan: the harness cannot account for it,
        // and the run fails rather than quietly counting it somewhere.
        foreign += 1;
        return;
      }
      if (!Number.isNaN(lane[seq]!)) return;
      lane[seq] = delivery.appliedAt;
      firstSeen(delivery);
    },
  });
  await consumer.start();
  await send({ type: 'ready' });
  const progress = setInterval(() => {
    void send({ type: 'progress', received, distinct, duplicates, p99Ms: summarizeMs(endToEnd).p99 });
  }, 1_000);

  await new Promise<void>((resolve) => {
    process.on('message', (message: ToConsumer) => {
      if (message.type === 'window') ({ measureFrom, measureTo } = message);
      if (message.type === 'finish') resolve();
    });
  });
  clearInterval(progress);
  await consumer.stop();
  await sql.end({ timeout: 5 });
  await send({
    type: 'final',
    received,
    applied: consumer.stats.applied,
    duplicates: consumer.stats.duplicates,
    rejected: consumer.stats.rejected,
    foreign,
    distinctIds: ids.size,
    appliedAt,
    endToEnd: encodeHistogram(endToEnd),
    receipt: encodeHistogram(receipt),
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
// The harness died: do not linger as an orphan.
process.on('disconnect', () => setTimeout(() => process.exit(process.exitCode ?? 0), 2_000).unref());
