/**
 * Latency distributions in HDR histograms (hdr-histogram-js), in
 * microseconds, with declared bounds. Histograms cross thread and process
 * boundaries as compressed base64 and are merged with add() (the autocannon
 * pattern).
 */
import hdr, { type Histogram } from 'hdr-histogram-js';

/** 1 µs resolution. */
export const LOWEST_US = 1;
// Rationale: one hour is far beyond any latency a healthy run shows, yet a
// stalled relay (minutes) is still recorded, not clamped away.
export const HIGHEST_US = 3_600_000_000;
// Rationale: 3 significant digits = 0.1% value error, the customary HDR setting.
export const SIGNIFICANT_DIGITS = 3;

export type { Histogram } from 'hdr-histogram-js';

export function createHistogram(): Histogram {
  return hdr.build({
    lowestDiscernibleValue: LOWEST_US,
    highestTrackableValue: HIGHEST_US,
    numberOfSignificantValueDigits: SIGNIFICANT_DIGITS,
    bitBucketSize: 64,
    // The pure-JS implementation: no WebAssembly instance to initialise per worker.
    useWebAssembly: false,
  });
}

/** Records a latency given in milliseconds, clamped into the declared bounds. */
export function recordMs(histogram: Histogram, ms: number): void {
  const us = Math.round(ms * 1_000);
  histogram.recordValue(Math.min(HIGHEST_US, Math.max(LOWEST_US, us)));
}

/** Records the same latency `count` times. */
export function recordMsTimes(histogram: Histogram, ms: number, count: number): void {
  const us = Math.round(ms * 1_000);
  histogram.recordValueWithCount(Math.min(HIGHEST_US, Math.max(LOWEST_US, us)), count);
}

export function encodeHistogram(histogram: Histogram): string {
  return hdr.encodeIntoCompressedBase64(histogram);
}

export function decodeHistogram(encoded: string): Histogram {
  const decoded = hdr.decodeFromCompressedBase64(encoded, 64, false);
  // Re-build with our bounds so that merging never overflows the range.
  const histogram = createHistogram();
  histogram.add(decoded);
  return histogram;
}

export interface LatencySummaryMs {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

/** The usual percentiles in milliseconds (3 decimals: microsecond resolution). */
export function summarizeMs(histogram: Histogram): LatencySummaryMs {
  const ms = (us: number) => Math.round(us) / 1_000;
  return {
    count: histogram.totalCount,
    p50: ms(histogram.getValueAtPercentile(50)),
    p90: ms(histogram.getValueAtPercentile(90)),
    p99: ms(histogram.getValueAtPercentile(99)),
    p999: ms(histogram.getValueAtPercentile(99.9)),
    max: ms(histogram.maxValue),
    mean: ms(histogram.mean),
  };
}

/** The classic .hgrm percentile distribution, values in milliseconds. */
export function percentileDistribution(histogram: Histogram): string {
  return histogram.outputPercentileDistribution(5, 1_000);
}
