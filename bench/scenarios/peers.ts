/**
 * Our relays and the established ones on the same machine, the same outbox
 * rows (Debezium reads our table; pg-transactional-outbox gets an equivalent
 * table of its own), the same load, the same consumer, clock and CPU
 * accounting. A sitting has two phases (`--phases`, both by default):
 *
 *  drains: every relay's relay-only drain, timed by Kafka's end offsets as
 *    the drain scenario times ours, interleaved round by round (`--repeats`
 *    rounds) with the anchor, our CDC relay, first in every round; each
 *    drain between two settled CPU probes, with the CPU the hypervisor
 *    stole. Published as each relay's ratio to the anchor of its round.
 *    Resumable (`--resume`) round by round; a sitting stops before a round
 *    that would take it past `--sitting-minutes`.
 *  maxima: every relay's sustained maximum M (the saturation search, 30 s
 *    steps, confirmed), the searches stepped round-robin with the anchor's,
 *    one step of each per round; then, for Debezium, the smallest heap of
 *    256, 512 and 1,024 MiB that sustains M (the rest of its runs use it);
 *  latency: `--repeats` rounds (default 3), each running every relay's
 *    latency points in turn, the anchor first: a common 1,000 events/s (not
 *    run when M is below it) and 50% and 80% of M (`--points`).
 *    Every run is preceded by a prewarm of at least 60 s at min(1,000, M/2)
 *    events/s (a search step: half its own rate), in the same run, so that a
 *    JVM's class loading and JIT are over before anything is measured.
 *  Maxima and latency are published as each relay's ratio to the anchor of
 *  its own sitting (and round), every run between two settled probes;
 *  resumable round by round like the drains.
 *
 * A relay's results replace its earlier ones in the folder's summary, so the
 * comparison can be measured one relay at a time (`--mode`); each keeps the
 * commit and date it was measured at.
 */
import { OutboxBenchError } from '../../src/errors.js';
import { DEBEZIUM_VERSION } from '../drivers/debezium.js';
import { PTP_VERSION } from '../drivers/ptp.js';
import { dropRelaySlots } from '../drivers/slots.js';
import type { RunSummary } from '../harness/summary.js';
import type { FlagReader, Scenario } from '../scenario.js';
import type { PipelineParameters } from '../harness/pipeline.js';
import type { KafkaClientName } from '../../src/config.js';
import { SITTING_BUDGET_MINUTES } from '../harness/sitting.js';
import { yes, type ScenarioContext } from '../scenario.js';
import { oneOf } from '../scenario-flags.js';
import { parseStrategy } from './drain/drain-once.js';
import { anchorRatios, drainRounds, sittingLines, summaryLines } from './drain/rounds.js';
import { anchoredRelays } from './peers/measure.js';
import { anchorRelay, drainNameOf, selectRelays, type Relay } from './peers/relays.js';
import { latencyLines } from './peers/latency-report.js';
import { peersReport } from './peers/report.js';
import { latencyRatios, mergeDrains, mergeLatency, mergePeers, mergeRuns, previousResults, type DrainComparison, type PeerResult, type PeersResult } from './peers/results.js';
import { COMMON_RATE, drainBacklogFor, MAX_BACKLOG, POINT_LABELS } from './peers/sizing.js';
import { subjectsForWorkload } from '../harness/load.js';

export { PEER_RELAY_KEYS, selectRelays, type Relay } from './peers/relays.js';
export { hostNote } from './peers/report.js';
export { chartedMaximum, lowestFailed, mergeDrains, mergePeers, type DrainComparison, type DrainRun, type PeerPoint, type PeerResult, type PeersResult, type PointRun } from './peers/results.js';
export { drainBacklogFor, prewarmFor } from './peers/sizing.js';

// Rationale: 30 s steps hold 30 lag readings a second apart for the slope
// test even at a peer's lowest rates, and keep a search near 15 minutes.
const MIN_STEP_S = 30;

const PHASES = ['drains', 'maxima', 'latency'] as const;

/** The drain phase: every relay's relay-only drain, the anchor first in every round. */
async function measureDrains(
  context: ScenarioContext,
  relays: readonly Relay[],
  previous: readonly PeerResult[],
  previousDrains: DrainComparison | undefined,
): Promise<{ comparison: DrainComparison; failed: string[]; lines: string[]; afterWrite(): void }> {
  const anchor = anchorRelay();
  const drained = [anchor, ...relays.filter((r) => r.key !== anchor.key)];
  const drainNames = Object.fromEntries(drained.map((r) => [r.name, drainNameOf(r)]));
  // Each relay's backlog from its own maximum (the latency phase's, as published), whole transactions of 1,000.
  const backlogs = new Map(drained.map((r) => [drainNameOf(r), drainBacklogFor(previous.find((p) => p.name === r.name)?.sustainedRate)]));
  const client = (context.parameters.kafkaClient ?? context.config.kafkaClient) as KafkaClientName;
  const strategies = drained.map((r) => parseStrategy(drainNameOf(r)));
  const measured = await drainRounds(context, {
    strategies,
    clients: [client],
    consumerClients: [],
    backlogs,
    backlog: MAX_BACKLOG,
    rounds: context.repeats,
    resume: yes(context, 'resume'),
    budgetMinutes: context.option('sitting-minutes'),
    earlierSittings: Math.max(0, ...(previousDrains?.sittings ?? []).map((s) => s.sitting)),
    label: 'peers drains',
  });
  return {
    comparison: {
      anchor: drainNameOf(anchor),
      drainNames,
      backlogs: Object.fromEntries(backlogs),
      settings: Object.fromEntries(drained.map((r) => [r.name, r.settings])),
      sittings: measured.sittings,
      runs: measured.runs,
      ...(measured.incomplete ? { incomplete: measured.incomplete } : {}),
    },
    failed: measured.failed.map((f) => `drain of ${f.strategy}, round ${f.attempt}: ${f.error}`),
    lines: [...measured.lines, ...summaryLines(measured.runs, strategies, [client], []), ...sittingLines(measured.runs, drainNameOf(anchor)), ...(measured.incomplete ? [measured.incomplete] : [])],
    afterWrite: measured.afterWrite,
  };
}

/** --duration-s long enough for a step's slope test, and --mode naming relays that exist. */
function checkFlags(flags: FlagReader, parameters: PipelineParameters): void {
  if (parameters.durationS < MIN_STEP_S) throw new OutboxBenchError('USAGE', `peers: every measured window is at least ${MIN_STEP_S} s (--duration-s ${parameters.durationS} given)`);
  selectRelays(flags.list('mode', []));
}

export const peers: Scenario = {
  name: 'peers',
  takesWorkload: true,
  description: 'our relays vs Debezium (throughput and latency profiles) and pg-transactional-outbox (polling, replication), warm and repeated, on the same load',
  standalone: true,
  // Rationale: ten orders per transaction, as in the saturation search, so a
  // relay's maximum is measured rather than the write path's at one order per
  // commit; 30 s steps hold 30 lag readings a second apart for the slope test
  // even at a peer's lowest rates, and keep a search near 15 minutes.
  defaults: { ordersPerTransaction: 10, warmupS: 5, durationS: MIN_STEP_S, drainTimeoutS: 30 },
  flags: {
    'max-rate': { description: 'highest rate the sustained search tries, events/s', defaultValue: 100_000, min: 100, max: 1_000_000, formerly: ['peer-max-rate'] },
    mode: { kind: 'list', description: 'relays to measure: ours, the peers, or the families ours, debezium, ptp; they merge into results/peers/', defaultText: 'the default set', formerly: ['strategies'] },
    phases: {
      kind: 'list',
      description: "what to measure, each interleaved with the anchor (ours: cdc): drains (every relay's relay-only drain), maxima (each relay's sustained maximum, searches stepped round-robin), latency (each relay's latency points)",
      defaultText: PHASES.join(','),
      check: oneOf(PHASES),
    },
    points: { kind: 'list', description: "the latency phase's points: common (1,000 events/s), half and eighty (50% and 80% of each relay's maximum)", defaultText: POINT_LABELS.join(','), check: oneOf(POINT_LABELS) },
    resume: { kind: 'yes-no', description: 'go on with the sitting stopped in results/peers/, in a new sitting (completed rounds are kept; one stopped halfway is measured again)', defaultValue: false },
    'sitting-minutes': { description: 'a sitting stops before a round that would take it past this many minutes (resume it with --resume)', defaultValue: SITTING_BUDGET_MINUTES, min: 1, max: 1_440 },
  },
  checkFlags,
  async run(context) {
    checkFlags(context, context.parameters);
    const phases = context.list('phases', [...PHASES]);
    const points = context.list('points', [...POINT_LABELS]) as (typeof POINT_LABELS)[number][];
    const relays = subjectsForWorkload(selectRelays(context.list('mode', [])), context.parameters.workload, anchorRelay());
    const previous = previousResults(context.outDir);
    const started = Date.now();
    const budgetMinutes = context.option('sitting-minutes');
    let fresh: PeerResult[] = [];
    // Runs of earlier sittings stay until this one measures them again.
    let runs: RunSummary[] = previous.runs;
    const failed: string[] = [];
    const lines: string[] = [`peers: Debezium ${DEBEZIUM_VERSION}; pg-transactional-outbox ${PTP_VERSION}; ${context.repeats} repeats; ${phases.join(', ')}`];
    let drains = previous.drains;
    let latency = previous.latency;
    const afterWrites: (() => void)[] = [];
    if (phases.includes('drains')) {
      const measured = await measureDrains(context, relays, previous.peers, previous.drains);
      const merged = mergeDrains(previous.drains, measured.comparison);
      drains = { ...merged, ratios: anchorRatios(merged.runs, merged.anchor) };
      failed.push(...measured.failed);
      lines.push(...measured.lines);
      afterWrites.push(measured.afterWrite);
    }
    // A sitting out of time stops here: the other phases would take it hours past its budget.
    const outOfTime = drains?.incomplete !== undefined && phases.includes('drains');
    const anchored = phases.includes('maxima') || phases.includes('latency');
    if (outOfTime && anchored) lines.push('the maxima and latency phases were not run: the drains stopped at the sitting budget (resume them with --resume)');
    if (anchored && !outOfTime) {
      const anchor = anchorRelay();
      const measured = await anchoredRelays(context, {
        relays: [anchor, ...relays.filter((r) => r.key !== anchor.key)],
        maxima: phases.includes('maxima'),
        latency: phases.includes('latency'),
        points,
        rounds: context.repeats,
        resume: yes(context, 'resume'),
        // What the drains took of this sitting is not the latency's to spend again.
        budgetMinutes: Math.max(1, Math.floor(budgetMinutes - (Date.now() - started) / 60_000)),
        earlierSittings: Math.max(0, ...(previous.latency?.sittings ?? []).map((s) => s.sitting)),
        previous: previous.peers,
      });
      const merged = mergeLatency(previous.latency, measured.comparison, measured.reconfigured);
      latency = { ...merged, ratios: latencyRatios(merged) };
      fresh = measured.results;
      runs = mergeRuns(previous.runs, measured.runs, measured.reconfigured);
      failed.push(...measured.failed);
      lines.push(...measured.lines, ...latencyLines(latency));
      afterWrites.push(measured.afterWrite);
    }
    await dropRelaySlots(context.infra.databaseUrl);
    return {
      title: 'Our relays and their peers on the same workload, warm and repeated',
      runs,
      extra: {
        version: 2,
        peers: mergePeers(previous.peers, fresh),
        ...(drains ? { drains } : {}),
        ...(latency ? { latency } : {}),
        debezium: DEBEZIUM_VERSION,
        ptp: PTP_VERSION,
        commonRate: COMMON_RATE,
      } satisfies PeersResult,
      lines,
      failed,
      afterWrite: () => {
        for (const after of afterWrites) after();
      },
    };
  },
  report: peersReport,
};
