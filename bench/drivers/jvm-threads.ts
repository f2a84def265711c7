/**
 * What a JVM relay's threads do with its CPU: its process's threads read by
 * group (their names, numbers made `N`) every few seconds, and each group's
 * share over a measured window. Says what limits a relay at its maximum: a
 * connector's one streaming thread near a whole core, or its collector, or
 * the producer's sender.
 */
import { nowMs } from '../../src/events.js';
import type { MeasuredWindow } from '../harness/accounting.js';
import { threadGroupCpuSeconds } from '../harness/process-stats.js';

// Rationale: a 30 s window holds about 15 readings, so its ends fall within
// 2 s of a reading's; each reading opens the JVM's 50-80 thread stat files,
// about a millisecond of the harness's CPU.
const READ_EVERY_MS = 2_000;
// Rationale: the groups that hold most of a JVM's CPU; the rest are summed as one.
const TOP_GROUPS = 8;

/** One thread group's CPU over the window, in cores (CPU seconds per second). */
export interface ThreadGroupCpu {
  group: string;
  cores: number;
}

export interface ThreadCpuFigures {
  /** Seconds between the readings that bound the window. */
  seconds: number;
  /** The whole process, cores. */
  cores: number;
  /** The busiest groups, most first; the rest as `(other threads)`. */
  groups: ThreadGroupCpu[];
}

interface Reading {
  atMs: number;
  groups: Map<string, number>;
}

/** The CPU of each group between two readings, the busiest first. */
export function threadCpuBetween(from: Reading, to: Reading): ThreadCpuFigures | null {
  const seconds = (to.atMs - from.atMs) / 1_000;
  if (seconds <= 0) return null;
  const round = (x: number) => Math.round(x * 1_000) / 1_000;
  const all = [...to.groups].map(([group, cpu]) => ({ group, cores: Math.max(0, cpu - (from.groups.get(group) ?? 0)) / seconds })).sort((a, b) => b.cores - a.cores);
  const rest = all.slice(TOP_GROUPS).reduce((sum, g) => sum + g.cores, 0);
  return {
    seconds: Math.round(seconds * 10) / 10,
    cores: round(all.reduce((sum, g) => sum + g.cores, 0)),
    groups: [...all.slice(0, TOP_GROUPS).map((g) => ({ group: g.group, cores: round(g.cores) })), ...(rest > 0 ? [{ group: '(other threads)', cores: round(rest) }] : [])],
  };
}

/** Reads a process's thread groups until it exits; `over` gives a window's figures. */
export function startThreadSampler(pid: number): { over(window: Pick<MeasuredWindow, 'from' | 'to'>): ThreadCpuFigures | null } {
  const readings: Reading[] = [];
  const read = () => {
    const groups = threadGroupCpuSeconds(pid);
    if (groups) readings.push({ atMs: nowMs(), groups });
    else clearInterval(timer);
  };
  const timer = setInterval(read, READ_EVERY_MS);
  // The sampler never keeps the harness alive; it stops by itself when the JVM is gone.
  timer.unref();
  read();
  return {
    over(window) {
      const from = readings.find((r) => r.atMs >= window.from);
      const to = readings.findLast((r) => r.atMs <= window.to);
      return from && to && to.atMs > from.atMs ? threadCpuBetween(from, to) : null;
    },
  };
}
