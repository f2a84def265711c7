/**
 * HTTP load against POST /orders with the CDC relay and the consumer running
 * throughout: what the order service sustains, its response latency, and how
 * long an order takes from its request to being applied by the consumer.
 *
 * The service runs twice, with group commit (concurrent orders share one
 * statement) and with one transaction per order. For each: a closed loop
 * (autocannon, as many requests as the connections allow) for its maximum,
 * then a search on the harness's own open-loop timetable for the highest
 * rate whose response p99, measured from each request's scheduled time,
 * stays within the limit.
 *
 * Then, with group commit, a fixed rate on the same timetable: every request
 * carries its scheduled time into the event (`x-intended-at`, forwarded by
 * the relay), so request -> applied is measured from the schedule too. It
 * begins only once every earlier order was applied, and its CPU window ends
 * once every order of its own was: the window holds exactly the orders its
 * CPU is divided by.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Sql } from '../../src/db.js';
import { OutboxBenchError } from '../../src/errors.js';
import { HEADERS, nowMs } from '../../src/events.js';
import { decodeHistogram, summarizeMs } from '../../src/latency.js';
import { body, closedLoop, freeHttpPort, httpLatency, searchRate, type SearchStep } from '../harness/http-load.js';
import { openLoop } from '../harness/open-loop-http.js';
import { DRIVERS } from '../drivers/index.js';
import { driverRunOf } from '../harness/driver-run.js';
import { processCpuSeconds, processTreeCpuSeconds } from '../harness/process-stats.js';
import { startConsumerProcess, startServiceProcess, stopChild, type ConsumerProcess } from '../harness/processes.js';
import { openRun, type RunSetup } from '../harness/run-setup.js';
import { current, f, type ReportContext } from '../report/kit.js';
import { yes, type Scenario, type ScenarioContext, type ScenarioReport } from '../scenario.js';
import { p99LimitFlag } from '../scenario-flags.js';

async function outboxRows(sql: Sql): Promise<number> {
  const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox`;
  return row?.n ?? 0;
}

/**
 * The outbox row count once the service has gone quiet. autocannon returns
 * at its deadline without waiting for requests still in flight, and the
 * service commits those after it returned; counting at once would leave them
 * out of the phase that sent them and put them in the next one's window.
 */
async function settledOutboxRows(sql: Sql): Promise<number> {
  // Far longer than a group-commit flush (a few ms), short next to a phase.
  const quietMs = 250;
  let last = await outboxRows(sql);
  for (;;) {
    await sleep(quietMs);
    const now = await outboxRows(sql);
    if (now === last) return now;
    last = now;
  }
}

/** Waits until the consumer applied `count` distinct orders; false after `timeoutS` without progress. */
async function appliedAll(consumer: ConsumerProcess, count: number, timeoutS: number): Promise<boolean> {
  let last = -1;
  let since = performance.now();
  for (;;) {
    const distinct = consumer.progress()?.distinct ?? 0;
    if (distinct >= count) return true;
    if (distinct !== last) {
      last = distinct;
      since = performance.now();
    } else if (performance.now() - since > timeoutS * 1_000) {
      return false;
    }
    await sleep(100);
  }
}

const COMPONENTS = ['service', 'postgres', 'kafka', 'relay', 'consumer'] as const;

interface ModeResult {
  mode: 'group commit' | 'one transaction per order';
  groupCommitMax: number;
  closedLoop: { connections: number; requestsPerSec: number; latencyMs: ReturnType<typeof httpLatency>; non2xx: number; errors: number };
  /** The highest open-loop rate whose response p99 stayed within the limit. */
  ratePassingP99: number;
  search: SearchStep[];
}

type Latency = Record<'p50' | 'p90' | 'p99' | 'p999' | 'max', number> & { count?: number };

/** What the HTTP scenario writes into its summary's `extra`. */
interface HttpExtra {
  relay: string;
  p99LimitMs: number;
  modes: ModeResult[];
  fixedRate: {
    mode: 'group commit';
    requestsPerSec: number;
    achievedPerSec: number;
    scheduler: string;
    latencyMs: Latency;
    non2xx: number;
    errors: number;
    /** Orders written in this phase: what the CPU of its window is divided by. */
    ordersWritten: number;
    /** Orders written in every phase: what the consumer must have applied. */
    ordersWrittenTotal: number;
    requestToAppliedMs: Latency;
    requestToReceiptMs: Latency;
    deliveredDistinct: number;
    duplicates: number;
    lost: number;
    /** From the phase's first scheduled request until its last order was applied. */
    cpuWindowS: number;
    /** Orders already applied when the CPU window opened: every earlier order, none of this phase. */
    appliedAtWindowStart: number;
    cpuSecondsPerMillionOrders: Record<string, number | null>;
  };
}

function report(context: ReportContext, folder: string): string[] {
  const extra = current<HttpExtra>(context, folder)?.extra;
  if (!extra?.modes) return [];
  const r = extra.fixedRate;
  const row = (label: string, rate: number | null, l: Record<string, number>, non2xx: number | null) =>
    `| ${label} | ${rate === null ? '' : f(rate)} | ${f(l.p50)} | ${f(l.p90)} | ${f(l.p99)} | ${f(l.p999)} | ${f(l.max)} | ${non2xx ?? ''} |`;
  return [
    '## HTTP: `POST /orders`',
    '',
    `The order service with the ${extra.relay} relay and the consumer running throughout, two ways: *group commit* (orders that arrive ` +
      'while earlier ones are written share one statement and one transaction, each answered once its own order committed) and one ' +
      'transaction per order. For each, a closed loop (autocannon) gives its maximum, and a search on the harness\'s own open-loop ' +
      `timetable finds the highest rate whose response p99, measured from each request's scheduled time, stays within ${extra.p99LimitMs} ms.`,
    '',
    `| service | closed loop, requests/s | closed-loop p99 (ms) | requests/s with p99 ≤ ${extra.p99LimitMs} ms (open loop) |`,
    '|---|---:|---:|---:|',
    ...extra.modes.map((m) => `| ${m.mode} | ${f(m.closedLoop.requestsPerSec)} | ${f(m.closedLoop.latencyMs.p99)} | ${m.ratePassingP99 > 0 ? f(m.ratePassingP99) : 'none tried passed'} |`),
    '',
    `Then a fixed ${r.requestsPerSec} requests/s with group commit, on the same timetable: every request carries its scheduled time into ` +
      'its event (`x-intended-at`, forwarded by the relay), so request → applied runs from the schedule too. The phase starts after every ' +
      `earlier order was applied, and its CPU window (${f(r.cpuWindowS)} s) ends when its own last order was applied.`,
    '',
    '| measured | requests/s | p50 | p90 | p99 | p99.9 | max (ms) | non-2xx |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    row(`HTTP response, from the schedule (achieved ${f(r.achievedPerSec)}/s)`, r.requestsPerSec, r.latencyMs, r.non2xx),
    row('request → applied, from the schedule', null, r.requestToAppliedMs, null),
    row('request → consumer receipt', null, r.requestToReceiptMs, null),
    '',
    `Orders of the fixed-rate phase ${r.ordersWritten.toLocaleString('en-US')} (of ${r.ordersWrittenTotal.toLocaleString('en-US')} in all); ` +
      `applied ${r.deliveredDistinct.toLocaleString('en-US')} distinct, duplicates ${r.duplicates}, lost ${r.lost}. CPU seconds per million orders of that phase: ` +
      Object.entries(r.cpuSecondsPerMillionOrders)
        .map(([process, v]) => `${process === 'postgres' ? 'PostgreSQL' : process} ${f(v)}`)
        .join(', ') +
      '.',
    '',
    '<details><summary>Every step of the rate searches</summary>',
    '',
    '| service | requests/s offered | achieved | p99 (ms) | verdict |',
    '|---|---:|---:|---:|---|',
    ...extra.modes.flatMap((m) => m.search.map((step) => `| ${m.mode} | ${f(step.rate)} | ${f(step.achievedPerSec)} | ${f(step.p99Ms)} | ${step.passed ? 'within' : 'over'} |`)),
    '',
    '</details>',
    '',
  ];
}

/** What every phase of a run shares: its servers, the relay and consumer running throughout, and the order bodies. */
interface HttpSession {
  context: ScenarioContext;
  run: RunSetup;
  rawDir: string;
  consumer: ConsumerProcess;
  relay: ChildProcess;
  /** Processes to stop when the run ends, in start order. */
  children: ChildProcess[];
  connections: number;
  p99LimitMs: number;
  nextBody: () => string;
  /** Waits until every order written so far was applied; resolves with their count. */
  caughtUp(): Promise<number>;
}

async function runHttp(context: ScenarioContext): Promise<ScenarioReport> {
  const { infra, log } = context;
  const p = context.parameters;
  const rawDir = path.join(context.outDir, 'raw');
  mkdirSync(rawDir, { recursive: true });
  // Our relay: it forwards the scheduled time the service stored in the event's headers.
  const driver = DRIVERS.ours;
  const run = await openRun({ infra, log, name: 'http', partitions: p.partitions, relay: driver.provisioning(p) });
  const children: ChildProcess[] = [];
  try {
    // The scheduled time travels in the event's stored headers; the relay forwards it.
    const started = await driver.start(driverRunOf({ infra, log, rawDir }, run, p), { settings: { forwardHeaders: [HEADERS.intendedAt] } });
    const relay = started.child;
    children.push(relay, ...(started.helpers ?? []));
    // The consumer runs from the start; it records latency only once the fixed-rate window is set.
    const consumer = await startConsumerProcess(rawDir, {
      databaseUrl: infra.databaseUrl,
      kafkaBrokers: [...infra.kafkaBrokers],
      schema: run.schema,
      topic: run.topic,
      groupId: `bench-http-${run.runId}`,
      measureFrom: Number.POSITIVE_INFINITY,
      measureTo: Number.POSITIVE_INFINITY,
      runTag: '',
      startAt: 0,
      perWorkerRate: 1,
      ordersPerWorker: [],
      countById: true,
    });
    children.push(consumer.child);
    let sequence = 0;
    const session: HttpSession = {
      context,
      run,
      rawDir,
      consumer,
      relay,
      children,
      connections: context.option('http-connections'),
      p99LimitMs: context.option('p99-limit-ms'),
      nextBody: () => body(sequence++),
      caughtUp: async () => {
        const written = await settledOutboxRows(run.sql);
        if (!(await appliedAll(consumer, written, p.drainTimeoutS))) {
          throw new OutboxBenchError('CHECK_FAILED', `${written} orders were written, and the consumer stopped short of applying them all`);
        }
        return written;
      },
    };
    const { modes, groupService } = await measureServiceModes(session);
    const fixedRate = await measureFixedRate(session, groupService, await session.caughtUp(), modes[0]?.closedLoop.requestsPerSec ?? 100);
    const extra: HttpExtra = { relay: p.relayMode, p99LimitMs: session.p99LimitMs, modes, fixedRate };
    const lines = summaryLines(extra, p.durationS);
    return { title: lines[0]!, runs: [], extra, lines };
  } finally {
    for (const child of children.reverse()) await stopChild(child).catch(() => {});
    await run.close();
  }
}

/** Each service mode: closed-loop maximum, then the rate search on the timetable. The group-commit service is left running for the fixed rate. */
async function measureServiceModes(session: HttpSession): Promise<{ modes: ModeResult[]; groupService: { child: ChildProcess; url: string } }> {
  const { context, connections, nextBody } = session;
  const p = context.parameters;
  const modes: ModeResult[] = [];
  let groupService: { child: ChildProcess; url: string } | undefined;
  const serviceModes = yes(context, 'http-compare') ? [context.option('group-commit'), 0] : [context.option('group-commit')];
  for (const groupCommitMax of serviceModes) {
    const port = await freeHttpPort();
    const service = await startServiceProcess(session.rawDir, session.run.env({ httpPort: port, groupCommitMax }));
    session.children.push(service);
    const url = `http://127.0.0.1:${port}`;
    await closedLoop(url, p.partitions, Math.min(3, p.warmupS), nextBody);
    await session.caughtUp();
    const closed = await closedLoop(url, connections, Math.max(5, Math.round(p.durationS / 2)), nextBody);
    const maxRate = Math.round(closed.requests.average);
    const label = groupCommitMax > 0 ? 'group commit' : 'one transaction per order';
    process.stderr.write(`  ${label}: closed loop ${maxRate} requests/s, p99 ${closed.latency.p99} ms\n`);
    const search =
      yes(context, 'http-search')
        ? await searchRate(url, maxRate, connections, session.p99LimitMs, nextBody, session.caughtUp, (line) => process.stderr.write(`  ${label}: ${line}\n`))
        : [];
    modes.push({
      mode: label,
      groupCommitMax,
      closedLoop: { connections, requestsPerSec: maxRate, latencyMs: httpLatency(closed), non2xx: closed.non2xx, errors: closed.errors },
      ratePassingP99: Math.max(0, ...search.filter((s) => s.passed).map((s) => s.rate)),
      search,
    });
    if (groupCommitMax > 0) groupService = { child: service, url };
    else await stopChild(service);
  }
  return { modes, groupService: groupService! };
}

type CpuReading = Record<(typeof COMPONENTS)[number], number | null>;

/**
 * CPU seconds per million orders, by process, between two readings that
 * bracket exactly `orders` orders (written and applied); null where a
 * reading is missing or no order was counted (a window that did not drain).
 */
export function cpuPerMillionOrders(before: CpuReading, after: CpuReading, orders: number): CpuReading {
  const perMillion = (key: (typeof COMPONENTS)[number]) => {
    const a = after[key];
    const b = before[key];
    return a === null || b === null || orders === 0 ? null : Math.round(((a - b) / orders) * 1e6 * 10) / 10;
  };
  return Object.fromEntries(COMPONENTS.map((key) => [key, perMillion(key)])) as CpuReading;
}

/** The fixed rate, group commit: request -> applied, and the CPU of exactly these orders. */
async function measureFixedRate(session: HttpSession, groupService: { child: ChildProcess; url: string }, earlierOrders: number, closedLoopRate: number): Promise<HttpExtra['fixedRate']> {
  const { context, consumer, relay } = session;
  const { infra } = context;
  const p = context.parameters;
  const rate = context.option('http-rate') || Math.max(50, Math.round(closedLoopRate / 2));
  // A whole millisecond: the header carries the schedule to 3 decimals, so
  // the first request's time must not round to just before the window.
  const startAt = Math.ceil(nowMs()) + 1_000;
  const endAt = startAt + p.durationS * 1_000;
  consumer.setWindow(startAt, endAt);
  const service = groupService.child;
  const cpu = (): CpuReading => ({
    service: service.pid ? processCpuSeconds(service.pid) ?? null : null,
    postgres: infra.postgres.pid() ? processTreeCpuSeconds(infra.postgres.pid()!) ?? null : null,
    kafka: infra.kafka.pid() ? processCpuSeconds(infra.kafka.pid()!) ?? null : null,
    relay: relay.pid ? processTreeCpuSeconds(relay.pid) ?? null : null,
    consumer: consumer.child.pid ? processCpuSeconds(consumer.child.pid) ?? null : null,
  });
  await sleep(Math.max(0, startAt - nowMs()));
  const cpuBefore = cpu();
  const appliedAtWindowStart = consumer.progress()?.distinct ?? 0;
  const fixed = await openLoop({ url: `${groupService.url}/orders`, rate, durationS: p.durationS, connections: session.connections, startAt, body: session.nextBody });
  const totalOrders = await outboxRows(session.run.sql);
  const fixedOrders = totalOrders - earlierOrders;
  const drained = await appliedAll(consumer, totalOrders, p.drainTimeoutS);
  const cpuAfter = cpu();
  const cpuWindowS = Math.round((nowMs() - startAt) / 100) / 10;
  const final = await consumer.finish();
  const perMillion = cpuPerMillionOrders(cpuBefore, cpuAfter, drained ? fixedOrders : 0);
  return {
    mode: 'group commit',
    requestsPerSec: rate,
    achievedPerSec: fixed.achievedPerSec,
    scheduler: 'open loop (the harness): every request due at its scheduled time; latency from that time',
    latencyMs: fixed.latencyMs,
    non2xx: fixed.non2xx,
    errors: fixed.errors,
    ordersWritten: fixedOrders,
    ordersWrittenTotal: totalOrders,
    requestToAppliedMs: summarizeMs(decodeHistogram(final.endToEnd)),
    requestToReceiptMs: summarizeMs(decodeHistogram(final.receipt)),
    deliveredDistinct: final.distinctIds,
    duplicates: final.duplicates,
    lost: Math.max(0, totalOrders - final.distinctIds),
    cpuWindowS,
    appliedAtWindowStart,
    cpuSecondsPerMillionOrders: perMillion,
  };
}

function summaryLines(extra: HttpExtra, durationS: number): string[] {
  const { modes, fixedRate: fixed, p99LimitMs } = extra;
  const applied = fixed.requestToAppliedMs;
  return [
    `http: POST /orders, relay ${extra.relay} and consumer running throughout`,
    ...modes.map(
      (m) =>
        `  ${m.mode.padEnd(26)} closed loop ${m.closedLoop.requestsPerSec} requests/s (p99 ${m.closedLoop.latencyMs.p99} ms); ` +
        `open loop with p99 <= ${p99LimitMs} ms from the schedule: ${m.ratePassingP99 > 0 ? `${m.ratePassingP99} requests/s` : 'no rate tried passed'}`,
    ),
    `  fixed rate ${fixed.requestsPerSec}/s for ${durationS} s (group commit, open loop): response p50 ${fixed.latencyMs.p50} p99 ${fixed.latencyMs.p99} max ${fixed.latencyMs.max} ms, non-2xx ${fixed.non2xx}, errors ${fixed.errors}`,
    `  request -> applied: p50 ${applied.p50} p90 ${applied.p90} p99 ${applied.p99} p99.9 ${applied.p999} max ${applied.max} ms (n=${applied.count})`,
    `  CPU s per million orders of the fixed-rate phase: ${Object.entries(fixed.cpuSecondsPerMillionOrders).map(([k, v]) => `${k} ${v ?? 'n/a'}`).join(', ')}`,
    `  orders written ${fixed.ordersWrittenTotal}, applied ${fixed.deliveredDistinct}, duplicates ${fixed.duplicates}, lost ${fixed.lost} -> ${fixed.lost === 0 ? 'nothing lost' : 'LOST'}`,
  ];
}

export const http: Scenario = {
  name: 'http',
  description: 'POST /orders with the CDC relay and the consumer running: group commit vs a transaction per order, then request -> applied',
  defaults: { relayMode: 'cdc', store: 'table', durationS: 20, warmupS: 5 },
  flags: {
    'http-connections': { description: 'HTTP connections (closed loop, and at most this many in flight on the timetable)', defaultValue: 32, min: 1, max: 10_000 },
    'http-rate': { description: 'requests/s of the fixed-rate phase (0 = half of the group-commit closed-loop maximum)', defaultValue: 0, min: 0, max: 1_000_000 },
    'p99-limit-ms': p99LimitFlag('the response', 50, 60_000, 'http-p99-ms'),
    'group-commit': { description: 'most orders per statement in the group-commit service', defaultValue: 500, min: 1, max: 10_000 },
    'http-compare': { kind: 'yes-no', description: 'also run the service with a transaction per order (no: group commit only)', defaultValue: true },
    'http-search': { kind: 'yes-no', description: 'search the highest rate within the p99 limit', defaultValue: true },
  },
  run: runHttp,
  report,
};
