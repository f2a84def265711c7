/**
 * Topic creation, whichever client produces: an admin connection (kafkajs)
 * that creates a topic on first use and waits until every partition has a
 * leader. Producers never auto-create topics, so partition counts are ours.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Admin, Kafka } from 'kafkajs';
import { OutboxBenchError, describeError } from '../errors.js';

// Rationale: a single KRaft broker hosts a new topic's partitions within a
// second or so; 10 s of 100 ms polls covers a loaded machine, and a broker
// that needs longer is reported instead of waited on. A deadline, not a count
// of polls: each metadata request may itself retry inside kafkajs.
const TOPIC_LEADER_POLL_MS = 100;
const TOPIC_LEADER_WAIT_MS = 10_000;
const TRANSIENT_TOPIC_ERROR = /does not host this topic-partition|no leader|leader not available|not available/i;

export class TopicAdmin {
  readonly #kafka: Kafka;
  readonly #partitions: number;
  readonly #known = new Set<string>();
  readonly #partitionCounts = new Map<string, number>();
  readonly #config: Record<string, string>;
  #admin: Admin | undefined;

  /** `partitions` and `config` (topic settings): of the topics this admin creates. */
  constructor(kafka: Kafka, partitions: number, config: Record<string, string> = {}) {
    this.#kafka = kafka;
    this.#partitions = partitions;
    this.#config = config;
  }

  /** Creates the topic unless it exists (an existing topic is left as it is). */
  async ensure(topic: string): Promise<void> {
    if (this.#known.has(topic)) return;
    const admin = await this.#connectedAdmin();
    const existing = await admin.listTopics();
    if (!existing.includes(topic)) {
      // kafkajs reports "already exists" (another relay won the race) by
      // resolving false, not by throwing. Its own wait for leaders is off: it
      // retries only LEADER_NOT_AVAILABLE, and on a cluster of several brokers
      // the broker it asks often answers "does not host this topic-partition"
      // for a moment after the create (9 of 40 creates on a 3-broker KRaft
      // cluster here), which it throws. The wait below retries both.
      await admin.createTopics({
        waitForLeaders: false,
        topics: [{ topic, numPartitions: this.#partitions, configEntries: Object.entries(this.#config).map(([name, value]) => ({ name, value })) }],
      });
      await this.#partitionsOf(topic, { leaders: true });
    }
    this.#known.add(topic);
  }

  /** How many partitions the topic has (creating it if need be); read from the broker once per topic. */
  async partitionCount(topic: string): Promise<number> {
    const known = this.#partitionCounts.get(topic);
    if (known !== undefined) return known;
    await this.ensure(topic);
    // The count needs no leaders (a relay restarted while one is being
    // elected must not wait on it), but the broker asked may not host a topic
    // created a moment ago by another client: that is retried.
    const count = await this.#partitionsOf(topic, { leaders: false });
    this.#partitionCounts.set(topic, count);
    return count;
  }

  async #connectedAdmin(): Promise<Admin> {
    this.#admin ??= this.#kafka.admin();
    await this.#admin.connect();
    return this.#admin;
  }

  /**
   * Right after a create the broker can answer metadata requests before it
   * hosts the new partitions ("does not host this topic-partition"); the
   * first produce would fail. On a cluster each metadata request may go to
   * another broker, and one that has caught up does not mean all have: every
   * read of the topic's partitions retries until the broker asked has them
   * (and, after a create, until every partition has a leader).
   */
  async #partitionsOf(topic: string, { leaders }: { leaders: boolean }): Promise<number> {
    const admin = await this.#connectedAdmin();
    const started = Date.now();
    let last: unknown;
    while (Date.now() - started < TOPIC_LEADER_WAIT_MS) {
      try {
        const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
        const partitions = topics[0]?.partitions ?? [];
        if (partitions.length > 0 && (!leaders || partitions.every((p) => p.leader >= 0))) return partitions.length;
        last = undefined;
      } catch (error) {
        const retriable = (error as { retriable?: boolean }).retriable === true || TRANSIENT_TOPIC_ERROR.test(describeError(error));
        if (!retriable) throw error;
        last = error;
      }
      await sleep(TOPIC_LEADER_POLL_MS);
    }
    throw new OutboxBenchError(
      'NOT_READY',
      `topic ${topic} ${leaders ? 'has partitions without a leader' : 'has no partitions in the metadata'} after ${((Date.now() - started) / 1_000).toFixed(1)} s` + (last ? `: ${describeError(last)}` : ''),
      { retriable: true, ...(last ? { cause: last } : {}) },
    );
  }

  async close(): Promise<void> {
    const admin = this.#admin;
    this.#admin = undefined;
    await admin?.disconnect().catch(() => {});
  }
}
