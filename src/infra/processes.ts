/**
 * Small process and network helpers shared by the PostgreSQL and Kafka
 * launchers: port probes, readiness polling, child commands with captured
 * output, and a registry of spawned servers so that even an abrupt exit kills
 * what this process started.
 */
import { spawn, type SpawnOptions } from 'node:child_process';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { OutboxBenchError, describeError } from '../errors.js';

/** True when nothing listens on host:port (we can bind it ourselves). */
export async function isPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

export async function assertPortFree(port: number, what: string, fix: string): Promise<void> {
  if (!(await isPortFree(port))) {
    throw new OutboxBenchError('PORT_IN_USE', `port ${port} (${what}) is already in use. ${fix}`, { details: { port } });
  }
}

export interface WaitOptions {
  what: string;
  timeoutMs: number;
  intervalMs?: number;
  /** Checked between attempts: stop waiting early when the server died. */
  abortIf?: () => string | undefined;
}

/** Polls `probe` until it resolves truthy; throws NOT_READY with the last error. */
export async function waitUntil<T>(probe: () => Promise<T | undefined | false>, options: WaitOptions): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  let lastError: unknown;
  for (;;) {
    const aborted = options.abortIf?.();
    if (aborted) throw new OutboxBenchError('NOT_READY', `${options.what}: ${aborted}`);
    try {
      const value = await probe();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const why = lastError === undefined ? '' : ` (last error: ${describeError(lastError)})`;
      throw new OutboxBenchError('NOT_READY', `${options.what} did not become ready within ${options.timeoutMs} ms${why}`, {
        cause: lastError,
        retriable: true,
      });
    }
    await sleep(options.intervalMs ?? 200);
  }
}

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion, capturing output. Rejects only when it cannot be spawned. */
export async function runCommand(command: string, args: readonly string[], options: SpawnOptions = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** True when `command` can be executed (found on PATH). */
export async function commandExists(command: string, versionArgs: readonly string[] = ['-version']): Promise<boolean> {
  try {
    await runCommand(command, versionArgs);
    return true;
  } catch {
    return false;
  }
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Waits for a pid to disappear; true if it did within the timeout. */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isProcessAlive(pid)) return true;
    await sleep(50);
  }
  return !isProcessAlive(pid);
}

export function signalProcess(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * Servers this process started and must not outlive it. `killAllSync` runs on
 * the synchronous 'exit' path, where nothing async can happen any more: it
 * sends each server its fastest safe stop signal.
 */
const owned = new Map<number, { name: string; signal: NodeJS.Signals }>();

export function registerOwnedProcess(pid: number, name: string, emergencySignal: NodeJS.Signals): void {
  owned.set(pid, { name, signal: emergencySignal });
}

export function unregisterOwnedProcess(pid: number): void {
  owned.delete(pid);
}

export function killAllOwnedSync(): void {
  for (const [pid, { signal }] of owned) signalProcess(pid, signal);
  owned.clear();
}

export function lastLines(text: string, count = 15): string {
  return text.trimEnd().split('\n').slice(-count).join('\n');
}
