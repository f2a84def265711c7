/**
 * The peers comparison's maxima and latency, in sittings with an anchor: our
 * CDC relay is measured beside the others in every sitting, and each relay is
 * published as its ratio to the anchor of its own sitting (and round).
 *
 *  maxima: every relay's saturation search, stepped round-robin (each round
 *    one step of every search still going, the anchor first), so a host that
 *    drifts moves every search alike; then, for a relay with a heap of its
 *    own, the smallest heap that sustains its maximum.
 *  latency: `--repeats` rounds, each running every relay's latency points in
 *    turn, the anchor first: the common rate, and 50% and 80% of the relay's
 *    maximum (this sitting's, or the one published).
 *
 * Every run is prewarmed inside the run and measured between two settled CPU
 * probes, with the CPU the hypervisor stole meanwhile. Rounds are kept in a
 * journal: a sitting stopped, or out of time, resumes in a new one (a search
 * is resumed by replaying its recorded outcomes into a new plan).
 */
import { describeError, OutboxBenchError } from '../../../src/errors.js';
import { gitCommit } from '../../harness/environment.js';
import { inWindow, SittingJournal, type SittingWindow } from '../../harness/sitting.js';
import { describeResult, medianWithRange } from '../../report/format.js';
import { runPipeline, type PipelineContext, type PipelineParameters, type PipelineResult } from '../../harness/pipeline.js';
import { judge, roundRate, searchPlan, searchResultOf, type SearchAttempt, type SearchStep } from '../../harness/saturation.js';
import { summarizeRun, type RunSummary } from '../../harness/summary.js';
import { rethrowIfStopping, unlessStopping } from '../../harness/running.js';
import { dropRelaySlots } from '../../drivers/slots.js';
import { pipelineContext, type ScenarioContext } from '../../scenario.js';
import type { Relay } from './relays.js';
import { latencyRunOf, pointRun, slugOf, type LatencyComparison, type MaximumRecord, type PeerPoint, type PeerResult, type PointRun } from './results.js';
import { COMMON_RATE, POINT_LABELS, pointsFor, prewarmFor, SEARCH_DRAIN_LIMIT_S } from './sizing.js';
import { cpuProbeOf, emptyProbe, Rounds, sequence } from './sitting-rounds.js';

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
// Rationale: a relay measured at the common rate before its maximum is (a
// Debezium poll interval beside its profile) is run and prewarmed as every
// relay that sustains twice the common rate is, at 1,000/s; it is published
// with no maximum, and a run it cannot keep up with says so.
const UNMEASURED_MAX = 2 * COMMON_RATE;

const say = (line: string) => process.stderr.write(`${line}\n`);

/** One measured window of the comparison, as the journal keeps it. */
export interface LatencyUnit {
  relay: string;
  kind: SearchStep['attempt'] | 'heap' | PeerPoint['label'];
  rate: number;
  heapMb?: number;
  /** A search step, as judged. */
  step?: PeerResult['sustainedSteps'][number];
  /** A heap check. */
  passed?: boolean;
  reasons?: string[];
  /** A latency point's run. */
  point?: PointRun;
  /** The run as the summary publishes it (common-rate points). */
  summary?: RunSummary;
  /** The relay's evidence at a confirmed maximum, where that is readings over the window. */
  atMax?: Record<string, unknown>;
  window: SittingWindow;
}

export interface AnchoredPlan {
  /** In the order each round runs them: the anchor first. */
  relays: readonly Relay[];
  maxima: boolean;
  latency: boolean;
  points: readonly PeerPoint['label'][];
  rounds: number;
  resume: boolean;
  budgetMinutes: number;
  earlierSittings: number;
  previous: readonly PeerResult[];
  /** Runs one relay's run (default: a pipeline run with no slot left from an earlier one); tests pass their own. */
  run?: (relay: Relay, name: string, p: PipelineParameters, heapMb?: number) => Promise<PipelineResult>;
  /** Measures between two probes (default: settled CPU probes, steal over the run); tests pass their own. */
  inWindow?: typeof inWindow;
}

export interface AnchoredResult {
  /** Each relay's results, with what this comparison measured in place of the earlier ones (none when it stopped early). */
  results: PeerResult[];
  runs: RunSummary[];
  comparison: LatencyComparison;
  /** Relays measured now whose earlier results were measured with other settings: their earlier windows are not theirs. */
  reconfigured: Set<string>;
  lines: string[];
  failed: string[];
  afterWrite(): void;
}

/** A run of `relay` named `name` (with a heap other than its default, if given), with no slot of an earlier run left behind. */
async function runRelay(context: ScenarioContext, relay: Relay, name: string, p: PipelineParameters, heapMb?: number): Promise<PipelineResult> {
  await dropRelaySlots(context.infra.databaseUrl);
  const driver = heapMb === undefined || !relay.driver.heap ? relay.driver : relay.driver.heap.resized(heapMb);
  const run: PipelineContext = pipelineContext(context, name, driver);
  return runPipeline(run, p);
}

/** The saturation rule applied to one run at `rate` (a search step, a confirmation, or a heap check), the relay's own reports named beside its losses. */
const judgeAt = (relay: Relay, rate: number, attempt: SearchStep['attempt'], r: PipelineResult) =>
  judge(rate, attempt, r, { startRate: rate, maxRate: rate, growth: 1, p99LimitMs: P99_LIMIT_MS, explainLoss: relay.driver.explainLoss });

/** A search step's or heap check's run at `rate`: the saturation rule's grace and drain limit, warmed as every run is. */
const stepParameters = (ph: Phase, relay: Relay, rate: number): PipelineParameters => ({ ...ph.base(relay), rate, deliveryGraceMs: P99_LIMIT_MS, drainLimitS: SEARCH_DRAIN_LIMIT_S, prewarm: prewarmFor(rate) });

/** A run that threw is a failed step: a relay that cannot run a rate does not sustain it. */
const failedStep = (attempt: SearchAttempt, error: unknown): LatencyUnit['step'] => ({
  rate: attempt.rate,
  attempt: attempt.attempt,
  passed: false,
  reasons: [`did not run: ${describeError(error)}`.slice(0, 300)],
  p99Ms: Number.NaN,
  deliveredShare: 0,
});

/** One relay's search as the rounds step it. */
interface Search {
  relay: Relay;
  plan: Generator<SearchAttempt, number, boolean>;
  next: IteratorResult<SearchAttempt, number>;
  steps: NonNullable<LatencyUnit['step']>[];
  units: LatencyUnit[];
  atMax?: Record<string, unknown>;
}

function searchOf(relay: Relay, guide: number | undefined, maxRate: number): Search {
  const guided = guide !== undefined && guide > 0;
  const plan = searchPlan({
    startRate: guided ? roundRate(guide * GUIDED_START_SHARE) : (relay.driver.searchStart ?? UNGUIDED_START),
    growth: guided ? GUIDED_GROWTH : UNGUIDED_GROWTH,
    maxRate,
    minRate: MIN_PEER_RATE,
  });
  return { relay, plan, next: plan.next(), steps: [], units: [] };
}

/** What every phase of a sitting uses: its context and plan, its rounds, how one run is run and windowed. */
interface Phase {
  context: ScenarioContext;
  plan: AnchoredPlan;
  rounds: Rounds<LatencyUnit>;
  lines: string[];
  base(relay: Relay): PipelineParameters;
  run(relay: Relay, name: string, p: PipelineParameters, heapMb?: number): Promise<PipelineResult>;
  windowed(at: { sitting: number; round: number }, measure: () => Promise<Omit<LatencyUnit, 'window'>>): Promise<LatencyUnit>;
  guideOf(relay: Relay): number | undefined;
}

/** One search step of a relay, judged by the saturation rule; a run that threw is a failed step. */
async function searchStep(ph: Phase, s: Search, at: { sitting: number; round: number }): Promise<LatencyUnit> {
  const attempt = s.next.value as SearchAttempt;
  const confirm = attempt.attempt === 'confirm' ? ' (confirmation)' : '';
  return ph.windowed(at, async () => {
    const name = `peer-${slugOf(s.relay.name)}-search-${attempt.rate}${confirm ? '-confirm' : ''}`;
    say(`peers maxima, round ${at.round} (sitting ${at.sitting}): ${s.relay.name} @ ${attempt.rate}/s${confirm}`);
    try {
      const r = await ph.run(s.relay, name, stepParameters(ph, s.relay, attempt.rate));
      const { rate, passed, reasons, p99Ms, deliveredShare } = judgeAt(s.relay, attempt.rate, attempt.attempt, r);
      say(`  ${s.relay.name} @ ${rate}/s${confirm}: ${passed ? 'sustained' : reasons.join('; ')}`);
      const atMax = s.relay.driver.windowEvidence && confirm && passed ? r.evidence : undefined;
      return { relay: s.relay.name, kind: attempt.attempt, rate, step: { rate, attempt: attempt.attempt, passed, reasons, p99Ms, deliveredShare }, ...(atMax ? { atMax } : {}) };
    } catch (error) {
      rethrowIfStopping(error);
      say(`  ${s.relay.name} @ ${attempt.rate}/s: did not run: ${describeError(error)}`);
      return { relay: s.relay.name, kind: attempt.attempt, rate: attempt.rate, step: failedStep(attempt, error) };
    }
  });
}

/** 1. Maxima: the searches, one step of each still going per round, the anchor first. */
async function searchRounds(ph: Phase): Promise<Search[]> {
  const searches = ph.plan.relays.map((r) => searchOf(r, ph.guideOf(r), ph.context.option('max-rate')));
  while (searches.some((s) => !s.next.done)) {
    const going = searches.filter((s) => !s.next.done);
    const units = await ph.rounds.next('maxima', (at) => sequence(going, (s) => searchStep(ph, s, at)));
    if (!units) break;
    for (const s of going) {
      const unit = units.find((u) => u.relay === s.relay.name);
      const attempt = s.next.value as SearchAttempt;
      if (!unit?.step || unit.rate !== attempt.rate) {
        throw new OutboxBenchError('USAGE', `--resume: the journal's round ${ph.rounds.round} does not hold ${s.relay.name}'s step at ${attempt.rate}/s: start the comparison afresh (leave out --resume)`);
      }
      s.steps.push(unit.step);
      s.units.push(unit);
      if (unit.atMax) s.atMax = unit.atMax;
      s.next = s.plan.next(unit.step.passed);
    }
  }
  return searches;
}

/** 2. A relay with a heap of its own: the smallest that sustains its maximum, smallest first, all in one round. */
async function heapRound(ph: Phase, maxOf: (relay: Relay) => number): Promise<Map<string, LatencyUnit[]>> {
  const byRelay = new Map<string, LatencyUnit[]>();
  const heapRelays = ph.plan.relays.filter((r) => r.driver.heap && maxOf(r) > 0);
  if (heapRelays.length === 0) return byRelay;
  const units = await ph.rounds.next('heap checks', async (at) => {
    const all: LatencyUnit[] = [];
    for (const relay of heapRelays) {
      const max = maxOf(relay);
      for (const heapMb of HEAPS_MB) {
        if (heapMb === relay.driver.heap!.mb) {
          // The search itself ran with this heap: a check with no window of its own.
          all.push({ relay: relay.name, kind: 'heap', rate: max, heapMb, passed: true, reasons: [], window: { ...at, startedAt: new Date().toISOString(), seconds: 0, probeBefore: emptyProbe, probeAfter: emptyProbe, stealPercent: null } });
          break;
        }
        const unit = await ph.windowed(at, async () => {
          // A heap too small may keep the relay from starting at all: that is a failed check, not a failed sitting.
          const step = await ph.run(relay, `peer-${slugOf(relay.name)}-heap-${heapMb}`, stepParameters(ph, relay, max), heapMb).then(
            (r) => judgeAt(relay, max, 'confirm', r),
            unlessStopping((error) => ({ passed: false, reasons: [`did not run: ${describeError(error)}`.slice(0, 300)] })),
          );
          say(`  ${relay.name} with a ${heapMb} MiB heap @ ${max}/s: ${step.passed ? 'sustained' : step.reasons.join('; ')}`);
          return { relay: relay.name, kind: 'heap' as const, rate: max, heapMb, passed: step.passed, reasons: step.reasons };
        });
        all.push(unit);
        if (unit.passed) break;
      }
    }
    return all;
  });
  for (const u of units ?? []) byRelay.set(u.relay, [...(byRelay.get(u.relay) ?? []), u]);
  return byRelay;
}

/** One latency point's run; one that fails is said and leaves the round going. */
async function pointUnit(ph: Phase, relay: Relay, point: PeerPoint, max: number, heapMb: number | undefined, repeat: number, at: { sitting: number; round: number }): Promise<LatencyUnit | undefined> {
  const rounds = ph.plan.rounds;
  return ph
    .windowed(at, async () => {
      const name = `peer-${slugOf(relay.name)}-${point.label}-r${repeat}`;
      say(`peers latency, round ${at.round} (sitting ${at.sitting}): ${relay.name} @ ${point.rate}/s (${point.label}, ${repeat}/${rounds})`);
      const r = await ph.run(relay, name, { ...ph.base(relay), rate: point.rate, prewarm: prewarmFor(max) }, heapMb);
      for (const line of describeResult(`${relay.name} @ ${point.rate}/s (${repeat}/${rounds})`, r, relay.driver.label).slice(0, 3)) say(line);
      return { relay: relay.name, kind: point.label, rate: point.rate, point: pointRun(r), ...(point.label === 'common' ? { summary: summarizeRun(name, r) } : {}) };
    })
    .catch(unlessStopping((error) => void ph.lines.push(`  ${relay.name} @ ${point.rate}/s, repeat ${repeat}: FAILED: ${describeError(error)}`)));
}

/** 3. Latency: every relay's points once per round, the anchor first. */
async function latencyRounds(ph: Phase, maxOf: (relay: Relay) => number, heapOf: (relay: Relay) => number | undefined): Promise<LatencyUnit[]> {
  const out: LatencyUnit[] = [];
  for (let repeat = 1; repeat <= ph.plan.rounds; repeat++) {
    const runs = ph.plan.relays.flatMap((relay) => pointsFor(maxOf(relay), ph.plan.points).filter((p) => !p.skipped).map((point) => ({ relay, point })));
    const units = await ph.rounds.next(`latency, repeat ${repeat} of ${ph.plan.rounds}`, async (at) =>
      (await sequence(runs, ({ relay, point }) => pointUnit(ph, relay, point, maxOf(relay), heapOf(relay), repeat, at))).filter((u): u is LatencyUnit => u !== undefined),
    );
    if (!units) break;
    out.push(...units);
  }
  return out;
}

/** What the sitting measured, as the summary keeps it. */
function comparisonOf(ph: Phase, searches: readonly Search[], units: readonly LatencyUnit[]): LatencyComparison {
  const journal = ph.rounds.journal;
  return {
    anchor: ph.plan.relays[0]!.name,
    sittings: [...journal.sittings],
    runs: units.map(latencyRunOf),
    maxima: searches
      .filter((s) => s.next.done)
      .map((s): MaximumRecord => {
        const result = searchResultOf(s.next.value as number, s.steps as SearchStep[]);
        return { relay: s.relay.name, sitting: s.units[0]?.window.sitting ?? journal.sitting, sustainedRate: result.sustainedRate, lowestFailedRate: result.lowestFailedRate, bracketWidth: result.bracketWidth };
      }),
    ...(ph.rounds.incomplete ? { incomplete: ph.rounds.incomplete } : {}),
  };
}

/** A relay's earlier results, if measured as it is configured now: with other settings they were another configuration's. */
function earlierResultOf(previous: readonly PeerResult[], relay: Relay): PeerResult | undefined {
  return previous.find((p) => p.name === relay.name && p.settings === relay.settings);
}

/** A relay's results with what this sitting measured in place of its earlier ones. */
function resultOf(ph: Phase, relay: Relay, parts: { search?: Search; max: number; sizing: number; heapChecks?: LatencyUnit[]; heapMb?: number; units: LatencyUnit[]; pointUnits: LatencyUnit[] }): PeerResult {
  const earlier = earlierResultOf(ph.plan.previous, relay);
  const { search } = parts;
  const max = search || earlier ? parts.max : 0;
  const mine = parts.units.filter((u) => u.relay === relay.name && u.window.seconds > 0);
  const measured = ph.plan.latency ? pointsFor(parts.sizing, ph.plan.points).map((p) => ({ ...p, runs: parts.pointUnits.filter((u) => u.relay === relay.name && u.kind === p.label && u.point).map((u) => u.point!) })) : [];
  // Points not measured now stay, saying where they were measured.
  const kept = (earlier?.points ?? []).filter((p) => !measured.some((m) => m.label === p.label)).map((p) => ({ ...p, measuredAt: p.measuredAt ?? { commit: earlier!.commit, date: earlier!.date } }));
  const points = [...measured, ...kept].sort((a, b) => POINT_LABELS.indexOf(a.label) - POINT_LABELS.indexOf(b.label));
  const heapChecks = parts.heapChecks?.map((u) => ({ heapMb: u.heapMb!, passed: u.passed!, reasons: u.reasons ?? [] }));
  const [first, last] = [mine[0]?.window.probeBefore, mine.at(-1)?.window.probeAfter];
  const common = points.find((p) => p.label === 'common');
  ph.lines.push(
    `  ${relay.name.padEnd(38)} max ${String(max).padStart(6)}/s  ` +
      (common === undefined ? '' : common.skipped ? `at ${COMMON_RATE}/s: ${common.skipped}` : `at ${COMMON_RATE}/s e2e p99 ${medianWithRange(common.runs.map((r) => r.e2eMs.p99))} ms`),
  );
  const atMax = search ? search.atMax : earlier?.atMax;
  const heap = heapChecks ? { heapChecks, heapMb: parts.heapMb ?? relay.driver.heap!.mb } : earlier?.heapChecks ? { heapChecks: earlier.heapChecks, ...(earlier.heapMb === undefined ? {} : { heapMb: earlier.heapMb }) } : {};
  return {
    name: relay.name,
    settings: relay.settings,
    kafkaClient: relay.driver.usesOurKafkaClient ? (ph.context.parameters.kafkaClient ?? ph.context.config.kafkaClient) : null,
    sustainedRate: max,
    sustainedSteps: search ? search.steps : (earlier?.sustainedSteps ?? []),
    ...(!search && earlier && earlier.sustainedSteps.length > 0 ? { maximumMeasuredAt: earlier.maximumMeasuredAt ?? { commit: earlier.commit, date: earlier.date } } : {}),
    ...(atMax ? { atMax } : {}),
    ...heap,
    prewarm: prewarmFor(parts.sizing),
    points,
    commit: gitCommit(),
    date: new Date().toISOString(),
    ...(first ? { cpuProbe: cpuProbeOf(first) } : {}),
    ...(first && last ? { probes: { before: first, after: last } } : {}),
  };
}

/**
 * Measures the plan's phases for every relay, interleaved with the anchor
 * (the plan's first relay), and returns each relay's results merged over its
 * earlier ones, with the comparison of this sitting (or sittings, resumed).
 */
export async function anchoredRelays(context: ScenarioContext, plan: AnchoredPlan): Promise<AnchoredResult> {
  const { relays, previous } = plan;
  const guideOf = (relay: Relay) => previous.find((p) => p.name === relay.name)?.sustainedRate;
  const sizedByMaximum = plan.points.some((p) => p !== 'common');
  const unknown = plan.latency && !plan.maxima && sizedByMaximum ? relays.filter((r) => guideOf(r) === undefined).map((r) => r.name) : [];
  if (unknown.length > 0) {
    throw new OutboxBenchError('USAGE', `peers: the points at 50% and 80% are sized from each relay's maximum, and ${context.outDir} holds none for ${unknown.join(', ')}: add maxima to --phases, or run --points common`);
  }
  // What decides the runs: a resumed sitting must measure the same comparison with the same settings.
  const key = JSON.stringify({
    order: relays.map((r) => r.name),
    ...{ maxima: plan.maxima, latency: plan.latency, points: plan.points, rounds: plan.rounds },
    guides: relays.map(guideOf),
    parameters: context.parameters,
    maxRate: context.option('max-rate'),
  });
  const journal = SittingJournal.open<LatencyUnit>(context.outDir, key, plan.resume, plan.budgetMinutes, plan.earlierSittings, 'sitting-journal-latency');
  const ph: Phase = {
    context,
    plan,
    rounds: new Rounds<LatencyUnit>(journal, plan.budgetMinutes),
    lines: [],
    guideOf,
    base: (relay) => ({ ...context.parameters, ...relay.parameters }),
    run: plan.run ?? ((relay, name, p, heapMb) => runRelay(context, relay, name, p, heapMb)),
    windowed: async (at, measure) => {
      const { value, window } = await (plan.inWindow ?? inWindow)(at, measure);
      return { ...value, window };
    },
  };
  const searches = plan.maxima ? await searchRounds(ph) : [];
  const maxOf = (relay: Relay): number => {
    const search = searches.find((s) => s.relay === relay);
    // A relay with no maximum yet, measured at the common rate only, is sized as one that sustains it with room.
    return search?.next.done ? search.next.value : (guideOf(relay) ?? (sizedByMaximum ? 0 : UNMEASURED_MAX));
  };
  const heapUnits = plan.maxima && !ph.rounds.incomplete ? await heapRound(ph, maxOf) : new Map<string, LatencyUnit[]>();
  const heapOf = (relay: Relay): number | undefined => {
    if (!relay.driver.heap) return undefined;
    const checks = heapUnits.get(relay.name);
    if (checks) return checks.find((u) => u.passed)?.heapMb;
    return earlierResultOf(previous, relay)?.heapMb ?? relay.driver.heap.mb;
  };
  const pointUnits = plan.latency && !ph.rounds.incomplete ? await latencyRounds(ph, maxOf, heapOf) : [];
  const units = [...searches.flatMap((s) => s.units), ...[...heapUnits.values()].flat(), ...pointUnits];
  const comparison = comparisonOf(ph, searches, units);
  const reconfigured = new Set(relays.filter((r) => previous.some((p) => p.name === r.name) && !earlierResultOf(previous, r)).map((r) => r.name));
  if (ph.rounds.incomplete) {
    // A stopped sitting publishes its windows but no relay's results: its journal resumes them.
    return { results: [], runs: [], comparison, reconfigured, lines: [...ph.lines, ph.rounds.incomplete], failed: [], afterWrite: () => {} };
  }
  const results = relays.map((relay) => {
    const search = searches.find((s) => s.relay === relay);
    const checks = heapUnits.get(relay.name);
    const heapMb = heapOf(relay);
    return resultOf(ph, relay, { ...(search ? { search } : {}), max: search?.next.done || guideOf(relay) !== undefined ? maxOf(relay) : 0, sizing: maxOf(relay), ...(checks ? { heapChecks: checks } : {}), ...(heapMb === undefined ? {} : { heapMb }), units, pointUnits });
  });
  return {
    results,
    runs: pointUnits.flatMap((u) => (u.summary ? [u.summary] : [])),
    comparison,
    reconfigured,
    lines: ph.lines,
    failed: ph.lines.filter((l) => l.includes('FAILED')),
    afterWrite: () => journal.finish(),
  };
}
