/**
 * The processes of a benchmark run besides the harness itself: the relay
 * (our CLI, or another relay's driver) and the consumer, each in its own process so that its
 * CPU time is its own. Readiness comes over the IPC channel.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { OutboxBenchError } from '../../src/errors.js';
import { nowMs } from '../../src/events.js';
import { decodeHistogram, encodeHistogram } from '../../src/latency.js';
import { waitForReady } from '../../src/readiness.js';
import type { ConsumerTask, FromConsumer, ToConsumer } from './consumer-process.js';
import { processTreePids } from './process-stats.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.join(here, '..', '..', 'src', 'cli.js');

// Rationale: a relay connects to both servers, may create a topic and a slot,
// and (skip-locked) starts its replicas; 60 s covers a loaded 2-core machine.
const START_TIMEOUT_MS = 60_000;

/** A relay process and the moment it was spawned: the origin of every drain time. */
export interface StartedRelay {
  child: ChildProcess;
  spawnedAt: number;
  /** Processes that watch it (a JMX reader): stopped with it; their CPU is counted with the relay's, their memory is not. */
  helpers?: ChildProcess[];
}

/**
 * Waits for a child's ready message; a child that does not send it in time is
 * stopped (SIGTERM, so a relay supervisor takes its own processes down too)
 * before the error is thrown, so no caller is left with a process it never got.
 */
async function readyOrStopped(child: ChildProcess, describe: string): Promise<void> {
  try {
    await waitForReady(child, { timeoutMs: START_TIMEOUT_MS, describe });
  } catch (error) {
    await stopChild(child).catch(() => {});
    throw error;
  }
}

/** A relay process just forked: `ready` settles once it reported ready (it is stopped if it does not). */
export interface SpawnedRelay extends StartedRelay {
  ready: Promise<void>;
}

/**
 * Forks our relay CLI with the run's environment (its settings, see
 * run-setup.ts); `ready` resolves once it reports ready (all its processes,
 * for a mode that runs several). `args` are flags beyond the settings. For a
 * caller that must watch the relay from its spawn on (a drain's clock).
 */
export function spawnRelayProcess(rawDir: string, env: NodeJS.ProcessEnv, options: { describe: string; args?: string[]; execArgv?: string[] }): SpawnedRelay {
  mkdirSync(rawDir, { recursive: true });
  const logFile = path.join(rawDir, 'relay.log');
  const spawnedAt = nowMs();
  const child = fork(CLI, ['relay', ...(options.args ?? [])], { env, execArgv: options.execArgv ?? [], stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  child.stderr!.pipe(createWriteStream(logFile));
  return { child, spawnedAt, ready: readyOrStopped(child, `the ${options.describe} relay (log: ${logFile})`) };
}

/** spawnRelayProcess, resolving once the relay is ready. */
export async function startRelayProcess(rawDir: string, env: NodeJS.ProcessEnv, options: { describe: string; args?: string[]; execArgv?: string[] }): Promise<StartedRelay> {
  const { ready, ...started } = spawnRelayProcess(rawDir, env, options);
  await ready;
  return started;
}

/** Forks our order service (`serve`) and resolves once it listens. */
export async function startServiceProcess(rawDir: string, env: NodeJS.ProcessEnv): Promise<ChildProcess> {
  const logFile = path.join(rawDir, 'service.log');
  const child = fork(CLI, ['serve'], { env, stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  child.stderr!.pipe(createWriteStream(logFile));
  await readyOrStopped(child, `the order service (log: ${logFile})`);
  return child;
}

export interface ConsumerProcess {
  child: ChildProcess;
  messages: FromConsumer[];
  /** The newest progress report, if any. */
  progress(): Extract<FromConsumer, { type: 'progress' }> | undefined;
  /** Moves the window whose latencies the consumer records. */
  setWindow(measureFrom: number, measureTo: number): void;
  /** Asks for the final report and resolves with it. */
  finish(): Promise<Extract<FromConsumer, { type: 'final' }>>;
}

/**
 * Sends to a consumer that may have exited: a send on a closed channel would
 * emit an 'error' event nobody listens to and kill this process. A failed
 * send is left to the caller's wait, which reports the exit with its log.
 */
function sendToConsumer(child: ChildProcess, message: ToConsumer): void {
  if (child.connected) child.send(message, () => {});
}

export async function startConsumerProcess(rawDir: string, task: ConsumerTask, execArgv: string[] = []): Promise<ConsumerProcess> {
  const logFile = path.join(rawDir, 'consumer.log');
  const child = fork(path.join(here, 'consumer-process.js'), [], { execArgv, stdio: ['ignore', 'inherit', 'pipe', 'ipc'], serialization: 'advanced' });
  child.stderr!.pipe(createWriteStream(logFile));
  const messages: FromConsumer[] = [];
  child.on('message', (message: FromConsumer) => messages.push(message));
  const failure = () => {
    const error = messages.find((m) => m.type === 'error');
    return error && error.type === 'error' ? error.message : undefined;
  };
  const waitFor = async <T extends FromConsumer['type']>(type: T, what: string, timeoutMs: number): Promise<Extract<FromConsumer, { type: T }>> => {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const found = messages.find((m): m is Extract<FromConsumer, { type: T }> => m.type === type);
      if (found) return found;
      const failed = failure();
      if (failed) throw new OutboxBenchError('CHECK_FAILED', `the consumer failed: ${failed}`);
      if (child.exitCode !== null || child.signalCode !== null) throw new OutboxBenchError('CHECK_FAILED', `the consumer exited before ${what}; see ${logFile}`);
      if (performance.now() > deadline) throw new OutboxBenchError('NOT_READY', `the consumer did not ${what} within ${timeoutMs / 1_000} s; see ${logFile}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  sendToConsumer(child, { type: 'start', task });
  try {
    await waitFor('ready', 'join its group', START_TIMEOUT_MS);
  } catch (error) {
    // Nobody else holds the process yet: a failed start must not leave it running.
    await stopChild(child).catch(() => {});
    throw error;
  }
  return {
    child,
    messages,
    progress: () => messages.findLast((m): m is Extract<FromConsumer, { type: 'progress' }> => m.type === 'progress'),
    setWindow: (measureFrom, measureTo) => sendToConsumer(child, { type: 'window', measureFrom, measureTo }),
    finish: async () => {
      sendToConsumer(child, { type: 'finish' });
      return waitFor('final', 'hand over its final report', 60_000);
    },
  };
}

/**
 * Several consumer processes in one group, seen as one: progress summed (an
 * event is applied by exactly one of them), final reports merged.
 */
export interface ConsumerGroup {
  children: ChildProcess[];
  /** Distinct events applied by all members; the worst member's p99, null until one has measured an event. */
  progress(): { distinct: number; p99Ms: number | null } | undefined;
  setWindow(measureFrom: number, measureTo: number): void;
  finish(): Promise<Extract<FromConsumer, { type: 'final' }>>;
}

/**
 * The group's progress from its members' newest reports: distinct events
 * summed, the worst p99 of those that have measured one. A member that has
 * measured nothing has no p99; counting it as 0 would print "p99 so far 0.0 ms"
 * through a warm-up that measures nothing.
 */
export function mergeProgress(reports: readonly (Pick<Extract<FromConsumer, { type: 'progress' }>, 'distinct' | 'p99Ms'> | undefined)[]): { distinct: number; p99Ms: number | null } | undefined {
  if (reports.every((r) => r === undefined)) return undefined;
  const measured = reports.flatMap((r) => (r?.p99Ms == null ? [] : [r.p99Ms]));
  return { distinct: reports.reduce((sum, r) => sum + (r?.distinct ?? 0), 0), p99Ms: measured.length > 0 ? Math.max(...measured) : null };
}

export async function startConsumerGroup(rawDir: string, task: ConsumerTask, count: number, execArgv: string[] = []): Promise<ConsumerGroup> {
  const members: ConsumerProcess[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const dir = count === 1 ? rawDir : path.join(rawDir, `consumer-${i}`);
      mkdirSync(dir, { recursive: true });
      members.push(await startConsumerProcess(dir, task, execArgv));
    }
  } catch (error) {
    for (const m of members) await stopChild(m.child).catch(() => {});
    throw error;
  }
  return {
    children: members.map((m) => m.child),
    progress() {
      return mergeProgress(members.map((m) => m.progress()));
    },
    setWindow(measureFrom, measureTo) {
      for (const m of members) m.setWindow(measureFrom, measureTo);
    },
    async finish() {
      const finals = await Promise.all(members.map((m) => m.finish()));
      return mergeFinals(finals);
    },
  };
}

/** One final report from several consumers': lanes by earliest application, histograms added, counts summed. */
function mergeFinals(finals: Extract<FromConsumer, { type: 'final' }>[]): Extract<FromConsumer, { type: 'final' }> {
  const [first, ...rest] = finals;
  if (rest.length === 0) return first!;
  const appliedAt = first!.appliedAt.map((lane) => Float64Array.from(lane));
  const histograms = (['endToEnd', 'receipt', 'kafkaToConsumer', 'receiptToApplied'] as const).map((key) => {
    const merged = decodeHistogram(first![key]);
    for (const final of rest) merged.add(decodeHistogram(final[key]));
    return [key, encodeHistogram(merged)] as const;
  });
  for (const final of rest) {
    final.appliedAt.forEach((lane, worker) => {
      const merged = appliedAt[worker]!;
      for (let seq = 0; seq < lane.length; seq++) {
        const at = lane[seq]!;
        // Earliest wins; NaN (not applied by this consumer) never replaces a time.
        if (!Number.isNaN(at) && !(merged[seq]! <= at)) merged[seq] = at;
      }
    });
  }
  const sum = (pick: (f: Extract<FromConsumer, { type: 'final' }>) => number) => finals.reduce((total, f) => total + pick(f), 0);
  return {
    type: 'final',
    received: sum((f) => f.received),
    applied: sum((f) => f.applied),
    duplicates: sum((f) => f.duplicates),
    rejected: sum((f) => f.rejected),
    foreign: sum((f) => f.foreign),
    distinctIds: sum((f) => f.distinctIds),
    appliedAt,
    ...(Object.fromEntries(histograms) as Record<(typeof histograms)[number][0], string>),
  };
}

/** Waits up to `timeoutMs` for a child to exit by itself; true if it did. */
export async function exitedWithin(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  let timer: NodeJS.Timeout | undefined;
  const exited = await Promise.race([
    once(child, 'exit').then(() => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
  ]);
  clearTimeout(timer);
  return exited;
}

/**
 * Stops (SIGSTOP) or continues (SIGCONT) a process and every process under
 * it, parents first: a relay with replicas or shards pauses as a whole.
 */
export function signalTree(child: ChildProcess, signal: 'SIGSTOP' | 'SIGCONT'): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  for (const pid of processTreePids(child.pid)) {
    try {
      process.kill(pid, signal);
    } catch {
      // Exited since the scan.
    }
  }
}

// Rationale: a relay's graceful stop finishes its pass and flushes Kafka in a
// few seconds; 30 s is that on a loaded 2-core machine many times over.
const STOP_GRACE_MS = 30_000;

/**
 * Sends `signal`, then SIGKILLs the child and every process under it (a
 * supervisor's replicas would outlive it otherwise) if it has not exited
 * after STOP_GRACE_MS: a hung child never hangs its caller.
 */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  const timer = setTimeout(() => {
    for (const pid of child.pid === undefined ? [] : processTreePids(child.pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Exited since the scan.
      }
    }
  }, STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}
