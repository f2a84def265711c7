/**
 * The Kafka consumers the idempotent consumer can run on. It needs kafkajs'
 * batch API (a batch per partition, offsets resolved and committed by hand).
 * @platformatic/kafka's consumer is a stream of messages; an adapter here
 * cuts what the stream holds into per-partition batches of the same shape.
 */
import type { EachBatchPayload, Kafka } from 'kafkajs';
import { DEFAULTS, type ConsumerKafkaClientName } from '../config.js';
import { createKafkaClient } from '../kafka-client.js';
import type { Logger } from '../log.js';

export type { EachBatchPayload } from 'kafkajs';

export interface OffsetToCommit {
  topic: string;
  partition: number;
  offset: string;
}

export interface BatchConsumer {
  connect(): Promise<void>;
  subscribe(topics: readonly string[], fromBeginning: boolean): Promise<void>;
  /** Hands each fetched batch (one partition's) to `eachBatch`, `concurrency` partitions at a time. */
  run(options: { concurrency: number; eachBatch: (payload: EachBatchPayload) => Promise<void> }): Promise<void>;
  commitOffsets(offsets: OffsetToCommit[]): Promise<void>;
  disconnect(): Promise<void>;
  /** A crash the client will (`restart`) or will not recover from by itself. */
  onCrash(listener: (error: unknown, restart: boolean) => void): void;
}

/** Creates a consumer of a group. */
export type ConsumerSource = (groupId: string) => BatchConsumer;

// Rationale: fetch up to 4 MiB per partition per request so batches of a few
// thousand ~300-byte events arrive in one piece at high rates.
const MAX_BYTES_PER_PARTITION = 4 * 1024 * 1024;
/** How the broker answers a fetch: once it has `minBytes`, or after `maxWaitMs` (config.ts gives the defaults' reasons). */
export interface FetchSettings {
  maxWaitMs: number;
  minBytes: number;
}

const DEFAULT_FETCH: FetchSettings = { maxWaitMs: DEFAULTS.fetchMaxWaitMs, minBytes: DEFAULTS.fetchMinBytes };

/**
 * `sessionTimeoutMs`: how long a member that stopped heartbeating (killed)
 * keeps its partitions before the group rebalances without it; kafkajs'
 * default is 30 s. Heartbeats go out at a tenth of it, kafkajs' own ratio.
 */
export function kafkajsConsumers(kafka: Kafka, options: { sessionTimeoutMs?: number; fetch?: FetchSettings } = {}): ConsumerSource {
  const fetch = options.fetch ?? DEFAULT_FETCH;
  const session = options.sessionTimeoutMs === undefined ? {} : { sessionTimeout: options.sessionTimeoutMs, heartbeatInterval: Math.max(100, Math.round(options.sessionTimeoutMs / 10)) };
  return (groupId) => {
    const consumer = kafka.consumer({ groupId, maxBytesPerPartition: MAX_BYTES_PER_PARTITION, maxWaitTimeInMs: fetch.maxWaitMs, minBytes: fetch.minBytes, allowAutoTopicCreation: false, ...session });
    return {
      connect: () => consumer.connect(),
      async subscribe(topics, fromBeginning) {
        for (const topic of topics) await consumer.subscribe({ topic, fromBeginning });
      },
      run: ({ concurrency, eachBatch }) => consumer.run({ autoCommit: false, eachBatchAutoResolve: false, partitionsConsumedConcurrently: concurrency, eachBatch }),
      commitOffsets: (offsets) => consumer.commitOffsets(offsets),
      disconnect: () => consumer.disconnect(),
      onCrash(listener) {
        consumer.on(consumer.events.CRASH, (event) => listener(event.payload.error, event.payload.restart));
      },
    };
  };
}

/**
 * @platformatic/kafka's consumer as batches: whatever its stream holds when
 * it signals `readable` is grouped by partition and each group handed over
 * as a batch (in offset order).
 */
export async function platformaticConsumers(brokers: readonly string[], clientId: string, log: Logger, fetch: FetchSettings = DEFAULT_FETCH): Promise<ConsumerSource> {
  // Loaded when chosen: importing it costs every process about 0.6 s of CPU
  // at start, and most processes (a consumer on kafkajs, a writer, the CLI's
  // help) never use it.
  const { Consumer: PlatformaticConsumer } = await import('@platformatic/kafka');
  return (groupId) => {
    const consumer = new PlatformaticConsumer({ clientId, bootstrapBrokers: [...brokers], groupId, autocommit: false, maxBytesPerPartition: MAX_BYTES_PER_PARTITION, maxWaitTime: fetch.maxWaitMs, minBytes: fetch.minBytes });
    let topics: readonly string[] = [];
    let fromBeginning = true;
    let running = false;
    let stream: Awaited<ReturnType<typeof consumer.consume>> | undefined;
    const crashListeners: ((error: unknown, restart: boolean) => void)[] = [];
    return {
      connect: async () => {},
      async subscribe(subscribed, beginning) {
        topics = subscribed;
        fromBeginning = beginning;
      },
      async run({ concurrency, eachBatch }) {
        running = true;
        stream = await consumer.consume({ topics: [...topics], mode: 'committed', fallbackMode: fromBeginning ? 'earliest' : 'latest' });
        const current = stream;
        current.on('error', (error: unknown) => {
          log.warn({ err: String(error) }, 'Kafka consumer stream failed');
          for (const listener of crashListeners) listener(error, false);
        });
        const pump = async () => {
          const messages: PlatformaticMessage[] = [];
          for (let message = current.read() as PlatformaticMessage | null; message !== null; message = current.read() as PlatformaticMessage | null) messages.push(message);
          if (messages.length === 0) return;
          // Nothing more is read from the stream until these are applied; it
          // buffers at most its high-water mark meanwhile.
          try {
            const batches = [...groupByPartition(messages).values()];
            for (let i = 0; i < batches.length; i += concurrency) {
              await Promise.all(batches.slice(i, i + concurrency).map((batch) => eachBatch(batchPayload(batch, () => running))));
            }
          } catch (error) {
            for (const listener of crashListeners) listener(error, false);
          }
        };
        let pumping = Promise.resolve();
        current.on('readable', () => {
          pumping = pumping.then(pump);
        });
      },
      commitOffsets: (offsets) => consumer.commit({ offsets: offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: BigInt(o.offset), leaderEpoch: -1 })) }),
      async disconnect() {
        running = false;
        await stream?.close().catch(() => {});
        await consumer.close().catch(() => {});
      },
      onCrash(listener) {
        crashListeners.push(listener);
      },
    };
  };
}

type PlatformaticMessage = { topic: string; partition: number; key: Buffer; value: Buffer; headers: Map<Buffer, Buffer>; offset: bigint; timestamp: bigint };

function groupByPartition(messages: readonly PlatformaticMessage[]): Map<string, PlatformaticMessage[]> {
  const groups = new Map<string, PlatformaticMessage[]>();
  for (const message of messages) {
    const key = `${message.topic}:${message.partition}`;
    let group = groups.get(key);
    if (!group) groups.set(key, (group = []));
    group.push(message);
  }
  return groups;
}

/** A kafkajs-shaped batch of one partition's messages (what the idempotent consumer reads). */
function batchPayload(messages: readonly PlatformaticMessage[], isRunning: () => boolean): EachBatchPayload {
  const first = messages[0]!;
  return {
    batch: {
      topic: first.topic,
      partition: first.partition,
      messages: messages.map((m) => {
        const headers: Record<string, Buffer> = {};
        for (const [name, value] of m.headers) headers[name.toString()] = value;
        return { key: m.key, value: m.value, headers, offset: m.offset.toString(), timestamp: m.timestamp.toString(), attributes: 0, size: 0 };
      }),
    },
    heartbeat: async () => {},
    isRunning,
    isStale: () => false,
    resolveOffset: () => {},
  } as unknown as EachBatchPayload;
}

interface ConsumerSourceOptions {
  brokers: readonly string[];
  clientId: string;
  log: Logger;
  fetch?: FetchSettings | undefined;
}

/** Every consumer Kafka client by name (config.ts CONSUMER_KAFKA_CLIENTS); the compiler checks none is missing. */
const CONSUMER_SOURCES = {
  kafkajs: async (o) => kafkajsConsumers(createKafkaClient({ brokers: o.brokers, log: o.log, clientId: o.clientId }), { fetch: o.fetch ?? DEFAULT_FETCH }),
  platformatic: async (o) => platformaticConsumers(o.brokers, o.clientId, o.log, o.fetch),
} satisfies Record<ConsumerKafkaClientName, (options: ConsumerSourceOptions) => Promise<ConsumerSource>>;

/** The consumers of `--consumer-kafka-client`. */
export async function consumersFor(client: ConsumerKafkaClientName, options: ConsumerSourceOptions): Promise<ConsumerSource> {
  return CONSUMER_SOURCES[client](options);
}
