/**
 * `npm run bench:quick`: a look at every relay in a few minutes. Each relay
 * once at one moderate rate, then once draining a small backlog, printed as
 * one table and written to results-quick/ (never into results/). Shorter
 * windows and one run each: good for "did my change move it", not for
 * publication; the published figures come from the full scenarios.
 */
import { relayModeInfo, type RelayMode } from '../../src/relay/modes.js';
import type { DrainFigures } from '../harness/accounting.js';
import { runPipeline } from '../harness/pipeline.js';
import { cpuPerMillionByProcess, runDrain } from '../harness/saturation.js';
import { summarizeRun } from '../harness/summary.js';
import { current, f, type ReportContext } from '../report/kit.js';
import { pipelineContext, type Scenario } from '../scenario.js';
import { modeFlag, relayMode } from '../scenario-flags.js';
import { relaysForWorkload } from '../harness/sql-workload.js';

/** Every relay a user picks from (naive-skip-locked is the counter-example, left out). */
const MODES: readonly RelayMode[] = ['polling', 'skip-locked', 'cdc', 'cdc-message', 'cdc-sharded'];

export interface QuickDrain extends DrainFigures {
  name: string;
  lost: number;
  cpuSecondsPerMillion: Record<string, number | null>;
}

/** What the quick scenario writes into its summary's `extra`. */
export interface QuickResult {
  drains: QuickDrain[];
}

const LABEL = 'Quick look: one run per relay, short windows; not a published measurement (see results/ for those)';

function table(runs: ReturnType<typeof summarizeRun>[], drains: readonly QuickDrain[], rate: number, durationS: number, backlog: number): string[] {
  const sum = (cpu: Record<string, number | null>) => Object.values(cpu).reduce<number>((total, v) => total + (v ?? 0), 0);
  return [
    `| relay | applied events/s at ${f(rate)} offered (${durationS} s) | e2e p50 (ms) | p99 | p99.9 | CPU-s / 1M | drain events/s (${f(backlog)} backlog, 10%-90%) | first event (s) | drain CPU-s / 1M | lost |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...runs.map((run) => {
      const drain = drains.find((d) => d.name === run.name);
      return (
        `| ${run.name} | ${f(run.eventsPerSec)} | ${f(run.e2eMs.p50)} | ${f(run.e2eMs.p99)} | ${f(run.e2eMs.p999)} | ${f(run.cpuSecondsPerMillion.total)} | ` +
        `${f(drain?.eventsPerSec)} | ${f(drain?.timeToFirstEventS, 2)} | ${drain ? f(sum(drain.cpuSecondsPerMillion)) : 'n/a'} | ${run.lost + (drain?.lost ?? 0)} |`
      );
    }),
  ];
}

function report(context: ReportContext, folder: string): string[] {
  const summary = current<QuickResult>(context, folder);
  if (!summary?.extra) return [];
  const p = summary.parameters;
  return ['## Quick look', '', `> **${LABEL}.**`, '', ...table(summary.runs, summary.extra.drains, p.rate, p.durationS, summary.extra.drains[0]?.backlog ?? 0), ''];
}

export const quick: Scenario = {
  name: 'quick',
  takesWorkload: true,
  description: 'every relay once at a moderate rate plus a short drain, in under 5 minutes (results-quick/; a quick look, not for publication)',
  // Rationale: 1,000 events/s is half of the full scenarios' rate and far
  // below every relay's sustained maximum here (24,100 events/s and up), so
  // a short window still shows latency, not saturation; 3 + 10 s per relay
  // keeps the five relays and their drains under five minutes.
  defaults: { rate: 1_000, warmupS: 3, durationS: 10, drainTimeoutS: 15 },
  flags: {
    // Rationale: 20,000 events drain in well under a second to a few seconds
    // here (46,582 to 167,823 events/s), enough readings for the 10%-90% rate.
    backlog: { description: "events pre-loaded for each relay's drain", defaultValue: 20_000, min: 1_000, max: 1_000_000, formerly: ['quick-backlog'] },
    mode: modeFlag('relay modes to measure', 'all', relayMode),
  },
  standalone: true,
  async run(context) {
    const strategies = relaysForWorkload(context.list('mode', [...MODES]), context.parameters.workload);
    for (const name of strategies) relayModeInfo(name);
    const backlog = context.option('backlog');
    const runs: ReturnType<typeof summarizeRun>[] = [];
    const drains: QuickDrain[] = [];
    for (const mode of strategies as RelayMode[]) {
      const base = { ...context.parameters, relayMode: mode, store: relayModeInfo(mode).store };
      process.stderr.write(`quick: ${mode} at ${base.rate} events/s for ${base.durationS} s, then a drain of ${backlog}\n`);
      runs.push(summarizeRun(mode, await runPipeline(pipelineContext(context, mode), base)));
      const drained = await runDrain(pipelineContext(context, `${mode}-drain`), base, backlog, 30);
      if (drained.drain) {
        drains.push({
          name: mode,
          ...drained.drain,
          lost: drained.lost,
          cpuSecondsPerMillion: cpuPerMillionByProcess(drained),
        });
      }
    }
    const p = context.parameters;
    return {
      title: LABEL,
      runs,
      extra: { drains } satisfies QuickResult,
      lines: [LABEL, '', ...table(runs, drains, p.rate, p.durationS, backlog)],
    };
  },
  report,
};
