/**
 * What every benchmark run (and every row of the crash matrix) sets up, and
 * takes down again whatever happens: a fresh schema of its own (no history
 * from an earlier run skews the poll), a topic of its own, a pool and a Kafka
 * client, and for our relays what the mode needs before the first event is
 * written (slots and publications, bucket rows), under names of the run's own.
 */
import { createHash } from 'node:crypto';
import type { Kafka } from 'kafkajs';
import { DEFAULTS, settingsEnv, withoutSettings, type Config } from '../../src/config.js';
import { createSql, dropSchema, migrate, type Sql } from '../../src/db.js';
import { describeError } from '../../src/errors.js';
import { topicFor } from '../../src/events.js';
import type { Infra } from '../../src/infra/index.js';
import { TopicAdmin } from '../../src/kafka/index.js';
import { createKafkaClient } from '../../src/kafka-client.js';
import type { Logger } from '../../src/log.js';
import { ORDER_AGGREGATE } from '../../src/orders/write-path.js';
import { loadRelayMode, type LagReading, type RelayModeBehaviour, type RelayModeInfo, type RelaySettings } from '../../src/relay/modes.js';
import { silentLogger } from '../../src/log.js';

/** The relay settings a run chooses (everything else a relay reads is the run's own: schema, topic, slots). */
export type RunRelay = Pick<Config, 'relayMode' | 'replicas' | 'batchSize' | 'pollIntervalMs' | 'publishers'> &
  Partial<Pick<Config, 'buckets' | 'leaseMs' | 'kafkaClient' | 'batchDelayMs'>>;

/** The settings of our relay in a run with these parameters. */
export function relayOf(p: RunRelay): RunRelay {
  return { relayMode: p.relayMode, replicas: p.replicas, batchSize: p.batchSize, pollIntervalMs: p.pollIntervalMs, publishers: p.publishers, kafkaClient: p.kafkaClient, ...(p.batchDelayMs === undefined ? {} : { batchDelayMs: p.batchDelayMs }) };
}

export interface RunSetupOptions {
  /** The servers (the crash matrix brings its own). */
  infra: Pick<Infra, 'databaseUrl' | 'kafkaBrokers'>;
  log: Logger;
  /** Names the schema, the topic prefix and the slots; `[a-z0-9_-]` and dots are kept, the rest replaced. */
  name: string;
  /** `bench` or `chaos`: the schema is `<kind>_<name>`, the topic prefix `<kind>.<name>.<run id>.`. */
  kind?: 'bench' | 'chaos';
  partitions: number;
  /** Topic settings (the benchmarks stamp records with the broker's append time). */
  topicConfig?: Record<string, string>;
  /** Our relay, whose mode provisions the run; undefined for a relay that provisions itself. */
  relay?: RunRelay | undefined;
  /** Outbox partitions (default a day wide, two ahead: a run never crosses one). */
  partitionWidth?: string;
  partitionsAhead?: number;
}

export interface RunSetup {
  readonly schema: string;
  readonly runId: string;
  readonly topicPrefix: string;
  readonly topic: string;
  /** A pool on the run's schema. */
  readonly sql: Sql;
  readonly kafka: Kafka;
  /** Our relay's mode, with the run's settings; undefined for a relay that provisions itself. */
  readonly relay: { mode: RelayModeInfo & RelayModeBehaviour; settings: RelaySettings & RunRelay } | undefined;
  /** The environment of a process of the run (a relay, the service): servers, schema, topic, and the relay's settings. */
  env(extra?: Partial<Config>): NodeJS.ProcessEnv;
  /** Our relay's lag now. */
  lag(): Promise<LagReading>;
  close(): Promise<void>;
}

// Rationale: a slot or publication name is at most 63 bytes; 50 leave room
// for `_slot` and a shard suffix.
const NAME_BASE_MAX = 50;
// PostgreSQL's identifier limit (NAMEDATALEN - 1): a longer schema name is
// silently truncated by CREATE and refused by our own quoting when dropped.
const IDENTIFIER_MAX = 63;

/**
 * `name` if it fits in `max` characters, else its head and a hash of the
 * whole: two long names that share a head (a step and its confirmation) stay
 * apart, and the same name always maps to the same identifier.
 */
export function fitIdentifier(name: string, max: number): string {
  if (name.length <= max) return name;
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 8);
  return `${name.slice(0, max - hash.length - 1)}_${hash}`;
}

/** The schema (and, shortened, the slot and publication base) of a run named `name`. */
export function runIdentifiers(kind: string, name: string): { schema: string; base: string } {
  const full = `${kind}_${name.toLowerCase().replace(/[^a-z0-9]+/g, '_')}`;
  return { schema: fitIdentifier(full, IDENTIFIER_MAX), base: fitIdentifier(full, NAME_BASE_MAX) };
}

export async function openRun(options: RunSetupOptions): Promise<RunSetup> {
  const { infra, log } = options;
  const kind = options.kind ?? 'bench';
  const { schema, base } = runIdentifiers(kind, options.name);
  const runId = Date.now().toString(36);
  // Kafka topic names allow [a-zA-Z0-9._-] only.
  const topicPrefix = `${kind}.${options.name.replace(/[^a-zA-Z0-9._-]/g, '-')}.${runId}.`;
  const topic = topicFor(topicPrefix, ORDER_AGGREGATE);
  const relay = options.relay && {
    mode: await loadRelayMode(options.relay.relayMode),
    settings: {
      ...options.relay,
      buckets: options.relay.buckets ?? DEFAULTS.buckets,
      leaseMs: options.relay.leaseMs ?? DEFAULTS.leaseMs,
      schema,
      slotName: `${base}_slot`,
      publicationName: `${base}_pub`,
    },
  };
  const sql = createSql(infra.databaseUrl, schema, { max: 2, applicationName: `outbox-bench-${kind}` });
  const kafka = createKafkaClient({ brokers: infra.kafkaBrokers, log, clientId: `outbox-bench-${kind}` });
  const setup: RunSetup = {
    schema,
    runId,
    topicPrefix,
    topic,
    sql,
    kafka,
    relay,
    env(extra = {}) {
      // Only the run's settings: none of the shell's OUTBOX_BENCH_* variables, and no armed failpoint.
      const { CRASH_AT: _crashAt, ...inherited } = withoutSettings(process.env);
      return {
        ...inherited,
        ...settingsEnv({
          databaseUrl: infra.databaseUrl,
          kafkaBrokers: infra.kafkaBrokers,
          schema,
          topicPrefix,
          topicPartitions: options.partitions,
          ...(options.partitionWidth ? { partitionWidth: options.partitionWidth } : {}),
          ...(options.partitionsAhead ? { partitionsAhead: options.partitionsAhead } : {}),
          logLevel: 'warn',
          logFormat: 'json',
          ...(relay?.settings ?? {}),
          ...extra,
        }),
      };
    },
    async lag() {
      if (!relay) return { events: null, bytes: null };
      return relay.mode.lag(sql, relay.settings);
    },
    async close() {
      await deleteTopic(kafka, topic, log);
      // The figures are in the result; a schema per run left behind would fill
      // the disk over a saturation search (hundreds of MB each).
      await relay?.mode.release(sql, relay.settings).catch((error: unknown) => log.warn({ err: describeError(error) }, 'could not drop the run\'s slots'));
      await dropSchema(sql, schema).catch((error: unknown) => log.warn({ err: describeError(error), schema }, 'could not drop the run schema'));
      await sql.end({ timeout: 5 });
    },
  };
  try {
    // Anything an earlier, interrupted run of the same name left behind.
    await relay?.mode.release(sql, relay.settings);
    await dropSchema(sql, schema);
    await migrate(sql, { schema, partitionWidth: options.partitionWidth ?? '1 day', partitionsAhead: options.partitionsAhead ?? 2 });
    const topics = new TopicAdmin(kafka, options.partitions, options.topicConfig ?? {});
    await topics.ensure(topic).finally(() => topics.close());
    // Before the first write: a drain's backlog must be in the slots' WAL.
    await relay?.mode.provision(sql, relay.settings, silentLogger);
  } catch (error) {
    await setup.close().catch(() => {});
    throw error;
  }
  return setup;
}

export async function deleteTopic(kafka: Kafka, topic: string, log: Logger): Promise<void> {
  const admin = kafka.admin();
  try {
    await admin.connect();
    await admin.deleteTopics({ topics: [topic] });
  } catch (error) {
    log.debug({ err: describeError(error) }, 'could not delete the run topic');
  } finally {
    await admin.disconnect().catch(() => {});
  }
}
