/**
 * How the peers comparison sizes each relay's runs from its own maximum:
 * the prewarm before every run, the common rate, the drain's backlog.
 */
import type { PrewarmParameters } from '../../harness/load-worker.js';
import { roundRate } from '../../harness/saturation.js';
import type { PeerPoint } from './results.js';

// Rationale: a minute at a rate every relay keeps up with covers a JVM's
// class loading and C2 compilation, and every relay's first connections and
// batch-size ramps; nothing before it is measured.
export const PREWARM_S = 60;
export const PREWARM_MAX_RATE = 1_000;
// Rationale: 1,000 events/s is a rate every relay here should take, and a
// realistic steady load; relays whose maximum is below it say so.
export const COMMON_RATE = 1_000;
// Rationale: a drain of two minutes at the relay's own sustained maximum
// (a relay drains faster than it sustains a load, so it is over sooner), at
// least 20,000 events and at most 200,000: a fast relay's 10%-90% window
// still holds dozens of 50 ms readings (our CDC relay drains about 100,000
// events/s here), and a slow peer's drain stays minutes long.
export const DRAIN_SECONDS_AT_MAX = 120;
export const MIN_BACKLOG = 20_000;
export const MAX_BACKLOG = 200_000;

/** The prewarm before a run of a relay whose maximum is `max` (before a search step: the step's own rate). */
export function prewarmFor(max: number): PrewarmParameters {
  // Rationale: a relay with no measured maximum still gets a minute of load, at a rate any relay takes.
  const rate = max > 0 ? Math.min(PREWARM_MAX_RATE, Math.round(max / 2 / 10) * 10) : 50;
  return { rate: Math.max(10, rate), seconds: PREWARM_S };
}

/**
 * The backlog a relay with this sustained maximum drains, in whole
 * transactions of 1,000 (as a drain writes it); a relay with none measured
 * yet drains the largest.
 */
export function drainBacklogFor(max: number | undefined): number {
  if (max === undefined || max <= 0) return MAX_BACKLOG;
  return Math.min(MAX_BACKLOG, Math.max(MIN_BACKLOG, Math.ceil((max * DRAIN_SECONDS_AT_MAX) / 1_000) * 1_000));
}

/** The latency points a sitting can run: the common rate, and 50% and 80% of a relay's maximum. */
export const POINT_LABELS = ['common', 'half', 'eighty'] as const satisfies readonly PeerPoint['label'][];

/** The latency points of a relay with this maximum, of the labels asked for; those it cannot be run at say why. */
export function pointsFor(max: number, labels: readonly PeerPoint['label'][] = POINT_LABELS): PeerPoint[] {
  const none = 'no rate was sustained';
  const all: PeerPoint[] = [
    max >= COMMON_RATE ? { label: 'common', rate: COMMON_RATE, runs: [] } : { label: 'common', rate: COMMON_RATE, runs: [], skipped: max > 0 ? `sustains ${max} events/s at most` : none },
    { label: 'half', rate: roundRate(max * 0.5), runs: [], ...(max > 0 ? {} : { skipped: none }) },
    { label: 'eighty', rate: roundRate(max * 0.8), runs: [], ...(max > 0 ? {} : { skipped: none }) },
  ];
  return all.filter((p) => labels.includes(p.label));
}

// Rationale: a step that sustains its rate is applied within its 2 s grace,
// so only a failed step drains longer, and its verdict is already given. A
// relay slowed by its own backlog made that drain the sitting's length:
// pg-transactional-outbox's polling function, batch 10 at 1,600/s, left
// 81,000 events draining at 11-17/s (about 80 minutes). Two minutes still
// tells a relay that is catching up from one that lost events; what is left
// then is reported undrained, not lost.
export const SEARCH_DRAIN_LIMIT_S = 120;
