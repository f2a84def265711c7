/**
 * One relay's latency phase in the peers comparison, in this order: its own
 * sustained maximum; with a heap of its own, the smallest heap that sustains
 * it; then, repeated, latency at the common rate and at 50% and 80% of its
 * maximum. Every run is prewarmed inside the run; the probe is read, until
 * two readings agree, before the relay's first run and after its last. Its
 * drains are the comparison's (drain/rounds.ts), interleaved with the others'.
 */
import { gitCommit, type CpuProbe } from '../../harness/environment.js';
import { settledProbe } from '../../harness/sitting.js';
import { describeResult, medianWithRange } from '../../report/format.js';
import { runPipeline, type PipelineContext, type PipelineParameters, type PipelineResult } from '../../harness/pipeline.js';
import { judge, roundRate, searchSustained, type SearchResult } from '../../harness/saturation.js';
import { summarizeRun, type RunSummary } from '../../harness/summary.js';
import { dropRelaySlots } from '../../drivers/slots.js';
import { pipelineContext, type ScenarioContext } from '../../scenario.js';
import type { Relay } from './relays.js';
import { pointRun, type PeerPoint, type PeerResult } from './results.js';
import { COMMON_RATE, prewarmFor } from './sizing.js';
// Rationale: a 30 s step at 20/s still holds 600 orders for the share test,
// so a peer slower than 100/s gets its limit, not "no rate passed".
const MIN_PEER_RATE = 20;
// Rationale: a search guided by the relay's previous maximum starts at 70%
// of it and grows x1.4 (a pass or two, a failure, bisections to the
// search's resolution, the confirmation); an unguided one starts at 1,000/s and doubles.
const GUIDED_START_SHARE = 0.7;
const GUIDED_GROWTH = 1.4;
const UNGUIDED_START = 1_000;
const UNGUIDED_GROWTH = 2;
// Rationale: powers of two up to the 1 GiB earlier runs gave it: the
// smallest heap that holds the maximum is reported to within a factor of 2.
const HEAPS_MB = [256, 512, 1_024] as const;
// Rationale: the saturation rule's own p99 limit, for the search and the heap checks alike.
const P99_LIMIT_MS = 2_000;

const slugOf = (name: string) => name.replace(/[^a-z0-9]+/gi, '_').replace(/^_|_$/g, '').toLowerCase();
export const say = (line: string) => process.stderr.write(`${line}\n`);

/** One relay's sitting: the scenario's context, the relay, and how its runs are named and run. */
interface Sitting {
  context: ScenarioContext;
  relay: Relay;
  slug: string;
  base: PipelineParameters;
}

/** A run of the relay named `name` (a heap other than its default, if given). */
function contextFor(s: Sitting, name: string, heapMb?: number): PipelineContext {
  const { context, relay } = s;
  const driver = heapMb === undefined || !relay.driver.heap ? relay.driver : relay.driver.heap.resized(heapMb);
  return pipelineContext(context, name, driver);
}

/** Every run starts with no slot of an earlier one left behind (a stopped run's would hold WAL). */
async function runFresh(s: Sitting, name: string, p: PipelineParameters, heapMb?: number): Promise<PipelineResult> {
  await dropRelaySlots(s.context.infra.databaseUrl);
  return runPipeline(contextFor(s, name, heapMb), p);
}

/** 1. Its own maximum, and its evidence at the confirmed maximum when that evidence is readings over the window. */
async function searchMaximum(s: Sitting, guide: number | undefined): Promise<{ search: SearchResult; atMax: Record<string, unknown> | undefined }> {
  const { context, relay } = s;
  let atMax: Record<string, unknown> | undefined;
  await dropRelaySlots(context.infra.databaseUrl);
  const guided = guide !== undefined && guide > 0;
  const search = await searchSustained(
    contextFor(s, `peer-${s.slug}-search`),
    s.base,
    {
      startRate: guided ? roundRate(guide * GUIDED_START_SHARE) : (relay.driver.searchStart ?? UNGUIDED_START),
      growth: guided ? GUIDED_GROWTH : UNGUIDED_GROWTH,
      maxRate: context.option('max-rate'),
      minRate: MIN_PEER_RATE,
      p99LimitMs: P99_LIMIT_MS,
      prewarm: (rate) => prewarmFor(rate),
      run: async (ctx, p) => {
        await dropRelaySlots(context.infra.databaseUrl);
        return runPipeline(ctx, p);
      },
      onResult: (step, r) => {
        if (relay.driver.windowEvidence && step.attempt === 'confirm' && step.passed) atMax = r.evidence;
      },
    },
    (step) => say(`  ${relay.name} @ ${step.rate}/s${step.attempt === 'confirm' ? ' (confirmation)' : ''}: ${step.passed ? 'sustained' : step.reasons.join('; ')}`),
  );
  return { search, atMax };
}

/** A heap check is a confirmation step at the maximum: the saturation rule, applied to one run. */
function judgeAt(rate: number, r: PipelineResult) {
  return judge(rate, 'confirm', r, { startRate: rate, maxRate: rate, growth: 1, p99LimitMs: P99_LIMIT_MS });
}

/** 2. A relay with a heap of its own: the smallest that sustains its maximum (its default if none smaller does). */
async function smallestHeap(s: Sitting, max: number): Promise<{ heapMb: number | undefined; heapChecks: NonNullable<PeerResult['heapChecks']> }> {
  const heapChecks: NonNullable<PeerResult['heapChecks']> = [];
  const defaultMb = s.relay.driver.heap?.mb;
  for (const heap of HEAPS_MB) {
    if (heap === defaultMb) {
      // The search itself ran with this heap.
      heapChecks.push({ heapMb: heap, passed: true, reasons: [] });
      return { heapMb: heap, heapChecks };
    }
    // A heap too small may keep the relay from starting at all: that is a failed check, not a failed sitting.
    const step = await runFresh(s, `peer-${s.slug}-heap-${heap}`, { ...s.base, rate: max, deliveryGraceMs: 2_000, prewarm: prewarmFor(max) }, heap).then(
      (r) => judgeAt(max, r),
      (error: unknown) => ({ passed: false, reasons: [`did not run: ${(error as Error).message ?? String(error)}`.slice(0, 300)] }),
    );
    heapChecks.push({ heapMb: heap, passed: step.passed, reasons: step.reasons });
    say(`  ${s.relay.name} with a ${heap} MiB heap @ ${max}/s: ${step.passed ? 'sustained' : step.reasons.join('; ')}`);
    if (step.passed) return { heapMb: heap, heapChecks };
  }
  return { heapMb: undefined, heapChecks };
}

/** The latency points of a relay with this maximum; those it cannot be run at say why. */
function pointsFor(max: number): PeerPoint[] {
  const none = 'no rate was sustained';
  return [
    max >= COMMON_RATE ? { label: 'common', rate: COMMON_RATE, runs: [] } : { label: 'common', rate: COMMON_RATE, runs: [], skipped: max > 0 ? `sustains ${max} events/s at most` : none },
    { label: 'half', rate: roundRate(max * 0.5), runs: [], ...(max > 0 ? {} : { skipped: none }) },
    { label: 'eighty', rate: roundRate(max * 0.8), runs: [], ...(max > 0 ? {} : { skipped: none }) },
  ];
}

/** 3. Repeated: the latency points; the common rate's runs are also published as runs. */
async function repeatRuns(s: Sitting, max: number, heapMb: number | undefined): Promise<{ points: PeerPoint[]; runs: RunSummary[] }> {
  const { context, relay } = s;
  const prewarm = prewarmFor(max);
  const points = pointsFor(max);
  const runs: RunSummary[] = [];
  for (let repeat = 1; repeat <= context.repeats; repeat++) {
    for (const point of points) {
      if (point.skipped) continue;
      const name = `peer-${s.slug}-${point.label}-r${repeat}`;
      const r = await runFresh(s, name, { ...s.base, rate: point.rate, prewarm }, heapMb);
      point.runs.push(pointRun(r));
      if (point.label === 'common') runs.push(summarizeRun(name, r));
      for (const line of describeResult(`${relay.name} @ ${point.rate}/s (${repeat}/${context.repeats})`, r, relay.driver.label).slice(0, 3)) say(line);
    }
  }
  return { points, runs };
}

export async function measureRelay(context: ScenarioContext, relay: Relay, guide: number | undefined, stdoutLines: string[]): Promise<{ result: PeerResult; runs: RunSummary[] }> {
  const s: Sitting = { context, relay, slug: slugOf(relay.name), base: { ...context.parameters, ...relay.parameters } };
  // Read while the machine is idle, between relays, once the servers have settled.
  const before = settledProbe();
  const agreeing = before.readings.slice(-2);
  const cpuProbe: CpuProbe = {
    nsPerOp: before.nsPerOp,
    spreadPercent: Math.round((Math.max(...agreeing) / Math.min(...agreeing) - 1) * 100),
    trials: before.readings.length,
    what: `the CPU probe read ${before.readings.length} times until two quiet readings agreed${before.settled ? '' : ' (none did: their median)'}, their mean`,
  };
  const { search, atMax } = await searchMaximum(s, guide);
  const max = search.sustainedRate;
  const heap = relay.driver.heap && max > 0 ? await smallestHeap(s, max) : undefined;
  const { points, runs } = await repeatRuns(s, max, heap?.heapMb);
  const after = settledProbe();
  const common = points[0]!;
  stdoutLines.push(
    `  ${relay.name.padEnd(38)} max ${String(max).padStart(6)}/s  probe ${before.nsPerOp} -> ${after.nsPerOp} ns/op  ` +
      (common.skipped ? `at ${COMMON_RATE}/s: ${common.skipped}` : `at ${COMMON_RATE}/s e2e p99 ${medianWithRange(common.runs.map((r) => r.e2eMs.p99))} ms`),
  );
  return {
    result: {
      name: relay.name,
      settings: relay.settings,
      kafkaClient: relay.driver.usesOurKafkaClient ? (context.parameters.kafkaClient ?? context.config.kafkaClient) : null,
      sustainedRate: max,
      sustainedSteps: search.steps.map((step) => ({ rate: step.rate, attempt: step.attempt, passed: step.passed, reasons: step.reasons, p99Ms: step.p99Ms, deliveredShare: step.deliveredShare })),
      ...(atMax ? { atMax } : {}),
      ...(heap ? { heapChecks: heap.heapChecks, heapMb: heap.heapMb ?? relay.driver.heap!.mb } : {}),
      prewarm: prewarmFor(max),
      points,
      commit: gitCommit(),
      date: new Date().toISOString(),
      cpuProbe,
      probes: { before, after },
    },
    runs,
  };
}
