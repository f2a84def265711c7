/**
 * What a run samples while it runs: the CPU seconds of every process and the
 * relay's lag, each with the time it was read. Figures over a window (CPU
 * between two moments, the lag's trend) are computed afterwards from the
 * samples, so any window can be asked for: the measured window of a load
 * run, the 10%-90% window of a drain.
 */
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { nowMs } from '../../src/events.js';
import type { Infra } from '../../src/infra/index.js';
import { peakRssBytes, processCpuSeconds, processTreeCpuSeconds, processTreePssBytes, processTreeRssBytes } from './process-stats.js';
import { leastSquares } from './stats.js';

export const COMPONENTS = ['postgres', 'kafka', 'relay', 'consumer', 'loadGenerator'] as const;
export type Component = (typeof COMPONENTS)[number];

/** Cumulative CPU seconds of each process at `at` (undefined where it cannot be read). */
export interface CpuSample {
  at: number;
  seconds: Record<Component, number | undefined>;
}

/** Relay lag: unpublished events (table relays) or WAL bytes not yet confirmed (CDC). */
export interface LagReading {
  events: number | null;
  bytes: number | null;
}

export interface LagSample extends LagReading {
  at: number;
  /** The server's WAL position then, bytes (for converting WAL bytes into events). */
  walBytes: number | null;
}

export interface SamplerProbes {
  cpu(): Record<Component, number | undefined>;
  /** The relay's memory now, all its processes together (read with every CPU sample), bytes. */
  relayMemory?(): number | undefined;
  lag(): Promise<LagReading>;
  walBytes(): Promise<number | null>;
}

// Rationale: /proc reads of the whole process table take ~1 ms; five a second
// keep interpolation error under 0.1 s of CPU at any window edge.
const CPU_INTERVAL_MS = 200;
// Rationale: a relay's memory moves over seconds, and each reading scans the
// process table; once a second (every fifth CPU sample) is enough, and the
// root's own VmHWM catches a spike between two readings.
const MEMORY_EVERY_CPU_SAMPLES = 5;
// Rationale: the polling relay's lag is a 500 ms sawtooth; ten readings a
// second give its least-squares trend over 20 s a standard error well under
// the 0.5%-of-rate-per-second limit it is judged by.
const LAG_INTERVAL_MS = 100;

export class RunSampler {
  readonly cpuSamples: CpuSample[] = [];
  readonly lagSamples: LagSample[] = [];
  /** The highest relay memory reading so far, bytes. */
  peakRelayMemory: number | undefined;
  readonly #probes: SamplerProbes;
  #stopped = false;
  #loops: Promise<void>[] = [];

  constructor(probes: SamplerProbes) {
    this.#probes = probes;
  }

  start(): void {
    this.sampleCpu();
    this.#loops = [
      (async () => {
        while (!this.#stopped) {
          await sleep(CPU_INTERVAL_MS);
          this.sampleCpu();
        }
      })(),
      (async () => {
        while (!this.#stopped) {
          const at = nowMs();
          const [lag, walBytes] = await Promise.all([
            this.#probes.lag().catch(() => ({ events: null, bytes: null })),
            this.#probes.walBytes().catch(() => null),
          ]);
          this.lagSamples.push({ at, ...lag, walBytes });
          await sleep(Math.max(0, LAG_INTERVAL_MS - (nowMs() - at)));
        }
      })(),
    ];
  }

  /** Takes a CPU sample now (also called at the exact edges of a window). */
  sampleCpu(): void {
    this.cpuSamples.push({ at: nowMs(), seconds: this.#probes.cpu() });
    if (this.cpuSamples.length % MEMORY_EVERY_CPU_SAMPLES !== 1) return;
    const memory = this.#probes.relayMemory?.();
    if (memory !== undefined) this.peakRelayMemory = Math.max(this.peakRelayMemory ?? 0, memory);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.sampleCpu();
    await Promise.all(this.#loops);
  }

  /** The latest lag reading, for progress lines. */
  latestLag(): LagReading {
    return this.lagSamples.at(-1) ?? { events: null, bytes: null };
  }

  /** CPU seconds each process used between two moments (linear between samples); null where unknown. */
  cpuBetween(from: number, to: number): Record<Component, number | null> {
    const result = {} as Record<Component, number | null>;
    for (const component of COMPONENTS) {
      const a = interpolate(this.cpuSamples, from, (s) => s.seconds[component]);
      const b = interpolate(this.cpuSamples, to, (s) => s.seconds[component]);
      result[component] = a === undefined || b === undefined ? null : Math.max(0, b - a);
    }
    return result;
  }

  /** The server's WAL position at a moment, bytes (linear between samples). */
  walBytesAt(at: number): number | undefined {
    return interpolate(this.lagSamples, at, (s) => s.walBytes ?? undefined);
  }
}

/** The value at `at`, linear between the two samples around it; undefined outside the samples. */
function interpolate<T extends { at: number }>(samples: readonly T[], at: number, value: (sample: T) => number | undefined): number | undefined {
  let before: T | undefined;
  let after: T | undefined;
  for (const sample of samples) {
    if (sample.at <= at && value(sample) !== undefined) before = sample;
    if (sample.at >= at && value(sample) !== undefined) {
      after = sample;
      break;
    }
  }
  if (!before || !after) return undefined;
  const a = value(before)!;
  const b = value(after)!;
  if (after.at === before.at) return a;
  return a + ((b - a) * (at - before.at)) / (after.at - before.at);
}

/** Least-squares slope of y over t (per second, t in ms); null with fewer than 3 points. */
export function slopePerSecond(points: readonly { t: number; y: number }[]): number | null {
  if (points.length < 3) return null;
  const line = leastSquares(points.map((p) => ({ x: p.t, y: p.y })));
  return line ? line.slope * 1_000 : null;
}

/** A relay's processes as a run measures them: its tree, and what watches it (a JMX reader). */
export interface RelayProcesses {
  child: ChildProcess;
  helpers?: readonly ChildProcess[] | undefined;
}

/**
 * Reads the CPU seconds of every process of a run (the relay's whole process
 * tree, replicas included, and the helpers that watch it: they run only
 * because the relay is measured, so their CPU is the relay's).
 */
export function cpuProbe(infra: Infra, relay: () => RelayProcesses | undefined, consumers: readonly ChildProcess[]): () => Record<Component, number | undefined> {
  // A helper that exited keeps the CPU it had used: its last reading, not an unreadable relay.
  const helperSeconds = new Map<number, number>();
  const helpersCpu = (helpers: readonly ChildProcess[]) =>
    helpers.reduce((sum, helper) => {
      const pid = helper.pid;
      if (pid === undefined) return sum;
      const now = processTreeCpuSeconds(pid);
      if (now !== undefined) helperSeconds.set(pid, now);
      return sum + (helperSeconds.get(pid) ?? 0);
    }, 0);
  return () => {
    const pgPid = infra.postgres.pid();
    const relayProcesses = relay();
    const usage = process.cpuUsage();
    return {
      postgres: pgPid === undefined ? undefined : processTreeCpuSeconds(pgPid),
      kafka: sumOverPids(kafkaPids(infra), processCpuSeconds),
      // A relay not started yet (drain mode) has used nothing so far.
      relay: relayProcesses === undefined ? 0 : addKnown(relayProcesses.child.pid === undefined ? undefined : processTreeCpuSeconds(relayProcesses.child.pid), helpersCpu(relayProcesses.helpers ?? [])),
      consumer: sumOver(consumers, (pid) => processCpuSeconds(pid)),
      loadGenerator: (usage.user + usage.system) / 1e6,
    };
  };
}

/** A reading plus more, when the reading is known. */
function addKnown(reading: number | undefined, more: number): number | undefined {
  return reading === undefined ? undefined : reading + more;
}

/** The Kafka processes of a run: one broker, or every node of a cluster; none for an external Kafka. */
function kafkaPids(infra: Infra): (number | undefined)[] {
  if (infra.kafka.pids) return infra.kafka.pids();
  const pid = infra.kafka.pid();
  return pid === undefined ? [] : [pid];
}

/** A reading summed over processes; undefined if there are none, or any cannot be read. */
function sumOverPids(pids: readonly (number | undefined)[], read: (pid: number) => number | undefined): number | undefined {
  if (pids.length === 0) return undefined;
  let total = 0;
  for (const pid of pids) {
    const value = pid === undefined ? undefined : read(pid);
    if (value === undefined) return undefined;
    total += value;
  }
  return total;
}

/** A reading summed over child processes; undefined if any cannot be read. */
function sumOver(children: readonly ChildProcess[], read: (pid: number) => number | undefined): number | undefined {
  return children.length === 0 ? 0 : sumOverPids(children.map((child) => child.pid), read);
}

/** The relay's memory probe: every process of its tree (replicas, shards), RSS summed. */
export function relayMemoryProbe(relay: () => ChildProcess | undefined): () => number | undefined {
  return () => {
    const pid = relay()?.pid;
    return pid === undefined ? undefined : processTreeRssBytes(pid);
  };
}

/**
 * Peak memory of the run's processes: RSS (Node, Java) or PSS (PostgreSQL's
 * whole tree). The relay's is the highest sum over its processes the sampler
 * read (`sampledRelayPeak`), or its root's own peak if that is higher (a
 * spike between two readings).
 */
export function peakMemory(infra: Infra, relay: ChildProcess | undefined, consumers: readonly ChildProcess[], sampledRelayPeak?: number): Record<Component, number | undefined> {
  const pgPid = infra.postgres.pid();
  const rootPeak = relay?.pid === undefined ? undefined : peakRssBytes(relay.pid);
  return {
    postgres: pgPid === undefined ? undefined : processTreePssBytes(pgPid),
    kafka: sumOverPids(kafkaPids(infra), peakRssBytes),
    relay: rootPeak === undefined && sampledRelayPeak === undefined ? undefined : Math.max(rootPeak ?? 0, sampledRelayPeak ?? 0),
    consumer: sumOver(consumers, peakRssBytes),
    loadGenerator: process.resourceUsage().maxRSS * 1_024,
  };
}
