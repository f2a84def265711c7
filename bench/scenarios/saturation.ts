/**
 * Per strategy: the highest sustained rate (stepping up, bisecting, then
 * confirming; the rule is in harness/saturation.ts) and the drain of a
 * pre-loaded backlog. Writes are batched (100 orders per transaction by
 * default) so the intake is not what saturates first.
 */
import { relayModeInfo, type RelayMode } from '../../src/relay/modes.js';
import type { DrainFigures } from '../harness/accounting.js';
import type { PipelineParameters } from '../harness/pipeline.js';
import { bars } from '../report/charts.js';
import { bracketOf, cpuPerMillionByProcess, MAX_LAG_SLOPE_SHARE, MIN_DELIVERED_SHARE, runDrain, searchSustained, type SearchResult } from '../harness/saturation.js';
import { current, f, save, type ReportContext } from '../report/kit.js';
import { pipelineContext, type Scenario } from '../scenario.js';
import { modeFlag, p99LimitFlag, relayMode, searchRateFlags } from '../scenario-flags.js';
import { relaysForWorkload } from '../harness/sql-workload.js';

/** The relays searched, in order (a multi-process mode runs --replicas processes). */
const MODES: readonly RelayMode[] = ['polling', 'skip-locked', 'cdc', 'cdc-message'];

export interface StrategySaturation {
  name: string;
  search: SearchResult;
  drain: (DrainFigures & { lost: number; cpuSecondsPerMillion: Record<string, number | null> }) | null;
}

/** What the saturation scenario writes into its summary's `extra`. */
export interface SaturationResult {
  strategies: StrategySaturation[];
}

/** The lowest rate that failed above the sustained one, and how far above it (from the steps, so older folders show it too). */
function bracketText(search: SearchResult): string {
  const { lowestFailedRate, width } = bracketOf(search.sustainedRate, search.steps);
  if (lowestFailedRate === null) return 'none failed';
  return width === null ? f(lowestFailedRate) : `${f(lowestFailedRate)} (+${(width * 100).toFixed(0)}%)`;
}

function report(context: ReportContext, folder: string): string[] {
  const summary = current<SaturationResult>(context, folder);
  const extra = summary?.extra;
  if (!summary || !extra) return [];
  const { charts } = context;
  const p = summary.parameters;
  // A folder measured before the search bracketed its limit says how it was searched then.
  // Optional: absent from a folder published before the search recorded it.
  const resolution = extra.strategies.map((s) => (s.search as Partial<SearchResult>).resolution).find((r) => r !== undefined);
  const searched = resolution === undefined ? 'then two bisection steps' : `then bisected until the lowest failed rate is within ${resolution * 100}% of the highest passed one`;
  const lines = [
    '## Sustained throughput and backlog drain',
    '',
    `Each strategy is offered increasing rates (×1.6 per step, ${searched}), ${p.ordersPerTransaction} orders per transaction, ` +
      `${p.durationS} s measured per step after ${p.warmupS} s of warm-up. A step passes when at least ${MIN_DELIVERED_SHARE * 100}% of the orders ` +
      'intended in its window were applied by the window\'s end plus the p99 limit, the relay lag did not grow (its least-squares slope over the ' +
      `window at most ${MAX_LAG_SLOPE_SHARE * 100}% of the offered rate per second; CDC lag in WAL bytes converted with the WAL bytes per event of ` +
      'the window), nothing was lost, and the end-to-end p99 stayed under the limit. The highest passing rate is run a second time; the ' +
      '*sustained* rate is the offered rate of the highest step that passed twice, and the limit lies below the lowest rate that failed ' +
      '(a step or a confirmation; the bracket is its distance above the sustained rate). The drain is measured apart: the whole backlog is ' +
      'written with no relay running, then the relay process is spawned; its clock starts at the spawn, the time to the first applied ' +
      'event is shown apart, and the drain rate is the steady rate from 10% to 90% of the backlog applied. This drain is timed by the consumer, ' +
      "through the whole pipeline, so it says nothing of the relay's own CPU (its share of a window the consumer sets): a relay's own rate and CPU " +
      "are the relay-only drain's (npm run bench:drain), timed by Kafka's end offsets.",
    '',
    '| strategy | sustained events/s (offered, passed twice) | lowest rate that failed (bracket) | drain events/s (10%–90%) | first event after (s) | backlog | all applied after (s) |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...extra.strategies.map(
      (s) =>
        `| ${s.name} | ${s.search.sustainedRate > 0 ? f(s.search.sustainedRate) : 'none passed twice'} | ${bracketText(s.search)} | ${f(s.drain?.eventsPerSec)} | ${f(s.drain?.timeToFirstEventS, 2)} | ` +
        `${f(s.drain?.backlog)} | ${f(s.drain?.seconds, 2)} |`,
    ),
    '',
  ];
  const chart = bars(
    extra.strategies.map((s) => s.name),
    [
      { name: 'sustained (offered events/s)', values: extra.strategies.map((s) => s.search.sustainedRate) },
      { name: 'backlog drain, 10%–90% (events/s)', values: extra.strategies.map((s) => s.drain?.eventsPerSec ?? null) },
    ],
    'Sustained throughput and backlog drain rate per strategy',
    'events per second',
    'on this machine, everything (PostgreSQL, Kafka, relay, consumer, load) sharing it',
  );
  lines.push(`![Sustained throughput per strategy](${save(charts, 'sustained-throughput', chart)})`, '', '<details><summary>Every step of the search</summary>', '');
  lines.push(
    '| strategy | offered | run | committed/s | applied/s in the window | applied by the deadline | lag slope (events/s per s) | slope limit | p99 (ms) | verdict |',
    '|---|---:|---|---:|---:|---:|---:|---:|---:|---|',
  );
  for (const s of extra.strategies) {
    for (const step of s.search.steps) {
      lines.push(
        `| ${s.name} | ${f(step.rate)} | ${step.attempt} | ${f(step.committedPerSec)} | ${f(step.eventsPerSec)} | ${(step.deliveredShare * 100).toFixed(1)}% | ` +
          `${f(step.lagSlopeEventsPerSec)} | ${f(step.lagSlopeLimit)} | ${f(step.p99Ms)} | ${step.passed ? 'passes' : step.reasons.join('; ')} |`,
      );
    }
  }
  lines.push('', '</details>', '');
  return lines;
}

export const saturation: Scenario = {
  name: 'saturation',
  takesWorkload: true,
  description: 'sustained throughput (step up, then bisect) and backlog drain rate of every strategy',
  defaults: { ordersPerTransaction: 100, warmupS: 5, durationS: 20, drainTimeoutS: 20 },
  flags: {
    mode: modeFlag('relay modes to measure', 'all', relayMode),
    'p99-limit-ms': p99LimitFlag('the end-to-end', 2_000, 600_000),
    ...searchRateFlags('events/s', { start: 2_000, max: 100_000 }),
    backlog: { description: 'events pre-loaded for the drain measurement', defaultValue: 100_000, min: 1_000, max: 10_000_000 },
  },
  async run(context) {
    const strategies = relaysForWorkload(context.list('mode', [...MODES]), context.parameters.workload);
    // Unknown names fail here, with the list of modes.
    for (const name of strategies) relayModeInfo(name);
    const results: StrategySaturation[] = [];
    const lines: string[] = [];
    for (const mode of strategies as RelayMode[]) {
      const base: PipelineParameters = { ...context.parameters, relayMode: mode, store: relayModeInfo(mode).store };
      const search = await searchSustained(
        pipelineContext(context, mode),
        base,
        { startRate: context.option('start-rate'), maxRate: context.option('max-rate'), growth: 1.6, p99LimitMs: context.option('p99-limit-ms') },
        (step, stepLines) => {
          const verdict = step.passed ? 'passes' : `fails: ${step.reasons.join('; ')}`;
          process.stderr.write(`${stepLines.slice(0, 4).join('\n')}\n  -> ${verdict}\n`);
        },
      );
      // The drain: the whole backlog is written at full speed first, then the relay is spawned.
      const drained = await runDrain(pipelineContext(context, `${mode}-drain`), base, context.option('backlog'), 60);
      const drain = drained.drain
        ? { ...drained.drain, lost: drained.lost, cpuSecondsPerMillion: cpuPerMillionByProcess(drained) }
        : null;
      results.push({ name: mode, search, drain });
      lines.push(
        `${mode}: sustained ${search.sustainedRate > 0 ? `${search.sustainedRate} events/s offered (passed twice)` : 'no rate passed twice'}, lowest failure ${bracketText(search)}; ` +
          `drain of ${drain?.backlog ?? 0}: first event after ${drain?.timeToFirstEventS ?? '?'} s, ${drain?.eventsPerSec ?? 0} events/s from 10% to 90% ` +
          `(${drained.lost === 0 ? 'nothing lost' : `${drained.lost} LOST`})`,
      );
    }
    return { title: 'Sustained throughput and drain rate per strategy', runs: [], extra: { strategies: results } satisfies SaturationResult, lines };
  },
  report,
};
