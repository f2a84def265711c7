/**
 * HTTP load (autocannon) against POST /orders with a relay and the consumer
 * running: what the order service sustains, its response latency, and how
 * long an order takes from the HTTP request to the consumer.
 *
 * Two phases. First closed-loop (as many requests as the connections allow)
 * for the service's maximum. Then a fixed rate (autocannon's overallRate),
 * where autocannon corrects its latency for coordinated omission; each
 * request carries its send time, which the service propagates into the
 * event, so the consumer measures request -> consumer for every order.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { createSql, dropSchema, migrate } from '../../src/db.js';
import { HEADERS, nowMs } from '../../src/events.js';
import { isPortFree } from '../../src/infra/processes.js';
import { createKafkaClient } from '../../src/kafka-client.js';
import { decodeHistogram, summarizeMs } from '../../src/latency.js';
import { processCpuSeconds, processTreeCpuSeconds } from '../../src/process-stats.js';
import { KafkajsPublisher } from '../../src/relay/publisher.js';
import type { ConsumerFinal, ToConsumer } from '../harness/consumer-process.js';
import { childEnv, deleteTopic, startConsumerProcess, startRelayProcess, stopChild } from '../harness/pipeline.js';
import type { Scenario } from '../scenario.js';

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli.js');

async function freeHttpPort(): Promise<number> {
  for (let port = 38_080; port < 38_180; port++) if (await isPortFree(port)) return port;
  throw new Error('no free port for the order service in 38080-38179');
}

function body(i: number): string {
  return JSON.stringify({ customerId: `http-${i % 10_000}`, amountCents: 100 + (i % 9_900), currency: 'EUR' });
}

async function fire(url: string, options: { connections: number; durationS: number; rate?: number }): Promise<autocannon.Result> {
  let i = 0;
  return autocannon({
    url,
    connections: options.connections,
    duration: options.durationS,
    ...(options.rate ? { overallRate: options.rate } : {}),
    requests: [
      {
        method: 'POST',
        path: '/orders',
        setupRequest: (request) => ({
          ...request,
          headers: { 'content-type': 'application/json', [HEADERS.intendedAt]: nowMs().toFixed(3) },
          body: body(i++),
        }),
      },
    ],
  });
}

function httpLatency(r: autocannon.Result) {
  return { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, p999: r.latency.p99_9, max: r.latency.max, mean: Math.round(r.latency.mean * 100) / 100 };
}

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

      const pipelineContext = { infra, log, name: 'http', rawDir, quiet: context.quiet, lag: async () => ({ events: null, bytes: null }), relayEnv: { OUTBOX_BENCH_SLOT: slot, OUTBOX_BENCH_PUBLICATION: publication } };
      const env = childEnv(pipelineContext, schema, topicPrefix, p);
      const relay = await startRelayProcess(pipelineContext, env, p);
      children.push(relay);
      const port = await freeHttpPort();
      const service = fork(CLI, ['serve', '--port', String(port)], { env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
      children.push(service);
      service.stderr!.pipe(createWriteStream(path.join(rawDir, 'service.log')));
      let serviceOut = '';
      service.stdout!.setEncoding('utf8').on('data', (chunk: string) => (serviceOut += chunk));
      while (!/listening/.test(serviceOut)) {
        if (service.exitCode !== null) throw new Error(`the order service exited; see ${path.join(rawDir, 'service.log')}`);
        await sleep(50);
      }
      const url = `http://127.0.0.1:${port}`;

      // Phase 1: closed loop, the service's maximum (latency here includes queueing; see the fixed-rate phase).
      await fire(url, { connections: p.partitions, durationS: Math.min(3, p.warmupS) });
      const closed = await fire(url, { connections: context.option('http-connections'), durationS: Math.max(5, Math.round(p.durationS / 2)) });
      const maxRate = Math.round(closed.requests.average);
      process.stderr.write(`  closed loop: ${maxRate} requests/s, p99 ${closed.latency.p99} ms\n`);

      // Phase 2: a fixed rate, events measured from request to consumer.
      const rate = context.option('http-rate') || Math.max(50, Math.round(maxRate / 2));
      const measureFrom = nowMs() + 2_000;
      const measureTo = measureFrom + p.durationS * 1_000 + 1_000;
      const consumer = await startConsumerProcess(pipelineContext, {
        databaseUrl: infra.databaseUrl,
        kafkaBrokers: [...infra.kafkaBrokers],
        schema,
        topic,
        groupId: `bench-http-${runId}`,
        measureFrom,
        measureTo,
        perWorker: [],
        countById: true,
      });
      children.push(consumer.child);
      const [before] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox`;
      const cpu = () => ({
        service: service.pid ? processCpuSeconds(service.pid) ?? null : null,
        postgres: infra.postgres.pid() ? processTreeCpuSeconds(infra.postgres.pid()!) ?? null : null,
        kafka: infra.kafka.pid() ? processCpuSeconds(infra.kafka.pid()!) ?? null : null,
        relay: relay.pid ? processTreeCpuSeconds(relay.pid) ?? null : null,
        consumer: consumer.child.pid ? processCpuSeconds(consumer.child.pid) ?? null : null,
      });
      const cpuBefore = cpu();
      await sleep(Math.max(0, measureFrom - nowMs()));
      const fixed = await fire(url, { connections: context.option('http-connections'), durationS: p.durationS, rate });
      const [after] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox`;
      const written = after!.n - before!.n;

      // Drain: every order written in phase 2 must reach the consumer.
      const deadline = Date.now() + p.drainTimeoutS * 1_000;
      const writtenTotal = after!.n;
      for (;;) {
        const progress = consumer.messages.findLast((m) => m.type === 'progress');
        if (progress && progress.type === 'progress' && progress.distinct >= writtenTotal) break;
        if (Date.now() > deadline) break;
        await sleep(200);
      }
      const cpuAfter = cpu();
      consumer.child.send({ type: 'finish' } satisfies ToConsumer);
      let final: ConsumerFinal | undefined;
      while (!final) {
        final = consumer.messages.find((m): m is ConsumerFinal => m.type === 'final');
        if (!final && consumer.child.exitCode !== null) throw new Error('the consumer exited without its final report');
        await sleep(50);
      }
      const e2e = summarizeMs(decodeHistogram(final.endToEnd));
      const lost = Math.max(0, writtenTotal - final.distinctIds);
      const perMillion = (key: keyof ReturnType<typeof cpu>) => {
        const a = cpuAfter[key];
        const b = cpuBefore[key];
        return a === null || b === null || written === 0 ? null : Math.round(((a - b) / written) * 1e6 * 10) / 10;
      };
      const extra = {
        closedLoop: { connections: context.option('http-connections'), requestsPerSec: maxRate, latencyMs: httpLatency(closed), non2xx: closed.non2xx, errors: closed.errors },
        fixedRate: {
          requestsPerSec: rate,
          achievedPerSec: Math.round(fixed.requests.average),
          latencyMs: httpLatency(fixed),
          latencyCorrectedForCoordinatedOmission: true,
          non2xx: fixed.non2xx,
          errors: fixed.errors,
          /** Orders written in this phase (what the CPU cost is divided by). */
          ordersWritten: written,
          /** Orders written in both phases: what the consumer must have received. */
          ordersWrittenTotal: writtenTotal,
          requestToConsumerMs: e2e,
          deliveredDistinct: final.distinctIds,
          duplicates: final.duplicates,
          lost,
          cpuSecondsPerMillionOrders: { service: perMillion('service'), postgres: perMillion('postgres'), kafka: perMillion('kafka'), relay: perMillion('relay'), consumer: perMillion('consumer') },
        },
        relay: p.relayMode,
      };
      const lines = [
        `http: POST /orders (one order per request, one transaction each), relay ${p.relayMode}, consumer running`,
        `  closed loop, ${extra.closedLoop.connections} connections: ${maxRate} requests/s, latency p50 ${closed.latency.p50} p99 ${closed.latency.p99} max ${closed.latency.max} ms, non-2xx ${closed.non2xx}`,
        `  fixed rate ${rate}/s for ${p.durationS} s: latency p50 ${fixed.latency.p50} p99 ${fixed.latency.p99} max ${fixed.latency.max} ms (corrected for coordinated omission), non-2xx ${fixed.non2xx}`,
        `  request -> consumer: p50 ${e2e.p50} p90 ${e2e.p90} p99 ${e2e.p99} p99.9 ${e2e.p999} max ${e2e.max} ms (n=${e2e.count})`,
        `  orders written ${writtenTotal}, delivered ${final.distinctIds}, duplicates ${final.duplicates}, lost ${lost} -> ${lost === 0 ? 'nothing lost' : 'LOST'}`,
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
