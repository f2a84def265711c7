/**
 * The writer and the consumer of a crash-injection run, as processes a
 * supervisor can kill: `node dist/src/chaos/child.js writer|consumer <json>`.
 * Each appends its history synchronously, before the step it describes can
 * be interrupted, so a SIGKILL leaves at worst an "unknown" write.
 */
import { appendFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { resolveConfig } from '../../src/config.js';
import { IdempotentConsumer } from '../../src/consumer/consumer.js';
import { createSql } from '../../src/db.js';
import { describeError } from '../../src/errors.js';
import { topicFor } from '../../src/events.js';
import { createKafkaClient } from '../../src/kafka-client.js';
import { createLogger } from '../../src/log.js';
import { writeOrderEvents, placeOrdersDualWrite, type AmendOrderInput, type PlaceOrderInput, type WrittenEvent } from '../../src/orders/write-path.js';
import { signalReady } from '../../src/readiness.js';
import { kafkajsConsumers } from '../../src/kafka/consumers.js';
import { KafkajsPublisher } from '../../src/kafka/kafkajs.js';
import { TopicAdmin } from '../../src/kafka/topics.js';
import { WireEncoder } from '../../src/relay/wire.js';
import { armFromEnv, seededRandom } from '../../src/chaos/failpoints.js';
import type { DeliveryRecord, WriteRecord } from './history.js';

export interface WriterTask {
  databaseUrl: string;
  kafkaBrokers: string[];
  schema: string;
  topicPrefix: string;
  partitions: number;
  /** table / message: the outbox; dual-write: commit, then publish straight to Kafka. */
  store: 'table' | 'message' | 'dual-write';
  historyFile: string;
  /** Transactions per second. */
  transactionsPerSecond: number;
  eventsPerTransaction: number;
  /** Share of events that amend one of the hot orders instead of placing a new one. */
  amendShare: number;
  hotKeys: number;
  seed: number;
}

export interface ConsumerTask {
  databaseUrl: string;
  kafkaBrokers: string[];
  schema: string;
  topic: string;
  groupId: string;
  historyFile: string;
}

// The row's environment carries the log settings, read like every other setting.
const settings = resolveConfig();
const log = createLogger(settings.logLevel, 'chaos', settings.logFormat);

function append(file: string, lines: readonly object[]): void {
  if (lines.length > 0) appendFileSync(file, `${lines.map((l) => JSON.stringify(l)).join('\n')}\n`);
}

async function runWriter(task: WriterTask): Promise<void> {
  armFromEnv();
  const sql = createSql(task.databaseUrl, task.schema, { max: 2, applicationName: 'chaos-writer', connectTimeoutSeconds: 5 });
  const kafka = createKafkaClient({ brokers: task.kafkaBrokers, log, clientId: 'chaos-writer' });
  const publisher = task.store === 'dual-write' ? new KafkajsPublisher({ kafka, topics: new TopicAdmin(kafka, task.partitions) }) : undefined;
  const wire = new WireEncoder({ route: (type) => topicFor(task.topicPrefix, type), headers: 'minimal', forward: [] });
  // A restarted writer continues with fresh transaction ids and fresh hot keys.
  const random = seededRandom(task.seed ^ process.pid);
  const hot: string[] = [];
  let stopping = false;
  process.once('SIGTERM', () => (stopping = true));
  const interval = 1_000 / task.transactionsPerSecond;
  // Paced from a timetable, not by sleeping an interval after each commit:
  // sleeping after the work adds the commit's time and every timer's lateness
  // to each period (the soak's writer offered 1,000 events/s that way and
  // committed 764-931), while a timetable makes them up with the next
  // transactions. A write refused while a server is down is recorded as
  // failed and not retried (it is neither committed nor lost); the slots that
  // fell due meanwhile are caught up once the server is back.
  const timetableStart = Date.now();
  let next = 0;
  const lane = async (): Promise<void> => {
    while (!stopping) {
      const n = next++;
      const due = timetableStart + n * interval;
      if (due > Date.now()) await sleep(due - Date.now());
      if (stopping) break;
      await writeTransaction(`${process.pid}-${n}`);
    }
  };
  const writeTransaction = async (txn: string): Promise<void> => {
    const place: PlaceOrderInput[] = [];
    const amend: AmendOrderInput[] = [];
    for (let i = 0; i < task.eventsPerTransaction; i++) {
      if (hot.length >= task.hotKeys && random() < task.amendShare) amend.push({ orderId: hot[Math.floor(random() * hot.length)]!, deltaCents: 1 });
      else place.push({ customerId: `chaos-${txn}-${i}`, amountCents: 100 + i, currency: 'EUR' });
    }
    // Event ids are chosen by the write path; the pending record is written by
    // a hook right before COMMIT is sent, so a kill can never lose the ids.
    let written: WrittenEvent[] | undefined;
    try {
      written =
        task.store === 'dual-write'
          ? await placeOrdersDualWrite(sql, publisher!, wire, place, (events) => append(task.historyFile, [pendingRecord(txn, events)]))
          : await writeOrderEvents(sql, { place, amend }, task.store, (events) => append(task.historyFile, [pendingRecord(txn, events)]));
      append(task.historyFile, [{ type: 'committed', txn, at: Date.now() } satisfies WriteRecord]);
    } catch (error) {
      append(task.historyFile, [{ type: 'failed', txn, at: Date.now(), error: describeError(error) } satisfies WriteRecord]);
      await sleep(100);
    }
    for (const event of written ?? []) if (event.aggregateVersion === 1 && hot.length < task.hotKeys) hot.push(event.orderId);
  };
  // Rationale: two in flight, one per connection of the pool: a commit that
  // stalls (a checkpoint, a relay restart taking the cores) does not hold up
  // the next slot, and a backlog is made up twice as fast. Amendments lock
  // their orders in order_id order, so two lanes cannot deadlock on the hot
  // orders.
  await Promise.all([lane(), lane()]);
  await publisher?.close();
  await sql.end({ timeout: 5 });
}

function pendingRecord(txn: string, events: readonly WrittenEvent[]): WriteRecord {
  return { type: 'pending', txn, at: Date.now(), events: events.map((e) => ({ eventId: e.eventId, aggregateId: e.orderId, version: e.aggregateVersion })) };
}

// Rationale: the matrix kills consumers again and again; with kafkajs' 30 s
// session a killed member holds its partitions for 30 s each time, and the
// rows measure the pipeline, not that timeout. 6 s is Kafka's own minimum
// (group.min.session.timeout.ms).
const CHAOS_SESSION_TIMEOUT_MS = 6_000;

async function runConsumer(task: ConsumerTask): Promise<void> {
  armFromEnv();
  const sql = createSql(task.databaseUrl, task.schema, { max: 2, applicationName: 'chaos-consumer', connectTimeoutSeconds: 5 });
  const kafka = createKafkaClient({ brokers: task.kafkaBrokers, log, clientId: 'chaos-consumer' });
  const consumer = new IdempotentConsumer({
    source: kafkajsConsumers(kafka, { sessionTimeoutMs: CHAOS_SESSION_TIMEOUT_MS }),
    sql,
    groupId: task.groupId,
    topics: [task.topic],
    log,
    onReceive: (deliveries) =>
      append(
        task.historyFile,
        deliveries.map(
          (d): DeliveryRecord => ({ eventId: d.eventId, aggregateId: d.aggregateId, version: d.aggregateVersion, partition: d.partition, offset: d.offset, at: d.receivedAt }),
        ),
      ),
  });
  // A consumer that kafkajs gave up on is useless here: exit and be restarted.
  consumer.onCrash(() => process.exit(1));
  await consumer.start();
  signalReady('consumer');
  await new Promise<void>((resolve) => process.once('SIGTERM', () => resolve()));
  await consumer.stop();
  await sql.end({ timeout: 5 });
}

const [role, json] = process.argv.slice(2);
const task = JSON.parse(json ?? '{}') as WriterTask & ConsumerTask;
const run = role === 'writer' ? runWriter(task) : role === 'consumer' ? runConsumer(task) : Promise.reject(new Error(`unknown role ${role}`));
run.then(
  () => process.exit(0),
  (error: unknown) => {
    log.error({ err: describeError(error) }, `chaos ${role} failed`);
    process.exit(1);
  },
);
