/**
 * HTTP load against POST /orders with a relay and the consumer running: what
 * the order service sustains, its response latency, and how long an order
 * takes from its request to being applied by the consumer.
 *
 * Two phases. First closed loop (autocannon, as many requests as the
 * connections allow): the service's maximum. Then a fixed rate driven by the
 * harness's own open-loop scheduler: every request is due at a scheduled time
 * and carries it into the event (`x-intended-at`), so both the HTTP latency
 * and request -> applied are measured from the schedule. The consumer runs
 * from the start; the fixed-rate phase begins only once every order of the
 * closed loop was applied, and its CPU window ends once every order of its
 * own was applied: the window holds exactly the orders its CPU is divided by.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';
import { createSql, dropSchema, migrate, type Sql } from '../../src/db.js';
import { OutboxBenchError } from '../../src/errors.js';
import { nowMs } from '../../src/events.js';
import { isPortFree } from '../../src/infra/processes.js';
import { createKafkaClient } from '../../src/kafka-client.js';
import { decodeHistogram, summarizeMs } from '../../src/latency.js';
import { processCpuSeconds, processTreeCpuSeconds } from '../../src/process-stats.js';
import { KafkajsPublisher } from '../../src/relay/publisher.js';
import { openLoop } from '../harness/open-loop-http.js';
import { childEnv, deleteTopic, startConsumerProcess, startRelayProcess, startServiceProcess, stopChild, type ConsumerProcess } from '../harness/processes.js';
import type { Scenario } from '../scenario.js';

async function freeHttpPort(): Promise<number> {
  for (let port = 38_080; port < 38_180; port++) if (await isPortFree(port)) return port;
  throw new Error('no free port for the order service in 38080-38179');
}

function body(i: number): string {
  return JSON.stringify({ customerId: `http-${i % 10_000}`, amountCents: 100 + (i % 9_900), currency: 'EUR' });
}

/** Closed loop: autocannon at full speed on `connections` connections. */
async function closedLoop(url: string, connections: number, durationS: number): Promise<autocannon.Result> {
  let i = 0;
  return autocannon({
    url,
    connections,
    duration: durationS,
    requests: [{ method: 'POST', path: '/orders', setupRequest: (request) => ({ ...request, headers: { 'content-type': 'application/json' }, body: body(i++) }) }],
  });
}

function httpLatency(r: autocannon.Result) {
  return { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, p999: r.latency.p99_9, max: r.latency.max, mean: Math.round(r.latency.mean * 100) / 100 };
}

async function outboxRows(sql: Sql): Promise<number> {
  const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox`;
  return row?.n ?? 0;
}

/** Waits until the consumer applied `count` distinct orders; false after `timeoutS` without progress. */
async function appliedAll(consumer: ConsumerProcess, count: number, timeoutS: number): Promise<boolean> {
  let last = -1;
  let since = Date.now();
  for (;;) {
    const distinct = consumer.progress()?.distinct ?? 0;
    if (distinct >= count) return true;
    if (distinct !== last) {
      last = distinct;
      since = Date.now();
    } else if (Date.now() - since > timeoutS * 1_000) {
      return false;
    }
    await sleep(100);
  }
}

const COMPONENTS = ['service', 'postgres', 'kafka', 'relay', 'consumer'] as const;

export const http: Scenario = {
  name: 'http',
  description: 'autocannon against POST /orders with the relay and the consumer running',
  defaults: { relayMode: 'cdc', store: 'table', durationS: 20, warmupS: 5 },
  flags: {
    'http-connections': { description: 'HTTP connections of autocannon', defaultValue: 32, min: 1, max: 10_000 },
    'http-rate': { description: 'requests/s of the fixed-rate phase (0 = half of the closed-loop maximum)', defaultValue: 0, min: 0, max: 1_000_000 },
  },
  async run(context) {
    const { infra, log } = context;
    const p = context.parameters;
    const rawDir = path.join(context.outDir, 'raw');
    mkdirSync(rawDir, { recursive: true });
    const schema = 'bench_http';
    const runId = Date.now().toString(36);
    const topicPrefix = `bench.http.${runId}.`;
    const topic = `${topicPrefix}order`;
    const sql = createSql(infra.databaseUrl, schema, { max: 1 });
    const kafka = createKafkaClient({ brokers: infra.kafkaBrokers, log, clientId: 'outbox-bench-http' });
    const children: ChildProcess[] = [];
    const slot = 'bench_http_slot';
    const publication = 'bench_http_pub';
    try {
      await sql`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = ${slot} AND NOT active`;
      await sql.unsafe(`DROP PUBLICATION IF EXISTS ${publication}`);
      await dropSchema(sql, schema);
      await migrate(sql, { schema, partitionWidth: '1 day', partitionsAhead: 2 });
      const publisher = new KafkajsPublisher({ kafka, route: () => topic, partitions: p.partitions });
      await publisher.ensureTopic(topic);
      await publisher.close();

      const env = childEnv(infra, schema, topicPrefix, p.partitions, { OUTBOX_BENCH_SLOT: slot, OUTBOX_BENCH_PUBLICATION: publication });
      const relay = (await startRelayProcess(rawDir, env, p)).child;
      children.push(relay);
      const port = await freeHttpPort();
      const service = await startServiceProcess(rawDir, env, port);
      children.push(service);
      const url = `http://127.0.0.1:${port}`;
      // The consumer runs from the start; it records latency only once the fixed-rate window is set.
      const consumer = await startConsumerProcess(rawDir, {
        databaseUrl: infra.databaseUrl,
        kafkaBrokers: [...infra.kafkaBrokers],
        schema,
        topic,
        groupId: `bench-http-${runId}`,
        measureFrom: Number.POSITIVE_INFINITY,
        measureTo: Number.POSITIVE_INFINITY,
        ordersPerWorker: [],
        countById: true,
      });
      children.push(consumer.child);

      // Phase 1: closed loop, the service's maximum (latency here includes queueing; see the fixed-rate phase).
      await closedLoop(url, p.partitions, Math.min(3, p.warmupS));
      const closed = await closedLoop(url, context.option('http-connections'), Math.max(5, Math.round(p.durationS / 2)));
      const maxRate = Math.round(closed.requests.average);
      process.stderr.write(`  closed loop: ${maxRate} requests/s, p99 ${closed.latency.p99} ms\n`);
      const closedOrders = await outboxRows(sql);
      if (!(await appliedAll(consumer, closedOrders, p.drainTimeoutS))) {
        throw new OutboxBenchError('CHECK_FAILED', `the closed-loop phase's ${closedOrders} orders were not all applied before the fixed-rate phase`);
      }

      // Phase 2: a fixed rate on the harness's own timetable.
      const rate = context.option('http-rate') || Math.max(50, Math.round(maxRate / 2));
      const startAt = nowMs() + 1_000;
      const endAt = startAt + p.durationS * 1_000;
      consumer.setWindow(startAt, endAt);
      const cpu = () => ({
        service: service.pid ? processCpuSeconds(service.pid) ?? null : null,
        postgres: infra.postgres.pid() ? processTreeCpuSeconds(infra.postgres.pid()!) ?? null : null,
        kafka: infra.kafka.pid() ? processCpuSeconds(infra.kafka.pid()!) ?? null : null,
        relay: relay.pid ? processTreeCpuSeconds(relay.pid) ?? null : null,
        consumer: consumer.child.pid ? processCpuSeconds(consumer.child.pid) ?? null : null,
      });
      await sleep(Math.max(0, startAt - nowMs()));
      const cpuBefore = cpu();
      const appliedAtWindowStart = consumer.progress()?.distinct ?? 0;
      const fixed = await openLoop({ url: `${url}/orders`, rate, durationS: p.durationS, connections: context.option('http-connections'), startAt, body: (i) => body(1_000_000 + i) });
      const totalOrders = await outboxRows(sql);
      const fixedOrders = totalOrders - closedOrders;
      const drained = await appliedAll(consumer, totalOrders, p.drainTimeoutS);
      const cpuAfter = cpu();
      const final = await consumer.finish();
      const requestToApplied = summarizeMs(decodeHistogram(final.endToEnd));
      const requestToReceipt = summarizeMs(decodeHistogram(final.receipt));
      const lost = Math.max(0, totalOrders - final.distinctIds);
      const perMillion = Object.fromEntries(
        COMPONENTS.map((key) => {
          const a = cpuAfter[key];
          const b = cpuBefore[key];
          return [key, a === null || b === null || fixedOrders === 0 || !drained ? null : Math.round(((a - b) / fixedOrders) * 1e6 * 10) / 10];
        }),
      );
      const extra = {
        closedLoop: { connections: context.option('http-connections'), requestsPerSec: maxRate, latencyMs: httpLatency(closed), non2xx: closed.non2xx, errors: closed.errors, orders: closedOrders },
        fixedRate: {
          requestsPerSec: rate,
          achievedPerSec: fixed.achievedPerSec,
          scheduler: 'open loop (the harness): every request due at its scheduled time; latency from that time',
          latencyMs: fixed.latencyMs,
          non2xx: fixed.non2xx,
          errors: fixed.errors,
          /** Orders written in this phase: what the CPU of its window is divided by. */
          ordersWritten: fixedOrders,
          /** Orders written in both phases: what the consumer must have applied. */
          ordersWrittenTotal: totalOrders,
          requestToAppliedMs: requestToApplied,
          requestToReceiptMs: requestToReceipt,
          deliveredDistinct: final.distinctIds,
          duplicates: final.duplicates,
          lost,
          /** From the phase's first scheduled request until its last order was applied. */
          cpuWindowS: Math.round((nowMs() - startAt) / 100) / 10,
          /** Orders already applied when the CPU window opened: every order of the closed loop, none of this phase. */
          appliedAtWindowStart,
          cpuSecondsPerMillionOrders: perMillion,
        },
        relay: p.relayMode,
      };
      const lines = [
        `http: POST /orders (one order per request, one transaction each), relay ${p.relayMode}, consumer running`,
        `  closed loop, ${extra.closedLoop.connections} connections: ${maxRate} requests/s, latency p50 ${closed.latency.p50} p99 ${closed.latency.p99} max ${closed.latency.max} ms, non-2xx ${closed.non2xx}`,
        `  fixed rate ${rate}/s for ${p.durationS} s (open loop, from the schedule): latency p50 ${fixed.latencyMs.p50} p99 ${fixed.latencyMs.p99} max ${fixed.latencyMs.max} ms, non-2xx ${fixed.non2xx}, errors ${fixed.errors}`,
        `  request -> applied: p50 ${requestToApplied.p50} p90 ${requestToApplied.p90} p99 ${requestToApplied.p99} p99.9 ${requestToApplied.p999} max ${requestToApplied.max} ms (n=${requestToApplied.count})`,
        `  CPU s per million orders of the fixed-rate phase: ${Object.entries(perMillion).map(([k, v]) => `${k} ${v ?? 'n/a'}`).join(', ')}`,
        `  orders written ${totalOrders}, applied ${final.distinctIds}, duplicates ${final.duplicates}, lost ${lost} -> ${lost === 0 ? 'nothing lost' : 'LOST'}`,
      ];
      return { title: lines[0]!, runs: [], extra, lines };
    } finally {
      for (const child of children.reverse()) await stopChild(child).catch(() => {});
      await deleteTopic(kafka, topic, log);
      await sql`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = ${slot} AND NOT active`.catch(() => {});
      await sql.end({ timeout: 5 });
    }
  },
};
