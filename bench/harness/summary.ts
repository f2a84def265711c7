/**
 * The published shape of one measured run (results/<scenario>/summary.json),
 * made from a pipeline result.
 */
import type { LatencySummaryMs } from '../../src/latency.js';
import type { DrainFigures, LagTrend, MeasuredWindow, WindowDelivery } from './accounting.js';
import type { PipelineParameters, PipelineResult, StageSummaries, TimelinePoint } from './pipeline.js';
import { COMPONENTS, type Component } from './sampler.js';

export type { Component } from './sampler.js';

/** A name safe in a file name on every system (no colons, spaces or slashes). */
export function slug(name: string): string {
  return name.replace(/[^a-z0-9.]+/gi, '-').replace(/^-|-$/g, '').toLowerCase();
}

/** Headline figures of every repeat of one configuration, in run order. */
export interface RunSpread {
  runs: number;
  eventsPerSec: number[];
  e2eP50Ms: number[];
  e2eP99Ms: number[];
  e2eP999Ms: number[];
  cpuSecondsPerMillion: (number | null)[];
  lostPerRun: number[];
  /** Summed over all runs, not just the one reported. */
  lost: number;
  unexpected: number;
}

export interface RunSummary {
  name: string;
  relay: string;
  store: string;
  parameters: PipelineParameters;
  /** Events first applied per second inside the measured window. */
  eventsPerSec: number;
  committedPerSec: number;
  sent: number;
  delivered: number;
  duplicates: number;
  lost: number;
  /** Not applied when the drain was cut at its limit (late or lost); only then present. */
  undrained?: number;
  unexpected: number;
  failedWrites: number;
  verdict: string;
  /** The window rates and CPU are measured over. */
  window: MeasuredWindow;
  windowDelivery: WindowDelivery;
  lag: LagTrend;
  /** Intended send -> applied (the consumer's inbox transaction committed). */
  e2eMs: LatencySummaryMs;
  /** Intended send -> received by the consumer, before its transaction. */
  e2eReceiptMs: LatencySummaryMs;
  /** Writer saw COMMIT return -> applied (0 when the event was faster than the commit ack). */
  commitToAppliedMs: LatencySummaryMs;
  deliveredBeforeCommitAck: number;
  /** Intended send -> commit returned (the write path, queueing included). */
  writeMs: LatencySummaryMs;
  /** CPU seconds per million events applied in the window, by process; null where not measurable. */
  cpuSecondsPerMillion: Record<Component, number | null> & { total: number | null };
  cpuSeconds: Record<Component, number | null>;
  /** Peak RSS (Node, Java) or PSS at the end of the run (PostgreSQL), MiB. */
  memoryMiB: Record<Component, number | null>;
  /** Seconds from the last commit until the last first application. */
  drainS: number;
  /** Drain runs: time to the first event and the steady 10%-90% rate. */
  drain?: DrainFigures;
  /** Where an event's time goes, stage by stage (the latency budget). */
  stages: StageSummaries;
  timeline: TimelinePoint[];
  /** Raw HDR histograms (µs), compressed base64, and the .hgrm files written beside. */
  histograms: Record<HistogramName, string>;
  hgrm: Record<HistogramName, string>;
  errors: string[];
  /** Present when the configuration was run more than once (`--repeats`). */
  spread?: RunSpread;
}

export type HistogramName = 'e2e' | 'receipt' | 'commitToApplied' | 'write';

const HGRM_SUFFIX: Record<HistogramName, string> = { e2e: 'e2e', receipt: 'receipt', commitToApplied: 'commit-to-applied', write: 'write' };

export function summarizeRun(name: string, r: PipelineResult): RunSummary {
  const perMillion = Object.fromEntries(COMPONENTS.map((c) => [c, r.cost[c].cpuSecondsPerMillionEvents])) as Record<Component, number | null>;
  const measured = COMPONENTS.map((c) => perMillion[c]).filter((v): v is number => v !== null);
  return {
    name,
    relay: r.parameters.relayMode,
    store: r.parameters.store,
    parameters: r.parameters,
    eventsPerSec: r.eventsPerSec,
    committedPerSec: r.committedPerSec,
    sent: r.sent,
    delivered: r.delivered,
    duplicates: r.duplicates,
    lost: r.lost,
    ...(r.undrained === undefined ? {} : { undrained: r.undrained }),
    unexpected: r.unexpected,
    failedWrites: r.failedWrites,
    verdict: lossVerdict(r),
    window: r.window,
    windowDelivery: r.windowDelivery,
    lag: r.lag,
    e2eMs: r.e2eMs,
    e2eReceiptMs: r.e2eReceiptMs,
    commitToAppliedMs: r.commitToAppliedMs,
    deliveredBeforeCommitAck: r.deliveredBeforeCommitAck,
    writeMs: r.writeMs,
    cpuSecondsPerMillion: { ...perMillion, total: measured.length === COMPONENTS.length ? Math.round(measured.reduce((a, b) => a + b, 0) * 10) / 10 : null },
    cpuSeconds: Object.fromEntries(COMPONENTS.map((c) => [c, r.cost[c].cpuSeconds])) as Record<Component, number | null>,
    memoryMiB: Object.fromEntries(COMPONENTS.map((c) => [c, r.cost[c].memoryMiB])) as Record<Component, number | null>,
    drainS: r.drainS,
    ...(r.drain ? { drain: r.drain } : {}),
    stages: r.stages,
    timeline: r.timeline,
    histograms: r.histograms,
    hgrm: Object.fromEntries((Object.keys(HGRM_SUFFIX) as HistogramName[]).map((key) => [key, `${slug(name)}-${HGRM_SUFFIX[key]}.hgrm`])) as Record<HistogramName, string>,
    errors: r.errors,
  };
}

/**
 * What a run says of its orders: nothing lost only when every committed
 * order was applied and nothing else was; a drain cut at its limit never
 * says so (what it did not wait for may be late or lost).
 */
export function lossVerdict(r: LossCounts): string {
  if (r.undrained) return `${r.undrained} UNDRAINED (the drain was cut: late or lost), LOST ${r.lost}, unexpected ${r.unexpected}`;
  return nothingLost(r) ? 'nothing lost' : `LOST ${r.lost}, unexpected ${r.unexpected}`;
}

type LossCounts = { lost: number; unexpected: number; undrained?: number | undefined };

/** Every committed order applied, nothing else applied, and the drain not cut before it could tell. */
export function nothingLost(r: LossCounts): boolean {
  return !r.undrained && r.lost === 0 && r.unexpected === 0;
}
