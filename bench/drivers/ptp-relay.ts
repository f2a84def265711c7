/**
 * pg-transactional-outbox as a relay, in its polling and its logical
 * replication mode, on an equivalent outbox table of its own (created with the
 * library's DatabaseSetup), publishing to the same topics, keys and headers
 * through the same Kafka client and producer guarantees as our relays. What
 * it changes from the library's defaults is listed in PTP_POLLING_SETTINGS
 * and above runRelay's listener calls. One substitution: the polling
 * function is 0.6.4's (sql/peers/), the release that fixed its lock
 * collision, while the JavaScript is 0.5.7's, the newest the registry here
 * serves; the two are compatible (same arguments, same rows).
 *
 *   node dist/bench/drivers/ptp-relay.js <json PtpRelayTask>     (the relay process)
 */

import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  createReplicationSegmentMutexConcurrencyController,
  DatabaseSetup,
  getDefaultLogger,
  initializePollingMessageListener,
  initializeReplicationMessageListener,
  type TransactionalMessage,
} from 'pg-transactional-outbox';
import type { KafkaClientName } from '../../src/config.js';
import { SQL_DIR, type Sql } from '../../src/db.js';
import { topicFor, type WireEvent } from '../../src/events.js';
import { createKafkaClient } from '../../src/kafka-client.js';
import { createLogger } from '../../src/log.js';
import { createPublisher, TopicAdmin } from '../../src/kafka/index.js';
import { WireEncoder } from '../../src/relay/wire.js';
import { signalReady } from '../../src/readiness.js';
import { dropIdleSlots } from '../../src/relay/cdc/slot.js';
import { PTP_TABLE } from './ptp-write.js';

export const PTP_POLLING_FUNCTION = 'ptp_next_outbox_messages';

/** The version of the polling function the polling mode runs (the library's JavaScript is PTP_VERSION's). */
export const PTP_POLLING_FUNCTION_VERSION = '0.6.4';
const POLLING_FUNCTION_SQL = path.join(SQL_DIR, 'peers', `ptp-${PTP_POLLING_FUNCTION_VERSION}-next-messages.sql`);

export type PtpMode = 'polling' | 'replication';

export interface PtpRelayTask {
  mode: PtpMode;
  databaseUrl: string;
  kafkaBrokers: string[];
  schema: string;
  topicPrefix: string;
  partitions: number;
  slot: string;
  publication: string;
  /** The Kafka client our relays publish with in this run. */
  kafkaClient: KafkaClientName;
  /** Polling mode: its batch and interval (default PTP_POLLING_SETTINGS). */
  polling?: PtpPollingSettings;
}

/**
 * The library's own DDL (table, polling function and indexes, or publication
 * and slot), minus its role management: the benchmark runs as a superuser.
 */
export async function setupPtp(sql: Sql, schema: string, mode: PtpMode, slot: string, publication: string): Promise<void> {
  const base = { outboxOrInbox: 'outbox' as const, database: 'outbox_bench', schema, table: PTP_TABLE, listenerRole: 'postgres' };
  await sql.unsafe(DatabaseSetup.dropAndCreateTable(base));
  if (mode === 'polling') {
    const polling = { ...base, nextMessagesName: PTP_POLLING_FUNCTION };
    // 0.6.4's function in place of the one 0.5.7 would create (see the file's header).
    await sql.unsafe(readFileSync(POLLING_FUNCTION_SQL, 'utf8').replaceAll('__SCHEMA__', schema));
    await sql.unsafe(DatabaseSetup.setupPollingIndexes(polling));
  } else {
    await dropIdleSlots(sql, { name: slot });
    await sql.unsafe(`DROP PUBLICATION IF EXISTS ${publication}`);
    await sql.unsafe(`CREATE PUBLICATION ${publication} FOR TABLE ${schema}.${PTP_TABLE} WITH (publish = 'insert')`);
    await sql`SELECT pg_create_logical_replication_slot(${slot}, 'pgoutput')`;
  }
}

/**
 * What the relay changes from the library's defaults, exactly (the report
 * prints it). Polling: 50 messages a poll instead of 5 and a 100 ms interval
 * instead of 500. Replication: the segment-mutex controller instead of the
 * global mutex; the segment is the aggregate id, so events of one aggregate
 * are still handled one at a time and in order, which is our relays' rule.
 * Both: the handler's sends are coalesced into Kafka requests (below).
 * Polling also gets a handler pool with a connection for every message of
 * a batch and the processed-row cleanup its README asks for (below).
 * Everything else, retries and poisonous-message protection included, is
 * the library's default.
 */
export const PTP_POLLING_SETTINGS: PtpPollingSettings = { nextMessagesBatchSize: 50, nextMessagesPollingIntervalInMs: 100 };

/**
 * The README's advice for polling: delete processed messages, "seconds but
 * also some minutes" after they were processed, or "the polling will slow
 * down over time" (the library's defaults keep them 7 days). A minute keeps
 * every row of a measured window, for the run's own checks; a sweep every
 * 10 s keeps the table near a minute of rows at any rate.
 */
export const PTP_POLLING_CLEANUP = { messageCleanupIntervalInMs: 10_000, messageCleanupProcessedInSec: 60 } as const;

/** The polling listener's two settings a run may change (the library's defaults: 5 and 500 ms). */
export interface PtpPollingSettings {
  nextMessagesBatchSize: number;
  nextMessagesPollingIntervalInMs: number;
}

/**
 * Sends the messages of concurrent handler calls together: the library calls
 * its handler once per message, with many in flight (a polled batch, or every
 * segment the controller lets through). A call joins the next request and
 * resolves once Kafka acknowledged it. One request is in flight at a time;
 * whatever arrives meanwhile goes out in the one after, so requests grow
 * with the load instead of costing a round trip per message.
 */
export class CoalescingSender<T> {
  #waiting: { item: T; resolve: () => void; reject: (error: unknown) => void }[] = [];
  #sending = false;
  readonly #send: (items: T[]) => Promise<void>;

  constructor(send: (items: T[]) => Promise<void>) {
    this.#send = send;
  }

  send(item: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#waiting.push({ item, resolve, reject });
      if (!this.#sending) {
        this.#sending = true;
        // Calls made in the same turn of the event loop join this request.
        setImmediate(() => void this.#drain());
      }
    });
  }

  async #drain(): Promise<void> {
    while (this.#waiting.length > 0) {
      const batch = this.#waiting;
      this.#waiting = [];
      try {
        await this.#send(batch.map((w) => w.item));
        for (const w of batch) w.resolve();
      } catch (error) {
        for (const w of batch) w.reject(error);
      }
    }
    this.#sending = false;
  }
}

async function runRelay(task: PtpRelayTask): Promise<void> {
  const log = createLogger('warn', 'ptp-relay');
  const url = new URL(task.databaseUrl);
  // The Kafka client our relays use, with the same producer guarantees, so
  // that the client is not what the comparison measures.
  const publisher = await createPublisher({ client: task.kafkaClient, brokers: task.kafkaBrokers, clientId: `ptp-${task.mode}`, log, topics: new TopicAdmin(createKafkaClient({ brokers: task.kafkaBrokers, log, clientId: `ptp-${task.mode}-admin` }), task.partitions) });
  const wire = new WireEncoder({ route: (type) => topicFor(task.topicPrefix, type), headers: 'minimal', forward: [] });
  const sender = new CoalescingSender<WireEvent>((events) => publisher.publish(events));
  const handler = {
    handle: (message: TransactionalMessage) =>
      sender.send(
        wire.fromEvent({
          eventId: message.id,
          aggregateType: message.aggregateType,
          aggregateId: message.aggregateId,
          aggregateVersion: 1,
          eventType: message.messageType,
          payload: JSON.stringify(message.payload),
          headers: (message.metadata ?? {}) as Record<string, string>,
        }),
      ),
  };
  const dbListenerConfig = {
    host: url.hostname,
    port: Number(url.port || 5432),
    user: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
    database: url.pathname.slice(1),
  };
  const polling = task.polling ?? PTP_POLLING_SETTINGS;
  // Every message of a batch holds a handler connection for its whole
  // transaction; pg's pool defaults to 10, so a batch of 50 ran 10 at a time
  // and the rest waited out their lock. A connection per message of a batch
  // (the library's pool is node-postgres's: `max` is its size).
  const dbHandlerConfig = { ...dbListenerConfig, max: polling.nextMessagesBatchSize };
  // Its types require both protections to be spelled out: true is the
  // library's own default for each (0.5.7 never reads the first).
  const base = { dbSchema: task.schema, dbTable: PTP_TABLE, enableMaxAttemptsProtection: true, enablePoisonousMessageProtection: true };
  // The library's own pino logger, at warn. It writes to stdout, which the
  // harness keeps in a file of its own (ptp-library.log): its warnings (a
  // message it skipped as MESSAGE_NOT_FOUND) are the evidence the report counts.
  const libraryLog = getDefaultLogger(`ptp-${task.mode}`);
  libraryLog.level = process.env.PTP_LOG_LEVEL ?? 'warn';
  const [shutdown] =
    task.mode === 'polling'
      ? initializePollingMessageListener(
          {
            outboxOrInbox: 'outbox',
            dbListenerConfig,
            dbHandlerConfig,
            settings: { ...base, ...polling, ...PTP_POLLING_CLEANUP, nextMessagesFunctionName: PTP_POLLING_FUNCTION, nextMessagesFunctionSchema: task.schema },
          },
          handler,
          libraryLog,
        )
      : initializeReplicationMessageListener(
          { outboxOrInbox: 'outbox', dbListenerConfig, settings: { ...base, dbPublication: task.publication, dbReplicationSlot: task.slot } },
          handler,
          libraryLog,
          { concurrencyStrategy: createReplicationSegmentMutexConcurrencyController() },
        );
  signalReady('relay');
  await new Promise<void>((resolve) => process.once('SIGTERM', () => resolve()));
  await shutdown();
  await publisher.close();
}

/** The library's warnings that it skipped a message it could not find (0.5.7 acknowledges and drops it). */
export const MESSAGE_NOT_FOUND = 'MESSAGE_NOT_FOUND';

if (import.meta.url === `file://${process.argv[1]}`) {
  runRelay(JSON.parse(process.argv[2] ?? '{}') as PtpRelayTask).then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`ptp relay failed: ${String((error as Error).stack ?? error)}\n`);
      process.exit(1);
    },
  );
}

