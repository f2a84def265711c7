/**
 * A pipeline run's result made up for the rules judged on results alone
 * (the saturation search, the peers comparison's rounds): what a real run
 * returns, with the figures a test sets.
 */
import type { PipelineParameters, PipelineResult } from '../bench/harness/pipeline.js';

/** A run at `rate` that kept up unless told otherwise. */
export function fakeRunResult(rate: number, overrides: { delivered?: number; slope?: number | null; lost?: number; p99?: number; appliedPerSec?: number } = {}): PipelineResult {
  const intended = rate * 20;
  const latency = { count: intended, p50: 20, p90: 40, p99: overrides.p99 ?? 80, p999: 120, max: 150, mean: 25 };
  return {
    parameters: { rate, relayMode: 'polling', replicas: 1 } as PipelineParameters,
    sent: intended,
    failedWrites: 0,
    delivered: intended,
    lost: overrides.lost ?? 0,
    unexpected: 0,
    duplicates: 0,
    eventsPerSec: overrides.appliedPerSec ?? rate,
    committedPerSec: rate,
    window: { from: 0, to: 20_000, kind: 'load' },
    windowDelivery: { intended, deliveredByDeadline: Math.round(intended * (overrides.delivered ?? 1)), graceMs: 2_000 },
    e2eMs: latency,
    e2eReceiptMs: latency,
    commitToAppliedMs: latency,
    deliveredBeforeCommitAck: 0,
    writeMs: latency,
    cost: { postgres: { cpuSeconds: 1, cpuSecondsPerMillionEvents: 50, memoryMiB: 1 }, kafka: { cpuSeconds: 1, cpuSecondsPerMillionEvents: 5, memoryMiB: 1 }, relay: { cpuSeconds: 1, cpuSecondsPerMillionEvents: 40, memoryMiB: 1 }, consumer: { cpuSeconds: 1, cpuSecondsPerMillionEvents: 20, memoryMiB: 1 }, loadGenerator: { cpuSeconds: 1, cpuSecondsPerMillionEvents: 10, memoryMiB: 1 } },
    lag: { slopeEventsPerSec: overrides.slope === undefined ? 0 : overrides.slope, walBytesPerEvent: null },
    timeline: [],
    stages: Object.fromEntries(['write', 'commitToRelay', 'relayToAck', 'kafkaToConsumer', 'receiptToApplied'].map((k) => [k, { histogram: '', ms: latency }])) as PipelineResult['stages'],
    histograms: { e2e: '', receipt: '', commitToApplied: '', write: '' },
    drainS: 0,
    errors: [],
    durationOfRunS: 30,
  };
}

/** The environment a synthetic summary carries (the report reads only its shape). */
export const TEST_ENVIRONMENT = { postgresSettings: {}, gitCommit: 'test', gitDirty: false, gitChanges: [], date: new Date().toISOString(), cpuModel: 'x', cores: 2, memoryGiB: 1, os: 'x', node: 'x', postgres: 'x', fsync: { notMeasured: 'test' }, cpuProbe: { nsPerOp: 777, spreadPercent: 4, trials: 9, what: 'the test probe' }, kafka: 'x', java: 'x', dependencies: {} };
