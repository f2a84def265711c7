/**
 * The published shape of one measured run (results/<scenario>/summary.json),
 * made from a pipeline result.
 */
import type { LatencySummaryMs } from '../../src/latency.js';
import type { PipelineParameters, PipelineResult, TimelinePoint } from './pipeline.js';

export type Component = 'postgres' | 'kafka' | 'relay' | 'consumer' | 'loadGenerator';

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
  /** Events first delivered per second during the measured window. */
  eventsPerSec: number;
  committedPerSec: number;
  sent: number;
  delivered: number;
  duplicates: number;
  lost: number;
  unexpected: number;
  failedWrites: number;
  verdict: string;
  /** Intended send -> consumer receipt. */
  e2eMs: LatencySummaryMs;
  /** Writer saw COMMIT return -> consumer receipt (0 when the event was faster than the commit ack). */
  commitToReceiptMs: LatencySummaryMs;
  deliveredBeforeCommitAck: number;
  /** Intended send -> commit returned (the write path, queueing included). */
  writeMs: LatencySummaryMs;
  /** CPU seconds per million delivered events, by process; null where not measurable. */
  cpuSecondsPerMillion: Record<Component, number | null> & { total: number | null };
  cpuSeconds: Record<Component, number | null>;
  /** Peak RSS (Node, Java) or PSS at the end of the run (PostgreSQL), MiB. */
  memoryMiB: Record<Component, number | null>;
  /** Seconds from the last commit until the last first delivery. */
  drainS: number;
  timeline: TimelinePoint[];
  /** Raw HDR histograms (µs), compressed base64, and the .hgrm files written beside. */
  histograms: { e2e: string; commitToReceipt: string; write: string };
  hgrm: { e2e: string; commitToReceipt: string; write: string };
  errors: string[];
  /** Present when the configuration was run more than once (`--repeats`). */
  spread?: RunSpread;
}

export function summarizeRun(name: string, r: PipelineResult): RunSummary {
  const components: Component[] = ['postgres', 'kafka', 'relay', 'consumer', 'loadGenerator'];
  const perMillion = Object.fromEntries(components.map((c) => [c, r.cost[c].cpuSecondsPerMillionEvents])) as Record<Component, number | null>;
  const measured = components.map((c) => perMillion[c]).filter((v): v is number => v !== null);
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
    unexpected: r.unexpected,
    failedWrites: r.failedWrites,
    verdict: r.lost === 0 && r.unexpected === 0 ? 'nothing lost' : `LOST ${r.lost}, unexpected ${r.unexpected}`,
    e2eMs: r.e2eMs,
    commitToReceiptMs: r.commitToReceiptMs,
    deliveredBeforeCommitAck: r.deliveredBeforeCommitAck,
    writeMs: r.writeMs,
    cpuSecondsPerMillion: { ...perMillion, total: measured.length === components.length ? Math.round(measured.reduce((a, b) => a + b, 0) * 10) / 10 : null },
    cpuSeconds: Object.fromEntries(components.map((c) => [c, r.cost[c].cpuSeconds])) as Record<Component, number | null>,
    memoryMiB: Object.fromEntries(components.map((c) => [c, r.cost[c].memoryMiB])) as Record<Component, number | null>,
    drainS: r.drainS,
    timeline: r.timeline,
    histograms: r.histograms,
    hgrm: { e2e: `${name}-e2e.hgrm`, commitToReceipt: `${name}-commit-to-receipt.hgrm`, write: `${name}-write.hgrm` },
    errors: r.errors,
  };
}
