/**
 * Our relays and the established ones on the same machine, the same outbox
 * rows (Debezium reads our table; pg-transactional-outbox gets an equivalent
 * table of its own), the same load, the same consumer, clock and CPU
 * accounting. For each relay, in this order:
 *
 *  1. its own sustained maximum M: the saturation search, 30 s steps;
 *  2. Debezium only: the smallest heap of 256, 512 and 1,024 MiB that
 *     sustains M (a step at M with each, smallest first); the rest of its
 *     runs use that heap;
 *  3. `--repeats` times (default 3): the drain of a backlog of
 *     max(20,000, 120 s x M) events (at most 200,000), and latency at a
 *     common 1,000 events/s (not run when M is below it) and at 50% and 80%
 *     of M.
 *
 * Every run is preceded by a prewarm of at least 60 s at min(1,000, M/2)
 * events/s (a search step: half its own rate), in the same run, so that a
 * JVM's class loading and JIT are over before anything is measured: a
 * drain's relay is paused while the backlog is written and timed from its
 * continuation. A relay's results replace its earlier ones in the folder's
 * summary, so the comparison can be measured one relay at a time
 * (`--strategies`); each keeps the commit and date it was measured at.
 */
import { fork } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSql, type Sql } from '../../src/db.js';
import { OutboxBenchError } from '../../src/errors.js';
import { nowMs } from '../../src/events.js';
import { createHistogram, decodeHistogram, type LatencySummaryMs } from '../../src/latency.js';
import { waitForReady } from '../../src/readiness.js';
import { dropIdleSlots, slotLagBytes } from '../../src/relay/slot.js';
import { gitCommit, measureCpu, probesDiffer, type CpuProbe } from '../harness/environment.js';
import { describeResult, medianWithRange } from '../harness/format.js';
import { median } from '../harness/stats.js';
import { bars, latencyByPercentile } from '../harness/charts.js';
import type { PrewarmParameters } from '../harness/load-worker.js';
import { stopChild } from '../harness/processes.js';
import { runPipeline, type LagReading, type PipelineContext, type PipelineParameters, type PipelineResult } from '../harness/pipeline.js';
import { judge, roundRate, runDrain, searchSustained, type SearchStep } from '../harness/saturation.js';
import { summarizeRun, type RunSummary } from '../harness/summary.js';
import { DEBEZIUM_DEFAULT, DEBEZIUM_LATENCY, DEBEZIUM_THROUGHPUT, DEBEZIUM_VERSION, debeziumTopicPrefix, preparePublication, startDebezium, waitForDebezium, type DebeziumSettings } from '../drivers/debezium.js';
import { freePort, jmxToolLibDir, queueFigures, startJmxSampler, streamingMBean, type JmxSampler, type QueueFigures } from '../drivers/jmx.js';
import { MESSAGE_NOT_FOUND, PTP_POLLING_SETTINGS, PTP_TABLE, setupPtp, type PtpMode, type PtpPollingSettings, type PtpRelayTask } from '../drivers/ptp-relay.js';
import { f, save, whole, type ReportContext, type Summary } from '../report/kit.js';
import type { Scenario, ScenarioContext } from '../scenario.js';

const PTP_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'drivers', 'ptp-relay.js');
const PTP_VERSION = '0.5.7';

export interface Relay {
  name: string;
  /** What --strategies calls it. */
  key: string;
  /** A family --strategies can name at once: ours, debezium, ptp. */
  family: 'ours' | 'debezium' | 'ptp';
  /** How it was configured, and exactly what differs from its defaults, for the report. */
  settings: string;
  parameters: Partial<PipelineParameters>;
  debezium?: DebeziumSettings;
  ptp?: PtpMode;
  /** Its polling listener's batch and interval. */
  ptpPolling?: PtpPollingSettings;
  /** Left out unless named in --strategies. */
  optional?: boolean;
  /** Where its search starts when no earlier result guides it (default UNGUIDED_START). */
  searchStart?: number;
}

/** pg-transactional-outbox's polling listener with these settings. */
function ptpPollingRelay(key: string, polling: PtpPollingSettings, optional = false): Relay {
  const batch = polling.nextMessagesBatchSize === PTP_POLLING_SETTINGS.nextMessagesBatchSize ? '' : `, batch ${polling.nextMessagesBatchSize}`;
  return {
    name: `pg-transactional-outbox polling${batch}`,
    key,
    family: 'ptp',
    settings:
      `changed from the library's defaults: nextMessagesBatchSize ${polling.nextMessagesBatchSize} (default 5), nextMessagesPollingIntervalInMs ` +
      `${polling.nextMessagesPollingIntervalInMs} (default 500), concurrent handler sends coalesced into one Kafka request (the handler's own choice); ` +
      'unchanged: retries, poisonous-message protection, lock time; segment = aggregate id',
    parameters: { store: 'ptp' },
    ptp: 'polling',
    ptpPolling: polling,
    ...(optional ? { optional } : {}),
    // Rationale: its polling function sorts every unprocessed row on each
    // call, so a backlog slows it further: offered 1,000/s it fell to ~50/s
    // and a failed step's drain took tens of minutes. Its earlier maximum, at
    // the library's defaults, was ~100/s.
    searchStart: 100,
  };
}

const RELAYS: Relay[] = [
  { name: 'ours: polling', key: 'polling', family: 'ours', settings: 'polling relay, 500 ms interval when idle, 1,000 rows per pass', parameters: { relayMode: 'polling', store: 'table' } },
  { name: 'ours: skip-locked', key: 'skip-locked', family: 'ours', settings: '3 SKIP LOCKED replicas owning aggregate buckets', parameters: { relayMode: 'skip-locked', store: 'table', replicas: 3 } },
  { name: 'ours: cdc', key: 'cdc', family: 'ours', settings: 'CDC relay (pgoutput), outbox table', parameters: { relayMode: 'cdc', store: 'table' } },
  { name: 'ours: cdc-message', key: 'cdc-message', family: 'ours', settings: 'CDC relay, table-less pg_logical_emit_message events', parameters: { relayMode: 'cdc-message', store: 'message' } },
  // Rationale: one shard per core of this machine.
  { name: 'ours: cdc-sharded', key: 'cdc-sharded', family: 'ours', settings: 'CDC relay in 2 shards (one slot each, aggregates split by hash)', parameters: { relayMode: 'cdc-sharded', store: 'table', replicas: 2 } },
  { name: DEBEZIUM_THROUGHPUT.name, key: DEBEZIUM_THROUGHPUT.name, family: 'debezium', settings: DEBEZIUM_THROUGHPUT.rationale, parameters: { store: 'table' }, debezium: DEBEZIUM_THROUGHPUT },
  { name: DEBEZIUM_LATENCY.name, key: DEBEZIUM_LATENCY.name, family: 'debezium', settings: DEBEZIUM_LATENCY.rationale, parameters: { store: 'table' }, debezium: DEBEZIUM_LATENCY },
  { name: DEBEZIUM_DEFAULT.name, key: DEBEZIUM_DEFAULT.name, family: 'debezium', settings: DEBEZIUM_DEFAULT.rationale, parameters: { store: 'table' }, debezium: DEBEZIUM_DEFAULT, optional: true },
  ptpPollingRelay('ptp-polling', PTP_POLLING_SETTINGS),
  // The batch of 50 (ptp-polling's) collides with the library's own concurrent poll
  // (a handler's NOWAIT row lock against the poll's), so smaller batches are
  // measured beside it, by name only, to find its best.
  ptpPollingRelay('ptp-polling-batch10', { ...PTP_POLLING_SETTINGS, nextMessagesBatchSize: 10 }, true),
  ptpPollingRelay('ptp-polling-batch5', { ...PTP_POLLING_SETTINGS, nextMessagesBatchSize: 5 }, true),
  {
    name: 'pg-transactional-outbox replication',
    key: 'ptp-replication',
    family: 'ptp',
    settings:
      "changed from the library's defaults: the segment-mutex concurrency controller (default: one global mutex), concurrent handler sends coalesced into one " +
      'Kafka request; unchanged: retries, poisonous-message protection, restart delays; segment = aggregate id, so one aggregate is still handled in order',
    parameters: { store: 'ptp' },
    ptp: 'replication',
  },
];

/** What --strategies names in this scenario. */
export const PEER_RELAY_KEYS: readonly string[] = RELAYS.map((r) => r.key);

// Rationale: a minute at a rate every relay keeps up with covers a JVM's
// class loading and C2 compilation, and every relay's first connections and
// batch-size ramps; nothing before it is measured.
const PREWARM_S = 60;
const PREWARM_MAX_RATE = 1_000;
// Rationale: 1,000 events/s is a rate every relay here should take, and a
// realistic steady load; relays whose maximum is below it say so.
const COMMON_RATE = 1_000;
// Rationale: a drain of two minutes at the relay's own maximum, at least
// 20,000 events (a fast relay's drain is still seconds long) and at most
// 200,000 (a slow peer's drain stays bounded in time).
const DRAIN_SECONDS_AT_MAX = 120;
const MIN_BACKLOG = 20_000;
const MAX_BACKLOG = 200_000;
// Rationale: a drain that has moved nothing for two minutes has stopped (a
// JVM's longest collection here is far shorter).
const DRAIN_TIMEOUT_S = 120;
// Rationale: 30 s steps hold 30 lag readings a second apart for the slope
// test even at a peer's lowest rates, and keep a search near 15 minutes.
const MIN_STEP_S = 30;
// Rationale: a 30 s step at 20/s still holds 600 orders for the share test,
// so a peer slower than 100/s gets its limit, not "no rate passed".
const MIN_PEER_RATE = 20;
// Rationale: a search guided by the relay's previous maximum starts at 70%
// of it and grows x1.4 (a pass or two, a failure, two bisections, the
// confirmation); an unguided one starts at 1,000/s and doubles.
const GUIDED_START_SHARE = 0.7;
const GUIDED_GROWTH = 1.4;
const UNGUIDED_START = 1_000;
const UNGUIDED_GROWTH = 2;
// Rationale: powers of two up to the 1 GiB earlier runs gave it: the
// smallest heap that holds the maximum is reported to within a factor of 2.
const DEBEZIUM_HEAPS_MB = [256, 512, 1_024] as const;

const slugOf = (name: string) => name.replace(/[^a-z0-9]+/gi, '_').replace(/^_|_$/g, '').toLowerCase();
/** The prewarm before a run of a relay whose maximum is `max` (before a search step: the step's own rate). */
export function prewarmFor(max: number): PrewarmParameters {
  // Rationale: a relay with no measured maximum still gets a minute of load, at a rate any relay takes.
  const rate = max > 0 ? Math.min(PREWARM_MAX_RATE, Math.round(max / 2 / 10) * 10) : 50;
  return { rate: Math.max(10, rate), seconds: PREWARM_S };
}

/** The backlog a relay with this maximum drains. */
export function backlogFor(max: number): number {
  return Math.min(MAX_BACKLOG, Math.max(MIN_BACKLOG, Math.round(max * DRAIN_SECONDS_AT_MAX)));
}

/** What each run of a peer needs beyond our relay's: its setup, start, lag and own readings. */
function contextFor(context: ScenarioContext, relay: Relay, name: string, heapMb?: number): PipelineContext {
  const slot = `peer_${slugOf(relay.name)}_slot`;
  const publication = `peer_${slugOf(relay.name)}_pub`;
  const base = { infra: context.infra, log: context.log, name, rawDir: path.join(context.outDir, 'raw', name), quiet: context.quiet };
  const slotLag = async (sql: Sql): Promise<LagReading> => ({ events: null, bytes: await slotLagBytes(sql, slot) });
  if (relay.debezium) {
    const settings = { ...relay.debezium, heapMb: heapMb ?? relay.debezium.heapMb };
    let jmx: JmxSampler | undefined;
    return {
      ...base,
      peer: {
        lag: slotLag,
        // Connect confirms the slot only when it flushes offsets (every 10 s in
        // the throughput profile, 60 s by default): the slot's lag is a sawtooth.
        lagFromDelivery: true,
        beforeLoad: async (sql, schema) => {
          await dropIdleSlots(sql, { name: slot });
          await preparePublication(sql, schema, publication);
          // Created before any load, so a drain run's backlog is in the slot's WAL.
          await sql`SELECT pg_create_logical_replication_slot(${slot}, 'pgoutput')`;
        },
        start: async (sql, schema, topicPrefix) => {
          const workDir = path.join(base.rawDir, 'connect');
          // Fetched before Connect starts, so a failed fetch leaves nothing running.
          const jmxTool = await jmxToolLibDir(context.config, context.log);
          const jmxPort = await freePort();
          const started = await startDebezium({
            config: context.config,
            log: context.log,
            databaseUrl: context.infra.databaseUrl,
            kafkaBrokers: context.infra.kafkaBrokers,
            schema,
            topicPrefix,
            slot,
            publication,
            workDir,
            settings,
            jmxPort,
          });
          try {
            await waitForDebezium(sql, slot, started.child, path.join(workDir, 'connect.log'));
            jmx = startJmxSampler({ libDir: jmxTool, port: jmxPort, mbean: streamingMBean(debeziumTopicPrefix(schema)), file: path.join(workDir, 'jmx.csv') });
          } catch (error) {
            // Not yet the run's to stop: this start never returned it.
            await stopChild(started.child).catch(() => {});
            throw error;
          }
          return { ...started, helpers: [jmx.child] };
        },
        observations: (window) => ({ heapMb: settings.heapMb, queue: jmx ? queueFigures(jmx.readings(), window.from, window.to) : null }),
      },
    };
  }
  if (relay.ptp) {
    const mode = relay.ptp;
    const libraryLog = path.join(base.rawDir, 'ptp-library.log');
    return {
      ...base,
      peer: {
        lag:
          mode === 'replication'
            ? slotLag
            : async (sql) => {
                const [row] = await sql.unsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM ${PTP_TABLE} WHERE processed_at IS NULL`);
                return { events: row?.n ?? null, bytes: null };
              },
        beforeLoad: (sql, schema) => setupPtp(sql, schema, mode, slot, publication),
        start: async (_sql, schema, topicPrefix) => {
          mkdirSync(base.rawDir, { recursive: true });
          const task: PtpRelayTask = {
            mode,
            databaseUrl: context.infra.databaseUrl,
            kafkaBrokers: [...context.infra.kafkaBrokers],
            schema,
            topicPrefix,
            partitions: context.parameters.partitions,
            slot,
            publication,
            kafkaClient: context.parameters.kafkaClient ?? context.config.kafkaClient,
            ...(relay.ptpPolling ? { polling: relay.ptpPolling } : {}),
          };
          const logFile = path.join(base.rawDir, 'ptp-relay.log');
          const spawnedAt = nowMs();
          // The library logs with pino to stdout: its own file, read for the report.
          const child = fork(PTP_SCRIPT, [JSON.stringify(task)], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
          child.stdout!.pipe(createWriteStream(libraryLog));
          child.stderr!.pipe(createWriteStream(logFile));
          await waitForReady(child, { timeoutMs: 60_000, describe: `the pg-transactional-outbox relay (log: ${logFile})` });
          return { child, spawnedAt };
        },
        observations: () => notFoundEvidence(libraryLog),
      },
    };
  }
  // Ours: the run provisions and measures our relay by its mode.
  return base;
}

/** The library's MESSAGE_NOT_FOUND warnings in a run's log: how many, and the first few lines as they were logged. */
function notFoundEvidence(file: string): { messageNotFound: number; lines: string[] } {
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const lines = text.split('\n').filter((line) => line.includes(MESSAGE_NOT_FOUND));
  return { messageNotFound: lines.length, lines: lines.slice(0, 3) };
}

async function dropPeerSlots(context: ScenarioContext): Promise<void> {
  const sql = createSql(context.infra.databaseUrl, 'public', { max: 1 });
  try {
    await dropIdleSlots(sql, { prefix: 'peer_' });
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** One measured run at a latency point, as published. */
export interface PointRun {
  eventsPerSec: number;
  e2eMs: LatencySummaryMs;
  cpuSecondsPerMillion: { relay: number | null; total: number | null };
  relayMemoryMiB: number | null;
  lost: number;
  duplicates: number;
  /** Share of the window's intended orders applied by its end plus 2 s: did the relay keep up at this rate. */
  deliveredShare: number;
  /** The run's e2e histogram (encoded), for the latency chart. */
  histogram: string;
  peer?: Record<string, unknown>;
}

export interface PeerPoint {
  /** `common`: 1,000 events/s; `half` and `eighty`: 50% and 80% of the relay's own maximum. */
  label: 'common' | 'half' | 'eighty';
  rate: number;
  runs: PointRun[];
  /** Why the point was not run (a maximum below the common rate). */
  skipped?: string;
}

export interface DrainRun {
  backlog: number;
  eventsPerSec: number;
  timeToFirstEventS: number;
  seconds: number;
  relayCpuSecondsPerMillion: number | null;
  relayMemoryMiB: number | null;
  lost: number;
  peer?: Record<string, unknown>;
}

export interface PeerResult {
  name: string;
  settings: string;
  /** The Kafka client our relays (and the pg-transactional-outbox adapter) published with. */
  kafkaClient: string | null;
  /** The offered rate of the highest step that passed twice (0 if none did). */
  sustainedRate: number;
  sustainedSteps: Pick<SearchStep, 'rate' | 'attempt' | 'passed' | 'reasons' | 'p99Ms' | 'deliveredShare'>[];
  /** Debezium's readings at the confirmed maximum (its queue over JMX). */
  atMax?: Record<string, unknown> | undefined;
  /** Debezium: each heap tried at the maximum, and the one the other runs used. */
  heapChecks?: { heapMb: number; passed: boolean; reasons: string[] }[];
  heapMb?: number;
  prewarm: PrewarmParameters;
  drains: DrainRun[];
  points: PeerPoint[];
  commit: string;
  date: string;
  /**
   * The host's speed, read just before this relay's runs (absent for relays
   * measured before the probe existed): relays merged from several sittings
   * compare one to one only if their hosts ran at one speed.
   */
  cpuProbe?: CpuProbe;
}

/** What the peers scenario writes into its summary's `extra`. */
export interface PeersResult {
  /** Marks the shape: runs measured warm, repeated, per relay. */
  version: 2;
  peers: PeerResult[];
  debezium: string;
  ptp: string;
  commonRate: number;
}

function pointRun(r: PipelineResult): PointRun {
  const summary = summarizeRun('point', r);
  return {
    eventsPerSec: r.eventsPerSec,
    e2eMs: r.e2eMs,
    cpuSecondsPerMillion: { relay: summary.cpuSecondsPerMillion.relay, total: summary.cpuSecondsPerMillion.total },
    relayMemoryMiB: summary.memoryMiB.relay,
    lost: r.lost,
    duplicates: r.duplicates,
    deliveredShare: r.windowDelivery.intended === 0 ? 0 : Math.round((r.windowDelivery.deliveredByDeadline / r.windowDelivery.intended) * 10_000) / 10_000,
    histogram: r.histograms.e2e,
    ...(r.peer ? { peer: r.peer } : {}),
  };
}

function drainRun(r: PipelineResult): DrainRun {
  const summary = summarizeRun('drain', r);
  return {
    backlog: r.drain?.backlog ?? r.sent,
    eventsPerSec: r.drain?.eventsPerSec ?? 0,
    timeToFirstEventS: r.drain?.timeToFirstEventS ?? Number.NaN,
    seconds: r.drain?.seconds ?? Number.NaN,
    relayCpuSecondsPerMillion: summary.cpuSecondsPerMillion.relay,
    relayMemoryMiB: summary.memoryMiB.relay,
    lost: r.lost,
    ...(r.peer ? { peer: r.peer } : {}),
  };
}

function previousResults(outDir: string): PeerResult[] {
  const file = path.join(outDir, 'summary.json');
  if (!existsSync(file)) return [];
  const extra = (JSON.parse(readFileSync(file, 'utf8')) as Summary<Partial<PeersResult>>).extra;
  return extra?.version === 2 && Array.isArray(extra.peers) ? extra.peers : [];
}

/**
 * The sustained maximum's bar: none when no rate passed, rather than a bar of
 * 0 the search never measured (the table says "below" the lowest rate tried).
 */
export function chartedMaximum(p: Pick<PeerResult, 'sustainedRate'>): number | null {
  return p.sustainedRate > 0 ? p.sustainedRate : null;
}

/**
 * The lowest rate above a relay's maximum that failed, as a search step or as
 * a confirmation: its limit lies between the two, and a failed confirmation
 * means the rate passed once and not twice.
 */
export function lowestFailed(p: Pick<PeerResult, 'sustainedRate' | 'sustainedSteps'>): string {
  const [failed] = p.sustainedSteps.filter((s) => !s.passed && s.rate > p.sustainedRate).sort((a, b) => a.rate - b.rate);
  if (!failed) return 'none tried';
  return `${whole(failed.rate)}${failed.attempt === 'confirm' ? ' (passed once, failed its confirmation)' : ''}`;
}

/** The earlier results with this sitting's replacing those of the same relay, in the relays' order. */
export function mergePeers(previous: readonly PeerResult[], fresh: readonly PeerResult[]): PeerResult[] {
  const byName = new Map(previous.map((p) => [p.name, p]));
  for (const p of fresh) byName.set(p.name, p);
  const rank = (name: string) => {
    const i = RELAYS.findIndex((r) => r.name === name);
    return i < 0 ? RELAYS.length : i;
  };
  return [...byName.values()].sort((a, b) => rank(a.name) - rank(b.name) || a.name.localeCompare(b.name));
}

/**
 * The relays a sitting measures: those named in --strategies by key (or a
 * family: ours, debezium, ptp; a family leaves out its optional members),
 * else every one not marked optional.
 */
export function selectRelays(named: readonly string[]): Relay[] {
  if (named.length === 0) return RELAYS.filter((r) => !r.optional);
  const matches = (r: Relay, n: string) => r.key === n || r.name === n || (r.family === n && !r.optional);
  const unknown = named.filter((n) => !RELAYS.some((r) => matches(r, n)));
  if (unknown.length > 0) {
    throw new OutboxBenchError('USAGE', `peers: --strategies ${unknown.join(', ')} names no relay; the relays are ${RELAYS.map((r) => r.key).join(', ')}, or the families ours, debezium, ptp`);
  }
  return RELAYS.filter((r) => named.some((n) => matches(r, n)));
}

const say = (line: string) => process.stderr.write(`${line}\n`);

async function measureRelay(context: ScenarioContext, relay: Relay, guide: number | undefined, stdoutLines: string[]): Promise<{ result: PeerResult; runs: RunSummary[] }> {
  const slug = slugOf(relay.name);
  // Read while the machine is idle, between relays.
  const cpuProbe = measureCpu();
  const base: PipelineParameters = { ...context.parameters, ...relay.parameters };
  const run = async (name: string, p: PipelineParameters, heapMb?: number) => {
    await dropPeerSlots(context);
    return runPipeline(contextFor(context, relay, name, heapMb), p);
  };

  // 1. Its own maximum.
  let atMax: Record<string, unknown> | undefined;
  await dropPeerSlots(context);
  const guided = guide !== undefined && guide > 0;
  const search = await searchSustained(
    contextFor(context, relay, `peer-${slug}-search`),
    base,
    {
      startRate: guided ? roundRate(guide * GUIDED_START_SHARE) : (relay.searchStart ?? UNGUIDED_START),
      growth: guided ? GUIDED_GROWTH : UNGUIDED_GROWTH,
      maxRate: context.option('peer-max-rate'),
      minRate: MIN_PEER_RATE,
      bisections: 2,
      p99LimitMs: 2_000,
      prewarm: (rate) => prewarmFor(rate),
      run: async (ctx, p) => {
        await dropPeerSlots(context);
        return runPipeline(ctx, p);
      },
      onResult: (step, r) => {
        if (relay.debezium && step.attempt === 'confirm' && step.passed) atMax = r.peer;
      },
    },
    (step) => say(`  ${relay.name} @ ${step.rate}/s${step.attempt === 'confirm' ? ' (confirmation)' : ''}: ${step.passed ? 'sustained' : step.reasons.join('; ')}`),
  );
  const max = search.sustainedRate;
  const prewarm = prewarmFor(max);

  // 2. Debezium: the smallest heap that sustains its maximum.
  let heapMb: number | undefined;
  let heapChecks: PeerResult['heapChecks'];
  if (relay.debezium && max > 0) {
    heapChecks = [];
    for (const heap of DEBEZIUM_HEAPS_MB) {
      if (heap === relay.debezium.heapMb) {
        // The search itself ran with this heap.
        heapChecks.push({ heapMb: heap, passed: true, reasons: [] });
        heapMb = heap;
        break;
      }
      // A heap too small may keep Connect from starting at all: that is a failed check, not a failed sitting.
      const step = await run(`peer-${slug}-heap-${heap}`, { ...base, rate: max, deliveryGraceMs: 2_000, prewarm }, heap).then(
        (r) => judgeAt(max, r),
        (error: unknown) => ({ passed: false, reasons: [`did not run: ${(error as Error).message ?? String(error)}`.slice(0, 300)] }),
      );
      heapChecks.push({ heapMb: heap, passed: step.passed, reasons: step.reasons });
      say(`  ${relay.name} with a ${heap} MiB heap @ ${max}/s: ${step.passed ? 'sustained' : step.reasons.join('; ')}`);
      if (step.passed) {
        heapMb = heap;
        break;
      }
    }
  }

  // 3. Repeated: the drain and the latency points.
  const points: PeerPoint[] = [
    max >= COMMON_RATE ? { label: 'common', rate: COMMON_RATE, runs: [] } : { label: 'common', rate: COMMON_RATE, runs: [], skipped: max > 0 ? `sustains ${max} events/s at most` : 'no rate was sustained' },
    { label: 'half', rate: roundRate(max * 0.5), runs: [], ...(max > 0 ? {} : { skipped: 'no rate was sustained' }) },
    { label: 'eighty', rate: roundRate(max * 0.8), runs: [], ...(max > 0 ? {} : { skipped: 'no rate was sustained' }) },
  ];
  const drains: DrainRun[] = [];
  const runs: RunSummary[] = [];
  const backlog = backlogFor(max);
  for (let repeat = 1; repeat <= context.repeats; repeat++) {
    await dropPeerSlots(context);
    const drained = await runDrain(contextFor(context, relay, `peer-${slug}-drain-r${repeat}`, heapMb), { ...base, prewarm }, backlog, DRAIN_TIMEOUT_S);
    drains.push(drainRun(drained));
    say(`  ${relay.name} drain ${repeat}/${context.repeats}: ${drained.drain?.eventsPerSec ?? 'n/a'} events/s over ${backlog} events, lost ${drained.lost}`);
    for (const point of points) {
      if (point.skipped) continue;
      const name = `peer-${slug}-${point.label}-r${repeat}`;
      const r = await run(name, { ...base, rate: point.rate, prewarm }, heapMb);
      point.runs.push(pointRun(r));
      if (point.label === 'common') runs.push(summarizeRun(name, r));
      for (const line of describeResult(`${relay.name} @ ${point.rate}/s (${repeat}/${context.repeats})`, r, relay.debezium || relay.ptp ? relay.name : undefined).slice(0, 3)) say(line);
    }
  }
  const common = points[0]!;
  stdoutLines.push(
    `  ${relay.name.padEnd(38)} max ${String(max).padStart(6)}/s  drain ${medianWithRange(drains.map((d) => d.eventsPerSec))}/s  ` +
      (common.skipped ? `at ${COMMON_RATE}/s: ${common.skipped}` : `at ${COMMON_RATE}/s e2e p99 ${medianWithRange(common.runs.map((r) => r.e2eMs.p99))} ms`),
  );
  return {
    result: {
      name: relay.name,
      settings: relay.settings,
      kafkaClient: relay.debezium ? null : (context.parameters.kafkaClient ?? context.config.kafkaClient),
      sustainedRate: max,
      sustainedSteps: search.steps.map((s) => ({ rate: s.rate, attempt: s.attempt, passed: s.passed, reasons: s.reasons, p99Ms: s.p99Ms, deliveredShare: s.deliveredShare })),
      ...(atMax ? { atMax } : {}),
      ...(heapChecks ? { heapChecks, heapMb: heapMb ?? relay.debezium!.heapMb } : {}),
      prewarm,
      drains,
      points,
      commit: gitCommit(),
      date: new Date().toISOString(),
      cpuProbe,
    },
    runs,
  };
}

/** A heap check is a confirmation step at the maximum: the saturation rule, applied to one run. */
function judgeAt(rate: number, r: PipelineResult) {
  return judge(rate, 'confirm', r, { startRate: rate, maxRate: rate, growth: 1, bisections: 0, p99LimitMs: 2_000 });
}

// --- report -----------------------------------------------------------------

const mr = (values: readonly (number | null | undefined)[]) => medianWithRange(values, (n) => f(n));

function pointCell(point: PeerPoint | undefined): string {
  if (!point) return 'n/a';
  if (point.skipped) return `not run: ${point.skipped}`;
  return `${mr(point.runs.map((r) => r.e2eMs.p50))} / ${mr(point.runs.map((r) => r.e2eMs.p99))} / ${mr(point.runs.map((r) => r.e2eMs.p999))}`;
}

function queueCell(observations: Record<string, unknown> | undefined): string {
  const queue = observations?.queue as QueueFigures | null | undefined;
  if (!queue || queue.readings === 0) return 'not read';
  return `${f(queue.remainingMedian)} of ${f(queue.capacity)} free (${f(queue.remainingMin)}–${f(queue.remainingMax)}); ${queue.verdict}`;
}

/**
 * What the peers table can claim about its hosts: relays run one sitting at a
 * time, and hosts of one model here have differed up to threefold, so rows
 * from hosts of different speeds are not a like-for-like comparison.
 */
export function hostNote(peers: readonly Pick<PeerResult, 'name' | 'cpuProbe'>[]): string {
  const probed = peers.filter((p): p is typeof p & { cpuProbe: CpuProbe } => p.cpuProbe !== undefined);
  const unprobed = peers.filter((p) => p.cpuProbe === undefined).map((p) => p.name);
  const parts: string[] = [];
  if (probed.length > 0) {
    const ns = probed.map((p) => p.cpuProbe.nsPerOp);
    const [fastest, slowest] = [Math.min(...ns), Math.max(...ns)];
    parts.push(
      probesDiffer(fastest, slowest)
        ? `**Hosts of different speeds**: the CPU probe read ${whole(fastest)} to ${whole(slowest)} ns per operation across these relays' sittings ` +
            `(${probed.map((p) => `${p.name} ${whole(p.cpuProbe.nsPerOp)}`).join(', ')}); their rates and CPU per event do not compare one to one.`
        : `Every probed relay ran on a host of one speed (CPU probe ${whole(fastest)}-${whole(slowest)} ns per operation).`,
    );
  }
  if (unprobed.length > 0) {
    parts.push(
      `The host's speed was not recorded for ${unprobed.join(', ')} (measured before the CPU probe existed): ` +
        'their sittings may have run on hosts of different speeds, which these figures cannot show.',
    );
  }
  return parts.join(' ');
}

function report(context: ReportContext, folder: string): string[] {
  const summary = context.summaries.get(folder) as Summary<Partial<PeersResult>> | undefined;
  const extra = summary?.extra;
  if (!summary || !extra) return [];
  if (extra.version !== 2 || !extra.peers) {
    return [
      '## Peers side by side: Debezium and pg-transactional-outbox',
      '',
      `> The published comparison (${summary.date.slice(0, 10)}) was measured cold (a fresh JVM inside short windows) and once; it is not shown. ` +
        'Run `npm run bench:peers` (or one relay at a time with `--strategies`) to measure it warm and repeated.',
      '',
    ];
  }
  const peers = extra.peers;
  const commits = [...new Set(peers.map((p) => p.commit.slice(0, 7)))];
  const point = (p: PeerResult, label: PeerPoint['label']) => p.points.find((x) => x.label === label);
  const lines = [
    '## Peers side by side: Debezium and pg-transactional-outbox',
    '',
    `Same machine, same load generator (${summary.parameters.ordersPerTransaction} new orders per transaction), the same idempotent consumer, clock and CPU accounting. ` +
      `Debezium ${extra.debezium} (Kafka Connect standalone, Outbox Event Router) reads our outbox table; pg-transactional-outbox ${extra.ptp} ` +
      'gets an equivalent table of its own, created with its DatabaseSetup. Every run starts with a prewarm of ' +
      `${PREWARM_S} s at min(${PREWARM_MAX_RATE}, half the relay's maximum) events/s, inside the run, so class loading and JIT are over before anything is measured. ` +
      `*Max*: the saturation search (${summary.parameters.durationS} s steps, confirmed twice; Debezium's lag is judged by the orders committed and not yet applied, ` +
      'since Connect confirms its slot only when it flushes offsets). ' +
      `*Drain*: a backlog of max(${MIN_BACKLOG.toLocaleString('en-US')}, ${DRAIN_SECONDS_AT_MAX} s × max) ` +
      `events (at most ${MAX_BACKLOG.toLocaleString('en-US')}) written while the warm relay is paused, timed from its continuation, 10%–90% rate. ` +
      `Latency at a common ${extra.commonRate?.toLocaleString('en-US') ?? COMMON_RATE} events/s and at 50% and 80% of each relay's own maximum. ` +
      `Medians of ${Math.max(...peers.map((p) => p.drains.length))} runs, their range in brackets. Memory: the highest sum of resident memory over every process of the relay ` +
      `(replicas, shards, the JVM), read once a second. Measured at ${commits.join(', ')}.`,
    '',
    '| relay | max events/s | lowest rate that failed | drain events/s | e2e p50 / p99 / p99.9 at 1,000/s (ms) | at 50% of max | at 80% of max | relay CPU-s / 1M at 1,000/s | total CPU-s / 1M | relay memory (MiB) | lost | duplicates |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...peers.map((p) => {
      const common = point(p, 'common');
      const half = point(p, 'half');
      const eighty = point(p, 'eighty');
      const allRuns = p.points.flatMap((x) => x.runs);
      const memory = Math.max(...allRuns.map((r) => r.relayMemoryMiB ?? 0), ...p.drains.map((d) => d.relayMemoryMiB ?? 0));
      const lost = allRuns.reduce((sum, r) => sum + r.lost, 0) + p.drains.reduce((sum, d) => sum + d.lost, 0);
      const cpuRuns = common && !common.skipped ? common.runs : (eighty?.runs ?? []);
      const cpuNote = common && !common.skipped ? '' : ' (at 80%)';
      return (
        `| ${p.name} | ${p.sustainedRate > 0 ? whole(p.sustainedRate) : `below ${p.sustainedSteps.length > 0 ? whole(Math.min(...p.sustainedSteps.map((s) => s.rate))) : 'n/a'}`} | ${lowestFailed(p)} | ${mr(p.drains.map((d) => d.eventsPerSec))} | ` +
        `${pointCell(common)} | ${half?.skipped ? pointCell(half) : `${whole(half?.rate)}/s: ${pointCell(half)}`} | ${eighty?.skipped ? pointCell(eighty) : `${whole(eighty?.rate)}/s: ${pointCell(eighty)}`} | ` +
        `${mr(cpuRuns.map((r) => r.cpuSecondsPerMillion.relay))}${cpuNote} | ${mr(cpuRuns.map((r) => r.cpuSecondsPerMillion.total))}${cpuNote} | ${memory > 0 ? f(memory) : 'n/a'} | ` +
        `${lost} | ${allRuns.reduce((sum, r) => sum + r.duplicates, 0)} |`
      );
    }),
    '',
    hostNote(peers),
    '',
  ];
  const debezium = peers.filter((p) => p.heapChecks);
  if (debezium.length > 0) {
    lines.push(
      "Debezium's streaming queue (between the WAL reader and Connect's producer loop), read over JMX with Kafka's JmxTool once a second, and the smallest heap that sustained its maximum:",
      '',
      '| profile | heap (MiB) | heaps tried at the max | queue at the max | queue at 80% of max |',
      '|---|---:|---|---|---|',
      ...debezium.map((p) => {
        const eighty = point(p, 'eighty')?.runs[0]?.peer;
        const tried = (p.heapChecks ?? []).map((h) => `${h.heapMb}: ${h.passed ? 'sustained' : h.reasons.join('; ')}`).join('<br>');
        return `| ${p.name} | ${f(p.heapMb)} | ${tried} | ${queueCell(p.atMax)} | ${queueCell(eighty)} |`;
      }),
      '',
    );
  }
  const ptp = peers.filter((p) => p.name.startsWith('pg-transactional-outbox'));
  for (const p of ptp) {
    const evidence = [...p.drains.map((d) => d.peer), ...p.points.flatMap((x) => x.runs.map((r) => r.peer))].filter(Boolean) as { messageNotFound: number; lines: string[] }[];
    const count = evidence.reduce((sum, e) => sum + (e.messageNotFound ?? 0), 0);
    if (count === 0) continue;
    lines.push(
      `**${p.name}: ${count} messages skipped as MESSAGE_NOT_FOUND**, the library's defect in ${extra.ptp}: a message it cannot find when it starts ` +
        "handling it (replication can announce a row before the library's own SELECT sees it) is logged, acknowledged and never published; later releases " +
        'retry it. The runs count such messages as lost. The first lines it logged:',
      '',
      '```',
      ...evidence.flatMap((e) => e.lines).slice(0, 3),
      '```',
      '',
    );
  }
  lines.push('<details><summary>How each relay was configured</summary>', '', ...peers.map((p) => `- **${p.name}**: ${p.settings}${p.kafkaClient ? ` (Kafka client: ${p.kafkaClient})` : ''}`), '', '</details>', '');

  // Short names keep the legend on one line and the bar labels apart.
  const chartName = (name: string) => name.replace('ours: ', '').replace('debezium-', 'dbz ').replace('pg-transactional-outbox', 'ptp');
  const legend = `dbz = Debezium ${extra.debezium}, ptp = pg-transactional-outbox ${extra.ptp}, the rest are ours`;
  const throughput = bars(
    peers.map((p) => chartName(p.name)),
    [
      { name: 'backlog drain (events/s, median)', values: peers.map((p) => median(p.drains.map((d) => d.eventsPerSec)) ?? null) },
      { name: 'sustained maximum (events/s)', values: peers.map(chartedMaximum) },
    ],
    'Throughput: our relays and their peers, warm',
    'events per second',
    `same machine, same consumer; ${legend}`,
  );
  lines.push(`![Peers throughput](${save(context.charts, 'peers-throughput', throughput)})`, '');
  const withCommon = peers.filter((p) => (point(p, 'common')?.runs.length ?? 0) > 0);
  if (withCommon.length > 0) {
    const latency = latencyByPercentile(
      withCommon.map((p) => {
        const merged = createHistogram();
        for (const r of point(p, 'common')!.runs) merged.add(decodeHistogram(r.histogram));
        return { name: chartName(p.name), histogram: merged };
      }),
      'End-to-end latency by percentile at 1,000 events/s, warm',
      `every repeat's events together; ${legend}`,
    );
    lines.push(`![Peers latency](${save(context.charts, 'peers-latency', latency)})`, '');
  }
  return lines;
}

export const peers: Scenario = {
  name: 'peers',
  description: 'our relays vs Debezium (throughput and latency profiles) and pg-transactional-outbox (polling, replication), warm and repeated, on the same load',
  standalone: true,
  // Rationale: ten orders per transaction, as in the saturation search, so a
  // relay's maximum is measured rather than the write path's at one order per
  // commit; 30 s steps hold 30 lag readings a second apart for the slope test
  // even at a peer's lowest rates, and keep a search near 15 minutes.
  defaults: { ordersPerTransaction: 10, warmupS: 5, durationS: MIN_STEP_S, drainTimeoutS: 30 },
  flags: {
    'peer-max-rate': { description: 'peers: highest rate the sustained search tries', defaultValue: 100_000, min: 100, max: 1_000_000 },
  },
  async run(context) {
    if (context.parameters.durationS < MIN_STEP_S) {
      throw new OutboxBenchError('USAGE', `peers: every measured window is at least ${MIN_STEP_S} s (--duration-s ${context.parameters.durationS} given)`);
    }
    const relays = selectRelays(context.list('strategies', []));
    const previous = previousResults(context.outDir);
    const fresh: PeerResult[] = [];
    const runs: RunSummary[] = [];
    const failed: string[] = [];
    const lines: string[] = [`peers: Debezium ${DEBEZIUM_VERSION}; pg-transactional-outbox ${PTP_VERSION}; ${context.repeats} repeats`];
    for (const relay of relays) {
      say(`peers: ${relay.name}`);
      const guide = previous.find((p) => p.name === relay.name)?.sustainedRate;
      try {
        const measured = await measureRelay(context, relay, guide, lines);
        fresh.push(measured.result);
        runs.push(...measured.runs);
      } catch (error) {
        // A sitting measures relays for hours: one that fails keeps its
        // earlier results, and the others' are still written.
        failed.push(`${relay.key}: ${(error as Error).message ?? String(error)}`);
        lines.push(`  ${relay.name.padEnd(38)} FAILED (its earlier results, if any, are kept): ${(error as Error).message ?? String(error)}`);
      }
    }
    await dropPeerSlots(context);
    return {
      title: 'Our relays and their peers on the same workload, warm and repeated',
      runs,
      extra: { version: 2, peers: mergePeers(previous, fresh), debezium: DEBEZIUM_VERSION, ptp: PTP_VERSION, commonRate: COMMON_RATE } satisfies PeersResult,
      lines,
      failed,
    };
  },
  report,
};
