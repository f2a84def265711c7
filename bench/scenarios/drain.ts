/**
 * What one relay process and one consumer process can carry, each alone.
 *
 * Relay-only drain: a backlog (1,000,000 events by default, 1,000 per
 * transaction) is written while no relay runs (the CDC slot exists before
 * the first write), then the relay process is spawned and the run times,
 * from Kafka's end offsets, how fast the events arrive. Rate and CPU come
 * from the part between 10% and 90% of the backlog, CPU split by process
 * (relay, PostgreSQL with its walsender, Kafka) and, for the relay, between
 * its JavaScript thread and its other threads: the JavaScript thread is
 * what one process cannot scale past.
 *
 * Consumer-only drain: the filled topic is then applied by the consumer
 * (inbox + ledger) from the beginning, timed the same way.
 *
 * `--profile 1` adds one more drain per relay and client, run under
 * `node --cpu-prof`: its profiles' top frames by self time go into the
 * summary, and its figures into none (the profiler costs CPU of its own).
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONSUMER_KAFKA_CLIENTS, KAFKA_CLIENTS, type ConsumerKafkaClientName, type KafkaClientName } from '../../src/config.js';
import { createSql, dropSchema, migrate } from '../../src/db.js';
import { OutboxBenchError, describeError } from '../../src/errors.js';
import { nowMs } from '../../src/events.js';
import type { Infra } from '../../src/infra/index.js';
import { TopicAdmin } from '../../src/kafka/index.js';
import { createKafkaClient } from '../../src/kafka-client.js';
import { ORDER_AGGREGATE, type OutboxStore } from '../../src/orders/write-path.js';
import { childPids, processCpuSeconds, processTreeCpuSeconds, threadCpuSeconds } from '../../src/process-stats.js';
import { prepareSlot, dropIdleSlots } from '../../src/relay/slot.js';
import { silentLogger } from '../../src/log.js';
import { medianWithRange } from '../harness/format.js';
import { newRunTag } from '../harness/load-ids.js';
import { planLoad } from '../harness/load-worker.js';
import { loadPool, runLoad, type PipelineParameters } from '../harness/pipeline.js';
import { childEnv, deleteTopic, exitedWithin, startConsumerProcess, startRelayProcess, stopChild } from '../harness/processes.js';
import { summarizeProfileDir, type ProfileSummary } from '../harness/profile.js';
import type { Scenario, ScenarioContext } from '../scenario.js';

interface Strategy {
  name: string;
  relayMode: PipelineParameters['relayMode'];
  store: OutboxStore;
  replicas: number;
  cdc: boolean;
}

const STRATEGIES: readonly Strategy[] = [
  { name: 'cdc', relayMode: 'cdc', store: 'table', replicas: 1, cdc: true },
  { name: 'cdc-message', relayMode: 'cdc-message', store: 'message', replicas: 1, cdc: true },
  { name: 'polling', relayMode: 'polling', store: 'table', replicas: 1, cdc: false },
  { name: 'skip-locked', relayMode: 'skip-locked', store: 'table', replicas: 3, cdc: false },
];

// Rationale: readings every 50 ms put the 10% and 90% marks of a drain of
// tens of seconds within a fraction of a percent of where they were, and a
// reading (a count query, two /proc reads) costs far less than that.
const SAMPLE_MS = 50;
// Rationale: a drain that moves nothing for this long has stopped; its
// figures are reported with what was missing.
const STALL_S = 60;
// Rationale: the 10% and 90% marks and the CPU at them are interpolated
// between readings, so a window spanning one or two readings would report a
// rate and a cost that were never measured (a 10,000-event drain inside one
// 100 ms reading "ran" at 99,000/s with no CPU). Ten readings bound the
// interpolation error at each end to about a tenth of the window.
const MIN_WINDOW_READINGS = 10;

/** CPU seconds of the drain's processes at one moment (`...Main`: their JavaScript threads). */
interface CpuReading {
  at: number;
  relay: number;
  relayMain: number;
  postgres: number;
  kafka: number;
  consumer: number;
  consumerMain: number;
}

type CpuKey = Exclude<keyof CpuReading, 'at'>;

interface Progress {
  at: number;
  done: number;
}

export interface DrainFigures {
  events: number;
  /** Spawned -> first event arrived, s. */
  timeToFirstEventS: number;
  /** Between 10% and 90% of the events; null when that window was too short to measure. */
  eventsPerSec: number | null;
  /** Length of the 10%-90% window, s. */
  windowS: number | null;
  /** Spawned -> last event, s. */
  seconds: number;
  /** CPU seconds per million events in the 10%-90% window, by process. */
  cpuSecondsPerMillion: Record<string, number | null>;
  /** The JavaScript thread's CPU per event, µs (relay: every process's main thread). */
  jsThreadUsPerEvent: number | null;
  missing: number;
}

export interface ConsumerDrain {
  client: ConsumerKafkaClientName;
  figures: DrainFigures;
  /** Only in the extra, profiled run. */
  profile?: ProfileSummary | undefined;
}

export interface DrainRun {
  strategy: string;
  kafkaClient: KafkaClientName;
  relay: DrainFigures;
  /** Consumer-only drains of this run's topic, one per consumer client (on the first relay client's runs). */
  consumers: ConsumerDrain[];
  /** Only in the extra, profiled run; its figures are not among the measured ones. */
  relayProfile?: ProfileSummary | undefined;
}

/** A run that could not finish, recorded with why (the others still run). */
export interface FailedDrainRun {
  strategy: string;
  kafkaClient: KafkaClientName;
  attempt: number;
  error: string;
}

/** A reading's value at `at`, linear between the two readings around it. */
function cpuAt(readings: readonly CpuReading[], at: number, key: CpuKey): number | undefined {
  for (let i = 1; i < readings.length; i++) {
    const a = readings[i - 1]!;
    const b = readings[i]!;
    if (a.at <= at && at <= b.at) return b.at === a.at ? a[key] : a[key] + ((b[key] - a[key]) * (at - a.at)) / (b.at - a.at);
  }
  return undefined;
}

/** When progress first reached `target` (linear between readings). */
function timeOf(progress: readonly Progress[], target: number): number | undefined {
  for (let i = 1; i < progress.length; i++) {
    const a = progress[i - 1]!;
    const b = progress[i]!;
    if (a.done < target && b.done >= target) return a.at + ((target - a.done) * (b.at - a.at)) / (b.done - a.done);
  }
  return progress[0] && progress[0].done >= target ? progress[0].at : undefined;
}

function figures(events: number, spawnedAt: number, progress: readonly Progress[], cpu: readonly CpuReading[], keys: CpuKey[], mainKey: CpuKey): DrainFigures {
  const done = progress.at(-1)?.done ?? 0;
  const first = timeOf(progress, 1);
  const last = timeOf(progress, events);
  const from = timeOf(progress, Math.ceil(events * 0.1));
  const to = timeOf(progress, Math.ceil(events * 0.9));
  const inWindow = Math.ceil(events * 0.9) - Math.ceil(events * 0.1);
  const measurable =
    from !== undefined && to !== undefined && to > from && progress.filter((p) => p.at >= from && p.at <= to).length >= MIN_WINDOW_READINGS;
  const cpuBetween = (key: CpuKey) => {
    if (!measurable) return null;
    const a = cpuAt(cpu, from, key);
    const b = cpuAt(cpu, to, key);
    return a === undefined || b === undefined || Number.isNaN(a) || Number.isNaN(b) ? null : Math.max(0, b - a);
  };
  const perMillion = Object.fromEntries(keys.map((key) => {
    const seconds = cpuBetween(key);
    return [key, seconds === null ? null : Math.round((seconds / inWindow) * 1e7) / 10];
  }));
  const main = cpuBetween(mainKey);
  return {
    events,
    timeToFirstEventS: first === undefined ? Number.NaN : Math.round(first - spawnedAt) / 1_000,
    eventsPerSec: measurable ? Math.round(inWindow / ((to! - from!) / 1_000)) : null,
    windowS: from !== undefined && to !== undefined ? Math.round(to - from) / 1_000 : null,
    seconds: last === undefined ? Number.NaN : Math.round(last - spawnedAt) / 1_000,
    cpuSecondsPerMillion: perMillion,
    jsThreadUsPerEvent: main === null ? null : Math.round((main / inWindow) * 1e7) / 10,
    missing: Math.max(0, events - done),
  };
}

/** Sums the end offsets of a topic's partitions: how many events Kafka has. */
async function endOffsets(admin: ReturnType<ReturnType<typeof createKafkaClient>['admin']>, topic: string): Promise<number> {
  const offsets = await admin.fetchTopicOffsets(topic);
  return offsets.reduce((sum, p) => sum + Number(p.high), 0);
}

/** CPU of the relay process tree and of every one of its processes' main threads. */
function relayCpu(pid: number | undefined): { total: number; main: number } {
  if (pid === undefined) return { total: Number.NaN, main: Number.NaN };
  const pids = [pid, ...childPids(pid)];
  let main = 0;
  for (const one of pids) main += threadCpuSeconds(one)?.main ?? 0;
  return { total: processTreeCpuSeconds(pid) ?? Number.NaN, main };
}

async function drainOnce(
  context: ScenarioContext,
  strategy: Strategy,
  client: KafkaClientName,
  consumerClients: readonly ConsumerKafkaClientName[],
  attempt: number,
  profile: boolean,
): Promise<DrainRun> {
  const { infra, log } = context;
  const p = context.parameters;
  const events = context.option('drain-events');
  const name = `drain-${strategy.name}-${client}-${profile ? 'profiled' : attempt + 1}`;
  const rawDir = path.join(context.outDir, 'raw', name);
  mkdirSync(rawDir, { recursive: true });
  const schema = `bench_${name.replace(/[^a-z0-9]/g, '_')}`;
  const topicPrefix = `bench.${name}.${Date.now().toString(36)}.`;
  const topic = `${topicPrefix}${ORDER_AGGREGATE}`;
  const slot = `${schema}_slot`.slice(0, 63);
  const publication = `${schema}_pub`.slice(0, 63);
  const sql = createSql(infra.databaseUrl, schema, { max: 2, applicationName: 'outbox-bench-drain' });
  const kafka = createKafkaClient({ brokers: infra.kafkaBrokers, log, clientId: 'outbox-bench-drain' });
  const admin = kafka.admin();
  const topics = new TopicAdmin(kafka, p.partitions);
  const children: ChildProcess[] = [];
  try {
    await dropSchema(sql, schema);
    await migrate(sql, { schema, partitionWidth: '1 day', partitionsAhead: 2 });
    await topics.ensure(topic);
    await admin.connect();
    if (strategy.cdc) await prepareSlot({ sql, schema, slotName: slot, publicationName: publication, recreateSlot: true }, silentLogger);

    // 1. The backlog, with no relay running.
    const runTag = newRunTag();
    const writeS = Math.max(1, Math.ceil(events / 50_000));
    const load = { ...p, store: strategy.store, rate: events / writeS, warmupS: 0, durationS: writeS, ordersPerTransaction: 1_000 };
    const plan = planLoad(load);
    const written = plan.ordersPerWorker.reduce((a, b) => a + b, 0);
    if (!context.quiet) process.stderr.write(`  ${name}: writing ${written} events...\n`);
    const pool = loadPool(load.workers);
    const startAt = Math.ceil(nowMs()) + 500;
    const loads = await runLoad(pool, { databaseUrl: infra.databaseUrl, schema, runTag, plan, startAt, measureFrom: startAt, measureTo: startAt + writeS * 1_000, p: load }).finally(() => pool.destroy());
    const failed = loads.reduce((sum, r) => sum + r.failed, 0);
    if (failed > 0) throw new OutboxBenchError('CHECK_FAILED', `${failed} backlog writes failed: ${loads.flatMap((r) => r.errors).join('; ')}`);

    // 2. The relay alone.
    const env = childEnv(infra, schema, topicPrefix, p.partitions, { OUTBOX_BENCH_SLOT: slot, OUTBOX_BENCH_PUBLICATION: publication });
    const relayProfileDir = path.join(rawDir, 'profile-relay');
    const relay = await startRelayProcess(
      rawDir,
      env,
      { relayMode: strategy.relayMode, kafkaClient: client, batchSize: p.batchSize, pollIntervalMs: p.pollIntervalMs, replicas: strategy.replicas, publishers: p.publishers, partitions: p.partitions },
      [],
      profile ? ['--cpu-prof', `--cpu-prof-dir=${relayProfileDir}`] : [],
    );
    children.push(relay.child);
    const relayFigures = await follow(
      events,
      relay.spawnedAt,
      () => endOffsets(admin, topic),
      () => {
        const r = relayCpu(relay.child.pid);
        return { relay: r.total, relayMain: r.main, postgres: pgCpu(infra), kafka: kafkaCpu(infra), consumer: 0, consumerMain: 0 };
      },
      ['relay', 'postgres', 'kafka'],
      'relayMain',
      context.quiet ? undefined : `${name} relay`,
    );
    await stopChild(relay.child);

    // 3. The consumer alone, on the filled topic: once per consumer client,
    // each from an empty inbox (or the next would find only duplicates).
    const consumers: ConsumerDrain[] = [];
    for (const consumerClient of consumerClients) {
      await sql`TRUNCATE inbox, order_ledger`;
      const consumerProfileDir = path.join(rawDir, `profile-consumer-${consumerClient}`);
      const consumerSpawnedAt = nowMs();
      const consumer = await startConsumerProcess(
        rawDir,
        {
          databaseUrl: infra.databaseUrl,
          kafkaBrokers: [...infra.kafkaBrokers],
          schema,
          topic,
          groupId: `${name}-consumer-${consumerClient}`,
          measureFrom: startAt,
          measureTo: startAt + writeS * 1_000,
          runTag,
          startAt,
          perWorkerRate: plan.perWorkerRate,
          ordersPerWorker: plan.ordersPerWorker,
          progressIntervalMs: SAMPLE_MS,
          kafkaClient: consumerClient,
          latency: false,
        },
        profile ? ['--cpu-prof', `--cpu-prof-dir=${consumerProfileDir}`] : [],
      );
      children.push(consumer.child);
      const consumerPid = consumer.child.pid;
      const figures = await follow(
        events,
        consumerSpawnedAt,
        async () => consumer.progress()?.distinct ?? 0,
        () => ({
          relay: 0,
          relayMain: 0,
          postgres: pgCpu(infra),
          kafka: kafkaCpu(infra),
          consumer: consumerPid === undefined ? Number.NaN : processCpuSeconds(consumerPid) ?? Number.NaN,
          consumerMain: consumerPid === undefined ? Number.NaN : threadCpuSeconds(consumerPid)?.main ?? Number.NaN,
        }),
        ['consumer', 'postgres', 'kafka'],
        'consumerMain',
        context.quiet ? undefined : `${name} consumer (${consumerClient})`,
      );
      const final = await consumer.finish();
      if (final.foreign > 0) throw new OutboxBenchError('CHECK_FAILED', `${final.foreign} deliveries were not events of this backlog`);
      // After its final report the consumer exits by itself, writing its
      // profile on the way out; a signal in that moment would cut the file.
      await exitedWithin(consumer.child, 15_000);
      await stopChild(consumer.child);
      consumers.push({ client: consumerClient, figures, ...(profile ? { profile: summarizeProfileDir(consumerProfileDir) } : {}) });
    }
    return {
      strategy: strategy.name,
      kafkaClient: client,
      relay: relayFigures,
      consumers,
      ...(profile ? { relayProfile: summarizeProfileDir(relayProfileDir) } : {}),
    };
  } finally {
    for (const child of children) await stopChild(child).catch(() => {});
    await admin.disconnect().catch(() => {});
    await topics.close();
    await deleteTopic(kafka, topic, log);
    await dropIdleSlots(sql, { name: slot }).catch(() => {});
    await sql.unsafe(`DROP PUBLICATION IF EXISTS ${publication}`).catch(() => {});
    await dropSchema(sql, schema).catch(() => {});
    await sql.end({ timeout: 5 });
  }
}

function pgCpu(infra: Infra): number {
  const pid = infra.postgres.pid();
  return pid === undefined ? Number.NaN : processTreeCpuSeconds(pid) ?? Number.NaN;
}

function kafkaCpu(infra: Infra): number {
  const pid = infra.kafka.pid();
  return pid === undefined ? Number.NaN : processCpuSeconds(pid) ?? Number.NaN;
}

/** Samples progress and CPU until all `events` are done or nothing moves for STALL_S. */
async function follow(
  events: number,
  spawnedAt: number,
  done: () => Promise<number>,
  cpu: () => Omit<CpuReading, 'at'>,
  keys: CpuKey[],
  mainKey: CpuKey,
  /** Progress lines start with this; undefined keeps quiet. */
  label: string | undefined,
): Promise<DrainFigures> {
  const progress: Progress[] = [{ at: spawnedAt, done: 0 }];
  const readings: CpuReading[] = [{ at: nowMs(), ...cpu() }];
  let lastChange = Date.now();
  let lastPrinted = Date.now();
  for (;;) {
    await sleep(SAMPLE_MS);
    const at = nowMs();
    const count = await done().catch(() => progress.at(-1)!.done);
    readings.push({ at: nowMs(), ...cpu() });
    if (count !== progress.at(-1)!.done) lastChange = Date.now();
    progress.push({ at, done: count });
    if (label !== undefined && Date.now() - lastPrinted > 5_000) {
      process.stderr.write(`  ${label}: ${count}/${events}\n`);
      lastPrinted = Date.now();
    }
    if (count >= events || Date.now() - lastChange > STALL_S * 1_000) break;
  }
  return figures(events, spawnedAt, progress, readings, keys, mainKey);
}

export const drain: Scenario = {
  name: 'drain',
  description: 'relay-only drain of a pre-written backlog per relay and Kafka client, then a consumer-only drain of the topic',
  defaults: { partitions: 6, batchSize: 1_000, workers: 1, connectionsPerWorker: 8 },
  flags: {
    'drain-events': { description: 'events in each backlog', defaultValue: 1_000_000, min: 10_000, max: 20_000_000 },
    profile: { description: '1: one more drain per relay and client under node --cpu-prof, for profiles only (not in the figures)', defaultValue: 0, min: 0, max: 1 },
  },
  async run(context) {
    const strategies = context.list('strategies', STRATEGIES.map((s) => s.name));
    const clients = context.list('clients', [context.parameters.kafkaClient ?? context.config.kafkaClient]);
    const consumerClients = context.list('consumer-clients', [context.parameters.consumerKafkaClient ?? context.config.consumerKafkaClient]);
    const unknown = [
      ...strategies.filter((s) => !STRATEGIES.some((k) => k.name === s)),
      ...clients.filter((c) => !(KAFKA_CLIENTS as readonly string[]).includes(c)),
      ...consumerClients.filter((c) => !(CONSUMER_KAFKA_CLIENTS as readonly string[]).includes(c)),
    ];
    if (unknown.length > 0) {
      throw new OutboxBenchError(
        'USAGE',
        `drain: unknown ${unknown.join(', ')}; strategies ${STRATEGIES.map((s) => s.name).join(', ')}; clients ${KAFKA_CLIENTS.join(', ')}; consumer clients ${CONSUMER_KAFKA_CLIENTS.join(', ')}`,
      );
    }
    const runs: DrainRun[] = [];
    const profiled: DrainRun[] = [];
    const failed: FailedDrainRun[] = [];
    const lines: string[] = [];
    for (const strategy of STRATEGIES.filter((s) => strategies.includes(s.name))) {
      for (const [index, client] of (clients as KafkaClientName[]).entries()) {
        // The consumer-only drains read the first relay client's topics: what
        // the consumer costs does not depend on which client wrote the records.
        const consumersHere = index === 0 ? (consumerClients as ConsumerKafkaClientName[]) : [];
        const repeated: DrainRun[] = [];
        for (let attempt = 0; attempt < context.repeats; attempt++) {
          try {
            repeated.push(await drainOnce(context, strategy, client, consumersHere, attempt, false));
          } catch (error) {
            failed.push({ strategy: strategy.name, kafkaClient: client, attempt: attempt + 1, error: describeError(error) });
            lines.push(`${strategy.name} on ${client}, run ${attempt + 1}: FAILED: ${describeError(error)}`);
          }
        }
        runs.push(...repeated);
        if (context.option('profile') === 1) {
          try {
            profiled.push(await drainOnce(context, strategy, client, consumersHere, context.repeats, true));
          } catch (error) {
            lines.push(`${strategy.name} on ${client}, profiled run: FAILED: ${describeError(error)}`);
          }
        }
        lines.push(
          `${strategy.name} relay on ${client}: ${medianWithRange(repeated.map((r) => r.relay.eventsPerSec))} events/s, CPU s/1M ${medianWithRange(repeated.map((r) => r.relay.cpuSecondsPerMillion.relay))}, ` +
            `JS thread µs/event ${medianWithRange(repeated.map((r) => r.relay.jsThreadUsPerEvent))}, PostgreSQL ${medianWithRange(repeated.map((r) => r.relay.cpuSecondsPerMillion.postgres))}, ` +
            `Kafka ${medianWithRange(repeated.map((r) => r.relay.cpuSecondsPerMillion.kafka))}; missing ${repeated.map((r) => r.relay.missing).join('/')}`,
        );
        for (const consumerClient of consumersHere) {
          const drains = repeated.flatMap((r) => r.consumers.filter((c) => c.client === consumerClient).map((c) => c.figures));
          lines.push(
            `${strategy.name} consumer on ${consumerClient}: ${medianWithRange(drains.map((d) => d.eventsPerSec))} events/s, CPU s/1M ${medianWithRange(drains.map((d) => d.cpuSecondsPerMillion.consumer))}, ` +
              `JS thread µs/event ${medianWithRange(drains.map((d) => d.jsThreadUsPerEvent))}, PostgreSQL ${medianWithRange(drains.map((d) => d.cpuSecondsPerMillion.postgres))}; missing ${drains.map((d) => d.missing).join('/')}`,
          );
        }
      }
    }
    if (failed.length > 0 && runs.length === 0) throw new OutboxBenchError('CHECK_FAILED', `every drain failed: ${failed.map((f) => f.error).join('; ')}`);
    return { title: 'Relay-only and consumer-only drains', runs: [], extra: { events: context.option('drain-events'), sampleMs: SAMPLE_MS, minWindowReadings: MIN_WINDOW_READINGS, runs, profiled, failed }, lines };
  },
};
