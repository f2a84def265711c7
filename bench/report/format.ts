/**
 * Human-readable lines for a pipeline result.
 */
import type { LatencySummaryMs } from '../../src/latency.js';
import { relayLabel as relayModeLabel } from '../../src/relay/modes.js';
import type { PipelineResult } from '../harness/pipeline.js';
import { lossVerdict } from '../harness/summary.js';
import { median } from '../harness/stats.js';

export function latencyLine(label: string, s: LatencySummaryMs): string {
  const f = (v: number) => v.toFixed(v < 10 ? 2 : 1);
  return `  ${label.padEnd(36)} p50 ${f(s.p50)}  p90 ${f(s.p90)}  p99 ${f(s.p99)}  p99.9 ${f(s.p999)}  max ${f(s.max)} ms  (n=${s.count})`;
}

function stage(s: LatencySummaryMs): string {
  return s.count === 0 ? 'n/a' : `${s.p50.toFixed(1)} / ${s.p99.toFixed(1)}`;
}

/** Where the run's events were written, in words. */
function storeLabel(store: PipelineResult['parameters']['store']): string {
  if (store === 'table') return 'outbox table';
  if (store === 'message') return 'WAL (logical messages)';
  return `relay's own table (${store})`;
}

/** `relayLabel` names a relay that is not one of our relay modes (its driver's label). */
export function describeResult(name: string, r: PipelineResult, relayLabel?: string): string[] {
  const p = r.parameters;
  const cost = Object.entries(r.cost)
    .map(([component, c]) => `${component} ${c.cpuSecondsPerMillionEvents === null ? 'n/a' : c.cpuSecondsPerMillionEvents}`)
    .join(', ');
  const verdict = lossVerdict(r);
  return [
    `${name}: relay ${relayLabel ?? relayModeLabel(p)}, events in the ${storeLabel(p.store)}${p.workload ? ` written by sql:${p.workload.file}` : ''}, ` +
      `${p.rate} events/s offered (${p.ordersPerTransaction}/transaction${p.eventsPerAggregate > 1 ? `, ${p.eventsPerAggregate} events per aggregate` : ""}), ${p.durationS} s measured after ${p.warmupS} s warm-up`,
    `  sent ${r.sent}  delivered ${r.delivered}  duplicates ${r.duplicates}  lost ${r.lost}  failed writes ${r.failedWrites}  -> ${verdict}`,
    r.drain
      ? `  drain of ${r.drain.backlog}: first event ${r.drain.timeToFirstEventS} s after the relay was spawned, ${r.drain.eventsPerSec} events/s from 10% to 90%, all in ${r.drain.seconds} s`
      : `  throughput ${r.eventsPerSec} events/s applied in the window (${r.committedPerSec} committed/s); lag trend ${r.lag.slopeEventsPerSec ?? 'n/a'} events/s per s`,
    latencyLine('end to end (intended send -> applied)', r.e2eMs),
    latencyLine('intended send -> consumer receipt', r.e2eReceiptMs),
    latencyLine('commit -> applied', r.commitToAppliedMs),
    latencyLine('write (intended send -> commit)', r.writeMs),
    `  stages p50 / p99 (ms): commit -> relay ${stage(r.stages.commitToRelay.ms)}, relay -> Kafka ack ${stage(r.stages.relayToAck.ms)}, ` +
      `Kafka -> consumer ${stage(r.stages.kafkaToConsumer.ms)}, receipt -> applied ${stage(r.stages.receiptToApplied.ms)}`,
    `  CPU seconds per million events (${r.drain ? '10%-90% of the drain' : 'measured window'}): ${cost}`,
  ];
}

/**
 * The median of the known values with their range in brackets, each through
 * `format`; "n/a" when none is known, no brackets for a single value.
 */
export function medianWithRange(values: readonly (number | null | undefined)[], format: (n: number) => string = String): string {
  const known = values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v)).sort((a, b) => a - b);
  const middle = median(known);
  if (middle === undefined) return 'n/a';
  return known.length > 1 ? `${format(middle)} (${format(known[0]!)}–${format(known.at(-1)!)})` : format(middle);
}
