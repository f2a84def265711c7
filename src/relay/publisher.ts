/**
 * What a relay needs from a Kafka producer, whichever client is behind it
 * (src/kafka/): publish a batch and resolve only once Kafka acknowledged all
 * of it. Plus the sharding of one relay's events over several producers.
 */
import { OutboxBenchError } from '../errors.js';
import type { WireEvent } from '../events.js';

export interface EventPublisher {
  /**
   * Resolves once Kafka has acknowledged every event (acks = all), in order
   * per key; rejects with PUBLISH_FAILED otherwise, in which case any subset
   * may have been written (the caller re-publishes: at-least-once).
   */
  publish(events: readonly WireEvent[]): Promise<void>;
  close(): Promise<void>;
}

/** Maps an aggregate type to its topic. */
export type TopicRouter = (aggregateType: string) => string;

/**
 * Publishes through several producers at once. Each aggregate always goes
 * through the same one (by hash of its key), so its events stay in order:
 * what runs in parallel are the Kafka round trips of different aggregates,
 * which one producer with one request in flight has to wait for in turn.
 */
export class ShardedPublisher implements EventPublisher {
  readonly #shards: readonly EventPublisher[];

  constructor(shards: readonly EventPublisher[]) {
    if (shards.length === 0) throw new OutboxBenchError('CONFIG_INVALID', 'a sharded publisher needs at least one publisher');
    this.#shards = shards;
  }

  async publish(events: readonly WireEvent[]): Promise<void> {
    if (this.#shards.length === 1) return this.#shards[0]!.publish(events);
    const parts: WireEvent[][] = this.#shards.map(() => []);
    for (const event of events) parts[shardOf(event.key, this.#shards.length)]!.push(event);
    // All parts are attempted; any failure fails the whole call, so the caller
    // re-publishes everything (duplicates, never a gap in an aggregate's order).
    const results = await Promise.allSettled(parts.map((part, i) => (part.length > 0 ? this.#shards[i]!.publish(part) : undefined)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.#shards.map((shard) => shard.close()));
  }
}

/** FNV-1a of the key's bytes (its characters, for an ASCII string): cheap, stable across processes. */
export function shardOf(key: Buffer | string, shards: number): number {
  let hash = 0x811c9dc5;
  if (typeof key === 'string') {
    for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193);
  } else {
    for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key[i]!, 0x01000193);
  }
  return (hash >>> 0) % shards;
}
