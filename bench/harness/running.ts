/**
 * Everything a pipeline run starts, and stops again whatever happens: its
 * relay's process tree, consumers, load workers, sampler and timers. A run
 * may end normally, fail, or be stopped by a signal (stopRunsInProgress);
 * each stops everything exactly once.
 */
import type { ChildProcess } from 'node:child_process';
import type { Piscina } from 'piscina';
import { OutboxBenchError } from '../../src/errors.js';
import { signalTree, stopChild } from './processes.js';
import { Progress } from './progress.js';
import type { RunSetup } from './run-setup.js';
import type { RunSampler } from './sampler.js';

/** Everything of a run that is started, and must be stopped whatever happens. */
export interface Running {
  run: RunSetup;
  children: ChildProcess[];
  pool?: Piscina;
  sampler?: RunSampler;
  timers: NodeJS.Timeout[];
  resumeConsumer: () => void;
  /** A relay paused for a drain: continued before it is stopped. */
  pausedRelay?: ChildProcess | undefined;
  progress: Progress;
  /** Set once stopping began: the run's end and a signal may both stop it. */
  stopping?: Promise<void>;
  /** Resolves once runPipeline has returned or thrown (a process still starting was stopped then too). */
  ended: Promise<void>;
  markEnded: () => void;
}

/** The runs of this process that have not ended yet. */
const inProgress = new Set<Running>();
/** Set by stopRunsInProgress: the process is stopping, and starts no run. */
let refusingRuns = false;

/**
 * A run's failure while the process is stopping is the stop, not a
 * measurement: rethrown, so a comparison records no step or round of it
 * (a resume measures that round again) and the command ends.
 */
export function rethrowIfStopping(error: unknown): void {
  if (refusingRuns) throw new OutboxBenchError('SHUTTING_DOWN', `stopped: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
}

/** A rejection handler that handles a run's own failure and rethrows the stop's (see rethrowIfStopping). */
export function unlessStopping<T>(handle: (error: unknown) => T): (error: unknown) => T {
  return (error) => {
    rethrowIfStopping(error);
    return handle(error);
  };
}

/** Throws if the process is stopping: no run starts (or goes on after its setup) then. */
export function refuseIfStopping(name: string, what: 'not started' | 'stopped'): void {
  if (refusingRuns) throw new OutboxBenchError('SHUTTING_DOWN', `run ${name} ${what}: the process is stopping`);
}

/**
 * Stops every run in progress: its relay (every process of its tree, and
 * its helpers), consumers and load. bench/run.ts calls it on SIGINT/SIGTERM
 * before it stops the servers: a relay still connected for logical
 * replication keeps PostgreSQL's fast shutdown waiting, and a JVM would
 * outlive the command.
 */
export async function stopRunsInProgress(): Promise<void> {
  refusingRuns = true;
  const runs = [...inProgress];
  await Promise.all(runs.map((running) => stopRunning(running)));
  // A process that was still starting is stopped when its start returns.
  await Promise.all(runs.map((running) => running.ended));
}

/** A run just set up, now one of those a signal stops. */
export function beginRunning(run: RunSetup, quiet: boolean): Running {
  let markEnded = () => {};
  const ended = new Promise<void>((resolve) => (markEnded = resolve));
  const running: Running = { run, children: [], timers: [], resumeConsumer: () => {}, progress: new Progress(quiet), ended, markEnded };
  inProgress.add(running);
  return running;
}

/** Stops what is left of a run and takes it off the runs in progress. */
export async function endRunning(running: Running): Promise<void> {
  await stopRunning(running);
  inProgress.delete(running);
  running.markEnded();
}

/** Makes processes the run's to stop; a run already stopping stops them at once. */
export async function adopt(running: Running, children: readonly ChildProcess[]): Promise<void> {
  running.children.push(...children);
  if (!running.stopping) return;
  for (const child of children) await stopChild(child).catch(() => {});
  throw new OutboxBenchError('SHUTTING_DOWN', 'the run was stopped while its processes were starting');
}

function stopRunning(running: Running): Promise<void> {
  running.stopping ??= stopRunningOnce(running);
  return running.stopping;
}

async function stopRunningOnce(running: Running): Promise<void> {
  for (const timer of running.timers) clearTimeout(timer);
  running.progress.done();
  // A stopped process would never act on the SIGTERM that follows.
  running.resumeConsumer();
  if (running.pausedRelay) signalTree(running.pausedRelay, 'SIGCONT');
  await running.sampler?.stop();
  await running.pool?.destroy();
  for (const child of running.children) await stopChild(child).catch(() => {});
  await running.run.close();
}
