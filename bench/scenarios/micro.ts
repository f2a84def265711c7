/**
 * Micro-benchmarks (tinybench) of the per-event work on the hot paths:
 * serialising an event, decoding pgoutput, the claim queries against a real
 * outbox backlog, and recording a latency. What each costs bounds what the
 * pipeline can do per core.
 */
import { randomUUID } from 'node:crypto';
import { PgoutputPlugin } from 'pg-logical-replication';
import { Bench } from 'tinybench';
import { createSql, dropSchema, migrate, type Sql } from '../../src/db.js';
import type { OutboxRow } from '../../src/events.js';
import { surelyWithin } from '../../src/kafka/batch-limit.js';
import { createHistogram } from '../../src/latency.js';
import { orderPlacedEvent, placeOrders } from '../../src/orders/write-path.js';
import { encodeOutboxFrame, decodeOutboxFrame } from '../../src/outbox-frame.js';
import { claimBuckets, seedBuckets, selectOldestUnpublished, selectUnpublishedInBuckets } from '../../src/queries.js';
import { PgoutputDecoder } from '../../src/relay/cdc/pgoutput.js';
import { WireEncoder } from '../../src/relay/wire.js';
import { insertMessage, relationMessage } from '../harness/pgoutput-fixtures.js';
import { anySummary, f, type ReportContext } from '../report/kit.js';
import type { Scenario } from '../scenario.js';

/** One task's result: its figures, or the state it ended in. */
type TaskSummary =
  | { name: string; state: 'completed'; opsPerSec: number; latencyUs: { mean: number; p50: number; p99: number }; relativeMarginOfErrorPercent: number; samples: number }
  | { name: string; state: string };

/** What the micro scenario writes into its summary's `extra`. */
interface MicroResult {
  tasks: TaskSummary[];
}

function report(context: ReportContext, folder: string): string[] {
  const extra = anySummary<MicroResult>(context, folder)?.extra;
  if (!extra) return [];
  return [
    '## Micro-benchmarks (tinybench)',
    '',
    'The per-event work on the hot paths, one core, after warm-up.',
    '',
    '| task | ops/s | mean (µs) | p50 (µs) | p99 (µs) | ± (rme %) |',
    '|---|---:|---:|---:|---:|---:|',
    ...extra.tasks.map((t) =>
      'latencyUs' in t
        ? `| ${t.name} | ${f(t.opsPerSec)} | ${f(t.latencyUs.mean, 2)} | ${f(t.latencyUs.p50, 2)} | ${f(t.latencyUs.p99, 2)} | ${f(t.relativeMarginOfErrorPercent, 1)} |`
        : `| ${t.name} | ${t.state} | | | | |`,
    ),
    '',
  ];
}

/** The tasks: the per-event work of the relays and the consumer, and the claim queries against a backlog of `backlog` rows. */
function hotPathBench(sql: Sql, backlog: number, timeMs: number): Bench {
  const event = orderPlacedEvent({ orderId: randomUUID(), customerId: 'customer-42', amountCents: 4_200, currency: 'EUR' }, { 'x-intended-at': '1795444655340.123' }, 'x'.repeat(90));
  const row: OutboxRow = { ...event, id: 1, createdAt: new Date(), headers: event.headers ?? {} };
  const wire = new WireEncoder({ route: (type) => `outbox.event.${type}`, headers: 'minimal', forward: [] });
  const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: ['p'] });
  const decoder = new PgoutputDecoder('bench_micro');
  plugin.parse(relationMessage(16_384, 'bench_micro', 'outbox'));
  decoder.decode(relationMessage(16_384, 'bench_micro', 'outbox'));
  const inserts = Array.from({ length: 1_000 }, () => insertMessage(16_384, { payload: event.payload, headers: '{"x-intended-at": "1795444655340.123"}' }));
  const frame = encodeOutboxFrame(event);
  // A polling pass's worth of records at the saturation load's 256 B payloads.
  const big = orderPlacedEvent({ orderId: randomUUID(), customerId: 'customer-42', amountCents: 4_200, currency: 'EUR' }, {}, 'x'.repeat(200));
  const pass = Array.from({ length: 1_000 }, () => wire.fromEvent({ ...big, aggregateId: randomUUID() }));
  let next = 0;
  const histogram = createHistogram();

  const bench = new Bench({ time: timeMs, warmupTime: 500 });
  bench
    .add('encode an event as its logical-message frame', () => {
      encodeOutboxFrame(event);
    })
    .add('decode a logical-message frame (views, no copy)', () => {
      decodeOutboxFrame(frame);
    })
    .add('claimed row -> Kafka record (topic, key, value, 2 headers)', () => {
      wire.fromEvent(row);
    })
    .add(`record-batch limit check of a pass (1,000 records of ${Buffer.byteLength(String(big.payload))} B)`, () => {
      surelyWithin(pass);
    })
    .add('decode one pgoutput insert (pg-logical-replication, every column)', () => {
      plugin.parse(inserts[next++ % inserts.length]!);
    })
    .add('decode one pgoutput insert + Kafka record (the relay\'s decoder)', () => {
      const decoded = decoder.decode(inserts[next++ % inserts.length]!);
      if (decoded.tag === 'insert') wire.fromColumns(decoded.row);
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
  return bench;
}

function taskSummary(task: Bench['tasks'][number]): TaskSummary {
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
}

export const micro: Scenario = {
  name: 'micro',
  description: 'micro-benchmarks (tinybench): event framing, pgoutput decoding, Kafka records, claim queries, histogram recording',
  defaults: {},
  flags: {
    'micro-time-ms': { description: 'measuring time per task', defaultValue: 2_000, min: 100, max: 600_000 },
    backlog: { description: 'unpublished rows the claim queries run against', defaultValue: 200_000, min: 1_000, max: 10_000_000, formerly: ['micro-backlog'] },
  },
  async run(context) {
    const schema = 'bench_micro';
    const sql = createSql(context.infra.databaseUrl, schema, { max: 2, applicationName: 'outbox-bench-micro' });
    try {
      await dropSchema(sql, schema);
      await migrate(sql, { schema, partitionWidth: '1 day', partitionsAhead: 1 });
      const backlog = context.option('backlog');
      for (let placed = 0; placed < backlog; placed += 5_000) {
        await placeOrders(sql, Array.from({ length: Math.min(5_000, backlog - placed) }, (_, i) => ({ customerId: `c-${placed + i}`, amountCents: i, currency: 'EUR' })));
      }
      await sql`VACUUM ANALYZE outbox`;
      await seedBuckets(sql, 64);

      const bench = hotPathBench(sql, backlog, context.option('micro-time-ms'));
      await bench.run();

      const tasks = bench.tasks.map(taskSummary);
      const lines = tasks.map((t) =>
        'latencyUs' in t
          ? `  ${t.name.padEnd(62)} ${String(t.opsPerSec).padStart(10)} ops/s   mean ${t.latencyUs.mean} µs  p99 ${t.latencyUs.p99} µs  ±${t.relativeMarginOfErrorPercent}%`
          : `  ${t.name}: ${t.state}`,
      );
      return { title: 'Micro-benchmarks of the per-event hot paths', runs: [], extra: { tasks } satisfies MicroResult, lines: ['micro-benchmarks (tinybench):', ...lines] };
    } finally {
      await dropSchema(sql, schema).catch(() => {});
      await sql.end({ timeout: 5 });
    }
  },
  report,
};

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
