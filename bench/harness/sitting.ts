/**
 * A sitting: one stretch of measurement on one host, short enough that the
 * host does not drift under it, whose subjects are interleaved and compared
 * to an anchor measured inside the same sitting.
 *
 * Hosts of one CPU model here have run the same code 1.5 to 3 times apart,
 * and one host's speed drifts over hours, so figures from two sittings are
 * never compared directly: each subject is published as its ratio to the
 * anchor of its own round, and every measured window carries the CPU probe
 * read before and after it (until two readings agree) and the share of CPU
 * time the hypervisor stole meanwhile.
 *
 * A sitting lasts at most a budget of minutes; its completed rounds are kept
 * in a journal beside the results, so a sitting that was stopped (or ran out
 * of time) resumes in a new sitting and merges into the same folder.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { OutboxBenchError } from '../../src/errors.js';
import { gitCommit, measureCpu, probesDiffer } from './environment.js';
import { median } from './stats.js';

// Rationale: a 2-core host here drifts over hours; 150 minutes is as long as
// a sitting ran without its probe moving by more than its own noise, and
// what a stopped job loses at most is one round, not a day.
export const SITTING_BUDGET_MINUTES = 150;

// Rationale: the probe's fastest trial repeats within a few percent on a
// quiet host, so two readings 3% apart say its speed is read; but a host
// busy with the servers' own after-work (autovacuum after a backlog, a
// broker's compiler after a burst) also reads steadily, only slower: a
// reading counts only while everything else on the host used at most a
// tenth of its CPU (idle servers here use a few percent). Twenty readings
// (10-15 s) is as long as a window waits for that; it is measured anyway
// after that, and says so.
const PROBE_AGREEMENT = 0.03;
const QUIET_OTHERS_PERCENT = 10;
const MAX_PROBE_READINGS = 20;

/** One probe reading: the host's speed, and how busy everything else kept the host meanwhile. */
export interface ProbeReading {
  nsPerOp: number;
  /** CPU used by every other process during the reading, % of the host's (all cores); null where unknown. */
  othersBusyPercent: number | null;
}

/** The CPU probe read until two quiet readings in a row agree. */
export interface SettledProbe {
  /** The two agreeing readings' mean, or the median of all when none agreed, ns per operation. */
  nsPerOp: number;
  readings: number[];
  /** Each reading's share of the host used by other processes, %. */
  othersBusyPercent?: (number | null)[];
  /** Whether two quiet readings in a row agreed; a window measured on an unsettled host says so. */
  settled: boolean;
}

/** One reading of the probe, with what the rest of the host did meanwhile (from /proc/stat, less this process's own CPU). */
export function readProbe(): ProbeReading {
  const host = readCpuTimes();
  const self = process.cpuUsage();
  const started = performance.now();
  const nsPerOp = measureCpu().nsPerOp;
  const hostAfter = readCpuTimes();
  const selfAfter = process.cpuUsage(self);
  if (!host || !hostAfter || hostAfter.total <= host.total) return { nsPerOp, othersBusyPercent: null };
  // Clock ticks to seconds: the host's total ticks over the reading span every core.
  const hostSeconds = ((performance.now() - started) / 1_000) * os.availableParallelism();
  const busyTicks = hostAfter.total - hostAfter.idle - (host.total - host.idle);
  const busySeconds = (busyTicks / (hostAfter.total - host.total)) * hostSeconds;
  const others = Math.max(0, busySeconds - (selfAfter.user + selfAfter.system) / 1e6);
  return { nsPerOp, othersBusyPercent: Math.round((others / hostSeconds) * 1_000) / 10 };
}

const quiet = (r: ProbeReading) => r.othersBusyPercent === null || r.othersBusyPercent <= QUIET_OTHERS_PERCENT;

/** Reads the probe until two quiet readings in a row are within PROBE_AGREEMENT of each other. */
export function settledProbe(read: () => ProbeReading = readProbe): SettledProbe {
  const readings: ProbeReading[] = [];
  const result = (nsPerOp: number, settled: boolean): SettledProbe => ({
    nsPerOp,
    readings: readings.map((r) => r.nsPerOp),
    othersBusyPercent: readings.map((r) => r.othersBusyPercent),
    settled,
  });
  for (let i = 0; i < MAX_PROBE_READINGS; i++) {
    readings.push(read());
    const [a, b] = readings.slice(-2);
    if (a && b && quiet(a) && quiet(b) && Math.abs(a.nsPerOp - b.nsPerOp) <= PROBE_AGREEMENT * Math.min(a.nsPerOp, b.nsPerOp)) {
      return result(Math.round((a.nsPerOp + b.nsPerOp) / 2), true);
    }
  }
  return result(Math.round(median(readings.map((r) => r.nsPerOp)) ?? Number.NaN), false);
}

/** The host's CPU time so far, in clock ticks: what the hypervisor stole, idle time, and all of it. */
export interface CpuTimes {
  steal: number;
  /** Idle and waiting on I/O. */
  idle: number;
  total: number;
}

/**
 * The first line of /proc/stat: user nice system idle iowait irq softirq
 * steal (guest time is already inside user and nice). Undefined where there
 * is no such file.
 */
export function readCpuTimes(stat?: string): CpuTimes | undefined {
  let text = stat;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/stat', 'utf8');
    } catch {
      return undefined;
    }
  }
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) return undefined;
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (ticks.length < 8 || ticks.some((t) => !Number.isFinite(t))) return undefined;
  return { steal: ticks[7]!, idle: ticks[3]! + ticks[4]!, total: ticks.reduce((a, b) => a + b, 0) };
}

/** The share of the host's CPU time the hypervisor stole between two readings, %; null when unknown. */
export function stealPercent(from: CpuTimes | undefined, to: CpuTimes | undefined): number | null {
  if (!from || !to || to.total <= from.total) return null;
  return Math.round(((to.steal - from.steal) / (to.total - from.total)) * 1_000) / 10;
}

/** What is recorded with every window measured in a sitting. */
export interface SittingWindow {
  /** The sitting it was measured in (1 for the first; a resumed sitting counts on). */
  sitting: number;
  /** The round of the comparison (each subject once per round). */
  round: number;
  startedAt: string;
  seconds: number;
  probeBefore: SettledProbe;
  probeAfter: SettledProbe;
  /** Share of the host's CPU time stolen by the hypervisor during the window, %. */
  stealPercent: number | null;
}

/** Runs `measure` between two settled probes, with the CPU time stolen meanwhile. */
export async function inWindow<T>(at: { sitting: number; round: number }, measure: () => Promise<T>): Promise<{ value: T; window: SittingWindow }> {
  const probeBefore = settledProbe();
  const startedAt = new Date();
  const cpuBefore = readCpuTimes();
  const value = await measure();
  const cpuAfter = readCpuTimes();
  const seconds = Math.round((Date.now() - startedAt.getTime()) / 100) / 10;
  const probeAfter = settledProbe();
  return { value, window: { ...at, startedAt: startedAt.toISOString(), seconds, probeBefore, probeAfter, stealPercent: stealPercent(cpuBefore, cpuAfter) } };
}

/** A sitting as the journal and the summary record it. */
export interface SittingRecord {
  sitting: number;
  startedAt: string;
  commit: string;
  cpuModel: string;
}

/** How far a sitting's probes moved, and whether that makes it noisy. */
export interface SittingNoise {
  sitting: number;
  probeMin: number;
  probeMax: number;
  /** (max - min) / min, %. */
  movedPercent: number;
  /** The probe moved by more than its own noise (10%): the sitting's figures are marked. */
  noisy: boolean;
  unsettledWindows: number;
  stealMaxPercent: number | null;
}

/** Each sitting's probe movement over the windows measured in it. */
export function sittingNoise(windows: readonly SittingWindow[]): SittingNoise[] {
  const bySitting = new Map<number, SittingWindow[]>();
  for (const w of windows) bySitting.set(w.sitting, [...(bySitting.get(w.sitting) ?? []), w]);
  return [...bySitting].sort(([a], [b]) => a - b).map(([sitting, ws]) => {
    const probes = ws.flatMap((w) => [w.probeBefore.nsPerOp, w.probeAfter.nsPerOp]).filter(Number.isFinite);
    const probeMin = Math.min(...probes);
    const probeMax = Math.max(...probes);
    const steals = ws.map((w) => w.stealPercent).filter((s): s is number => s !== null);
    return {
      sitting,
      probeMin,
      probeMax,
      movedPercent: Math.round((probeMax / probeMin - 1) * 1_000) / 10,
      noisy: probesDiffer(probeMin, probeMax),
      unsettledWindows: ws.filter((w) => !w.probeBefore.settled || !w.probeAfter.settled).length,
      stealMaxPercent: steals.length === 0 ? null : Math.max(...steals),
    };
  });
}

/** A subject's figure against the anchor's in the same sitting and round. */
export interface AnchorRatio {
  subject: string;
  /** The ratios, one per round that held both, subject / anchor. */
  ratios: number[];
  median: number | null;
  min: number | null;
  max: number | null;
}

/**
 * Ratios to the anchor: for every run of a subject, its figure over the
 * anchor's figure of the same sitting and round (runs without one, or with
 * no figure, are left out). Ratios carry from host to host; absolute figures do not.
 */
export function ratiosToAnchor<R>(
  runs: readonly R[],
  anchor: string,
  subjectOf: (run: R) => string,
  windowOf: (run: R) => Pick<SittingWindow, 'sitting' | 'round'> | undefined,
  figure: (run: R) => number | null | undefined,
): AnchorRatio[] {
  const key = (w: Pick<SittingWindow, 'sitting' | 'round'>) => `${w.sitting}/${w.round}`;
  const anchors = new Map<string, number>();
  for (const run of runs) {
    const w = windowOf(run);
    const value = figure(run);
    if (w && subjectOf(run) === anchor && typeof value === 'number' && value > 0) anchors.set(key(w), value);
  }
  const bySubject = new Map<string, number[]>();
  for (const run of runs) {
    const subject = subjectOf(run);
    const w = windowOf(run);
    const value = figure(run);
    const base = w ? anchors.get(key(w)) : undefined;
    if (!bySubject.has(subject)) bySubject.set(subject, []);
    if (base !== undefined && typeof value === 'number') bySubject.get(subject)!.push(value / base);
  }
  return [...bySubject].map(([subject, ratios]) => ({
    subject,
    ratios,
    median: median(ratios) ?? null,
    min: ratios.length === 0 ? null : Math.min(...ratios),
    max: ratios.length === 0 ? null : Math.max(...ratios),
  }));
}

/** What the journal holds: the comparison it belongs to, its sittings and its completed rounds. */
interface JournalFile<U> {
  /** Says which comparison this is (the scenario and the flags that decide its runs); a resume must match it. */
  key: string;
  sittings: SittingRecord[];
  rounds: { round: number; units: U[] }[];
}

/**
 * The rounds a comparison completed, on disk after each one. A round is the
 * unit kept: one stopped halfway is measured again whole in the next
 * sitting, so that every subject's ratio has its anchor in its own sitting.
 */
export class SittingJournal<U> {
  readonly #file: string;
  readonly #data: JournalFile<U>;
  readonly #startedMs = Date.now();
  readonly #budgetMs: number;
  /** The sitting this process measures. */
  readonly sitting: number;

  private constructor(file: string, data: JournalFile<U>, budgetMinutes: number, earlierSittings: number) {
    this.#file = file;
    this.#data = data;
    this.#budgetMs = budgetMinutes * 60_000;
    this.sitting = Math.max(data.sittings.at(-1)?.sitting ?? 0, earlierSittings) + 1;
    data.sittings.push({ sitting: this.sitting, startedAt: new Date().toISOString(), commit: gitCommit(), cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown' });
  }

  /**
   * The journal in `dir` for the comparison `key`: a resume continues the
   * one there (and refuses another comparison's); otherwise any left over is
   * replaced. A new sitting is numbered after the journal's and after the
   * `earlierSittings` the folder's results already hold. A folder may hold
   * one journal per comparison (`name`: the peers' drains and latency).
   */
  static open<U>(dir: string, key: string, resume: boolean, budgetMinutes = SITTING_BUDGET_MINUTES, earlierSittings = 0, name = 'sitting-journal'): SittingJournal<U> {
    const file = path.join(dir, `${name}.json`);
    if (!resume) {
      // A comparison started afresh: a journal left by another is gone at once, so a later resume cannot continue it.
      rmSync(file, { force: true });
      return new SittingJournal<U>(file, { key, sittings: [], rounds: [] }, budgetMinutes, earlierSittings);
    }
    if (!existsSync(file)) throw new OutboxBenchError('USAGE', `--resume: there is no stopped sitting to resume in ${dir} (no ${name}.json)`);
    const data = JSON.parse(readFileSync(file, 'utf8')) as JournalFile<U>;
    if (data.key !== key) {
      throw new OutboxBenchError('USAGE', `--resume: the sitting stopped in ${dir} measured ${data.key}; this command measures ${key}: give the same flags, or leave out --resume to start afresh`);
    }
    return new SittingJournal<U>(file, data, budgetMinutes, earlierSittings);
  }

  get sittings(): readonly SittingRecord[] {
    return this.#data.sittings;
  }

  /** The units of a round completed in an earlier sitting, if it was. */
  completed(round: number): U[] | undefined {
    return this.#data.rounds.find((r) => r.round === round)?.units;
  }

  /** Keeps a completed round, on disk at once (written whole, then renamed, so a kill leaves the previous file). */
  record(round: number, units: U[]): void {
    this.#data.rounds.push({ round, units });
    mkdirSync(path.dirname(this.#file), { recursive: true });
    const partial = `${this.#file}.partial`;
    writeFileSync(partial, `${JSON.stringify(this.#data)}\n`);
    renameSync(partial, this.#file);
  }

  /** Whether a round expected to take `nextMs` would end past this sitting's budget. */
  wouldOverrun(nextMs: number): boolean {
    return Date.now() - this.#startedMs + nextMs > this.#budgetMs;
  }

  /** The comparison is complete: nothing is left to resume. */
  finish(): void {
    rmSync(this.#file, { force: true });
  }
}
