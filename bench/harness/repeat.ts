/**
 * One measured configuration run several times: a single run's p99 is one
 * sample of a noisy quantity, so the published figure is the median run and
 * the spread across all runs is published beside it.
 */
import { describeResult } from '../report/format.js';
import type { PipelineResult } from './pipeline.js';
import { lossVerdict, nothingLost, summarizeRun, type RunSpread, type RunSummary } from './summary.js';

export interface RepeatedRun {
  /**
   * The run with the median end-to-end p99 (the lower middle one for an even
   * count), carrying the spread of all runs.
   */
  summary: RunSummary;
  lines: string[];
}

/**
 * Runs `once` `repeats` times, one after another (never concurrently: they
 * would share two cores), and keeps every run's headline figures.
 */
export async function repeatRun(name: string, repeats: number, once: (attempt: number) => Promise<PipelineResult>): Promise<RepeatedRun> {
  const summaries: RunSummary[] = [];
  const lines: string[] = [];
  for (let attempt = 0; attempt < repeats; attempt++) {
    const result = await once(attempt);
    summaries.push(summarizeRun(name, result));
    const [head, ...rest] = describeResult(name, result);
    lines.push(repeats > 1 ? `${head} [run ${attempt + 1}/${repeats}]` : head!, ...rest);
  }
  const byP99 = [...summaries].sort((a, b) => a.e2eMs.p99 - b.e2eMs.p99);
  const median = byP99[Math.floor((byP99.length - 1) / 2)]!;
  const spread: RunSpread = {
    runs: summaries.length,
    eventsPerSec: summaries.map((s) => s.eventsPerSec),
    e2eP50Ms: summaries.map((s) => s.e2eMs.p50),
    e2eP99Ms: summaries.map((s) => s.e2eMs.p99),
    e2eP999Ms: summaries.map((s) => s.e2eMs.p999),
    cpuSecondsPerMillion: summaries.map((s) => s.cpuSecondsPerMillion.total),
    lostPerRun: summaries.map((s) => s.lost),
    lost: summaries.reduce((sum, s) => sum + s.lost, 0),
    unexpected: summaries.reduce((sum, s) => sum + s.unexpected, 0),
  };
  const counts = { ...spread, undrained: summaries.reduce((sum, s) => sum + (s.undrained ?? 0), 0) };
  const verdict = nothingLost(counts) ? `nothing lost${repeats > 1 ? ` in ${repeats} runs` : ''}` : `${lossVerdict(counts)} over ${repeats} run(s)`;
  if (repeats > 1) {
    const range = (values: readonly number[], digits = 1) => `${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)}`;
    lines.push(
      `${name}: ${repeats} runs: events/s ${range(spread.eventsPerSec, 0)}, e2e p50 ${range(spread.e2eP50Ms)} ms, p99 ${range(spread.e2eP99Ms)} ms; ${verdict}`,
    );
  }
  return { summary: { ...median, verdict, spread }, lines };
}
