/**
 * A sitting of `bench:ab` (bench/ab.ts): one scenario run at two commits in
 * turn on one host, and the section that shows it. A difference between the
 * two sides is the code's; a published folder's difference beyond it was the
 * hosts'.
 */
import { probesDiffer } from '../harness/environment.js';
import { comparisonTable, type Comparison } from './compare.js';
import { whole, type ReportContext, type Summary } from './kit.js';

export interface AbSide {
  label: 'A' | 'B';
  /** As given on the command line (a tag, HEAD, a short hash). */
  ref: string;
  commit: string;
}

export interface AbRun {
  side: 'A' | 'B';
  round: number;
  /** The run's results folder, relative to the sitting's. */
  folder: string;
  startedAt: string;
  /** The CPU probe the run's own runner read; null for a commit older than the probe. */
  probeNsPerOp: number | null;
}

export interface AbResult {
  scenario: string;
  sides: [AbSide, AbSide];
  /** The scenario flags both sides ran with. */
  flags: string[];
  rounds: number;
  runs: AbRun[];
  comparison: Comparison;
}

/**
 * The order of the runs: A B, then B A, and so on. Each side runs first in
 * half the rounds, so a host that speeds up or slows down over the sitting
 * (or a first run that warms a cache for the second) favours neither.
 */
export function abOrder(rounds: number): [number, 'A' | 'B'][] {
  return Array.from({ length: rounds }, (_, i) => (i % 2 === 0 ? (['A', 'B'] as const) : (['B', 'A'] as const)).map((label): [number, 'A' | 'B'] => [i + 1, label])).flat();
}

/** The probes a sitting's runs read: their range, and whether they moved more than the probe's own noise. */
export function abProbes(result: Pick<AbResult, 'runs'>): { min: number; max: number; noisy: boolean; unread: number } | undefined {
  const read = result.runs.map((r) => r.probeNsPerOp).filter((p): p is number => p !== null);
  if (read.length === 0) return undefined;
  const [min, max] = [Math.min(...read), Math.max(...read)];
  return { min, max, noisy: probesDiffer(min, max), unread: result.runs.length - read.length };
}

/** The sitting in the results header's words: its day, host, both commits and its probes. */
export function abSitting(summary: Summary<AbResult>): string {
  const extra = summary.extra!;
  const probes = abProbes(extra);
  const [a, b] = extra.sides;
  const probe = probes ? `CPU probe ${probes.min === probes.max ? whole(probes.min) : `${whole(probes.min)}-${whole(probes.max)}`} ns per operation` : 'CPU probe not recorded';
  return `${summary.date.slice(0, 10)}, ${summary.environment.cpuModel} (${summary.environment.cores} cores), commits ${a.commit.slice(0, 7)} and ${b.commit.slice(0, 7)} alternated, ${probe}`;
}

/** "Code against host": every bench:ab sitting in results/, its figures side by side with their verdicts. */
export function abReport(context: ReportContext): string[] {
  const sittings = [...context.summaries].filter(([, s]) => s.scenario === 'ab' && s.extra) as [string, Summary<AbResult>][];
  return sittings.flatMap(([folder, summary]) => {
    const extra = summary.extra!;
    const [a, b] = extra.sides;
    const probes = abProbes(extra);
    const order = extra.runs.map((r) => r.side).join(' ');
    const probeWords = !probes
      ? 'No run read the CPU probe.'
      : `Its runs read the CPU probe at ${whole(probes.min)}-${whole(probes.max)} ns per operation${probes.unread > 0 ? ` (${probes.unread} run(s) at a commit older than the probe read none)` : ''}` +
        `${probes.noisy ? ': the host moved more than the probe\'s noise during the sitting (noisy)' : ''}.`;
    return [
      `## Code against host: ${extra.scenario} at ${a.commit.slice(0, 7)} and ${b.commit.slice(0, 7)}`,
      '',
      `The ${extra.scenario} scenario ran at ${a.commit.slice(0, 7)} (A) and ${b.commit.slice(0, 7)} (B) in turn on one host in one sitting ` +
        `(${summary.date.slice(0, 10)}, ${summary.environment.cpuModel}; runs in the order ${order}), each commit with its own runner and servers: ` +
        `a difference between A and B is the code's, and what two published folders of these commits show beyond it was their hosts'. ${probeWords}`,
      '',
      ...comparisonTable(extra.comparison.figures),
      '',
      ...differences(extra),
      `Command: \`${summary.command}\`; each run's folder is under \`results/${folder}/runs/\`.`,
      '',
    ];
  });
}

/** What else differed between the runs (a server version the older commit pinned, say); the probes are shown above. */
function differences(extra: AbResult): string[] {
  const other = extra.comparison.environment.filter((d) => d.field !== 'cpuProbe');
  if (other.length === 0) return [];
  return [`Besides the code, the runs differed in: ${other.map((d) => `${d.field} (${d.a} against ${d.b})`).join('; ')}.`, ''];
}
