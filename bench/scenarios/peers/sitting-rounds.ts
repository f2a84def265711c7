/**
 * The rounds of a sitting with an anchor, as the peers comparison's maxima
 * and latency run them: each round run, or replayed from the journal of a
 * stopped sitting, while the sitting's budget lasts; runs one at a time.
 */
import type { CpuProbe } from '../../harness/environment.js';
import type { SettledProbe, SittingJournal } from '../../harness/sitting.js';

/** The probe of a relay's first window, as the table's host column reads it. */
export function cpuProbeOf(probe: SettledProbe): CpuProbe {
  const agreeing = probe.readings.slice(-2);
  return {
    nsPerOp: probe.nsPerOp,
    spreadPercent: Math.round((Math.max(...agreeing) / Math.min(...agreeing) - 1) * 100),
    trials: probe.readings.length,
    what: `the CPU probe read ${probe.readings.length} times until two quiet readings agreed${probe.settled ? '' : ' (none did: their median)'}, their mean`,
  };
}

/** Rounds run or replayed from the journal, under the sitting's budget. */
export class Rounds<U> {
  round = 0;
  measuredHere = 0;
  lastRoundMs = 0;
  incomplete: string | undefined;
  constructor(
    readonly journal: SittingJournal<U>,
    readonly budgetMinutes: number,
  ) {}

  /** The next round's units: kept from an earlier sitting, or measured now; undefined once the budget is spent. */
  async next(what: string, measure: (at: { sitting: number; round: number }) => Promise<U[]>): Promise<U[] | undefined> {
    if (this.incomplete !== undefined) return undefined;
    this.round += 1;
    const kept = this.journal.completed(this.round);
    if (kept) return kept;
    // Every sitting measures a round at least: a resume always gets further.
    if (this.measuredHere > 0 && this.journal.wouldOverrun(this.lastRoundMs)) {
      this.incomplete = `stopped at the sitting's ${this.budgetMinutes}-minute budget before round ${this.round} (${what}): run the same command with --resume to measure the rest in a new sitting`;
      return undefined;
    }
    const started = Date.now();
    const units = await measure({ sitting: this.journal.sitting, round: this.round });
    this.journal.record(this.round, units);
    this.measuredHere += 1;
    this.lastRoundMs = Date.now() - started;
    return units;
  }
}

/** A heap check not run (the search ran with that heap) has no window of its own. */
export const emptyProbe: SettledProbe = { nsPerOp: Number.NaN, readings: [], settled: false };

/** Runs `each` over the items one after another (never side by side: each run has the machine to itself). */
export async function sequence<T, R>(items: readonly T[], each: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (const item of items) out.push(await each(item));
  return out;
}
