/**
 * The live progress line of a running scenario: elapsed, phase, delivery
 * rate, relay lag, p99 so far. Rewritten in place on a terminal, a line every
 * five seconds in a log, nothing at all under CI=true.
 */
import type { LagReading } from './sampler.js';

export interface ProgressSnapshot {
  elapsedS: number;
  phase: string;
  ratePerSec: number;
  lag: LagReading;
  /** Null until the run has measured an event: a warm-up's events are not measured. */
  p99Ms: number | null;
}

function formatLag(lag: LagReading): string {
  if (lag.events !== null) return `${lag.events} events`;
  if (lag.bytes !== null) return `${(lag.bytes / 1024).toFixed(0)} KiB WAL`;
  return 'n/a';
}

/** One progress line; a run that has measured nothing yet says so rather than print a p99 of 0. */
export function formatProgress(s: ProgressSnapshot): string {
  const p99 = s.p99Ms === null ? 'p99: nothing measured yet' : `p99 so far ${s.p99Ms.toFixed(1)} ms`;
  // The start phase is reported just before its clock starts: no "-0 s".
  return `  ${Math.max(0, s.elapsedS).toFixed(0).padStart(4)} s  ${s.phase.padEnd(7)}  ${String(s.ratePerSec).padStart(7)} events/s  lag ${formatLag(s.lag).padEnd(14)}  ${p99}`;
}

export class Progress {
  readonly #quiet: boolean;
  readonly #tty = process.stderr.isTTY === true;
  #lastPrinted = Number.NEGATIVE_INFINITY;
  #dirty = false;

  constructor(quiet: boolean) {
    this.#quiet = quiet;
  }

  update(s: ProgressSnapshot): void {
    if (this.#quiet) return;
    const line = formatProgress(s);
    if (this.#tty) {
      process.stderr.write(`\r${line}\x1b[K`);
      this.#dirty = true;
    } else if (performance.now() - this.#lastPrinted >= 5_000) {
      process.stderr.write(`${line}\n`);
      this.#lastPrinted = performance.now();
    }
  }

  done(): void {
    if (this.#dirty) process.stderr.write('\n');
    this.#dirty = false;
  }
}
