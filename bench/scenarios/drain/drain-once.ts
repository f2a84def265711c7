/**
 * One drain of the drain scenario (drain.ts): a backlog written while no
 * relay runs, the relay alone on it, then the consumer alone on the filled
 * topic, once per consumer client. Any relay with a driver drains the same
 * way: our modes, and the peers by their driver names.
 */
import type { ChildProcess } from 'node:child_process';
import type { Admin } from 'kafkajs';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { parseWholeFlag, RELAY_MODES, specOf, type ConsumerKafkaClientName, type KafkaClientName } from '../../../src/config.js';
import { OutboxBenchError } from '../../../src/errors.js';
import { nowMs } from '../../../src/events.js';
import { relayModeInfo, type RelayMode } from '../../../src/relay/modes.js';
import { endOffsets, follow, kafkaCpu, pgCpu, relayCpu, SAMPLE_MS, type DrainFigures } from '../../harness/drain-figures.js';
import { processCpuSeconds, processTreeRssBytes, threadCpuSeconds } from '../../harness/process-stats.js';
import { inWindow, type SittingWindow } from '../../harness/sitting.js';
import { newRunTag } from '../../harness/load-ids.js';
import { planLoad } from '../../harness/load-worker.js';
import { DRIVERS, type DriverName } from '../../drivers/index.js';
import type { DriverRun, HeapAfterGc, LoadStore, RelayDriver } from '../../drivers/types.js';
import { defaultStoreOf, driverRunOf, writePathOf } from '../../harness/driver-run.js';
import { checkWorkload, loadPool, runLoad } from '../../harness/pipeline.js';
import { exitedWithin, startConsumerProcess, stopChild, type StartedRelay } from '../../harness/processes.js';
import { summarizeProfileDir, type ProfileSummary } from '../../harness/profile.js';
import { openRun, type RunSetup } from '../../harness/run-setup.js';
import type { ScenarioContext } from '../../scenario.js';

/**
 * A relay drained: one of our modes, with its process count for the modes
 * that run several (`skip-locked:3`), or another relay by its driver's name.
 */
export interface Strategy {
  name: string;
  driver: RelayDriver;
  /** Our mode; absent for another relay. */
  relayMode?: RelayMode;
  replicas: number;
  /** Where its backlog is written: the store its mode or driver reads. */
  store: LoadStore;
}

/**
 * The default strategies: every relay, and the sharded CDC relay on 1, 2
 * and 4 slots (what each extra slot costs PostgreSQL is part of the result).
 */
export const DEFAULT_STRATEGIES = ['cdc', 'cdc-message', 'polling', 'skip-locked:3', 'cdc-sharded:1', 'cdc-sharded:2', 'cdc-sharded:4'];

/** The Kafka clients a relay is drained with: each of ours, or, for a relay that publishes with a client of its own, once under the first's name. */
export function clientsFor(strategy: Strategy, clients: readonly KafkaClientName[]): readonly KafkaClientName[] {
  return strategy.driver.usesOurKafkaClient ? clients : clients.slice(0, 1);
}

/** Another relay's driver by its registry name (`ptp-replication`), if `name` is one. */
function otherDriver(name: string): RelayDriver | undefined {
  return name !== 'ours' && Object.hasOwn(DRIVERS, name) ? DRIVERS[name as DriverName] : undefined;
}

/** `mode`, `mode:processes` or another relay's driver name; a USAGE error names them all for anything else. */
export function parseStrategy(name: string): Strategy {
  const other = otherDriver(name);
  if (other) return { name, driver: other, replicas: 1, store: defaultStoreOf(other) };
  const [mode = '', count] = name.split(':');
  if (!(RELAY_MODES as readonly string[]).includes(mode)) {
    const others = Object.keys(DRIVERS).filter((key) => key !== 'ours');
    throw new OutboxBenchError('USAGE', `--mode: "${name}" is none of our relay modes (${RELAY_MODES.join(', ')}) and no other relay (${others.join(', ')})`);
  }
  const info = relayModeInfo(mode);
  if (count !== undefined && info.processes !== 'replicas') {
    throw new OutboxBenchError('USAGE', `--mode: "${name}": only a mode that runs several processes takes a count, as in skip-locked:3`);
  }
  const { max = 1 } = specOf('replicas');
  return { name, driver: DRIVERS.ours, relayMode: mode as RelayMode, replicas: count === undefined ? 1 : parseWholeFlag(`mode ${name}`, count, 1, max), store: info.store };
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
  /** The relay's process tree at its largest during the drain (RSS, MiB); absent in older results. */
  relayPeakRssMiB?: number | null;
  /** A JVM relay's heap as its collections left it, from its GC log (none for a Node relay). */
  relayHeapAfterGc?: HeapAfterGc;
  /** Where in its sitting the relay's drain ran, with the probes around it and the CPU stolen meanwhile; absent in older results. */
  window?: SittingWindow;
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

/** One drain's run: its servers and schema, its backlog's plan, and the processes to stop at its end. */
interface DrainSession {
  context: ScenarioContext;
  name: string;
  rawDir: string;
  run: RunSetup;
  /** The relay drained, and its view of the run. */
  driver: RelayDriver;
  driverRun: DriverRun;
  admin: Admin;
  events: number;
  profile: boolean;
  children: ChildProcess[];
}

export async function drainOnce(
  context: ScenarioContext,
  strategy: Strategy,
  client: KafkaClientName,
  consumerClients: readonly ConsumerKafkaClientName[],
  attempt: number,
  profile: boolean,
  events: number = context.option('backlog'),
  /** Where in a sitting the drain runs: its relay's window is then read between settled probes. */
  at?: Pick<SittingWindow, 'sitting' | 'round'>,
): Promise<DrainRun> {
  const { infra, log } = context;
  const p = context.parameters;
  const name = `drain-${strategy.name}-${client}-${profile ? 'profiled' : attempt + 1}`;
  const rawDir = path.join(context.outDir, 'raw', name);
  mkdirSync(rawDir, { recursive: true });
  const { driver } = strategy;
  const ours = strategy.relayMode === undefined ? {} : { relayMode: strategy.relayMode, replicas: strategy.replicas };
  const relayed = { ...p, ...ours, kafkaClient: client, store: strategy.store };
  const writePath = writePathOf(driver, strategy.store);
  // The slots exist before the first write, so the backlog is in their WAL.
  const run = await openRun({ infra, log, name, partitions: p.partitions, relay: driver.provisioning(relayed) });
  const driverRun = driverRunOf({ infra, log, rawDir, config: context.config }, run, relayed);
  const session: DrainSession = { context, name, rawDir, run, driver, driverRun, admin: run.kafka.admin(), events, profile, children: [] };
  try {
    await session.admin.connect();
    // Another relay's own slot or table, before the backlog: it must reach them.
    await driver.prepare(driverRun);
    const backlog = await writeBacklog(session, strategy.store, writePath);
    const relayProfileDir = path.join(rawDir, 'profile-relay');
    // The probes bracket the relay alone, read once the backlog is written and the servers have settled.
    const { value: relayDrain, window } = at ? await inWindow(at, () => drainRelay(session, relayProfileDir)) : { value: await drainRelay(session, relayProfileDir), window: undefined };
    const { figures: relayFigures, peakRssMiB, heapAfterGc } = relayDrain;
    const consumers: ConsumerDrain[] = [];
    for (const consumerClient of consumerClients) consumers.push(await drainConsumer(session, backlog, consumerClient));
    return {
      strategy: strategy.name,
      kafkaClient: client,
      relay: relayFigures,
      relayPeakRssMiB: peakRssMiB,
      ...(heapAfterGc ? { relayHeapAfterGc: heapAfterGc } : {}),
      ...(window ? { window } : {}),
      consumers,
      ...(profile ? { relayProfile: summarizeProfileDir(relayProfileDir) } : {}),
    };
  } finally {
    for (const child of session.children) await stopChild(child).catch(() => {});
    await session.admin.disconnect().catch(() => {});
    await run.close();
  }
}

/** The backlog of one drain as written: its plan and timetable, for the consumer's accounting. */
interface WrittenBacklog {
  runTag: string;
  plan: ReturnType<typeof planLoad>;
  startAt: number;
  writeS: number;
}

/** 1. The backlog, with no relay running. */
async function writeBacklog(session: DrainSession, store: LoadStore, writePath: string | undefined): Promise<WrittenBacklog> {
  const { context, events, name } = session;
  const p = context.parameters;
  const runTag = newRunTag();
  const writeS = Math.max(1, Math.ceil(events / 50_000));
  const load = { ...p, store, rate: events / writeS, warmupS: 0, durationS: writeS, ordersPerTransaction: 1_000 };
  const plan = planLoad(load);
  const written = plan.ordersPerWorker.reduce((a, b) => a + b, 0);
  // Whole transactions only: a backlog the plan cannot write exactly would be followed for events never written.
  if (written !== events) throw new OutboxBenchError('USAGE', `a backlog of ${events} events is written as ${written} (1,000 per transaction): give a multiple of 1,000`);
  await checkWorkload({ databaseUrl: context.infra.databaseUrl, schema: session.run.schema, p: load, store, writePath });
  if (!context.quiet) process.stderr.write(`  ${name}: writing ${written} events...\n`);
  const pool = loadPool(load.workers);
  const startAt = Math.ceil(nowMs()) + 500;
  const loads = await runLoad(pool, { databaseUrl: context.infra.databaseUrl, schema: session.run.schema, runTag, plan, startAt, measureFrom: startAt, measureTo: startAt + writeS * 1_000, p: load, writePath }).finally(() =>
    pool.destroy(),
  );
  const failed = loads.reduce((sum, r) => sum + r.failed, 0);
  if (failed > 0) throw new OutboxBenchError('CHECK_FAILED', `${failed} backlog writes failed: ${loads.flatMap((r) => r.errors).join('; ')}`);
  return { runTag, plan, startAt, writeS };
}

/**
 * 2. The relay alone, followed from its spawn on: a relay may publish before
 * it reports ready, and its first event is part of the figures.
 */
async function drainRelay(session: DrainSession, profileDir: string): Promise<{ figures: DrainFigures; peakRssMiB: number | null; heapAfterGc: HeapAfterGc | undefined }> {
  const { context, run, name } = session;
  const { infra } = context;
  let onSpawned: (relay: StartedRelay) => void = () => {};
  const spawned = new Promise<StartedRelay>((resolve) => (onSpawned = resolve));
  // A drain reads no evidence: nothing but the relay runs beside its window.
  const starting = session.driver.start(session.driverRun, { execArgv: session.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [], onSpawned, watchers: false });
  // A relay that cannot start ends the drain with its error rather than a stalled follow.
  const startFailure = starting.then(() => new Promise<never>(() => {}));
  const started = await Promise.race([spawned, startFailure]);
  session.children.push(started.child, ...(started.helpers ?? []));
  let peakRssBytes: number | undefined;
  const following = follow(
    session.events,
    started.spawnedAt,
    () => endOffsets(session.admin, run.topic),
    () => {
      const r = relayCpu(started.child.pid);
      const rss = started.child.pid === undefined ? undefined : processTreeRssBytes(started.child.pid);
      if (rss !== undefined) peakRssBytes = Math.max(peakRssBytes ?? 0, rss);
      return { relay: r.total, relayMain: r.main, postgres: pgCpu(infra), kafka: kafkaCpu(infra), consumer: 0, consumerMain: 0 };
    },
    ['relay', 'postgres', 'kafka'],
    'relayMain',
    context.quiet ? undefined : `${name} relay`,
  );
  const figures = await Promise.race([startFailure, following]);
  // Ready by now: what watches the relay (a JMX reader) came with it, and is stopped with the run.
  const running = await starting;
  session.children.push(...(running.helpers ?? []));
  const heapAfterGc = running.heapAfterGc?.();
  await stopChild(started.child);
  return { figures, peakRssMiB: peakRssBytes === undefined ? null : Math.round(peakRssBytes / 1024 ** 2), heapAfterGc };
}

/**
 * 3. The consumer alone, on the filled topic: once per consumer client,
 * each from an empty inbox (or the next would find only duplicates).
 */
async function drainConsumer(session: DrainSession, backlog: WrittenBacklog, consumerClient: ConsumerKafkaClientName): Promise<ConsumerDrain> {
  const { context, run, name } = session;
  const { infra } = context;
  const { plan, startAt, writeS } = backlog;
  await run.sql`TRUNCATE inbox, order_ledger`;
  const profileDir = path.join(session.rawDir, `profile-consumer-${consumerClient}`);
  const consumerSpawnedAt = nowMs();
  const consumer = await startConsumerProcess(
    session.rawDir,
    {
      databaseUrl: infra.databaseUrl,
      kafkaBrokers: [...infra.kafkaBrokers],
      schema: run.schema,
      topic: run.topic,
      groupId: `${name}-consumer-${consumerClient}`,
      measureFrom: startAt,
      measureTo: startAt + writeS * 1_000,
      runTag: backlog.runTag,
      startAt,
      perWorkerRate: plan.perWorkerRate,
      ordersPerWorker: plan.ordersPerWorker,
      progressIntervalMs: SAMPLE_MS,
      kafkaClient: consumerClient,
      latency: false,
    },
    session.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
  );
  session.children.push(consumer.child);
  const consumerPid = consumer.child.pid;
  const figures = await follow(
    session.events,
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
  return { client: consumerClient, figures, ...(session.profile ? { profile: summarizeProfileDir(profileDir) } : {}) };
}
