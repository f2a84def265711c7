/**
 * Readiness between processes: a command started by another process (a
 * relay replica by its supervisor, a relay by the benchmark harness) tells
 * its parent over the IPC channel that it is doing its job. A structured
 * message, not a sentence on stdout that a parent has to pattern-match.
 */
import type { ChildProcess } from 'node:child_process';
import { OutboxBenchError } from './errors.js';

export interface ReadyMessage {
  readonly type: 'outbox-bench:ready';
  /** What became ready: `relay`, `service`, `consumer`, ... */
  readonly what: string;
  readonly pid: number;
  /** Epoch ms when it became ready. */
  readonly at: number;
}

export function isReadyMessage(message: unknown): message is ReadyMessage {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === 'outbox-bench:ready';
}

/** Tells the parent (if it started this process with an IPC channel) that `what` is ready. */
export function signalReady(what: string): void {
  if (!process.send || !process.connected) return;
  const message: ReadyMessage = { type: 'outbox-bench:ready', what, pid: process.pid, at: Date.now() };
  process.send(message);
}

/**
 * Resolves with the child's ready message; rejects if the child exits first
 * or stays silent for `timeoutMs`. `describe` names the child and where its
 * log is, for the error.
 */
export function waitForReady(child: ChildProcess, options: { timeoutMs: number; describe: string }): Promise<ReadyMessage> {
  return new Promise((resolve, reject) => {
    const done = (error?: Error, message?: ReadyMessage) => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (error) reject(error);
      else resolve(message!);
    };
    const onMessage = (message: unknown) => {
      if (isReadyMessage(message)) done(undefined, message);
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null) =>
      done(new OutboxBenchError('CHECK_FAILED', `${options.describe} exited during start-up (${signal ?? `code ${code}`})`));
    const timer = setTimeout(
      () => done(new OutboxBenchError('NOT_READY', `${options.describe} did not report ready within ${Math.round(options.timeoutMs / 1_000)} s`)),
      options.timeoutMs,
    );
    child.on('message', onMessage);
    child.once('exit', onExit);
    if (child.exitCode !== null || child.signalCode !== null) onExit(child.exitCode, child.signalCode);
  });
}
