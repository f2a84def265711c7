/**
 * The benchmark runner: `node dist/bench/run.js <scenario...|all> [flags]`.
 * Starts the servers once (or uses DATABASE_URL / KAFKA_BROKERS / `infra up`),
 * runs each scenario with its defaults and the flags given, and writes
 * results/<scenario>/summary.json plus raw histograms (.hgrm).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { CONSUMER_KAFKA_CLIENTS, DEFAULTS, KAFKA_CLIENTS, PROJECT_ROOT, parseWholeFlag, resolveConfig, specOf, type Config } from '../src/config.js';
import { createSql } from '../src/db.js';
import { describeError, OutboxBenchError } from '../src/errors.js';
import { acquireInfra } from '../src/infra/index.js';
import { decodeHistogram, percentileDistribution } from '../src/latency.js';
import { ShutdownStack, installSignalHandlers } from '../src/lifecycle.js';
import { createLogger } from '../src/log.js';
import { assertCleanTree, assertFullKafkaJit, captureEnvironment, measureCpu, runningKafkaJit } from './harness/environment.js';
import { stopRunsInProgress, type PipelineParameters } from './harness/pipeline.js';
import { RELAY_MODES } from '../src/relay/modes.js';
import { SCENARIOS } from './registry.js';
import { PEER_RELAY_KEYS } from './scenarios/peers.js';
import { buildReport } from './report.js';
import type { Scenario, ScenarioContext, ScenarioFlag } from './scenario.js';

/** Shared defaults; each scenario overrides what it must. */
export const BASE_PARAMETERS: PipelineParameters = Object.freeze({
  relayMode: 'polling',
  store: 'table',
  // Rationale: 2,000 orders/s is comfortably sustainable by every relay on 2
  // cores, so the default run compares latency, not who falls over first.
  rate: 2_000,
  warmupS: 5,
  durationS: 20,
  // Rationale: one load thread leaves the second core to PostgreSQL, Kafka,
  // the relay and the consumer, which all share this 2-core machine.
  workers: 1,
  connectionsPerWorker: 8,
  ordersPerTransaction: 10,
  payloadBytes: 256,
  eventsPerAggregate: 1,
  keySpace: 1_000,
  hotKeyShare: 0,
  hotKeys: 10,
  partitions: 6,
  batchSize: 1_000,
  pollIntervalMs: 500,
  replicas: 3,
  publishers: 1,
  consumers: 1,
  consumerCommitIntervalMs: 100,
  drainTimeoutS: 30,
  seed: 1,
  stallConsumerMs: 0,
});

// Rationale: three runs give a median and a range at ~40 s per run; more would
// make bench:all long without changing what the range says on a quiet machine.
const DEFAULT_REPEATS = 3;

interface ParameterFlag {
  key: keyof PipelineParameters;
  description: string;
  min: number;
  max: number;
}

/** The flag of a pipeline parameter that is a Config setting, as config.ts declares it. */
function fromConfig(key: keyof PipelineParameters, configKey?: keyof Config): Record<string, ParameterFlag> {
  const spec = specOf(configKey ?? (key as keyof Config));
  if (spec.min === undefined || spec.max === undefined) throw new Error(`option ${configKey} has no range`);
  return { [spec.flag]: { key, description: spec.description, min: spec.min, max: spec.max } };
}

const FLAGS: Record<string, ParameterFlag> = {
  rate: { key: 'rate', description: 'orders (events) per second offered', min: 1, max: 1_000_000 },
  'duration-s': { key: 'durationS', description: 'measured seconds', min: 1, max: 86_400 },
  'warmup-s': { key: 'warmupS', description: 'warm-up seconds, not measured', min: 0, max: 3_600 },
  workers: { key: 'workers', description: 'load worker threads', min: 1, max: 64 },
  connections: { key: 'connectionsPerWorker', description: 'transactions in flight per worker', min: 1, max: 256 },
  'orders-per-tx': { key: 'ordersPerTransaction', description: 'orders per transaction (batched intake)', min: 1, max: 10_000 },
  'payload-bytes': { key: 'payloadBytes', description: 'approximate event payload size', min: 64, max: 16_384 },
  'events-per-aggregate': { key: 'eventsPerAggregate', description: 'events per aggregate (1 = new orders only)', min: 1, max: 1_000 },
  'key-space': { key: 'keySpace', description: 'recent orders per worker that amendments pick from', min: 1, max: 10_000_000 },
  'hot-key-percent': { key: 'hotKeyShare', description: 'percent of amendments aimed at the hot keys', min: 0, max: 100 },
  'hot-keys': { key: 'hotKeys', description: 'how many hot aggregates', min: 1, max: 100_000 },
  seed: { key: 'seed', description: 'seed of the load generator choices', min: 0, max: 2 ** 31 },
  // The relay's settings: flag, description and range are the CLI's own.
  ...fromConfig('partitions', 'topicPartitions'),
  ...fromConfig('batchSize'),
  ...fromConfig('pollIntervalMs'),
  ...fromConfig('replicas'),
  ...fromConfig('publishers'),
  consumers: { key: 'consumers', description: 'consumer processes in the group', min: 1, max: 16 },
  'commit-interval-ms': { key: 'consumerCommitIntervalMs', description: 'consumer offset commits at most this often (0 = back to back)', min: 0, max: 60_000 },
  'drain-timeout-s': { key: 'drainTimeoutS', description: 'give up on stragglers after', min: 1, max: 3_600 },
  'stall-consumer-ms': { key: 'stallConsumerMs', description: 'pause the consumer this long mid-measurement (SIGSTOP), to see a stall in the tail', min: 0, max: 600_000 },
};

/** Each scenario flag once, with the scenarios that declare it (the sweeps share theirs). */
function scenarioFlags(): [string, ScenarioFlag, string][] {
  const flags = new Map<string, [string, ScenarioFlag, string]>();
  for (const scenario of SCENARIOS) {
    for (const [flag, spec] of Object.entries(scenario.flags ?? {})) {
      const seen = flags.get(flag);
      flags.set(flag, seen ? [flag, seen[1], `${seen[2]}, ${scenario.name}`] : [flag, spec, scenario.name]);
    }
  }
  return [...flags.values()];
}

function help(): string {
  const flags = Object.entries(FLAGS).map(([flag, f]) => `  --${flag.padEnd(18)} ${f.description} (default ${BASE_PARAMETERS[f.key]}, or the scenario's)`);
  const own = scenarioFlags().map(([flag, f, scenario]) => `  --${flag.padEnd(18)} ${scenario}: ${f.description} (default ${f.defaultValue})`);
  return [
    'Usage: node dist/bench/run.js <scenario...|all> [flags]',
    '',
    'Scenarios:',
    ...SCENARIOS.map((s) => `  ${s.name.padEnd(18)} ${s.description}${s.standalone ? ' (not part of all: long)' : ''}`),
    '',
    'Flags:',
    ...flags,
    ...own,
    `  --${'repeats'.padEnd(18)} polling, skip-locked, cdc, write-cost, peers: measure each relay (each way of writing) this many times; the median is reported with the spread (default ${DEFAULT_REPEATS})`,
    `  --${'strategies'.padEnd(18)} saturation, drain, quick, sweep-*: comma-separated relay modes (${RELAY_MODES.join(', ')}); drain also takes mode:processes, as in cdc-sharded:4; peers takes its relays (${PEER_RELAY_KEYS.join(', ')}) or the families ours, debezium, ptp`,
    `  --${'points'.padEnd(18)} sweep-*: comma-separated points of the sweep to measure (default all); entries merge into its results folder`,
    `  --${'kafka-client'.padEnd(18)} the relays' Kafka client: ${KAFKA_CLIENTS.join(', ')} (default: the configured one, ${DEFAULTS.kafkaClient})`,
    `  --${'consumer-kafka-client'.padEnd(18)} the consumer's Kafka client: ${CONSUMER_KAFKA_CLIENTS.join(', ')} (default: the configured one, ${DEFAULTS.consumerKafkaClient})`,
    `  --${'clients'.padEnd(18)} drain: comma-separated relay Kafka clients to compare`,
    `  --${'consumer-clients'.padEnd(18)} drain: comma-separated consumer Kafka clients to compare (on the first relay client's topics)`,
    `  --${'out'.padEnd(18)} results folder (default results/)`,
    `  --${'allow-dirty'.padEnd(18)} publish although tracked files outside results/ have uncommitted changes (the report says so at the top)`,
    `  --${'help'.padEnd(18)} show this help`,
    '',
    'Servers come from DATABASE_URL / KAFKA_BROKERS, from `npm run infra:up`, or are started for the run.',
    'Run benchmarks alone on the machine: anything else running skews them.',
  ].join('\n');
}

function parameters(scenario: Scenario, values: Record<string, string | boolean | undefined>): PipelineParameters {
  const result: Record<string, unknown> = { ...BASE_PARAMETERS, ...scenario.defaults };
  for (const [flag, key, known] of [
    ['kafka-client', 'kafkaClient', KAFKA_CLIENTS],
    ['consumer-kafka-client', 'consumerKafkaClient', CONSUMER_KAFKA_CLIENTS],
  ] as const) {
    const client = values[flag];
    if (typeof client !== 'string') continue;
    if (!(known as readonly string[]).includes(client)) throw new OutboxBenchError('USAGE', `flag --${flag}: "${client}" is not one of ${known.join(', ')}`);
    result[key] = client;
  }
  for (const [flag, spec] of Object.entries(FLAGS)) {
    const raw = values[flag];
    if (typeof raw !== 'string') continue;
    const n = parseWholeFlag(flag, raw, spec.min, spec.max);
    result[spec.key] = spec.key === 'hotKeyShare' ? n / 100 : n;
  }
  return result as unknown as PipelineParameters;
}

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: process.argv.slice(2),
      allowPositionals: true,
      options: {
        help: { type: 'boolean', short: 'h' },
        out: { type: 'string' },
        strategies: { type: 'string' },
        points: { type: 'string' },
        clients: { type: 'string' },
        'kafka-client': { type: 'string' },
        'consumer-kafka-client': { type: 'string' },
        'consumer-clients': { type: 'string' },
        repeats: { type: 'string' },
        'allow-dirty': { type: 'boolean' },
        ...Object.fromEntries([...Object.keys(FLAGS), ...scenarioFlags().map(([flag]) => flag)].map((f) => [f, { type: 'string' as const }])),
      },
    });
  } catch (error) {
    process.stderr.write(`bench: ${(error as Error).message}\n${help()}\n`);
    return 2;
  }
  if (parsed.values.help) {
    process.stdout.write(`${help()}\n`);
    return 0;
  }
  const names = parsed.positionals.includes('all') ? SCENARIOS.filter((s) => !s.standalone).map((s) => s.name) : parsed.positionals;
  if (names.length === 0) {
    process.stderr.write(`bench: name a scenario\n${help()}\n`);
    return 2;
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const unknown = names.filter((n) => !SCENARIOS.some((s) => s.name === n));
  if (unknown.length > 0) {
    process.stderr.write(`bench: unknown scenario ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.name).join(', ')}\n`);
    return 2;
  }
  const scenarios = names.map((n) => SCENARIOS.find((s) => s.name === n)!);
  const resolved = new Map<Scenario, PipelineParameters>();
  const options = new Map<string, number>();
  let repeats = DEFAULT_REPEATS;
  try {
    if (typeof values.repeats === 'string') repeats = parseWholeFlag('repeats', values.repeats, 1, 20);
    assertFullKafkaJit(resolveConfig());
    assertCleanTree(values['allow-dirty'] === true);
    for (const scenario of scenarios) resolved.set(scenario, parameters(scenario, parsed.values));
    for (const [flag, spec] of scenarioFlags()) {
      const raw = values[flag];
      if (typeof raw !== 'string') {
        options.set(flag, spec.defaultValue);
        continue;
      }
      options.set(flag, parseWholeFlag(flag, raw, spec.min, spec.max));
    }
  } catch (error) {
    process.stderr.write(`bench: ${describeError(error)}\n`);
    return 2;
  }

  const config = resolveConfig();
  const log = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel, 'bench', config.logFormat);
  const shutdown = new ShutdownStack(log);
  installSignalHandlers(shutdown, log);
  const quiet = process.env.CI === 'true';
  const outRoot = path.resolve(parsed.values.out ?? path.join(PROJECT_ROOT, 'results'));
  try {
    // Read before the servers start: a broker's JVM compiles for a while after its start.
    const cpuProbe = measureCpu();
    process.stderr.write('bench: starting PostgreSQL and Kafka (or using the configured ones)...\n');
    const infra = await acquireInfra({ config, log });
    shutdown.add('servers', () => infra.release());
    if (runningKafkaJit(infra) === 'quick-start') {
      throw new OutboxBenchError('USAGE', 'the local broker left running (infra up) runs with the quick-start JIT, for tests: stop it (npm run infra:down) and benchmark a broker with its full JIT');
    }
    // Newest first: a run's processes stop before the servers they use.
    shutdown.add('benchmark runs', stopRunsInProgress);
    const probe = createSql(infra.databaseUrl, 'public', { max: 1 });
    const environment = await captureEnvironment(probe, config, infra, cpuProbe);
    await probe.end({ timeout: 5 });
    let failures = 0;
    for (const scenario of scenarios) {
      const outDir = path.join(outRoot, scenario.name);
      mkdirSync(outDir, { recursive: true });
      const context: ScenarioContext = {
        config,
        infra,
        log,
        parameters: resolved.get(scenario)!,
        outDir,
        quiet,
        repeats,
        option: (name) => options.get(name)!,
        list: (name, fallback) => (typeof values[name] === 'string' ? (values[name] as string).split(',').map((x) => x.trim()).filter(Boolean) : fallback),
      };
      process.stderr.write(`bench: ${scenario.name}: ${scenario.description}\n`);
      try {
        await scenario.setup?.(context);
        const report = await scenario.run(context);
        await scenario.teardown?.(context);
        const summary = {
          scenario: scenario.name,
          title: report.title,
          date: new Date().toISOString(),
          command: `node dist/bench/run.js ${scenario.name}${process.argv.slice(2).filter((a) => !names.includes(a) && a !== 'all').map((a) => ` ${a}`).join('')}`,
          parameters: context.parameters,
          runs: report.runs,
          ...(report.extra ? { extra: report.extra } : {}),
          environment,
        };
        writeFileSync(path.join(outDir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
        for (const run of report.runs) {
          for (const key of Object.keys(run.hgrm) as (keyof typeof run.hgrm)[]) {
            writeFileSync(path.join(outDir, run.hgrm[key]), percentileDistribution(decodeHistogram(run.histograms[key])));
          }
        }
        process.stdout.write(`${report.lines.join('\n')}\n  results: ${path.relative(process.cwd(), outDir) || outDir}\n\n`);
        if (report.failed && report.failed.length > 0) {
          failures += 1;
          process.stderr.write(`bench: ${scenario.name}: written without ${report.failed.length} part(s) that failed:\n${report.failed.map((f) => `  ${f}`).join('\n')}\n`);
        }
      } catch (error) {
        failures += 1;
        process.stderr.write(`bench: ${scenario.name} failed: ${describeError(error)}\n`);
      }
    }
    buildReport(outRoot);
    process.stdout.write(`report: ${path.relative(process.cwd(), path.join(outRoot, 'README.md')) || 'README.md'}\n`);
    return failures === 0 ? 0 : 1;
  } catch (error) {
    process.stderr.write(`bench: ${describeError(error)}\n`);
    return 1;
  } finally {
    await shutdown.run();
  }
}

main().then((code) => process.exit(code));
