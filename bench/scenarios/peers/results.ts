/**
 * What the peers comparison publishes for each relay (results/peers/
 * summary.json, `extra.peers`), made from its runs, and how a sitting's
 * results merge with the folder's earlier ones.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { LatencySummaryMs } from '../../../src/latency.js';
import type { CpuProbe } from '../../harness/environment.js';
import type { SettledProbe, SittingRecord } from '../../harness/sitting.js';
import type { DrainRun as RelayDrainRun } from '../drain/drain-once.js';
import type { RelayRatios } from '../drain/rounds.js';
import type { PrewarmParameters } from '../../harness/load-worker.js';
import type { PipelineResult } from '../../harness/pipeline.js';
import type { SearchStep } from '../../harness/saturation.js';
import { summarizeRun } from '../../harness/summary.js';
import { whole, type Summary } from '../../report/kit.js';
import { relayRank } from './relays.js';

/** One measured run at a latency point, as published. */
export interface PointRun {
  eventsPerSec: number;
  e2eMs: LatencySummaryMs;
  cpuSecondsPerMillion: { relay: number | null; total: number | null };
  relayMemoryMiB: number | null;
  lost: number;
  duplicates: number;
  /** Share of the window's intended orders applied by its end plus 2 s: did the relay keep up at this rate. */
  deliveredShare: number;
  /** The run's e2e histogram (encoded), for the latency chart. */
  histogram: string;
  /** The relay's own evidence of the run (its driver's). */
  peer?: Record<string, unknown>;
}

export interface PeerPoint {
  /** `common`: 1,000 events/s; `half` and `eighty`: 50% and 80% of the relay's own maximum. */
  label: 'common' | 'half' | 'eighty';
  rate: number;
  runs: PointRun[];
  /** Why the point was not run (a maximum below the common rate). */
  skipped?: string;
}

/**
 * A drain as the peers comparison measured it before its drains were
 * relay-only (timed by the consumer through the whole pipeline, the relay
 * paused while the backlog was written); kept in older results, no longer
 * measured or shown.
 */
export interface DrainRun {
  backlog: number;
  eventsPerSec: number;
  timeToFirstEventS: number;
  seconds: number;
  relayCpuSecondsPerMillion: number | null;
  relayMemoryMiB: number | null;
  lost: number;
  /** The relay's own evidence of the run (its driver's). */
  peer?: Record<string, unknown>;
}

export interface PeerResult {
  name: string;
  settings: string;
  /** The Kafka client our relays (and the pg-transactional-outbox adapter) published with. */
  kafkaClient: string | null;
  /** The offered rate of the highest step that passed twice (0 if none did). */
  sustainedRate: number;
  sustainedSteps: Pick<SearchStep, 'rate' | 'attempt' | 'passed' | 'reasons' | 'p99Ms' | 'deliveredShare'>[];
  /** Debezium's readings at the confirmed maximum (its queue over JMX). */
  atMax?: Record<string, unknown> | undefined;
  /** Debezium: each heap tried at the maximum, and the one the other runs used. */
  heapChecks?: { heapMb: number; passed: boolean; reasons: string[] }[];
  heapMb?: number;
  prewarm: PrewarmParameters;
  /** Older results only (see DrainRun): the drains are the comparison's `drains` now. */
  drains?: DrainRun[];
  points: PeerPoint[];
  commit: string;
  date: string;
  /**
   * The host's speed, read just before this relay's runs (absent for relays
   * measured before the probe existed): relays merged from several sittings
   * compare one to one only if their hosts ran at one speed.
   */
  cpuProbe?: CpuProbe;
  /** The probe read (until two readings agreed) just before and just after this relay's runs. */
  probes?: { before: SettledProbe; after: SettledProbe };
}

/**
 * Every relay's relay-only drain, as the drain scenario measures it (timed
 * by Kafka's end offsets), interleaved round by round with the anchor, our
 * CDC relay, in every sitting: the comparison publishes each relay's ratio
 * to the anchor of its own round.
 */
export interface DrainComparison {
  anchor: string;
  /** Each relay's name in the drains (its mode, with a process count, or its driver's name), by its name here. */
  drainNames: Record<string, string>;
  /** The backlog each relay drained, by its drain name. */
  backlogs: Record<string, number>;
  sittings: SittingRecord[];
  runs: RelayDrainRun[];
  /** Each relay's ratios to the anchor over all the runs above (derived from them, stored so that prose can quote them). */
  ratios?: RelayRatios[];
  /** Why the last sitting stopped before its last round, if it did. */
  incomplete?: string;
}

/** What the peers scenario writes into its summary's `extra`. */
export interface PeersResult {
  /** Marks the shape: runs measured warm, repeated, per relay. */
  version: 2;
  peers: PeerResult[];
  /** The relay-only drains with their anchor; absent in results measured before they were. */
  drains?: DrainComparison;
  debezium: string;
  ptp: string;
  commonRate: number;
}

export function pointRun(r: PipelineResult): PointRun {
  const summary = summarizeRun('point', r);
  return {
    eventsPerSec: r.eventsPerSec,
    e2eMs: r.e2eMs,
    cpuSecondsPerMillion: { relay: summary.cpuSecondsPerMillion.relay, total: summary.cpuSecondsPerMillion.total },
    relayMemoryMiB: summary.memoryMiB.relay,
    lost: r.lost,
    duplicates: r.duplicates,
    deliveredShare: r.windowDelivery.intended === 0 ? 0 : Math.round((r.windowDelivery.deliveredByDeadline / r.windowDelivery.intended) * 10_000) / 10_000,
    histogram: r.histograms.e2e,
    ...(r.evidence ? { peer: r.evidence } : {}),
  };
}

/** The relays' results and the drain comparison already in the folder's summary, if it holds this shape. */
export function previousResults(outDir: string): { peers: PeerResult[]; drains?: DrainComparison } {
  const file = path.join(outDir, 'summary.json');
  if (!existsSync(file)) return { peers: [] };
  const extra = (JSON.parse(readFileSync(file, 'utf8')) as Summary<Partial<PeersResult>>).extra;
  if (extra?.version !== 2 || !Array.isArray(extra.peers)) return { peers: [] };
  return { peers: extra.peers, ...(extra.drains ? { drains: extra.drains } : {}) };
}

/**
 * The earlier drain comparison with this sitting's merged in: a relay drained
 * now loses its earlier drains; the anchor's earlier drains stay with the
 * relays of their sitting still there (each ratio needs its own sitting's
 * anchor), and a sitting left with the anchor alone goes.
 */
export function mergeDrains(previous: DrainComparison | undefined, fresh: DrainComparison): DrainComparison {
  if (!previous || previous.anchor !== fresh.anchor) return { ...fresh };
  const measuredNow = new Set(fresh.runs.map((r) => r.strategy));
  // A resumed comparison carries its earlier sittings' runs itself: the summary's copies of them go.
  const freshSittings = new Set(fresh.sittings.map((s) => s.sitting));
  const kept = previous.runs.filter((r) => !freshSittings.has(r.window?.sitting ?? -1) && (r.strategy === fresh.anchor || !measuredNow.has(r.strategy)));
  const sittingsWithOthers = new Set(kept.filter((r) => r.strategy !== fresh.anchor).map((r) => r.window?.sitting));
  const runs = [...kept.filter((r) => sittingsWithOthers.has(r.window?.sitting)), ...fresh.runs];
  const sittingsLeft = new Set(runs.map((r) => r.window?.sitting));
  const drainNames = { ...previous.drainNames, ...fresh.drainNames };
  const backlogs = { ...previous.backlogs, ...fresh.backlogs };
  return {
    anchor: fresh.anchor,
    drainNames,
    backlogs,
    sittings: [...previous.sittings.filter((s) => sittingsLeft.has(s.sitting) && !fresh.sittings.some((f) => f.sitting === s.sitting)), ...fresh.sittings],
    runs,
    ...(fresh.incomplete ? { incomplete: fresh.incomplete } : {}),
  };
}

/**
 * The sustained maximum's bar: none when no rate passed, rather than a bar of
 * 0 the search never measured (the table says "below" the lowest rate tried).
 */
export function chartedMaximum(p: Pick<PeerResult, 'sustainedRate'>): number | null {
  return p.sustainedRate > 0 ? p.sustainedRate : null;
}

/**
 * The lowest rate above a relay's maximum that failed, as a search step or as
 * a confirmation: its limit lies between the two, and a failed confirmation
 * means the rate passed once and not twice.
 */
export function lowestFailed(p: Pick<PeerResult, 'sustainedRate' | 'sustainedSteps'>): string {
  const [failed] = p.sustainedSteps.filter((s) => !s.passed && s.rate > p.sustainedRate).sort((a, b) => a.rate - b.rate);
  if (!failed) return 'none tried';
  return `${whole(failed.rate)}${failed.attempt === 'confirm' ? ' (passed once, failed its confirmation)' : ''}`;
}

/** The earlier results with this sitting's replacing those of the same relay, in the relays' order. */
export function mergePeers(previous: readonly PeerResult[], fresh: readonly PeerResult[]): PeerResult[] {
  const byName = new Map(previous.map((p) => [p.name, p]));
  for (const p of fresh) byName.set(p.name, p);
  return [...byName.values()].sort((a, b) => relayRank(a.name) - relayRank(b.name) || a.name.localeCompare(b.name));
}

