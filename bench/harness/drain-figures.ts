/**
 * How a drain is followed and what its figures are: progress (Kafka's end
 * offsets, or the consumer's count) and the CPU of every process it involves
 * are read every SAMPLE_MS until all events arrived or nothing moves; rate and
 * CPU then come from the part between 10% and 90% of the events, never from
 * a window too short to hold MIN_WINDOW_READINGS readings.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Admin } from 'kafkajs';
import { nowMs } from '../../src/events.js';
import type { Infra } from '../../src/infra/index.js';
import { childPids, processCpuSeconds, processTreeCpuSeconds, threadCpuSeconds } from './process-stats.js';

// Rationale: readings every 50 ms put the 10% and 90% marks of a drain of
// tens of seconds within a fraction of a percent of where they were, and a
// reading (a count query, two /proc reads) costs far less than that.
export const SAMPLE_MS = 50;
// Rationale: a drain that moves nothing for this long has stopped; its
// figures are reported with what was missing.
const STALL_S = 60;
// Rationale: the 10% and 90% marks and the CPU at them are interpolated
// between readings, so a window spanning one or two readings would report a
// rate and a cost that were never measured (a 10,000-event drain inside one
// 100 ms reading "ran" at 99,000/s with no CPU). Ten readings bound the
// interpolation error at each end to about a tenth of the window.
export const MIN_WINDOW_READINGS = 10;

/** CPU seconds of the drain's processes at one moment (`...Main`: their JavaScript threads). */
export interface CpuReading {
  at: number;
  relay: number;
  relayMain: number;
  postgres: number;
  kafka: number;
  consumer: number;
  consumerMain: number;
}

export type CpuKey = Exclude<keyof CpuReading, 'at'>;

interface Progress {
  at: number;
  done: number;
}

export interface DrainFigures {
  events: number;
  /** Spawned -> first event arrived, s. */
  timeToFirstEventS: number;
  /** Between 10% and 90% of the events; null when that window was too short to measure. */
  eventsPerSec: number | null;
  /** Length of the 10%-90% window, s. */
  windowS: number | null;
  /** Spawned -> last event, s. */
  seconds: number;
  /** CPU seconds per million events in the 10%-90% window, by process. */
  cpuSecondsPerMillion: Record<string, number | null>;
  /** The JavaScript thread's CPU per event, µs (relay: every process's main thread). */
  jsThreadUsPerEvent: number | null;
  missing: number;
}

/** A reading's value at `at`, linear between the two readings around it. */
function cpuAt(readings: readonly CpuReading[], at: number, key: CpuKey): number | undefined {
  for (let i = 1; i < readings.length; i++) {
    const a = readings[i - 1]!;
    const b = readings[i]!;
    if (a.at <= at && at <= b.at) return b.at === a.at ? a[key] : a[key] + ((b[key] - a[key]) * (at - a.at)) / (b.at - a.at);
  }
  return undefined;
}

/** When progress first reached `target` (linear between readings). */
function timeOf(progress: readonly Progress[], target: number): number | undefined {
  for (let i = 1; i < progress.length; i++) {
    const a = progress[i - 1]!;
    const b = progress[i]!;
    if (a.done < target && b.done >= target) return a.at + ((target - a.done) * (b.at - a.at)) / (b.done - a.done);
  }
  return progress[0] && progress[0].done >= target ? progress[0].at : undefined;
}

function figures(events: number, spawnedAt: number, progress: readonly Progress[], cpu: readonly CpuReading[], keys: CpuKey[], mainKey: CpuKey): DrainFigures {
  const done = progress.at(-1)?.done ?? 0;
  const first = timeOf(progress, 1);
  const last = timeOf(progress, events);
  const from = timeOf(progress, Math.ceil(events * 0.1));
  const to = timeOf(progress, Math.ceil(events * 0.9));
  const inWindow = Math.ceil(events * 0.9) - Math.ceil(events * 0.1);
  const measurable =
    from !== undefined && to !== undefined && to > from && progress.filter((p) => p.at >= from && p.at <= to).length >= MIN_WINDOW_READINGS;
  const cpuBetween = (key: CpuKey) => {
    if (!measurable) return null;
    const a = cpuAt(cpu, from, key);
    const b = cpuAt(cpu, to, key);
    return a === undefined || b === undefined || Number.isNaN(a) || Number.isNaN(b) ? null : Math.max(0, b - a);
  };
  const perMillion = Object.fromEntries(keys.map((key) => {
    const seconds = cpuBetween(key);
    return [key, seconds === null ? null : Math.round((seconds / inWindow) * 1e7) / 10];
  }));
  const main = cpuBetween(mainKey);
  return {
    events,
    timeToFirstEventS: first === undefined ? Number.NaN : Math.round(first - spawnedAt) / 1_000,
    eventsPerSec: measurable ? Math.round(inWindow / ((to! - from!) / 1_000)) : null,
    windowS: from !== undefined && to !== undefined ? Math.round(to - from) / 1_000 : null,
    seconds: last === undefined ? Number.NaN : Math.round(last - spawnedAt) / 1_000,
    cpuSecondsPerMillion: perMillion,
    jsThreadUsPerEvent: main === null ? null : Math.round((main / inWindow) * 1e7) / 10,
    missing: Math.max(0, events - done),
  };
}

/** Sums the end offsets of a topic's partitions: how many events Kafka has. */
export async function endOffsets(admin: Admin, topic: string): Promise<number> {
  const offsets = await admin.fetchTopicOffsets(topic);
  return offsets.reduce((sum, p) => sum + Number(p.high), 0);
}

/** CPU of the relay process tree and of every one of its processes' main threads. */
export function relayCpu(pid: number | undefined): { total: number; main: number } {
  if (pid === undefined) return { total: Number.NaN, main: Number.NaN };
  const pids = [pid, ...childPids(pid)];
  let main = 0;
  for (const one of pids) main += threadCpuSeconds(one)?.main ?? 0;
  return { total: processTreeCpuSeconds(pid) ?? Number.NaN, main };
}

export function pgCpu(infra: Infra): number {
  const pid = infra.postgres.pid();
  return pid === undefined ? Number.NaN : processTreeCpuSeconds(pid) ?? Number.NaN;
}

export function kafkaCpu(infra: Infra): number {
  const pid = infra.kafka.pid();
  return pid === undefined ? Number.NaN : processCpuSeconds(pid) ?? Number.NaN;
}

/** Samples progress and CPU until all `events` are done or nothing moves for STALL_S. */
export async function follow(
  events: number,
  spawnedAt: number,
  done: () => Promise<number>,
  cpu: () => Omit<CpuReading, 'at'>,
  keys: CpuKey[],
  mainKey: CpuKey,
  /** Progress lines start with this; undefined keeps quiet. */
  label: string | undefined,
): Promise<DrainFigures> {
  const progress: Progress[] = [{ at: spawnedAt, done: 0 }];
  const readings: CpuReading[] = [{ at: nowMs(), ...cpu() }];
  let lastChange = performance.now();
  let lastPrinted = performance.now();
  for (;;) {
    await sleep(SAMPLE_MS);
    const at = nowMs();
    const count = await done().catch(() => progress.at(-1)!.done);
    readings.push({ at: nowMs(), ...cpu() });
    if (count !== progress.at(-1)!.done) lastChange = performance.now();
    progress.push({ at, done: count });
    if (label !== undefined && performance.now() - lastPrinted > 5_000) {
      process.stderr.write(`  ${label}: ${count}/${events}\n`);
      lastPrinted = performance.now();
    }
    if (count >= events || performance.now() - lastChange > STALL_S * 1_000) break;
  }
  return figures(events, spawnedAt, progress, readings, keys, mainKey);
}

