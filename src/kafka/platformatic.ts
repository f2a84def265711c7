/**
 * Publishing with @platformatic/kafka (pure JavaScript, a newer protocol
 * implementation than kafkajs). Idempotent (acks from all in-sync replicas,
 * one request in flight), Java-compatible partitions, a bounded number of
 * retries so that an outage fails the publish and the relay's own retry
 * takes over.
 *
 * The partition is computed here with the Math.imul murmur2 (murmur2.ts): the
 * library's compatibility partitioner hashes with BigInt, 8% of the relay's
 * time in a drain's profile. The library reduces the number it is given
 * modulo the topic's partition count, exactly as the Java client does with
 * the positive hash.
 *
 * A failed send replaces the producer. After a broker is killed, the
 * idempotent producer's sequence numbers can be ahead of what the restarted
 * broker kept (the batch in flight was never written), and every later send
 * of that producer id is refused (OUT_OF_ORDER_SEQUENCE_NUMBER): the Java
 * client bumps its epoch, this library does not, so the relay would retry
 * for ever. A new producer gets a new id; what the old one may have written
 * comes again, which at-least-once delivery allows and the inbox absorbs.
 */
import { Producer, ProduceAcks } from '@platformatic/kafka';
import { nestedErrors } from '../errors.js';
import type { WireEvent } from '../events.js';
import type { EventPublisher } from '../relay/publisher.js';
import { publishFailed } from './kafkajs.js';
import { murmur2 } from './murmur2.js';
import type { PublisherOptions } from './publisher-options.js';

// Rationale: as the kafkajs producer here: five retries (~5 s) cover a leader
// move; longer outages surface as a failed publish, which the relay retries.
const RETRIES = 5;

const toBuffer = (value?: Buffer | string) => (value === undefined ? undefined : typeof value === 'string' ? Buffer.from(value) : value);

/** Header names are a handful of constants: encoded once, not once per record. */
const headerNames = new Map<string, Buffer>();
const headerName = (name?: string) => {
  if (name === undefined) return undefined;
  let encoded = headerNames.get(name);
  if (encoded === undefined) headerNames.set(name, (encoded = Buffer.from(name)));
  return encoded;
};

/** Java's partitioner before the modulo: the key's murmur2, made positive. */
const positiveHash = (key: Buffer | string) => murmur2(typeof key === 'string' ? Buffer.from(key) : key) & 0x7fffffff;

type RecordProducer = Producer<Buffer | string, Buffer | string, string, Buffer | string>;

/**
 * The Kafka error names inside a failed send (MESSAGE_TOO_LARGE, ...), which
 * the library's message leaves out: a send's errors hold one per response,
 * and each of those one per refused partition.
 */
function protocolErrors(error: unknown): string {
  const names = new Set(
    nestedErrors(error)
      .filter((e) => e.leaf)
      .map(({ error: e }) => {
        const { apiId, code } = (e ?? {}) as { apiId?: unknown; code?: unknown };
        return String(apiId ?? code ?? e);
      }),
  );
  return names.size > 0 ? ` (${[...names].join(', ')})` : '';
}

export class PlatformaticPublisher implements EventPublisher {
  #producer: RecordProducer;
  readonly #options: PublisherOptions;

  constructor(options: PublisherOptions) {
    this.#options = options;
    this.#producer = this.#newProducer();
  }

  #newProducer(): RecordProducer {
    const options = this.#options;
    return new Producer({
      clientId: options.clientId,
      bootstrapBrokers: [...options.brokers],
      idempotent: true,
      acks: ProduceAcks.ALL,
      retries: RETRIES,
      autocreateTopics: false,
      timeout: options.timeoutMs ?? 30_000,
      serializers: { key: toBuffer, value: toBuffer, headerKey: headerName, headerValue: toBuffer },
    });
  }

  async publish(events: readonly WireEvent[]): Promise<void> {
    if (events.length === 0) return;
    try {
      for (const topic of new Set(events.map((e) => e.topic))) await this.#options.topics.ensure(topic);
      await this.#producer.send({
        messages: events.map((e) => ({ topic: e.topic, key: e.key, value: e.value, partition: positiveHash(e.key), headers: e.headers as Record<string, Buffer | string> })),
      });
    } catch (error) {
      const broken = this.#producer;
      this.#producer = this.#newProducer();
      void broken.close().catch(() => {});
      const failed = publishFailed(events.length, error);
      failed.message += protocolErrors(error);
      throw failed;
    }
  }

  async close(): Promise<void> {
    await this.#producer.close().catch(() => {});
  }
}
