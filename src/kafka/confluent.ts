/**
 * Publishing with Confluent's librdkafka binding (@confluentinc/kafka-javascript),
 * two ways:
 *
 *  - `native`: `Producer.produce()` per event with delivery reports served on
 *    librdkafka's background thread. Encoding, batching, CRC and the network
 *    run on librdkafka's threads; the JavaScript thread hands over buffers and
 *    counts reports. This is what one relay process can carry the most of.
 *  - `kafkajs`: the binding's KafkaJS-style API (`sendBatch`), a promise per
 *    message on top of the same produce.
 *
 * Both: idempotent producer (which implies acks from all in-sync replicas and
 * at most 5 requests in flight, order kept per partition across retries),
 * `murmur2_random` partitioning (the Java client's murmur2 for keyed
 * messages), no topic auto-creation.
 *
 * The binding is a native module. It is built at install time into
 * kafka/confluent-client/ (`outbox-bench infra build-kafka-client`); where
 * that build failed or was skipped, asking for this client fails with the
 * reason and the command that builds it.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { PROJECT_ROOT } from '../config.js';
import { OutboxBenchError, describeError } from '../errors.js';
import type { WireEvent } from '../events.js';
import type { Logger } from '../log.js';
import type { EventPublisher } from '../relay/publisher.js';
import { publishFailed } from './kafkajs.js';
import type { PublisherOptions } from './publisher-options.js';

/** Where the install step builds the binding (its own package, so its native build is isolated). */
export const CONFLUENT_CLIENT_DIR = path.join(PROJECT_ROOT, 'kafka', 'confluent-client');

// Rationale: the relay hands over a whole batch at once; waiting longer for
// more only adds latency, while 1 ms lets librdkafka fill a request with
// what arrives in one burst of produce() calls.
const LINGER_MS = 1;
// Rationale: as kafkajs' request timeout here: a delivery not acknowledged in
// 30 s fails the batch, which the relay retries (at-least-once).
const MESSAGE_TIMEOUT_MS = 30_000;
// Rationale: waiting for room in librdkafka's queue when a burst fills it.
const QUEUE_FULL_WAIT_MS = 5;

/* The parts of the binding this module uses (its own typings are broad). */
interface DeliveryReport {
  opaque: Batch;
}
interface NativeProducer {
  connect(options: object, callback: (error: unknown) => void): void;
  disconnect(timeout: number, callback: (error: unknown) => void): void;
  produce(topic: string, partition: number | null, value: Buffer, key: Buffer | string, timestamp: number | null, opaque: Batch, headers: Record<string, Buffer | string>[]): boolean;
  setPollInBackground(set: boolean): void;
  on(event: 'delivery-report', listener: (error: { message: string; code: number } | null, report: DeliveryReport) => void): void;
  on(event: 'event.error', listener: (error: { message: string; isFatal?: boolean }) => void): void;
}
interface ConfluentModule {
  Producer: new (conf: Record<string, unknown>) => NativeProducer;
  CODES: { ERRORS: Record<string, number> };
  KafkaJS: { Kafka: new (config: object) => { producer(config: object): KafkajsStyleProducer } };
}
interface KafkajsStyleProducer {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  sendBatch(batch: { topicMessages: { topic: string; messages: { key: Buffer | string; value: Buffer | string; headers: Record<string, Buffer | string> }[] }[] }): Promise<unknown>;
}

/** A publish in flight: settled when the last of its reports arrived. */
interface Batch {
  remaining: number;
  error: string | undefined;
  resolve: () => void;
  reject: (error: Error) => void;
}

let loaded: ConfluentModule | Error | undefined;

/** The binding, or why it cannot be used. */
export function loadConfluent(): ConfluentModule {
  if (loaded === undefined) {
    try {
      loaded = createRequire(path.join(CONFLUENT_CLIENT_DIR, 'package.json'))('@confluentinc/kafka-javascript') as ConfluentModule;
    } catch (error) {
      loaded = new OutboxBenchError(
        'CONFIG_INVALID',
        `the Confluent Kafka client is not built here (${describeError(error).split('\n')[0]}). ` +
          'Build it with `npx outbox-bench infra build-kafka-client` (needs gcc, make, libssl-dev and zlib1g-dev; about 2 minutes), or use --kafka-client kafkajs.',
      );
    }
  }
  if (loaded instanceof Error) throw loaded;
  return loaded;
}

/**
 * The binding's KafkaJS-style logger interface, onto pino. It logs group
 * joins and rebalances at info, which are routine here: one level down.
 */
export function confluentLogger(log: Logger): object {
  const logger = {
    info: (message: string, extra?: object) => log.debug({ confluent: extra }, message),
    debug: (message: string, extra?: object) => log.trace({ confluent: extra }, message),
    warn: (message: string, extra?: object) => log.info({ confluent: extra }, message),
    error: (message: string, extra?: object) => log.warn({ confluent: extra }, message),
    namespace: () => logger,
    setLogLevel: () => {},
  };
  return logger;
}

/** Whether the binding can be loaded (for choosing a default and for tests). */
export function confluentAvailable(): boolean {
  try {
    loadConfluent();
    return true;
  } catch {
    return false;
  }
}

export function createConfluentPublisher(o: PublisherOptions & { api: 'native' | 'kafkajs' }): EventPublisher {
  const kafka = loadConfluent();
  return o.api === 'native' ? new ConfluentNativePublisher(kafka, o) : new ConfluentKafkajsPublisher(kafka, o);
}

function topicsOf(events: readonly WireEvent[]): Set<string> {
  const topics = new Set<string>();
  for (const event of events) topics.add(event.topic);
  return topics;
}

function producerConfig(o: PublisherOptions): Record<string, unknown> {
  return {
    'bootstrap.servers': o.brokers.join(','),
    'client.id': o.clientId,
    'enable.idempotence': true,
    acks: 'all',
    partitioner: 'murmur2_random',
    'allow.auto.create.topics': false,
    'linger.ms': LINGER_MS,
    'message.timeout.ms': o.timeoutMs ?? MESSAGE_TIMEOUT_MS,
  };
}

class ConfluentNativePublisher implements EventPublisher {
  readonly #kafka: ConfluentModule;
  readonly #options: PublisherOptions;
  #producer: Promise<NativeProducer> | undefined;
  /** Set by a fatal error (an idempotence violation): the producer must be replaced. */
  #fatal: string | undefined;

  constructor(kafka: ConfluentModule, options: PublisherOptions) {
    this.#kafka = kafka;
    this.#options = options;
  }

  #connected(): Promise<NativeProducer> {
    this.#producer ??= new Promise<NativeProducer>((resolve, reject) => {
      const producer = new this.#kafka.Producer({ ...producerConfig(this.#options), dr_cb: true });
      producer.on('delivery-report', (error, report) => {
        const batch = report.opaque;
        if (error) batch.error ??= error.message;
        if (--batch.remaining > 0) return;
        if (batch.error) batch.reject(new Error(batch.error));
        else batch.resolve();
      });
      producer.on('event.error', (error) => {
        if (error.isFatal) this.#fatal = error.message;
        this.#options.log.warn({ err: error.message, fatal: error.isFatal === true }, 'Kafka producer error');
      });
      producer.connect({}, (error) => {
        if (error) {
          this.#producer = undefined;
          reject(new OutboxBenchError('PUBLISH_FAILED', `cannot connect the Kafka producer: ${describeError(error)}`, { cause: error, retriable: true }));
          return;
        }
        // Reports are served on librdkafka's own thread and handed to the event loop.
        producer.setPollInBackground(true);
        resolve(producer);
      });
    });
    return this.#producer;
  }

  async publish(events: readonly WireEvent[]): Promise<void> {
    if (events.length === 0) return;
    try {
      if (this.#fatal) await this.#replace();
      for (const topic of topicsOf(events)) await this.#options.topics.ensure(topic);
      const producer = await this.#connected();
      await new Promise<void>((resolve, reject) => {
        const batch: Batch = { remaining: events.length, error: undefined, resolve, reject };
        void this.#produceAll(producer, events, batch).catch((error: unknown) => {
          // Whatever was queued still reports; the batch fails once it all has.
          batch.error ??= describeError(error);
        });
      });
    } catch (error) {
      throw publishFailed(events.length, error);
    }
  }

  async #produceAll(producer: NativeProducer, events: readonly WireEvent[], batch: Batch): Promise<void> {
    const queueFull = this.#kafka.CODES.ERRORS.ERR__QUEUE_FULL;
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!;
      const value = typeof event.value === 'string' ? Buffer.from(event.value) : event.value;
      const headers = Object.entries(event.headers).map(([name, header]) => ({ [name]: header }));
      try {
        producer.produce(event.topic, null, value, event.key, null, batch, headers);
      } catch (error) {
        if ((error as { code?: number }).code !== queueFull) {
          // The rest of the batch will never report: count it as failed now.
          batch.error ??= describeError(error);
          batch.remaining -= events.length - i;
          if (batch.remaining === 0) batch.reject(new Error(batch.error));
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, QUEUE_FULL_WAIT_MS));
        i -= 1;
      }
    }
  }

  async #replace(): Promise<void> {
    const old = this.#producer;
    this.#producer = undefined;
    this.#fatal = undefined;
    const producer = await old?.catch(() => undefined);
    await new Promise<void>((resolve) => (producer ? producer.disconnect(5_000, () => resolve()) : resolve()));
  }

  async close(): Promise<void> {
    const producer = await this.#producer?.catch(() => undefined);
    this.#producer = undefined;
    if (producer) await new Promise<void>((resolve) => producer.disconnect(10_000, () => resolve()));
  }
}

class ConfluentKafkajsPublisher implements EventPublisher {
  readonly #producer: KafkajsStyleProducer;
  readonly #options: PublisherOptions;
  #connecting: Promise<void> | undefined;

  constructor(kafka: ConfluentModule, options: PublisherOptions) {
    this.#options = options;
    const { 'bootstrap.servers': _brokers, 'client.id': _id, ...rdkafka } = producerConfig(options);
    this.#producer = new kafka.KafkaJS.Kafka({ kafkaJS: { brokers: [...options.brokers], clientId: options.clientId, logger: confluentLogger(options.log) } }).producer({
      kafkaJS: { idempotent: true, allowAutoTopicCreation: false },
      ...rdkafka,
    });
  }

  async publish(events: readonly WireEvent[]): Promise<void> {
    if (events.length === 0) return;
    const byTopic = new Map<string, { key: Buffer | string; value: Buffer | string; headers: Record<string, Buffer | string> }[]>();
    for (const event of events) {
      let list = byTopic.get(event.topic);
      if (!list) byTopic.set(event.topic, (list = []));
      list.push({ key: event.key, value: event.value, headers: { ...event.headers } });
    }
    try {
      for (const topic of byTopic.keys()) await this.#options.topics.ensure(topic);
      this.#connecting ??= this.#producer.connect().catch((error: unknown) => {
        this.#connecting = undefined;
        throw error;
      });
      await this.#connecting;
      await this.#producer.sendBatch({ topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
    } catch (error) {
      throw publishFailed(events.length, error);
    }
  }

  async close(): Promise<void> {
    if (this.#connecting) await this.#producer.disconnect().catch(() => {});
    this.#connecting = undefined;
  }
}
