/**
 * The faults of the crash-injection matrix, one entry per kind: how it is
 * injected, when, and what it needs. A row (rows.ts) lists kinds; a new
 * fault is one kind here, its entry, and a row that lists it.
 *
 * Each fault is aimed at a process doing work and reports whether it *hit*:
 * a fault that lands on an idle relay proves nothing, so a row passes only
 * when its faults hit.
 */
import { addConsumer, failoverPostgres, killConsumer, killKafka, killLeader, killRelay, killTwoBrokers, pauseRelay, restartPostgres, terminateWalsender, type FaultTargets, type Shot } from './injectors.js';
import type { FaultKind, RowSpec } from './row-spec.js';

export type { FaultKind } from './row-spec.js';
export type { FaultTargets } from './injectors.js';

export interface FaultRecord {
  /** ms since the fault window opened. */
  at: number;
  kind: FaultKind | 'failpoint';
  target: string;
  /** Whether it hit a process doing work (see the module comment). */
  hit: boolean;
  /** A make-up shot after the window (schedule.ts): the writer stops right after it, so no latency is measured from it. */
  makeUp?: true;
}

/**
 * When a kind fires inside the fault window. Intervals are drawn from the
 * row's seed before the window opens, so a seed replays the same schedule.
 */
export type Cadence =
  /** Again and again, each a random time in [min, max] ms after the last. */
  | { every: (row: RowSpec) => readonly [number, number] }
  /**
   * A server fault: at these fractions of the window (each after some service
   * since the previous one), or in a soak again and again as `soakEvery`.
   */
  | { server: readonly number[]; soakEvery: readonly [number, number] }
  /** Once, at this fraction of the window (a failover leaves no standby for a second). */
  | { once: number };

/** The servers a row needs for a kind: `single` is one PostgreSQL and one broker. */
export type FaultServers = 'single' | 'cluster' | 'failover';

export interface FaultSpec {
  /** What it does to the row, and what counts as a hit. */
  description: string;
  /** The servers the row must run on. */
  servers: FaultServers;
  /** A process the row must run for it; a row without relay processes is not given relay faults. */
  process?: 'relay' | 'consumer-group';
  cadence: Cadence;
  /** Injects it once; undefined when there was nothing to record (the target had just exited). */
  inject(targets: FaultTargets, row: RowSpec): Promise<Shot | undefined>;
  /** Its cost in commit-to-receipt latency is measured (process kills are measured by the drains instead). */
  latency: boolean;
  /** It ends a supervised process with SIGKILL: those kills are not counted as failpoint crashes. */
  killsProcess: boolean;
  /*
   * The proof that it acted beyond its own report (the server's or the
   * process's own record of the fault): left for a later issue to fill.
   */
  proof?: (targets: FaultTargets, shot: Shot) => Promise<boolean>;
}

// Rationale: a server kill is followed by seconds of recovery (restart,
// reconnects, a leader election); 10-15 s apart lets each one hit a pipeline
// at work again, where two per row suffice outside a soak.
const SOAK_SERVER_FAULT_MS = [10_000, 15_000] as const;

/** A paused replica stays stopped past its lease, so PostgreSQL fences it. */
const pauseMs = (row: RowSpec) => (row.relay?.leaseMs ?? 30_000) + 2_000;

export const FAULTS = {
  'kill-relay': {
    description: 'SIGKILL while the relay is inside a pass (table relays: its session has a transaction open) or has WAL it has not confirmed (CDC)',
    servers: 'single',
    process: 'relay',
    cadence: { every: () => [1_500, 3_000] },
    inject: (t) => killRelay(t),
    latency: false,
    killsProcess: true,
  },
  'pause-relay': {
    description: 'SIGSTOP of a SKIP LOCKED replica while it holds buckets, longer than its lease; a hit is a replica the lease fenced (PostgreSQL terminated its session while it was stopped)',
    servers: 'single',
    process: 'relay',
    cadence: { every: (row) => [pauseMs(row) + 500, pauseMs(row) + 2_000] },
    inject: (t, row) => pauseRelay(t, pauseMs(row)),
    latency: false,
    killsProcess: false,
  },
  'terminate-walsender': {
    description: "a CDC relay's walsender terminated while streaming",
    servers: 'single',
    cadence: { every: () => [2_000, 4_000] },
    inject: (t) => terminateWalsender(t),
    latency: false,
    killsProcess: false,
  },
  // Rationale: a killed leader is replaced within a few seconds, and the
  // producer's retries and the consumer's rejoin take a few more.
  'kill-leader': {
    description: "the broker leading a partition of the row's topic killed and started again; a hit is a leader found and killed",
    servers: 'cluster',
    cadence: { every: () => [6_000, 10_000] },
    inject: (t) => killLeader(t, 3_000),
    latency: true,
    killsProcess: false,
  },
  // Rationale: a rebalance settles in a second or two here; 2-4 s apart
  // keeps the group rebalancing while it works.
  'kill-consumer': {
    description: 'SIGKILL of one consumer of a group of several (the supervisor starts it again): two rebalances; a hit is a consumer that was running in a group with others',
    servers: 'single',
    process: 'consumer-group',
    cadence: { every: () => [2_000, 4_000] },
    inject: (t) => killConsumer(t),
    latency: true,
    killsProcess: true,
  },
  'add-consumer': {
    description: 'one more consumer joins the group and leaves it again after a few seconds: two rebalances',
    servers: 'single',
    process: 'consumer-group',
    cadence: { every: () => [5_000, 8_000] },
    inject: (t) => addConsumer(t, 3_000),
    latency: true,
    killsProcess: false,
  },
  'failover-postgres': {
    description: 'the primary killed in immediate mode, the standby promoted, clients sent to it; a hit is a failover while a CDC relay streamed from a slot the standby had synced',
    servers: 'failover',
    cadence: { once: 0.4 },
    inject: (t) => failoverPostgres(t),
    latency: true,
    killsProcess: false,
  },
  'kill-kafka': {
    description: 'the broker killed (kill -9) and started again',
    servers: 'single',
    cadence: { server: [0.3, 0.65], soakEvery: SOAK_SERVER_FAULT_MS },
    inject: (t) => killKafka(t, 2_000),
    latency: true,
    killsProcess: false,
  },
  // Two brokers down take two waits to come back, hence the longer interval.
  'kill-two-brokers': {
    description: 'two of three brokers killed at once, so acks=all writes cannot be satisfied (min.insync.replicas 2) until one is back; they return one at a time',
    servers: 'cluster',
    cadence: { server: [0.2], soakEvery: [SOAK_SERVER_FAULT_MS[0] + 8_000, SOAK_SERVER_FAULT_MS[1] + 8_000] },
    inject: (t) => killTwoBrokers(t, 4_000),
    latency: true,
    killsProcess: false,
  },
  'restart-postgres': {
    description: 'PostgreSQL stopped in immediate mode (a crash) and started again',
    servers: 'single',
    cadence: { server: [0.3, 0.65], soakEvery: SOAK_SERVER_FAULT_MS },
    inject: (t) => restartPostgres(t, 1_000),
    latency: true,
    killsProcess: false,
  },
} satisfies Record<FaultKind, FaultSpec>;

export function faultSpec(kind: FaultKind): FaultSpec {
  return FAULTS[kind];
}
