/**
 * Runs the processes of a relay mode that has several (SKIP LOCKED replicas,
 * CDC shards), each with its own connections and Kafka producer, and keeps
 * them running: one that dies is started again after a pause, as an
 * orchestrator would. Stopping sends SIGTERM, so each finishes its pass
 * before it exits.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { backoffMs, type Backoff } from '../backoff.js';
import { settingsEnv, type Config } from '../config.js';
import type { Logger } from '../log.js';
import type { Sql } from '../db.js';
import { describeError, EXIT, OutboxBenchError } from '../errors.js';
import { isReadyMessage } from '../readiness.js';
import { recordSessionEnd } from './table/evidence.js';
import { relayModeInfo, relayProcesses, RELAY_PROCESS_SETTINGS } from './modes.js';

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'cli.js');

export interface ReplicaSupervisorOptions {
  config: Config;
  databaseUrl: string;
  kafkaBrokers: readonly string[];
  log: Logger;
  evidenceDir?: string | undefined;
  /** With evidence: a pool for recording when a killed replica's session ended. */
  sql?: Sql | undefined;
}

// Rationale: restart quickly after a crash, but back off so a replica that
// dies at start-up (bad config, database down) does not spin.
const RESTART_BACKOFF: Backoff = Object.freeze({ minMs: 500, maxMs: 10_000, jitter: false });

export class ReplicaSupervisor {
  readonly #options: ReplicaSupervisorOptions;
  readonly #log: Logger;
  readonly #children = new Map<number, ChildProcess>();
  readonly #restarts = new Map<number, number>();
  /** Replicas that have reported ready at least once. */
  readonly #ready = new Set<number>();
  #onReady: (() => void) | undefined;
  #stopping = false;
  #failed: ((error: Error) => void) | undefined;
  /** Rejects when a process exits in a way no restart fixes (a lost slot, a bad setting); the others are stopped. */
  readonly done: Promise<void> = new Promise((_resolve, reject) => (this.#failed = reject));

  constructor(options: ReplicaSupervisorOptions) {
    this.#options = options;
    this.#log = options.log.child({ component: `${relayModeInfo(options.config.relayMode).processNoun}s`, mode: options.config.relayMode });
  }

  /** Pids of the running replicas, by replica index. */
  pids(): Map<number, number> {
    return new Map([...this.#children].flatMap(([index, child]) => (child.pid === undefined ? [] : [[index, child.pid] as [number, number]])));
  }

  start(): void {
    for (let index = 0; index < relayProcesses(this.#options.config); index++) this.#spawn(index);
  }

  /** Resolves once every replica has reported ready (restarts are not waited for again). */
  ready(): Promise<void> {
    if (this.#ready.size >= relayProcesses(this.#options.config)) return Promise.resolve();
    return new Promise((resolve) => {
      this.#onReady = resolve;
    });
  }

  #spawn(index: number): void {
    const { config } = this.#options;
    // The process's own place among the others; everything else it reads comes through its environment.
    const args = ['relay', '--replica-index', String(index), ...(this.#options.evidenceDir ? ['--evidence', this.#options.evidenceDir] : [])];
    const settings: Partial<Config> = Object.fromEntries(RELAY_PROCESS_SETTINGS.map((key) => [key, config[key]]));
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ...settingsEnv({
        ...settings,
        // The servers this process runs against (embedded ones have no setting of their own).
        databaseUrl: this.#options.databaseUrl,
        kafkaBrokers: this.#options.kafkaBrokers,
        // Each process serves its own counters next to the supervisor's port.
        metricsPort: config.metricsPort === undefined ? undefined : config.metricsPort + 1 + index,
      }),
    };
    const child = fork(CLI, args, { env, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    this.#children.set(index, child);
    child.on('message', (message) => {
      if (!isReadyMessage(message) || this.#ready.has(index)) return;
      this.#ready.add(index);
      if (this.#ready.size >= relayProcesses(this.#options.config)) this.#onReady?.();
    });
    child.once('exit', (code, signal) => {
      this.#children.delete(index);
      // A replica that died mid-pass held its claims until its session ended: record when.
      const { evidenceDir, sql } = this.#options;
      if (evidenceDir && sql && !this.#stopping) {
        void recordSessionEnd(sql, evidenceDir, index).catch((error: unknown) => this.#log.warn({ err: describeError(error), replica: index }, 'could not record the session end'));
      }
      if (this.#stopping) return;
      if (code === EXIT.USAGE || code === EXIT.FATAL) {
        // Its own error is on stderr (inherited); the same start would fail the same way.
        this.#log.error({ replica: index, code }, 'relay process failed for good; stopping the others');
        void this.stop().then(() => this.#failed?.(new OutboxBenchError('CHECK_FAILED', `relay process ${index} of ${this.#options.config.relayMode} failed and was not restarted (its error is above)`)));
        return;
      }
      const restarts = (this.#restarts.get(index) ?? 0) + 1;
      this.#restarts.set(index, restarts);
      const delay = backoffMs(restarts, RESTART_BACKOFF);
      this.#log.warn({ replica: index, code, signal, restartInMs: delay }, 'relay process exited; restarting it');
      setTimeout(() => {
        if (!this.#stopping) this.#spawn(index);
      }, delay).unref();
    });
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    const exits = [...this.#children.values()].map(async (child) => {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    });
    await Promise.all(exits);
  }
}
