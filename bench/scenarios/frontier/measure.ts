/**
 * bench:frontier's runs, in sittings with an anchor: a round is one shape,
 * every subject once in the plan's order (the anchor, cdc at its default,
 * first); the rounds take the shapes in turn, then again for each repeat,
 * so a subject's repeats are hours apart and its neighbours in a round are
 * the other relays, not itself. Each run lies between two settled CPU
 * probes; completed rounds are journalled, so a stopped sitting resumes.
 */
import { describeError } from '../../../src/errors.js';
import type { LatencySummaryMs } from '../../../src/latency.js';
import { dropRelaySlots } from '../../drivers/slots.js';
import type { PrewarmParameters } from '../../harness/load-worker.js';
import { runPipeline, type PipelineParameters, type PipelineResult } from '../../harness/pipeline.js';
import { rethrowIfStopping } from '../../harness/running.js';
import { inWindow, SittingJournal, type SittingRecord, type SittingWindow } from '../../harness/sitting.js';
import { nothingLost, summarizeRun, type RunSummary } from '../../harness/summary.js';
import { pipelineContext, type ScenarioContext } from '../../scenario.js';
import { Rounds } from '../peers/sitting-rounds.js';
import { shapeKey, shapeLabel, type Shape, type Subject } from './subjects.js';

/** One run as the frontier keeps it: the figures it is judged by, not the run's histograms. */
export interface FrontierRun {
  subject: string;
  relay: string;
  setting: string;
  shape: string;
  repeat: number;
  /** Intended send -> applied by the consumer. */
  e2eMs?: Pick<LatencySummaryMs, 'p50' | 'p90' | 'p99' | 'p999' | 'max'>;
  /** CPU seconds per million events applied in the window: the whole pipeline (`total`) and each process. */
  cpuSecondsPerMillion?: Record<string, number | null>;
  eventsPerSec?: number;
  /** Of the window's orders, the share applied by its end plus the grace. */
  deliveredShare?: number;
  lost?: number;
  duplicates?: number;
  /** Why the run does not count (it lost events, fell behind, or did not run). */
  failure?: string;
  window: SittingWindow;
}

export interface FrontierPlan {
  subjects: readonly Subject[];
  shapes: readonly Shape[];
  repeats: number;
  resume: boolean;
  budgetMinutes: number;
  /** Runs one subject's run (default: a pipeline run with no slot left from an earlier one); tests pass their own. */
  run?: (subject: Subject, name: string, p: PipelineParameters) => Promise<PipelineResult>;
  inWindow?: typeof inWindow;
}

export interface FrontierMeasured {
  runs: FrontierRun[];
  sittings: readonly SittingRecord[];
  incomplete?: string;
  lines: string[];
  afterWrite(): void;
}

// Rationale: a run warms at its own rate first, so the relay's connections,
// batch sizes and JIT are settled before the window: a minute for a JVM
// (class loading and C2; the peers' prewarm), 20 s for a Node relay (its
// p99 in a 3 s warm-up read up to 35 times its warmed figure in bench:quick).
const JVM_PREWARM_S = 60;
const NODE_PREWARM_S = 20;
// Rationale: the saturation rule's share: a run that applied less of its
// window in time did not sustain the rate, and its latency is a backlog's.
const KEPT_UP_SHARE = 0.98;

export function prewarmOf(subject: Subject, shape: Shape): PrewarmParameters {
  return { rate: shape.rate, seconds: subject.driver.runtime === 'jvm' ? JVM_PREWARM_S : NODE_PREWARM_S };
}

/** The run's figures, and why it does not count if it does not. */
export function frontierRunOf(subject: Subject, shape: Shape, repeat: number, summary: RunSummary, window: SittingWindow): FrontierRun {
  const delivery = summary.windowDelivery;
  const deliveredShare = delivery.intended === 0 ? 0 : delivery.deliveredByDeadline / delivery.intended;
  const failures = [
    ...(nothingLost(summary) ? [] : [summary.verdict]),
    ...(deliveredShare < KEPT_UP_SHARE ? [`fell behind: ${(deliveredShare * 100).toFixed(1)}% of the window's events applied in time (needs ${KEPT_UP_SHARE * 100}%)`] : []),
  ];
  const { p50, p90, p99, p999, max } = summary.e2eMs;
  return {
    subject: subject.key,
    relay: subject.relay,
    setting: subject.setting,
    shape: shapeKey(shape),
    repeat,
    e2eMs: { p50, p90, p99, p999, max },
    cpuSecondsPerMillion: summary.cpuSecondsPerMillion,
    eventsPerSec: summary.eventsPerSec,
    deliveredShare,
    lost: summary.lost,
    duplicates: summary.duplicates,
    ...(failures.length > 0 ? { failure: failures.join('; ') } : {}),
    window,
  };
}

async function defaultRun(context: ScenarioContext, subject: Subject, name: string, p: PipelineParameters): Promise<PipelineResult> {
  await dropRelaySlots(context.infra.databaseUrl);
  return runPipeline(pipelineContext(context, name, subject.driver), p);
}

/** Every round of the plan, run or replayed from the journal, under the sitting's budget. */
export async function frontierRounds(context: ScenarioContext, plan: FrontierPlan): Promise<FrontierMeasured> {
  const key = JSON.stringify({ subjects: plan.subjects.map((s) => s.key), shapes: plan.shapes.map(shapeKey), repeats: plan.repeats, parameters: context.parameters });
  const journal = SittingJournal.open<FrontierRun>(context.outDir, key, plan.resume, plan.budgetMinutes);
  const rounds = new Rounds<FrontierRun>(journal, plan.budgetMinutes);
  const run = plan.run ?? ((subject, name, p) => defaultRun(context, subject, name, p));
  const windowed = plan.inWindow ?? inWindow;
  const runs: FrontierRun[] = [];
  const lines: string[] = [];
  for (let repeat = 1; repeat <= plan.repeats; repeat++) {
    for (const shape of plan.shapes) {
      const units = await rounds.next(`${shapeLabel(shape)}, repeat ${repeat} of ${plan.repeats}`, async (at) => {
        const out: FrontierRun[] = [];
        for (const subject of plan.subjects) {
          const name = `${subject.relay}-${subject.setting.replace(/[^a-z0-9]+/gi, '-')}-${shapeKey(shape)}-${repeat}`.toLowerCase();
          process.stderr.write(`frontier, round ${at.round} (sitting ${at.sitting}): ${subject.key} at ${shapeLabel(shape)} (${repeat}/${plan.repeats})\n`);
          const p: PipelineParameters = { ...context.parameters, ...subject.parameters, rate: shape.rate, ordersPerTransaction: shape.eventsPerTransaction, prewarm: prewarmOf(subject, shape) };
          const measured = await windowed(at, async () => {
            try {
              return { summary: summarizeRun(name, await run(subject, name, p)) };
            } catch (error) {
              // A stop is not a measurement: the round is measured again on --resume.
              rethrowIfStopping(error);
              return { error: `did not run: ${describeError(error)}`.slice(0, 300) };
            }
          });
          const { value, window } = measured;
          const unit = value.summary
            ? frontierRunOf(subject, shape, repeat, value.summary, window)
            : { subject: subject.key, relay: subject.relay, setting: subject.setting, shape: shapeKey(shape), repeat, failure: value.error!, window };
          lines.push(runLine(unit));
          out.push(unit);
        }
        return out;
      });
      if (!units) break;
      runs.push(...units);
    }
    if (rounds.incomplete) break;
  }
  return {
    runs,
    sittings: journal.sittings,
    ...(rounds.incomplete ? { incomplete: rounds.incomplete } : {}),
    lines: rounds.incomplete ? [...lines, rounds.incomplete] : lines,
    // A sitting that stopped keeps its journal: --resume goes on from it.
    afterWrite: () => {
      if (!rounds.incomplete) journal.finish();
    },
  };
}

function runLine(run: FrontierRun): string {
  if (!run.e2eMs) return `  ${run.subject} at ${run.shape}: ${run.failure}`;
  const cpu = run.cpuSecondsPerMillion?.total;
  return `  ${run.subject} at ${run.shape}: p50 ${run.e2eMs.p50.toFixed(1)} ms, p99 ${run.e2eMs.p99.toFixed(1)} ms, ${cpu === null || cpu === undefined ? 'CPU n/a' : `${Math.round(cpu)} CPU-s per million`}${run.failure ? ` (does not count: ${run.failure})` : ''}`;
}
