/**
 * Micro-benchmarks (tinybench) of the per-event work on the hot paths:
 * serialising an event, decoding pgoutput, the claim queries against a real
 * outbox backlog, and recording a latency. What each costs bounds what the
 * pipeline can do per core.
 */
import { randomUUID } from 'node:crypto';
import { PgoutputPlugin } from 'pg-logical-replication';
import { Bench } from 'tinybench';
import { createSql, dropSchema, migrate } from '../../src/db.js';
import type { OutboxMessage } from '../../src/events.js';
import { createHistogram } from '../../src/latency.js';
import { orderPlacedEvent, placeOrders } from '../../src/orders/write-path.js';
import { claimBuckets, encodeOutboxMessage, seedBuckets, selectOldestUnpublished, selectUnpublishedInBuckets } from '../../src/queries.js';
import { toKafkaMessage } from '../../src/relay/publisher.js';
import type { Scenario } from '../scenario.js';

/** pgoutput wire messages, built by hand from the protocol description, for the decoder. */
class WireWriter {
  readonly #parts: Buffer[] = [];
  byte(value: number): this {
    this.#parts.push(Buffer.from([value]));
    return this;
  }
  int16(value: number): this {
    const b = Buffer.alloc(2);
    b.writeInt16BE(value);
    this.#parts.push(b);
    return this;
  }
  int32(value: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32BE(value);
    this.#parts.push(b);
    return this;
  }
  cstring(value: string): this {
    this.#parts.push(Buffer.from(`${value}\0`, 'utf8'));
    return this;
  }
  text(value: string): this {
    const bytes = Buffer.from(value, 'utf8');
    return this.byte(0x74).int32(bytes.length).raw(bytes);
  }
  raw(bytes: Buffer): this {
    this.#parts.push(bytes);
    return this;
  }
  build(): Buffer {
    return Buffer.concat(this.#parts);
  }
}

const OUTBOX_COLUMNS: [string, number][] = [
  ['id', 20],
  ['event_id', 2950],
  ['aggregate_type', 25],
  ['aggregate_id', 25],
  ['aggregate_version', 23],
  ['event_type', 25],
  ['payload', 3802],
  ['headers', 3802],
  ['created_at', 1184],
  ['published_at', 1184],
];

function relationMessage(): Buffer {
  const w = new WireWriter().byte(0x52).int32(16_384).cstring('bench_micro').cstring('outbox').byte(0x64).int16(OUTBOX_COLUMNS.length);
  for (const [name, type] of OUTBOX_COLUMNS) w.byte(0).cstring(name).int32(type).int32(-1);
  return w.build();
}

function insertMessage(payload: string): Buffer {
  const w = new WireWriter().byte(0x49).int32(16_384).byte(0x4e).int16(OUTBOX_COLUMNS.length);
  w.text('123456').text(randomUUID()).text('order').text(randomUUID()).text('1').text('OrderPlaced').text(payload).text('{"x-intended-at":"1795444655340.123"}');
  w.text('2026-11-23 14:37:35.340123+00').byte(0x6e);
  return w.build();
}

export const micro: Scenario = {
  name: 'micro',
  description: 'micro-benchmarks (tinybench): payload encoding, pgoutput decoding, claim queries, histogram recording',
  defaults: {},
  flags: {
    'micro-time-ms': { description: 'measuring time per task', defaultValue: 2_000, min: 100, max: 600_000 },
    'micro-backlog': { description: 'unpublished rows the claim queries run against', defaultValue: 200_000, min: 1_000, max: 10_000_000 },
  },
  async run(context) {
    const schema = 'bench_micro';
    const sql = createSql(context.infra.databaseUrl, schema, { max: 2, applicationName: 'outbox-bench-micro' });
    try {
      await dropSchema(sql, schema);
      await migrate(sql, { schema, partitionWidth: '1 day', partitionsAhead: 1 });
      const backlog = context.option('micro-backlog');
      for (let placed = 0; placed < backlog; placed += 5_000) {
        await placeOrders(sql, Array.from({ length: Math.min(5_000, backlog - placed) }, (_, i) => ({ customerId: `c-${placed + i}`, amountCents: i, currency: 'EUR' })));
      }
      await sql`VACUUM ANALYZE outbox`;
      await seedBuckets(sql, 64);

      const event = orderPlacedEvent({ orderId: randomUUID(), customerId: 'customer-42', amountCents: 4_200, currency: 'EUR' }, { 'x-intended-at': '1795444655340.123' }, 'x'.repeat(90));
      const message: OutboxMessage = { ...event, headers: event.headers ?? {} };
      const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: ['p'] });
      plugin.parse(relationMessage());
      const inserts = Array.from({ length: 1_000 }, () => insertMessage(event.payload));
      let next = 0;
      const histogram = createHistogram();

      const bench = new Bench({ time: context.option('micro-time-ms'), warmupTime: 500 });
      bench
        .add('encode event for pg_logical_emit_message', () => {
          encodeOutboxMessage(event);
        })
        .add('event -> kafkajs message (key, value, headers)', () => {
          toKafkaMessage(message);
        })
        .add('decode one pgoutput insert (pg-logical-replication)', () => {
          plugin.parse(inserts[next++ % inserts.length]!);
        })
        .add('record one latency in an HDR histogram', () => {
          histogram.recordValue(1 + (next++ % 100_000));
        })
        .add(`claim 1000 oldest unpublished of ${backlog} (FOR UPDATE SKIP LOCKED)`, async () => {
          await sql.begin((tx) => selectOldestUnpublished(tx, 1_000, 'skip-locked'));
        })
        .add(`claim 22 of 64 buckets + their 1000 oldest rows of ${backlog}`, async () => {
          await sql.begin(async (tx) => selectUnpublishedInBuckets(tx, await claimBuckets(tx, 22, 64, 2_000), 64, 1_000));
        });
      await bench.run();

      type TaskSummary =
        | { name: string; state: 'completed'; opsPerSec: number; latencyUs: { mean: number; p50: number; p99: number }; relativeMarginOfErrorPercent: number; samples: number }
        | { name: string; state: string };
      const tasks = bench.tasks.map((task): TaskSummary => {
        const result = task.result;
        if (result.state !== 'completed') return { name: task.name, state: result.state };
        return {
          name: task.name,
          state: 'completed',
          opsPerSec: Math.round(result.throughput.mean),
          latencyUs: { mean: round(result.latency.mean * 1_000), p50: round(result.latency.p50 * 1_000), p99: round(result.latency.p99 * 1_000) },
          relativeMarginOfErrorPercent: round(result.latency.rme),
          samples: result.latency.samples?.length ?? 0,
        };
      });
      const lines = tasks.map((t) =>
        'latencyUs' in t
          ? `  ${t.name.padEnd(62)} ${String(t.opsPerSec).padStart(10)} ops/s   mean ${t.latencyUs.mean} µs  p99 ${t.latencyUs.p99} µs  ±${t.relativeMarginOfErrorPercent}%`
          : `  ${t.name}: ${t.state}`,
      );
      return { title: 'Micro-benchmarks of the per-event hot paths', runs: [], extra: { tasks }, lines: ['micro-benchmarks (tinybench):', ...lines] };
    } finally {
      await dropSchema(sql, schema).catch(() => {});
      await sql.end({ timeout: 5 });
    }
  },
};

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
