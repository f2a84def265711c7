/**
 * Turns what a run recorded (each worker's commits, the consumer's first
 * applications, the samplers' readings) into its figures. Every committed
 * order is accounted for: applied, or lost. Rates and CPU costs are taken
 * over one window and divided by the events applied inside that same window:
 * the measured window of a load run, the 10%-90% part of a drain.
 */
import { nowMs } from '../../src/events.js';
import { createHistogram, decodeHistogram, encodeHistogram, recordMs, summarizeMs, type Histogram, type LatencySummaryMs } from '../../src/latency.js';
import type { ConsumerFinal } from './consumer-process.js';
import { intendedTime, type LoadPlan, type LoadResult } from './load-worker.js';
import { COMPONENTS, slopePerSecond, type Component, type RunSampler } from './sampler.js';

export interface ProcessCost {
  cpuSeconds: number | null;
  cpuSecondsPerMillionEvents: number | null;
  /** Peak RSS (Node, Java) or PSS at the end (PostgreSQL), MiB. */
  memoryMiB: number | null;
}

export interface TimelinePoint {
  /** Seconds since the first intended send. */
  t: number;
  /** Orders first applied in this second. */
  delivered: number;
  /** Orders committed in this second. */
  committed: number;
  /** Relay lag, last reading of this second: events (table relays) or WAL bytes (CDC). */
  lagEvents: number | null;
  lagBytes: number | null;
}

/** The window a run's rates and costs are measured over (epoch ms). */
export interface MeasuredWindow {
  from: number;
  to: number;
  /** `load`: the measured part of an open-loop load; `drain`: 10% to 90% of a backlog applied. */
  kind: 'load' | 'drain';
}

export interface DrainFigures {
  backlog: number;
  /**
   * CPU seconds per million events of writing the backlog (first intended
   * send to last commit, divided by the events committed): the intake's cost,
   * which the drain window no longer holds.
   */
  intakeCpuSecondsPerMillion: Record<Component, number | null>;
  /** Drain start (relay spawned, or resumed) -> first event of the backlog applied, s. */
  timeToFirstEventS: number;
  /** Events per second between 10% and 90% of the backlog applied. */
  eventsPerSec: number;
  /** Drain start -> last event of the backlog applied, s. */
  seconds: number;
}

export interface WindowDelivery {
  /** Orders whose intended time lies in the measured window. */
  intended: number;
  /** Of those, applied by the window's end plus `graceMs`. */
  deliveredByDeadline: number;
  graceMs: number;
}

export interface LagTrend {
  /**
   * Least-squares slope of the relay lag over the measured window, events
   * per second (CDC: WAL bytes converted); for a relay whose own lag reading
   * trails its publishing by design (`from: 'delivery'`), the slope of the
   * committed orders not yet applied.
   */
  slopeEventsPerSec: number | null;
  from?: 'relay' | 'delivery';
  /** WAL bytes written per committed event in the window (CDC lag conversion). */
  walBytesPerEvent: number | null;
}

export interface Accounting {
  sent: number;
  failedWrites: number;
  delivered: number;
  lost: number;
  /** Committed, not applied when the drain was cut at its limit (late or lost, not told apart); only then present. */
  undrained?: number;
  /** Applied although its writer saw the transaction fail. */
  unexpected: number;
  /** Orders applied per second inside the window. */
  eventsPerSec: number;
  /** Orders committed per second inside the measured load window (the offered load that got in). */
  committedPerSec: number;
  window: MeasuredWindow;
  windowDelivery: WindowDelivery;
  e2eMs: LatencySummaryMs;
  e2eReceiptMs: LatencySummaryMs;
  commitToAppliedMs: LatencySummaryMs;
  /** Applied before the writer saw its COMMIT return. */
  deliveredBeforeCommitAck: number;
  writeMs: LatencySummaryMs;
  cost: Record<Component, ProcessCost>;
  lag: LagTrend;
  timeline: TimelinePoint[];
  histograms: { e2e: string; receipt: string; commitToApplied: string; write: string };
  /** Seconds from the last commit until the last first application. */
  drainS: number;
  drain?: DrainFigures;
}

export interface AccountInput {
  plan: LoadPlan;
  startAt: number;
  /** The load's measured window (epoch ms). */
  measureFrom: number;
  measureTo: number;
  loads: readonly LoadResult[];
  final: ConsumerFinal;
  sampler: RunSampler;
  memory: Record<Component, number | undefined>;
  /**
   * Drain runs: the drain's time origin (the relay spawned, or resumed after
   * a prewarm). The backlog is the orders intended from `measureFrom` on.
   */
  drainFrom?: number | undefined;
  /** The drain was cut at its limit: what was not applied is undrained, not lost. */
  drainCut?: boolean;
  /** The grace after the window within which in-window orders count as delivered, ms. */
  graceMs: number;
  /**
   * Take the lag slope from delivery (committed orders not yet applied)
   * rather than the relay's reading: a relay that confirms its position only
   * now and then (a connector that flushes its offsets) shows a sawtooth there
   * whose slope over a window says nothing about keeping up.
   */
  lagFromDelivery?: boolean;
}

const round = (value: number, digits: number) => Math.round(value * 10 ** digits) / 10 ** digits;

/** Every planned order of a run: committed or not, applied or not, inside the measured window or not. */
interface OrderTally {
  sent: number;
  failedWrites: number;
  delivered: number;
  lost: number;
  undrained: number;
  unexpected: number;
  committedInWindow: number;
  intendedInWindow: number;
  deliveredByDeadline: number;
  /** Applied before the writer had its commit acknowledged. */
  beforeAck: number;
  lastCommit: number;
  appliedTimes: number[];
  committedTimes: number[];
  /** A drain's figures are the backlog's alone: a prewarm's orders came before it. */
  backlogApplied: number[];
  backlogCommitted: number;
  commitToApplied: Histogram;
  deliveredPerSecond: Map<number, number>;
  committedPerSecond: Map<number, number>;
}

function tallyOrders(input: AccountInput): OrderTally {
  const { plan, startAt, measureFrom, measureTo, final } = input;
  const deadline = measureTo + input.graceMs;
  const t: OrderTally = {
    sent: 0,
    failedWrites: 0,
    delivered: 0,
    lost: 0,
    undrained: 0,
    unexpected: 0,
    committedInWindow: 0,
    intendedInWindow: 0,
    deliveredByDeadline: 0,
    beforeAck: 0,
    lastCommit: 0,
    appliedTimes: [],
    committedTimes: [],
    backlogApplied: [],
    backlogCommitted: 0,
    commitToApplied: createHistogram(),
    deliveredPerSecond: new Map(),
    committedPerSecond: new Map(),
  };
  const bump = (map: Map<number, number>, at: number) => {
    const second = Math.floor((at - startAt) / 1_000);
    map.set(second, (map.get(second) ?? 0) + 1);
  };
  for (const load of input.loads) {
    const lane = final.appliedAt[load.workerIndex];
    t.sent += load.committed;
    t.failedWrites += load.failed;
    for (let seq = 0; seq < plan.ordersPerWorker[load.workerIndex]!; seq++) {
      const committedAt = load.commitAt[seq] ?? Number.NaN;
      // A lane shorter than the plan would be a harness defect; either way an
      // order without an application time was not delivered.
      const appliedAt = lane?.[seq] ?? Number.NaN;
      const wasCommitted = !Number.isNaN(committedAt);
      const wasApplied = !Number.isNaN(appliedAt);
      const intendedAt = intendedTime({ startAt, perWorkerRate: plan.perWorkerRate, prewarm: plan.prewarm }, seq);
      const inWindow = intendedAt >= measureFrom && intendedAt < measureTo;
      if (inWindow) t.intendedInWindow += 1;
      // Without a prewarm every order is backlog (a drain's warm-up included: the relay drains it too).
      const inBacklog = !plan.prewarm || intendedAt >= measureFrom;
      if (wasCommitted && inBacklog) t.backlogCommitted += 1;
      if (wasApplied && inBacklog) t.backlogApplied.push(appliedAt);
      if (wasCommitted) {
        t.lastCommit = Math.max(t.lastCommit, committedAt);
        t.committedTimes.push(committedAt);
        bump(t.committedPerSecond, committedAt);
        if (committedAt >= measureFrom && committedAt < measureTo) t.committedInWindow += 1;
      }
      if (wasApplied) {
        t.delivered += 1;
        t.appliedTimes.push(appliedAt);
        bump(t.deliveredPerSecond, appliedAt);
        if (inWindow && appliedAt <= deadline) t.deliveredByDeadline += 1;
      }
      if (wasCommitted && !wasApplied) {
        if (input.drainCut) t.undrained += 1;
        else t.lost += 1;
      }
      if (!wasCommitted && wasApplied) t.unexpected += 1;
      if (wasCommitted && wasApplied && inWindow) {
        if (appliedAt < committedAt) t.beforeAck += 1;
        recordMs(t.commitToApplied, Math.max(0, appliedAt - committedAt));
      }
    }
  }
  t.appliedTimes.sort((a, b) => a - b);
  t.backlogApplied.sort((a, b) => a - b);
  return t;
}

/** Each process's CPU over the window, per million events applied in it, and its memory. */
function processCosts(cpu: Record<Component, number | null>, memory: AccountInput['memory'], inWindow: number): Record<Component, ProcessCost> {
  return Object.fromEntries(
    COMPONENTS.map((component): [Component, ProcessCost] => {
      const seconds = cpu[component];
      const bytes = memory[component];
      return [
        component,
        {
          cpuSeconds: seconds === null ? null : round(seconds, 2),
          cpuSecondsPerMillionEvents: seconds === null || inWindow === 0 ? null : round((seconds / inWindow) * 1e6, 1),
          memoryMiB: bytes === undefined ? null : Math.round(bytes / 1024 ** 2),
        },
      ];
    }),
  ) as Record<Component, ProcessCost>;
}

export function account(input: AccountInput): Accounting {
  const { startAt, measureFrom, measureTo, final, sampler } = input;
  const tally = tallyOrders(input);
  const { sent, failedWrites, delivered, lost, unexpected, committedInWindow, intendedInWindow, deliveredByDeadline, beforeAck, lastCommit, appliedTimes, committedTimes, backlogApplied, backlogCommitted, commitToApplied } = tally;

  const drain = input.drainFrom === undefined ? undefined : drainFigures(backlogApplied, input.drainFrom);
  const intakeCpu = drain ? perMillion(sampler.cpuBetween(measureFrom, lastCommit), backlogCommitted) : undefined;
  const window: MeasuredWindow = drain ? drainWindow(backlogApplied) : { from: measureFrom, to: measureTo, kind: 'load' };
  // A drain's rate and cost are the backlog's: prewarm stragglers applied among it are not counted.
  const inWindow = countBetween(drain ? backlogApplied : appliedTimes, window.from, window.to);
  const windowS = Math.max(0.001, (window.to - window.from) / 1_000);

  const write = createHistogram();
  for (const load of input.loads) write.add(decodeHistogram(load.commitLatency));
  const e2e = decodeHistogram(final.endToEnd);
  const receipt = decodeHistogram(final.receipt);
  const cpu = sampler.cpuBetween(window.from, window.to);
  const cost = processCosts(cpu, input.memory, inWindow);

  return {
    sent,
    failedWrites,
    delivered,
    lost,
    ...(input.drainCut ? { undrained: tally.undrained } : {}),
    unexpected,
    eventsPerSec: Math.round(inWindow / windowS),
    committedPerSec: Math.round(committedInWindow / ((measureTo - measureFrom) / 1_000)),
    window,
    windowDelivery: { intended: intendedInWindow, deliveredByDeadline, graceMs: input.graceMs },
    e2eMs: summarizeMs(e2e),
    e2eReceiptMs: summarizeMs(receipt),
    commitToAppliedMs: summarizeMs(commitToApplied),
    deliveredBeforeCommitAck: beforeAck,
    writeMs: summarizeMs(write),
    cost,
    lag: input.lagFromDelivery
      ? deliveryLagTrend(committedTimes.sort((a, b) => a - b), appliedTimes, measureFrom, measureTo)
      : lagTrend(sampler, measureFrom, measureTo, committedInWindow),
    timeline: timeline(sampler, startAt, tally.deliveredPerSecond, tally.committedPerSecond),
    histograms: { e2e: encodeHistogram(e2e), receipt: encodeHistogram(receipt), commitToApplied: encodeHistogram(commitToApplied), write: encodeHistogram(write) },
    drainS: round(Math.max(0, (appliedTimes.at(-1) ?? lastCommit) - lastCommit) / 1_000, 2),
    ...(drain && intakeCpu ? { drain: { ...drain, backlog: backlogCommitted, intakeCpuSecondsPerMillion: intakeCpu } } : {}),
  };
}

function perMillion(cpu: Record<Component, number | null>, events: number): Record<Component, number | null> {
  return Object.fromEntries(COMPONENTS.map((c) => [c, cpu[c] === null || events === 0 ? null : round((cpu[c]! / events) * 1e6, 1)])) as Record<Component, number | null>;
}

/** The first application at or after each fraction of the backlog. */
function atFraction(sorted: readonly number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(sorted.length * fraction) - 1))] ?? Number.NaN;
}

function drainWindow(sorted: readonly number[]): MeasuredWindow {
  return { from: atFraction(sorted, 0.1), to: atFraction(sorted, 0.9), kind: 'drain' };
}

function drainFigures(sorted: readonly number[], spawnedAt: number): Omit<DrainFigures, 'backlog' | 'intakeCpuSecondsPerMillion'> {
  const { from, to } = drainWindow(sorted);
  const steady = countBetween(sorted, from, to);
  return {
    timeToFirstEventS: round(((sorted[0] ?? spawnedAt) - spawnedAt) / 1_000, 3),
    eventsPerSec: to > from ? Math.round(steady / ((to - from) / 1_000)) : 0,
    seconds: round(((sorted.at(-1) ?? spawnedAt) - spawnedAt) / 1_000, 2),
  };
}

/** How many of the sorted times lie in [from, to]. */
function countBetween(sorted: readonly number[], from: number, to: number): number {
  let count = 0;
  for (const t of sorted) if (t >= from && t <= to) count += 1;
  return count;
}

function lagTrend(sampler: RunSampler, from: number, to: number, committedInWindow: number): LagTrend {
  const samples = sampler.lagSamples.filter((s) => s.at >= from && s.at <= to);
  const walFrom = sampler.walBytesAt(from);
  const walTo = sampler.walBytesAt(to);
  const walBytesPerEvent = walFrom === undefined || walTo === undefined || committedInWindow === 0 ? null : (walTo - walFrom) / committedInWindow;
  const points = samples.flatMap((s) => {
    if (s.events !== null) return [{ t: s.at, y: s.events }];
    if (s.bytes !== null && walBytesPerEvent) return [{ t: s.at, y: s.bytes / walBytesPerEvent }];
    return [];
  });
  const slope = slopePerSecond(points);
  return { slopeEventsPerSec: slope === null ? null : round(slope, 1), walBytesPerEvent: walBytesPerEvent === null ? null : round(walBytesPerEvent, 1) };
}

// Rationale: five readings a second, as fine as the relay lag's sampling
// (about ten a second) needs for a slope over a window of 20 s or more.
const DELIVERY_LAG_STEP_MS = 200;

/** The slope of (orders committed) - (orders applied) over the window, both lists sorted. */
function deliveryLagTrend(committed: readonly number[], applied: readonly number[], from: number, to: number): LagTrend {
  const points: { t: number; y: number }[] = [];
  let c = 0;
  let a = 0;
  for (let t = from; t <= to; t += DELIVERY_LAG_STEP_MS) {
    while (c < committed.length && committed[c]! <= t) c += 1;
    while (a < applied.length && applied[a]! <= t) a += 1;
    points.push({ t, y: c - a });
  }
  const slope = slopePerSecond(points);
  return { slopeEventsPerSec: slope === null ? null : round(slope, 1), walBytesPerEvent: null, from: 'delivery' };
}

function timeline(sampler: RunSampler, startAt: number, delivered: Map<number, number>, committed: Map<number, number>): TimelinePoint[] {
  const lagBySecond = new Map<number, { events: number | null; bytes: number | null }>();
  for (const sample of sampler.lagSamples) lagBySecond.set(Math.floor((sample.at - startAt) / 1_000), sample);
  const last = Math.max(0, Math.floor((nowMs() - startAt) / 1_000), ...delivered.keys(), ...committed.keys());
  const points: TimelinePoint[] = [];
  for (let t = 0; t <= last; t++) {
    const lag = lagBySecond.get(t);
    points.push({ t, delivered: delivered.get(t) ?? 0, committed: committed.get(t) ?? 0, lagEvents: lag?.events ?? null, lagBytes: lag?.bytes ?? null });
  }
  return points;
}
