/**
 * How the peers comparison sizes each relay's runs from its own maximum:
 * the prewarm before every run, the common rate, the drain's backlog.
 */
import type { PrewarmParameters } from '../../harness/load-worker.js';

// Rationale: a minute at a rate every relay keeps up with covers a JVM's
// class loading and C2 compilation, and every relay's first connections and
// batch-size ramps; nothing before it is measured.
export const PREWARM_S = 60;
export const PREWARM_MAX_RATE = 1_000;
// Rationale: 1,000 events/s is a rate every relay here should take, and a
// realistic steady load; relays whose maximum is below it say so.
export const COMMON_RATE = 1_000;
// Rationale: a drain of two minutes at the relay's own maximum, at least
// 20,000 events (a fast relay's drain is still seconds long) and at most
// 200,000 (a slow peer's drain stays bounded in time).
export const DRAIN_SECONDS_AT_MAX = 120;
export const MIN_BACKLOG = 20_000;
export const MAX_BACKLOG = 200_000;

/** The prewarm before a run of a relay whose maximum is `max` (before a search step: the step's own rate). */
export function prewarmFor(max: number): PrewarmParameters {
  // Rationale: a relay with no measured maximum still gets a minute of load, at a rate any relay takes.
  const rate = max > 0 ? Math.min(PREWARM_MAX_RATE, Math.round(max / 2 / 10) * 10) : 50;
  return { rate: Math.max(10, rate), seconds: PREWARM_S };
}

/** The backlog a relay with this maximum drains. */
export function backlogFor(max: number): number {
  return Math.min(MAX_BACKLOG, Math.max(MIN_BACKLOG, Math.round(max * DRAIN_SECONDS_AT_MAX)));
}
