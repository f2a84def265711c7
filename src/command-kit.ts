/**
 * What every CLI command is and is given (commands.ts holds the commands):
 * its declaration, its context, and the helpers its `run` reads flags and
 * opens servers with.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseWholeFlag, PROJECT_ROOT, type Config } from './config.js';
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

/** Edits (insert, delete, substitute) between two words: how far a typo is from a name. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = row;
  }
  return previous[b.length]!;
}

/**
 * The known name nearest a mistyped one, if any is near enough to be what
 * was meant: a third of its letters wrong at most (at least 2), or a name it
 * begins or that begins it.
 */
export function closestName(name: string, known: Iterable<string>): string | undefined {
  const prefix = (short: string, long: string) => short.length >= 3 && long.startsWith(short);
  let best: { name: string; distance: number } | undefined;
  for (const candidate of known) {
    const distance = prefix(name, candidate) || prefix(candidate, name) ? 1 : editDistance(name, candidate);
    if (!best || distance < best.distance) best = { name: candidate, distance };
  }
  return best && best.distance <= Math.max(2, Math.floor(name.length / 3)) ? best.name : undefined;
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

/** `--version`: the project's version, and the Node.js it runs on (a report of a problem needs both). */
export function versionText(program: string): string {
  const { version } = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string };
  return `${program} ${version} (Node.js ${process.versions.node})`;
}
