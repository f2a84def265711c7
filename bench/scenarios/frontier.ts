/**
 * `npm run bench:frontier`: what a millisecond of latency costs. Each relay
 * at three values of the knob that trades its latency for CPU (our CDC
 * relays' batching delay, the table relays' poll interval, Debezium's poll
 * interval and producer linger), at one and ten events per transaction and
 * 1,000 to 5,000 events/s, with e2e p50/p99 and the whole pipeline's CPU per
 * event; two repeats, interleaved in rounds of one shape with the anchor
 * (cdc at its default) first, in sittings of at most 150 minutes that
 * resume (`--resume`). It publishes a chart of CPU per event against p99
 * with each relay's Pareto frontier, and the decision table: for p99 under
 * X ms at a rate, which relay with which settings, at what cost.
 */
import { OutboxBenchError } from '../../src/errors.js';
import { SITTING_BUDGET_MINUTES } from '../harness/sitting.js';
import { yes, type Scenario } from '../scenario.js';
import { oneOf } from '../scenario-flags.js';
import { frontierRounds } from './frontier/measure.js';
import { decisionTable, frontierReport, type FrontierResult } from './frontier/report.js';
import { ANCHOR, FRONTIER_RELAYS, SHAPES, selectSubjects, shapeKey } from './frontier/subjects.js';
import { subjectsForWorkload } from '../harness/load.js';

/** A setting is judged by its worst run: one run judges nothing. */
function checkRepeats(repeats: number): void {
  if (repeats < 2) throw new OutboxBenchError('USAGE', 'frontier: a setting is judged by its worst run, so it runs at least twice (--repeats 2 or more)');
}

export const frontier: Scenario = {
  name: 'frontier',
  takesWorkload: true,
  description: "each relay's latency against its CPU per event at three settings of its knob, at 1 and 10 events per transaction: the decision table and chart",
  standalone: true,
  // Rationale: 20 s holds 20,000 to 100,000 events at these rates, enough
  // for a p99 of a few hundred events' tail; the warm-up after the prewarm
  // lets the rate settle. Latency, not a maximum, is the question, so the
  // window is shorter than the saturation search's.
  defaults: { warmupS: 5, durationS: 20, drainTimeoutS: 30 },
  flags: {
    mode: { kind: 'list', description: `relays to measure (the anchor, cdc at its default, always runs): ${FRONTIER_RELAYS.join(', ')}`, defaultText: 'all', check: oneOf(FRONTIER_RELAYS) },
    shapes: { kind: 'list', description: `shapes to measure, events per transaction x events/s: ${SHAPES.map(shapeKey).join(', ')}`, defaultText: 'all', check: oneOf(SHAPES.map(shapeKey)) },
    resume: { kind: 'yes-no', description: 'go on with the sitting stopped in results/frontier/, in a new sitting (completed rounds are kept)', defaultValue: false },
    'sitting-minutes': { description: 'a sitting stops before a round that would take it past this many minutes (resume it with --resume)', defaultValue: SITTING_BUDGET_MINUTES, min: 1, max: 1_440 },
  },
  checkFlags: (flags) => checkRepeats(flags.option('repeats')),
  async run(context) {
    checkRepeats(context.repeats);
    const subjects = subjectsForWorkload(selectSubjects(context.list('mode', [])), context.parameters.workload, ANCHOR);
    const named = context.list('shapes', SHAPES.map(shapeKey));
    const shapes = SHAPES.filter((s) => named.includes(shapeKey(s)));
    const measured = await frontierRounds(context, { subjects, shapes, repeats: context.repeats, resume: yes(context, 'resume'), budgetMinutes: context.option('sitting-minutes') });
    const extra: FrontierResult = {
      anchor: ANCHOR.key,
      shapes: shapes.map(shapeKey),
      repeats: context.repeats,
      runs: measured.runs,
      sittings: measured.sittings,
      ...(measured.incomplete ? { incomplete: measured.incomplete } : {}),
    };
    return {
      title: "Each relay's latency against its CPU per event, three settings each, at the shapes users run",
      runs: [],
      extra,
      lines: [...measured.lines, '', ...(measured.incomplete ? [] : decisionTable(extra))],
      // A run that could not run (a relay that did not start) fails the command; one that ran and lost events is a finding.
      failed: measured.runs.filter((r) => r.failure?.startsWith('did not run')).map((r) => `${r.subject} at ${r.shape}, repeat ${r.repeat}: ${r.failure}`),
      afterWrite: measured.afterWrite,
    };
  },
  report: frontierReport,
};
