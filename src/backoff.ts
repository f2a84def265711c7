/**
 * How long to wait before retrying after `failures` failures in a row:
 * doubling from `minMs`, capped at `maxMs`, and with jitter (a random half
 * to whole of that) so that replicas failing together do not retry together.
 */
export interface Backoff {
  minMs: number;
  maxMs: number;
  /** Spread retries over [delay/2, delay] (default true). */
  jitter?: boolean;
}

// Rationale: retry fast for blips (a broker leader move takes ~100 ms), but
// cap at 5 s so a long outage costs little CPU and recovery is still prompt.
export const RETRY_BACKOFF: Backoff = Object.freeze({ minMs: 100, maxMs: 5_000 });

export function backoffMs(failures: number, backoff: Backoff = RETRY_BACKOFF): number {
  const delay = Math.min(backoff.maxMs, backoff.minMs * 2 ** Math.min(Math.max(0, failures - 1), 30));
  return backoff.jitter === false ? delay : delay * (0.5 + Math.random() / 2);
}

/**
 * A wait that something else may end early: a stop during a retry's
 * backoff, or enough work arriving during the CDC relay's batching delay.
 */
export class WakeableSleep {
  #wake: (() => void) | undefined;

  /** Whether a wait is in progress. */
  get sleeping(): boolean {
    return this.#wake !== undefined;
  }

  async sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.#wake = undefined;
  }

  /** Ends the wait in progress, if any. */
  wake(): void {
    this.#wake?.();
  }
}
