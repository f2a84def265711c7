/**
 * Kafka's limit on one partition's record batch, kept by the clients that put
 * a whole publish into one request (kafkajs and @platformatic/kafka;
 * librdkafka splits its batches itself): a publish that could exceed it goes
 * out in parts, one after the other.
 */
import { OutboxBenchError, describeError } from '../errors.js';
import type { WireEvent } from '../events.js';
import type { EventPublisher } from '../relay/publisher.js';
import { partitionOf } from './murmur2.js';

// Rationale: the broker refuses a partition's record batch larger than its
// message.max.bytes (default 1,048,588: 1 MiB and 12 bytes) with
// MESSAGE_TOO_LARGE, and a relay retrying the same pass would be refused for
// ever. 1,000,000 leaves room for the batch's own framing (61 bytes) and
// what the per-record estimate below leaves out.
export const MAX_PARTITION_BATCH_BYTES = 1_000_000;
// Rationale: a record's framing in a batch, each field a varint of at most 5
// bytes: its length, timestamp and offset deltas, key and value lengths and
// the header count, one attributes byte; a header adds two lengths.
const RECORD_FRAMING_BYTES = 31;
const HEADER_FRAMING_BYTES = 10;

/** At most a string's bytes in UTF-8 (3 per UTF-16 unit), without encoding it. */
const atMostBytes = (value: Buffer | string) => (typeof value === 'string' ? 3 * value.length : value.length);

/**
 * At most the bytes of an event's record in a batch. The payload is counted
 * exactly (a Buffer's length, a string's UTF-8 length counted without
 * encoding it), the short key and headers by their bound: a tight figure for
 * about 30 ns per event (`micro`: a pass of 1,000 records of 323 B), where
 * counting the key and headers exactly too was three to four times slower.
 */
function recordBytes(event: WireEvent): number {
  const value = event.value;
  let bytes = RECORD_FRAMING_BYTES + atMostBytes(event.key) + (typeof value === 'string' ? Buffer.byteLength(value) : value.length);
  const headers = event.headers;
  for (const name in headers) bytes += HEADER_FRAMING_BYTES + atMostBytes(name) + atMostBytes(headers[name]!);
  return bytes;
}

/** Whether a publish surely fits one record batch, whatever partitions its events go to. */
export function surelyWithin(events: readonly WireEvent[], maxBytes = MAX_PARTITION_BATCH_BYTES): boolean {
  let bytes = 0;
  for (const event of events) bytes += recordBytes(event);
  return bytes <= maxBytes;
}

/**
 * Splits a publish into consecutive parts, none of which gives one partition
 * more than `maxBytes` of records, as the Java client's batches never do. The
 * parts keep the events' order, so publishing them one after the other keeps
 * every key's order. An event bigger than `maxBytes` on its own goes alone:
 * whether Kafka takes it is the broker's and the topic's setting.
 */
export function splitByPartitionBytes(events: readonly WireEvent[], partitionsOf: (topic: string) => number, maxBytes = MAX_PARTITION_BATCH_BYTES): WireEvent[][] {
  const parts: WireEvent[][] = [];
  let part: WireEvent[] = [];
  // Bytes per partition of the part being filled, by topic.
  let filled = new Map<string, number[]>();
  for (const event of events) {
    const bytes = recordBytes(event);
    let perPartition = filled.get(event.topic);
    if (!perPartition) filled.set(event.topic, (perPartition = new Array<number>(partitionsOf(event.topic)).fill(0)));
    const partition = partitionOf(event.key, perPartition.length);
    if (perPartition[partition]! > 0 && perPartition[partition]! + bytes > maxBytes) {
      parts.push(part);
      part = [];
      filled = new Map([[event.topic, (perPartition = perPartition.fill(0))]]);
    }
    perPartition[partition]! += bytes;
    part.push(event);
  }
  parts.push(part);
  return parts;
}

/**
 * A publisher whose requests stay within the record-batch limit. If a part
 * fails the publish fails, and the caller publishes all of it again
 * (at-least-once, as for any failed publish).
 */
export class PartitionBoundedPublisher implements EventPublisher {
  readonly #inner: EventPublisher;
  readonly #partitionsOf: (topic: string) => Promise<number>;
  readonly #maxBytes: number;

  constructor(inner: EventPublisher, partitionsOf: (topic: string) => Promise<number>, maxBytes = MAX_PARTITION_BATCH_BYTES) {
    this.#inner = inner;
    this.#partitionsOf = partitionsOf;
    this.#maxBytes = maxBytes;
  }

  async publish(events: readonly WireEvent[]): Promise<void> {
    // The usual publish is far below the limit: one pass over it says so, without hashing its keys.
    if (surelyWithin(events, this.#maxBytes)) return this.#inner.publish(events);
    const counts = new Map<string, number>();
    for (const topic of new Set(events.map((e) => e.topic))) {
      try {
        counts.set(topic, await this.#partitionsOf(topic));
      } catch (error) {
        throw new OutboxBenchError('PUBLISH_FAILED', `cannot read the partition count of ${topic}: ${describeError(error)}`, { cause: error, retriable: true });
      }
    }
    for (const part of splitByPartitionBytes(events, (topic) => counts.get(topic) ?? 1, this.#maxBytes)) await this.#inner.publish(part);
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
