/**
 * Orderly shutdown for every command: cleanups run in reverse order of
 * registration (relays stop before the broker they publish to, the broker
 * before nothing else needs it) on normal exit, on error and on Ctrl-C. A
 * second Ctrl-C kills the servers we started right away; the synchronous
 * 'exit' hook does the same if the process dies some other way.
 */
import { describeError } from './errors.js';
import { killAllOwnedSync } from './infra/processes.js';
import type { Logger } from './log.js';

type Cleanup = () => Promise<void> | void;

export class ShutdownStack {
  readonly #steps: { name: string; run: Cleanup }[] = [];
  #running: Promise<void> | undefined;
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  /** Registers a cleanup; returns a function that unregisters it. */
  add(name: string, run: Cleanup): () => void {
    const step = { name, run };
    this.#steps.push(step);
    return () => {
      const index = this.#steps.indexOf(step);
      if (index >= 0) this.#steps.splice(index, 1);
    };
  }

  get started(): boolean {
    return this.#running !== undefined;
  }

  /** Runs every cleanup once, newest first; errors are logged, never thrown. */
  run(): Promise<void> {
    this.#running ??= (async () => {
      while (this.#steps.length > 0) {
        const step = this.#steps.pop()!;
        try {
          await step.run();
        } catch (error) {
          this.#log.error({ step: step.name, err: describeError(error) }, 'cleanup step failed');
        }
      }
    })();
    return this.#running;
  }
}

/**
 * Wires SIGINT/SIGTERM/SIGHUP and the exit hook to a ShutdownStack. Returns a
 * promise that resolves with the signal name when one arrives, so long-running
 * commands can `await` it.
 */
export function installSignalHandlers(stack: ShutdownStack, log: Logger, options: { ignoreInterrupt?: boolean } = {}): Promise<NodeJS.Signals> {
  process.once('exit', killAllOwnedSync);
  return new Promise((resolve) => {
    let received = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      received += 1;
      if (received > 1) {
        log.warn('second signal: killing local servers now');
        killAllOwnedSync();
        process.exit(130);
      }
      log.info({ signal }, 'stopping (press Ctrl-C again to force)');
      resolve(signal);
      void stack.run().then(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    };
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      // A supervised child gets the terminal's Ctrl-C too; its supervisor
      // decides when it stops (SIGTERM), so the pass in flight can finish.
      if (signal === 'SIGINT' && options.ignoreInterrupt) process.on(signal, () => {});
      else process.on(signal, onSignal);
    }
  });
}
