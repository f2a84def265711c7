/**
 * What every CLI command is and is given (commands.ts holds the commands):
 * its declaration, its context, and the helpers its `run` reads flags and
 * opens servers with.
 */
import { parseWholeFlag, type Config } from './config.js';
import { OutboxBenchError } from './errors.js';
import type { ShutdownStack } from './lifecycle.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import type { OutboxStore } from './orders/write-path.js';
import { openRuntime, type Runtime } from './runtime.js';

export interface CommandContext {
  config: Config;
  log: Logger;
  shutdown: ShutdownStack;
  /** Resolves when SIGINT/SIGTERM arrives. */
  signal: Promise<NodeJS.Signals>;
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
}

export interface CommandOption {
  type: 'string' | 'boolean';
  description: string;
  multiple?: boolean;
}

export interface Command {
  name: string;
  summary: string;
  usage: string;
  description: string;
  configKeys: (keyof Config)[];
  options?: Record<string, CommandOption>;
  run(context: CommandContext): Promise<number | void>;
}

export const SERVER_KEYS: (keyof Config)[] = [
  'databaseUrl',
  'pgPort',
  'kafkaBrokers',
  'kafkaPort',
  'kafkaControllerPort',
  'kafkaVersion',
  'kafkaHeapMb',
  'kafkaNodes',
  'dataDir',
  'cacheDir',
  'logLevel',
  'logFormat',
];
export const SCHEMA_KEYS: (keyof Config)[] = ['schema', 'partitionWidth', 'partitionsAhead'];
export const TOPIC_KEYS: (keyof Config)[] = ['topicPrefix', 'topicPartitions'];

export function stringValue(context: CommandContext, name: string): string | undefined {
  const value = context.values[name];
  return typeof value === 'string' ? value : undefined;
}

export function intValue(context: CommandContext, name: string, fallback: number, min: number, max: number): number {
  const raw = stringValue(context, name);
  return raw === undefined ? fallback : parseWholeFlag(name, raw, min, max);
}

export function storeValue(context: CommandContext): OutboxStore {
  const raw = stringValue(context, 'store') ?? 'table';
  if (raw !== 'table' && raw !== 'message') throw new OutboxBenchError('USAGE', `flag --store: "${raw}" is not one of table, message`);
  return raw;
}

export async function open(context: CommandContext, need: { postgres?: boolean; kafka?: boolean }, detached = false): Promise<Runtime> {
  const runtime = await openRuntime({ config: context.config, log: context.log, shutdown: context.shutdown, need, detached });
  if (need.postgres ?? true) await runtime.migrate();
  return runtime;
}

export async function serveMetrics(context: CommandContext, metrics: Metrics): Promise<void> {
  if (context.config.metricsPort === undefined) return;
  const server = await metrics.serve(context.config.metricsPort);
  context.shutdown.add('metrics server', server.close);
  context.log.info({ url: `http://127.0.0.1:${server.port}/metrics` }, 'serving Prometheus metrics');
}
