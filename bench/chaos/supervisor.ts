/**
 * Runs the pipeline's components as child processes that a fault schedule
 * can SIGKILL, SIGSTOP and SIGCONT, and restarts them when they die, the way
 * an orchestrator would. Every start, exit and injected signal is logged
 * with a timestamp, so a run can be read back afterwards.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { waitForReady } from '../../src/readiness.js';

export interface ProcessSpec {
  name: string;
  /** Node script to run (compiled .js). */
  script: string;
  args: string[];
  /** Its environment, or the environment of its nth start (1, 2, ...): a restarted process may need another. */
  env: NodeJS.ProcessEnv | ((start: number) => NodeJS.ProcessEnv);
  /** Start it again when it exits (default true). */
  restart?: boolean;
  /** stdout and stderr are appended here. */
  logFile: string;
}

export interface SupervisorEvent {
  at: number;
  name: string;
  event: 'started' | 'exited' | 'signalled';
  pid?: number | undefined;
  code?: number | null;
  signal?: string | null;
}

// Rationale: long enough that a crash loop does not spin, short enough that
// a killed relay is back within a fraction of the fault interval.
const RESTART_DELAY_MS = 300;

export class Supervisor {
  readonly events: SupervisorEvent[] = [];
  readonly #specs = new Map<string, ProcessSpec>();
  readonly #children = new Map<string, ChildProcess>();
  readonly #logs = new Map<string, WriteStream>();
  readonly #paused = new Set<string>();
  readonly #exitListeners: ((name: string) => void)[] = [];
  #stopping = false;

  /** Called whenever a component's process exits on its own (killed, crashed), before any restart. */
  onUnexpectedExit(listener: (name: string) => void): void {
    this.#exitListeners.push(listener);
  }

  start(spec: ProcessSpec): void {
    this.#specs.set(spec.name, spec);
    this.#spawn(spec);
  }

  #spawn(spec: ProcessSpec): void {
    let log = this.#logs.get(spec.name);
    if (!log) this.#logs.set(spec.name, (log = createWriteStream(spec.logFile, { flags: 'a' })));
    const start = this.events.filter((e) => e.name === spec.name && e.event === 'started').length + 1;
    const env = typeof spec.env === 'function' ? spec.env(start) : spec.env;
    // The IPC channel carries the child's ready message.
    const child = spawn(process.execPath, [spec.script, ...spec.args], { env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    child.stdout!.pipe(log, { end: false });
    child.stderr!.pipe(log, { end: false });
    this.#children.set(spec.name, child);
    this.events.push({ at: Date.now(), name: spec.name, event: 'started', pid: child.pid });
    child.once('exit', (code, signal) => {
      this.events.push({ at: Date.now(), name: spec.name, event: 'exited', pid: child.pid, code, signal });
      if (this.#children.get(spec.name) === child) this.#children.delete(spec.name);
      this.#paused.delete(spec.name);
      if (!this.#stopping && this.#specs.has(spec.name)) for (const listener of this.#exitListeners) listener(spec.name);
      if (!this.#stopping && (spec.restart ?? true) && this.#specs.has(spec.name)) {
        setTimeout(() => {
          if (!this.#stopping && this.#specs.has(spec.name) && !this.#children.has(spec.name)) this.#spawn(spec);
        }, RESTART_DELAY_MS);
      }
    });
  }

  /** Resolves once the component's current process reported ready. */
  async waitReady(name: string, timeoutMs: number): Promise<void> {
    const child = this.#children.get(name);
    if (!child) throw new Error(`${name} is not running`);
    await waitForReady(child, { timeoutMs, describe: `${name} (log: ${this.#specs.get(name)?.logFile})` });
  }

  names(): string[] {
    return [...this.#children.keys()];
  }

  pid(name: string): number | undefined {
    return this.#children.get(name)?.pid;
  }

  isPaused(name: string): boolean {
    return this.#paused.has(name);
  }

  /** Sends a signal to a running component; false if it is not running. */
  signal(name: string, signal: NodeJS.Signals): boolean {
    const child = this.#children.get(name);
    if (!child || child.exitCode !== null || child.signalCode !== null) return false;
    const sent = child.kill(signal);
    if (sent) {
      this.events.push({ at: Date.now(), name, event: 'signalled', pid: child.pid, signal });
      if (signal === 'SIGSTOP') this.#paused.add(name);
      if (signal === 'SIGCONT') this.#paused.delete(name);
    }
    return sent;
  }

  /** How many times a component was started. */
  starts(name: string): number {
    return this.events.filter((e) => e.name === name && e.event === 'started').length;
  }

  /** Stops one component for good (SIGTERM, then SIGKILL after the grace period). */
  async stop(name: string, graceMs = 20_000): Promise<void> {
    this.#specs.delete(name);
    const child = this.#children.get(name);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    if (this.#paused.has(name)) child.kill('SIGCONT');
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }

  async stopAll(graceMs = 20_000): Promise<void> {
    this.#stopping = true;
    await Promise.all([...this.#children.keys()].map((name) => this.stop(name, graceMs)));
    await Promise.all([...this.#logs.values()].map((log) => new Promise<void>((resolve) => log.end(resolve))));
    this.#logs.clear();
  }
}
