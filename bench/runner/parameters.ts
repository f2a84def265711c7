/**
 * The pipeline parameters every scenario on the shared servers takes, their
 * shared defaults and their flags, and the flags of the runner itself.
 */
import { CONSUMER_KAFKA_CLIENTS, DEFAULTS, KAFKA_CLIENTS, specOf, type Config } from '../../src/config.js';
import type { FlagSpec, FlagSpecs, FlagValue } from '../flags.js';
import type { PipelineParameters } from '../harness/pipeline.js';
import type { Scenario } from '../scenario.js';
import { workloadFromFlag } from '../harness/sql-workload.js';

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

/** A pipeline parameter's flag: the parameter it sets and how the flag reads. */
interface ParameterFlag {
  key: keyof PipelineParameters;
  spec: FlagSpec;
}

const number = (key: keyof PipelineParameters, description: string, min: number, max: number, formerly?: string): ParameterFlag => ({
  key,
  spec: { description, defaultValue: Number(BASE_PARAMETERS[key]), defaultText: `${String(BASE_PARAMETERS[key])}, or the scenario's`, min, max, ...(formerly ? { formerly: [formerly] } : {}) },
});

/** The flag of a pipeline parameter that is a Config setting: flag, description and range are the CLI's own. */
function fromConfig(key: keyof PipelineParameters, configKey?: keyof Config): Record<string, ParameterFlag> {
  const spec = specOf(configKey ?? (key as keyof Config));
  if (spec.min === undefined || spec.max === undefined) throw new Error(`option ${configKey} has no range`);
  return { [spec.flag]: number(key, spec.description, spec.min, spec.max) };
}

/**
 * The flag of an optional pipeline parameter that is a Config setting: a run
 * that does not give it leaves the setting to the relay's or consumer's own
 * default (and its recorded parameters without it).
 */
function optionalFromConfig(key: keyof PipelineParameters & keyof Config): Record<string, ParameterFlag> {
  const spec = specOf(key);
  if (spec.min === undefined || spec.max === undefined) throw new Error(`option ${key} has no range`);
  return { [spec.flag]: { key, spec: { description: spec.description, defaultValue: Number(DEFAULTS[key]), defaultText: `${String(DEFAULTS[key])}, the default`, min: spec.min, max: spec.max } } };
}

const client = (key: 'kafkaClient' | 'consumerKafkaClient', whose: string, known: readonly string[]): ParameterFlag => ({
  key,
  spec: { kind: 'string', description: `the ${whose} Kafka client`, values: () => known, defaultText: `the configured one, ${DEFAULTS[key]}` },
});

export const PARAMETER_FLAGS: Readonly<Record<string, ParameterFlag>> = {
  rate: number('rate', 'orders (events) per second offered', 1, 1_000_000),
  'duration-s': number('durationS', 'measured seconds', 1, 86_400),
  'warmup-s': number('warmupS', 'warm-up seconds, not measured', 0, 3_600),
  workers: number('workers', 'load worker threads', 1, 64),
  connections: number('connectionsPerWorker', 'transactions in flight per worker', 1, 256),
  // The CLI's `produce --per-transaction` names the same thing.
  'per-transaction': number('ordersPerTransaction', 'orders per transaction (batched intake)', 1, 10_000, 'orders-per-tx'),
  'payload-bytes': number('payloadBytes', 'approximate event payload size', 64, 16_384),
  'events-per-aggregate': number('eventsPerAggregate', 'events per aggregate (1 = new orders only)', 1, 1_000),
  'key-space': number('keySpace', 'recent orders per worker that amendments pick from', 1, 10_000_000),
  'hot-key-percent': number('hotKeyShare', 'percent of amendments aimed at the hot keys', 0, 100),
  'hot-keys': number('hotKeys', 'how many hot aggregates', 1, 100_000),
  seed: number('seed', 'seed of the load generator choices', 0, 2 ** 31),
  ...fromConfig('partitions', 'topicPartitions'),
  ...fromConfig('batchSize'),
  ...fromConfig('pollIntervalMs'),
  ...fromConfig('replicas'),
  ...fromConfig('publishers'),
  ...optionalFromConfig('batchDelayMs'),
  ...optionalFromConfig('fetchMaxWaitMs'),
  ...optionalFromConfig('fetchMinBytes'),
  consumers: number('consumers', 'consumer processes in the group', 1, 16),
  'commit-interval-ms': number('consumerCommitIntervalMs', 'consumer offset commits at most this often (0 = back to back)', 0, 60_000),
  'drain-timeout-s': number('drainTimeoutS', 'give up on stragglers after', 1, 3_600),
  'stall-consumer-ms': number('stallConsumerMs', 'pause the consumer this long mid-measurement (SIGSTOP), to see a stall in the tail', 0, 600_000),
  workload: {
    key: 'workload',
    spec: {
      kind: 'string',
      description: 'the load: the built-in orders, or your own transaction in a pgbench-style script (sql:<file>; see docs/workloads.md), checked by a rolled-back dry run',
      defaultText: 'orders',
    },
  },
  'kafka-client': client('kafkaClient', "relays'", KAFKA_CLIENTS),
  'consumer-kafka-client': client('consumerKafkaClient', "consumer's", CONSUMER_KAFKA_CLIENTS),
};

export const PARAMETER_SPECS: FlagSpecs = Object.fromEntries(Object.entries(PARAMETER_FLAGS).map(([flag, { spec }]) => [flag, spec]));

/** The runner's own flags, which every scenario takes. */
export const RUNNER_FLAGS: FlagSpecs = {
  repeats: {
    description: 'scenarios that repeat (polling, skip-locked, cdc, write-cost, drain, peers): measure each relay (each way of writing) this many times; the median is reported with the spread',
    defaultValue: DEFAULT_REPEATS,
    min: 1,
    max: 20,
  },
  out: { kind: 'string', description: 'results folder', defaultText: 'results/' },
  'allow-dirty': { kind: 'yes-no', description: 'publish although tracked files outside results/ have uncommitted changes (the report says so at the top)', defaultValue: false },
  help: { kind: 'yes-no', description: 'show this help', defaultValue: false },
};

/** The scenario's pipeline parameters: the shared defaults, its own, then the flags given. */
export function pipelineParameters(scenario: Scenario, values: ReadonlyMap<string, FlagValue>, given: ReadonlySet<string>): PipelineParameters {
  const result: Record<string, unknown> = { ...BASE_PARAMETERS, ...scenario.defaults };
  for (const [flag, { key }] of Object.entries(PARAMETER_FLAGS)) {
    if (!given.has(flag)) continue;
    const value = values.get(flag);
    if (key === 'workload') {
      const workload = workloadFromFlag(value as string);
      if (workload) result[key] = workload;
      continue;
    }
    result[key] = key === 'hotKeyShare' ? (value as number) / 100 : value;
  }
  return result as unknown as PipelineParameters;
}
