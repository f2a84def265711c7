/**
 * The statistics the reports use: the median of what was measured (the
 * lower middle for an even count, so it is always a value some run had), the
 * midpoint median where no single run should decide (a figure quoted in
 * prose, a frontier setting of two repeats), and a least-squares line.
 */

/** The median of the known (finite) values; undefined when none is known. */
export function median(values: readonly (number | null | undefined)[]): number | undefined {
  const known = values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v)).sort((a, b) => a - b);
  return known[Math.floor((known.length - 1) / 2)];
}

/** The median with the two middle values' midpoint for an even count; undefined for no values. */
export function midpointMedian(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** A figure over repeated runs: the median and the range. */
export interface Spread {
  median: number;
  min: number;
  max: number;
}

/** The midpoint median and the range of the values; undefined for no values. */
export function midpointSpread(values: readonly number[]): Spread | undefined {
  const median = midpointMedian(values);
  return median === undefined ? undefined : { median, min: Math.min(...values), max: Math.max(...values) };
}

/** The least-squares line through the points; undefined with fewer than two distinct x. */
export function leastSquares(points: readonly { x: number; y: number }[]): { slope: number; intercept: number } | undefined {
  if (new Set(points.map((p) => p.x)).size < 2) return undefined;
  const mx = points.reduce((sum, p) => sum + p.x, 0) / points.length;
  const my = points.reduce((sum, p) => sum + p.y, 0) / points.length;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.x - mx) * (p.y - my);
    den += (p.x - mx) ** 2;
  }
  const slope = num / den;
  return { slope, intercept: my - slope * mx };
}
