/**
 * What the peers comparison publishes for each relay (results/peers/
 * summary.json, `extra.peers`), made from its runs, and how a sitting's
 * results merge with the folder's earlier ones.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { LatencySummaryMs } from '../../../src/latency.js';
import type { CpuProbe } from '../../harness/environment.js';
import { ratiosToAnchor, type SettledProbe, type SittingRecord, type SittingWindow } from '../../harness/sitting.js';
import type { DrainRun as RelayDrainRun } from '../drain/drain-once.js';
import type { RatioSpread, RelayRatios } from '../drain/rounds.js';
import type { PrewarmParameters } from '../../harness/load-worker.js';
import type { PipelineResult } from '../../harness/pipeline.js';
import type { SearchStep } from '../../harness/saturation.js';
import { summarizeRun, type RunSummary } from '../../harness/summary.js';
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
  /** Where a point kept from an earlier sitting was measured, when the relay's other figures are newer. */
  measuredAt?: { commit: string; date: string };
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
  /** Where the maximum was searched, when that was before the relay's other figures (a sitting of latency points only). */
  maximumMeasuredAt?: { commit: string; date: string };
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
  /** Each relay's settings when it was drained, by its name here: a drain of settings changed since is another configuration's. */
  settings?: Record<string, string>;
  sittings: SittingRecord[];
  runs: RelayDrainRun[];
  /** Each relay's ratios to the anchor over all the runs above (derived from them, stored so that prose can quote them). */
  ratios?: RelayRatios[];
  /** Why the last sitting stopped before its last round, if it did. */
  incomplete?: string;
}

/** One window of the maxima-and-latency comparison, as published: its figures, without the histogram. */
export interface LatencyRun {
  relay: string;
  /** A search step or its confirmation, a heap check, or a latency point. */
  kind: 'search' | 'confirm' | 'heap' | PeerPoint['label'];
  rate: number;
  passed?: boolean;
  heapMb?: number;
  p50Ms?: number;
  p99Ms?: number;
  relayCpuPerMillion?: number | null;
  relayMemoryMiB?: number | null;
  /** A JVM's heap after its collections over the run, the most (MiB). */
  heapAfterGcMiB?: number | null;
  window: SittingWindow;
}

/** A relay's maximum as one sitting's search found it. */
export interface MaximumRecord {
  relay: string;
  /** The sitting its search started in (every search of a comparison starts in its first round). */
  sitting: number;
  sustainedRate: number;
  lowestFailedRate: number | null;
  bracketWidth: number | null;
}

/** A relay's maxima and latency against the anchor's in the same sitting (and round). */
export interface LatencyRatios {
  relay: string;
  /** Sustained maximum ÷ the anchor's, from searches of one sitting; null without both. */
  maximum: number | null;
  /** At the common rate, per round: e2e p99, relay CPU per event, relay memory. */
  rounds: number;
  p99: RatioSpread;
  relayCpuPerMillion: RatioSpread;
  relayMemory: RatioSpread;
}

/**
 * The maxima and latency measured in sittings with the anchor, our CDC
 * relay: every window with its probes and steal, each search's outcome,
 * and the ratios derived from them (stored so that prose can quote them).
 */
export interface LatencyComparison {
  anchor: string;
  sittings: SittingRecord[];
  runs: LatencyRun[];
  maxima: MaximumRecord[];
  ratios?: LatencyRatios[];
  incomplete?: string;
}

/** What the peers scenario writes into its summary's `extra`. */
export interface PeersResult {
  /** Marks the shape: runs measured warm, repeated, per relay. */
  version: 2;
  peers: PeerResult[];
  /** The relay-only drains with their anchor; absent in results measured before they were. */
  drains?: DrainComparison;
  /** The maxima and latency with their anchor; absent in results measured before they were. */
  latency?: LatencyComparison;
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

/** The relays' results and the comparisons already in the folder's summary, if it holds this shape. */
export function previousResults(outDir: string): { peers: PeerResult[]; runs: RunSummary[]; drains?: DrainComparison; latency?: LatencyComparison } {
  const file = path.join(outDir, 'summary.json');
  if (!existsSync(file)) return { peers: [], runs: [] };
  const summary = JSON.parse(readFileSync(file, 'utf8')) as Summary<Partial<PeersResult>>;
  const extra = summary.extra;
  if (extra?.version !== 2 || !Array.isArray(extra.peers)) return { peers: [], runs: [] };
  return { peers: extra.peers, runs: summary.runs ?? [], ...(extra.drains ? { drains: extra.drains } : {}), ...(extra.latency ? { latency: extra.latency } : {}) };
}

/** A relay's name as its runs' names carry it: `peer-<slug>-<point>-r<repeat>`. */
export const slugOf = (name: string) => name.replace(/[^a-z0-9]+/gi, '_').replace(/^_|_$/g, '').toLowerCase();

/**
 * The folder's runs (each window's figures for every process): this
 * sitting's, and the earlier sittings' it did not measure again. A run
 * measured again replaces its earlier self (a run is named by relay, point
 * and repeat); a relay whose settings changed loses its earlier runs, which
 * were another configuration's.
 */
export function mergeRuns(previous: readonly RunSummary[], fresh: readonly RunSummary[], reconfigured: ReadonlySet<string>): RunSummary[] {
  const names = new Set(fresh.map((r) => r.name));
  const gone = [...reconfigured].map((relay) => `peer-${slugOf(relay)}-`);
  return [...previous.filter((r) => !names.has(r.name) && !gone.some((prefix) => r.name.startsWith(prefix))), ...fresh];
}

/** A journal's window as published. */
export function latencyRunOf(u: {
  relay: string;
  kind: LatencyRun['kind'];
  rate: number;
  heapMb?: number;
  step?: { passed: boolean; p99Ms: number };
  passed?: boolean;
  point?: PointRun;
  window: SittingWindow;
}): LatencyRun {
  const heap = u.point?.peer?.heapAfterGc as { maxMiB?: number } | undefined;
  return {
    relay: u.relay,
    kind: u.kind,
    rate: u.rate,
    ...(u.step ? { passed: u.step.passed, p99Ms: u.step.p99Ms } : {}),
    ...(u.passed === undefined ? {} : { passed: u.passed }),
    ...(u.heapMb === undefined ? {} : { heapMb: u.heapMb }),
    ...(u.point
      ? {
          p50Ms: u.point.e2eMs.p50,
          p99Ms: u.point.e2eMs.p99,
          relayCpuPerMillion: u.point.cpuSecondsPerMillion.relay,
          relayMemoryMiB: u.point.relayMemoryMiB,
          ...(heap?.maxMiB === undefined ? {} : { heapAfterGcMiB: heap.maxMiB }),
        }
      : {}),
    window: u.window,
  };
}

// Rationale: three significant digits, as the drains' ratios.
const roundRatio = (x: number | null | undefined) => (x === null || x === undefined ? null : Number(x.toPrecision(3)));

/**
 * Every relay's ratios to the anchor: its maximum over the anchor's from the
 * searches of one sitting, and at the common rate its p99, relay CPU per
 * event and memory over the anchor's of the same sitting and round.
 */
export function latencyRatios(c: Pick<LatencyComparison, 'anchor' | 'runs' | 'maxima'>): LatencyRatios[] {
  const common = c.runs.filter((r) => r.kind === 'common');
  const figures = {
    p99: ratiosToAnchor(common, c.anchor, (r) => r.relay, (r) => r.window, (r) => r.p99Ms),
    relayCpuPerMillion: ratiosToAnchor(common, c.anchor, (r) => r.relay, (r) => r.window, (r) => r.relayCpuPerMillion),
    relayMemory: ratiosToAnchor(common, c.anchor, (r) => r.relay, (r) => r.window, (r) => r.relayMemoryMiB),
  };
  const spread = (figure: keyof typeof figures, relay: string): RatioSpread => {
    const r = figures[figure].find((x) => x.subject === relay);
    return { median: roundRatio(r?.median), min: roundRatio(r?.min), max: roundRatio(r?.max) };
  };
  const relays = [...new Set([...c.maxima.map((m) => m.relay), ...c.runs.map((r) => r.relay)])].filter((r) => r !== c.anchor);
  return relays.map((relay) => {
    const mine = c.maxima.find((m) => m.relay === relay);
    const anchor = mine && c.maxima.find((m) => m.relay === c.anchor && m.sitting === mine.sitting);
    return {
      relay,
      maximum: mine && anchor && anchor.sustainedRate > 0 ? roundRatio(mine.sustainedRate / anchor.sustainedRate) : null,
      rounds: figures.p99.find((x) => x.subject === relay)?.ratios.length ?? 0,
      p99: spread('p99', relay),
      relayCpuPerMillion: spread('relayCpuPerMillion', relay),
      relayMemory: spread('relayMemory', relay),
    };
  });
}

/**
 * The earlier maxima-and-latency comparison with this sitting's merged in:
 * a relay's part measured now (its search, or its points) replaces that
 * part measured before (all of it, for a relay in `reconfigured`: one whose
 * settings changed since); the anchor's earlier windows and maxima stay while
 * their sitting still holds another relay's (each ratio needs its own
 * sitting's anchor), and a sitting left with the anchor alone goes.
 */
export function mergeLatency(previous: LatencyComparison | undefined, fresh: LatencyComparison, reconfigured: ReadonlySet<string> = new Set()): LatencyComparison {
  if (!previous || previous.anchor !== fresh.anchor) return { ...fresh };
  const isSearch = (kind: LatencyRun['kind']) => kind === 'search' || kind === 'confirm' || kind === 'heap';
  const freshSittings = new Set(fresh.sittings.map((s) => s.sitting));
  // A relay configured otherwise since its earlier windows: they were another configuration's, and go whole.
  const measured = (relay: string, search: boolean) => reconfigured.has(relay) || fresh.runs.some((r) => r.relay === relay && isSearch(r.kind) === search);
  const keptRuns = previous.runs.filter((r) => !freshSittings.has(r.window.sitting) && (r.relay === fresh.anchor || !measured(r.relay, isSearch(r.kind))));
  const keptMaxima = previous.maxima.filter((m) => !freshSittings.has(m.sitting) && (m.relay === fresh.anchor || !(reconfigured.has(m.relay) || fresh.maxima.some((f) => f.relay === m.relay))));
  const othersIn = new Set([...keptRuns.filter((r) => r.relay !== fresh.anchor).map((r) => r.window.sitting), ...keptMaxima.filter((m) => m.relay !== fresh.anchor).map((m) => m.sitting)]);
  const runs = [...keptRuns.filter((r) => othersIn.has(r.window.sitting)), ...fresh.runs];
  const maxima = [...keptMaxima.filter((m) => othersIn.has(m.sitting)), ...fresh.maxima];
  const left = new Set([...runs.map((r) => r.window.sitting), ...maxima.map((m) => m.sitting)]);
  return {
    anchor: fresh.anchor,
    sittings: [...previous.sittings.filter((s) => left.has(s.sitting) && !freshSittings.has(s.sitting)), ...fresh.sittings],
    runs,
    maxima,
    ...(fresh.incomplete ? { incomplete: fresh.incomplete } : {}),
  };
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
  const settings = { ...previous.settings, ...fresh.settings };
  return {
    anchor: fresh.anchor,
    drainNames,
    backlogs,
    ...(Object.keys(settings).length > 0 ? { settings } : {}),
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

