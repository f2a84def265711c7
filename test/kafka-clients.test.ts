/**
 * Every Kafka client a relay can publish through, against the real broker:
 * each event lands on the partition the Java client would choose, in order
 * per key, with the two headers the inbox and the ordering checks read; and
 * every consumer the idempotent consumer runs on applies them once.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { CONSUMER_KAFKA_CLIENTS, KAFKA_CLIENTS, type ConsumerKafkaClientName } from '../src/config.js';
import { createPublisher, partitionOf } from '../src/kafka/index.js';
import { confluentAvailable } from '../src/kafka/confluent.js';
import { consumersFor } from '../src/kafka/consumers.js';
import { TopicAdmin } from '../src/kafka/topics.js';
import { MAX_PARTITION_BATCH_BYTES, splitByPartitionBytes, surelyWithin } from '../src/kafka/batch-limit.js';
import type { WireEvent } from '../src/events.js';
import { eventually, headerOf, log, readTopic, startTestConsumer, testEnv } from './helpers.js';

// Every client config.ts names: a new one is tested without touching this file.
const CLIENTS = KAFKA_CLIENTS;

describe('Kafka clients', () => {
  for (const client of CLIENTS) {
    const needsNative = client.startsWith('confluent');
    // The consumer side: the client's own consumer where there is one to choose.
    const consumerClient: ConsumerKafkaClientName = (CONSUMER_KAFKA_CLIENTS as readonly string[]).includes(client) ? (client as ConsumerKafkaClientName) : 'kafkajs';
    // The Confluent binding is built at install time; where that build failed,
    // `npm install` said so and these two clients are unavailable by design.
    // CI builds it, so there a missing build fails the test instead.
    const unavailable = needsNative && !confluentAvailable() && process.env.CI !== 'true';
    it(`${client}: Java-compatible partitions, per-key order, id and version headers; the ${consumerClient} consumer applies each event once`, { skip: unavailable ? 'the Confluent client is not built here (npm install printed why)' : false }, async (t) => {
      const env = await testEnv(t, { kafkaClient: client });
      await env.ensureTopic();
      const topics = new TopicAdmin(env.kafka, env.config.topicPartitions);
      env.defer(() => topics.close());
      const publisher = await createPublisher({ client, brokers: env.config.kafkaBrokers!, clientId: `test-${client}`, log, topics });
      env.defer(() => publisher.close());
      const keys = Array.from({ length: 40 }, () => randomUUID());
      const events = keys.flatMap((key, k) =>
        Array.from({ length: 5 }, (_, v) => env.wire.fromEvent({ eventId: randomUUID(), aggregateType: 'order', aggregateId: key, aggregateVersion: v + 1, eventType: 'OrderAmended', payload: `{"deltaCents":${k * 10 + v}}` })),
      );
      // Two publishes: order must hold across calls too.
      await publisher.publish(events.slice(0, 100));
      await publisher.publish(events.slice(100));

      const messages = await readTopic(env.kafka, env.topic(), events.length);
      assert.equal(messages.length, events.length, 'each event exactly once: nothing failed, nothing was retried');
      const versions = new Map<string, number[]>();
      for (const message of messages) {
        const key = message.key!.toString();
        assert.equal(message.partition, partitionOf(key, env.config.topicPartitions), `key ${key} on the Java client's partition`);
        assert.deepEqual(Object.keys(message.headers ?? {}).sort(), ['aggregateVersion', 'id']);
        versions.set(key, [...(versions.get(key) ?? []), Number(headerOf(message, 'aggregateVersion'))]);
      }
      for (const [key, seen] of versions) assert.deepEqual(seen, [1, 2, 3, 4, 5], `versions of ${key} in order`);

      const { consumer } = await startTestConsumer(env, { source: await consumersFor(consumerClient, { brokers: env.config.kafkaBrokers!, clientId: `test-${client}-consumer`, log }) });
      await eventually('every event applied', () => consumer.stats.applied === events.length, 60_000);
      const [ledger] = await env.sql<{ n: number; amounts: string }[]>`SELECT count(*)::int AS n, sum(amount_cents)::text AS amounts FROM order_ledger`;
      assert.equal(ledger?.n, events.length);
      const expected = keys.reduce((sum, _, k) => sum + [0, 1, 2, 3, 4].reduce((s, v) => s + k * 10 + v, 0), 0);
      assert.equal(ledger?.amounts, String(expected), 'the amounts read off the payload bytes');
    });

    it(`${client}: a publish of more than a record batch for one partition lands whole, in order; an event too big for Kafka is refused by name`, { skip: unavailable ? 'the Confluent client is not built here (npm install printed why)' : false }, async (t) => {
      const env = await testEnv(t, { kafkaClient: client });
      await env.ensureTopic();
      const topics = new TopicAdmin(env.kafka, env.config.topicPartitions);
      env.defer(() => topics.close());
      const publisher = await createPublisher({ client, brokers: env.config.kafkaBrokers!, clientId: `test-${client}-big`, log, topics });
      env.defer(() => publisher.close());
      // Two keys, 150 events of 10 KB each: 1.5 MB for each key's partition,
      // more than the broker takes in one record batch (1 MiB by default).
      const keys = [randomUUID(), randomUUID()];
      const padding = 'x'.repeat(10_000);
      const events = Array.from({ length: 300 }, (_, i) =>
        env.wire.fromEvent({ eventId: randomUUID(), aggregateType: 'order', aggregateId: keys[i % 2]!, aggregateVersion: Math.floor(i / 2) + 1, eventType: 'OrderAmended', payload: `{"deltaCents":1,"note":"${padding}"}` }),
      );
      await publisher.publish(events);
      const messages = await readTopic(env.kafka, env.topic(), events.length);
      assert.equal(messages.length, events.length, 'each event exactly once');
      for (const key of keys) {
        const versions = messages.filter((m) => m.key!.toString() === key).map((m) => Number(headerOf(m, 'aggregateVersion')));
        assert.deepEqual(versions, Array.from({ length: 150 }, (_, v) => v + 1), `versions of ${key} in order`);
      }

      const huge = env.wire.fromEvent({ eventId: randomUUID(), aggregateType: 'order', aggregateId: keys[0]!, aggregateVersion: 151, eventType: 'OrderAmended', payload: `{"note":"${'y'.repeat(1_200_000)}"}` });
      await assert.rejects(publisher.publish([huge]), (error: Error & { code?: string }) => {
        assert.equal(error.code, 'PUBLISH_FAILED');
        assert.match(error.message, /too large|larger than/i, error.message);
        return true;
      });
    });
  }
});

describe('the record-batch limit', () => {
  const event = (key: string, bytes: number, topic = 't'): WireEvent => ({ topic, key, value: Buffer.alloc(bytes), headers: { id: key } });

  it('leaves a publish that surely fits alone, and splits one that may not at the partition that would overflow, in order', () => {
    const small = Array.from({ length: 1_000 }, (_, i) => event(`k${i}`, 256));
    assert.ok(surelyWithin(small), '1,000 events of 256 B: one request');
    assert.ok(!surelyWithin(Array.from({ length: 100 }, (_, i) => event(`k${i}`, 10_240))), '100 events of 10 KB may not fit one partition');

    // 300 events of 10 KB on one key: each part holds at most the limit's worth.
    const hot = Array.from({ length: 300 }, () => event('hot', 10_000));
    const parts = splitByPartitionBytes(hot, () => 6);
    assert.deepEqual(parts.flat(), hot, 'every event once, in order');
    // 10,065 bytes each by the estimate: the payload, the key and the header, their framing.
    const perPart = Math.floor(MAX_PARTITION_BATCH_BYTES / 10_065);
    assert.deepEqual(
      parts.map((p) => p.length),
      [perPart, perPart, perPart, 300 - 3 * perPart],
    );

    // The same bytes spread over six partitions need no split.
    const spread = Array.from({ length: 300 }, (_, i) => event(`k${i}`, 10_000));
    assert.equal(splitByPartitionBytes(spread, () => 6).length, 1, '500 KB per partition');
  });

  it('sends an event bigger than the limit alone', () => {
    const events = [event('a', 100), event('a', 2_000_000), event('a', 100)];
    assert.deepEqual(
      splitByPartitionBytes(events, () => 1).map((p) => p.length),
      [1, 1, 1],
    );
  });
});
