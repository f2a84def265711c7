/**
 * Drains as a comparison: every relay drained once per round, interleaved
 * (A B C A B C), each between two settled CPU probes with the CPU the
 * hypervisor stole meanwhile, the anchor first in every round; rounds kept
 * in a journal, so a sitting stopped (or out of time) resumes in a new one.
 * The drain scenario and the peers comparison both measure their drains so.
 */
import type { ConsumerKafkaClientName, KafkaClientName } from '../../../src/config.js';
import { describeError, OutboxBenchError } from '../../../src/errors.js';
import { ratiosToAnchor, SittingJournal, sittingNoise, type AnchorRatio, type SittingNoise, type SittingRecord, type SittingWindow } from '../../harness/sitting.js';
import { rethrowIfStopping } from '../../harness/running.js';
import { medianWithRange } from '../../report/format.js';
import type { ScenarioContext } from '../../scenario.js';
import { clientsFor, drainOnce, parseStrategy, type DrainRun, type FailedDrainRun, type Strategy } from './drain-once.js';

// Rationale: our CDC relay anchors every comparison: the relay this project
// recommends, so every sitting measures it anyway, and one whose drain lasts
// seconds, so it costs a round little.
export const DEFAULT_ANCHOR = 'cdc';

/** A round's outcome for one relay and client: its run, or why it failed. */
export interface RoundUnit {
  run?: DrainRun;
  failed?: FailedDrainRun;
}

/** The anchor named by --anchor, or none (`--anchor none`). */
export function anchorOf(named: readonly string[]): string | undefined {
  if (named.length !== 1) throw new OutboxBenchError('USAGE', `--anchor: name one relay (or none), not ${named.join(', ')}`);
  const [anchor] = named as [string];
  if (anchor === 'none') return undefined;
  parseStrategy(anchor);
  return anchor;
}

/** `--backlog-for name=events`: relays with a backlog of their own, each one of the relays drained and a whole number of transactions. */
export function backlogsOf(items: readonly string[], drained: readonly string[], fallback: number): Map<string, number> {
  const backlogs = new Map<string, number>();
  for (const item of items) {
    const [name = '', count = ''] = item.split('=');
    if (!drained.includes(name)) throw new OutboxBenchError('USAGE', `--backlog-for: "${name}" is not among the relays drained (${drained.join(', ')})`);
    const events = Number(count);
    if (!Number.isInteger(events) || events < 10_000 || events % 1_000 !== 0) {
      throw new OutboxBenchError('USAGE', `--backlog-for ${item}: give a whole number of events from 10,000 up, a multiple of 1,000 (written 1,000 per transaction)`);
    }
    if (events !== fallback) backlogs.set(name, events);
  }
  return backlogs;
}

/** One line per relay and client (and per consumer client): medians with their ranges. */
export function summaryLines(runs: readonly DrainRun[], strategies: readonly { name: string }[], clients: readonly string[], consumerClients: readonly string[]): string[] {
  return strategies.flatMap(({ name }) =>
    clients.flatMap((client) => {
      const repeated = runs.filter((r) => r.strategy === name && r.kafkaClient === client);
      if (repeated.length === 0) return [];
      return [
        `${name} relay on ${client}: ${medianWithRange(repeated.map((r) => r.relay.eventsPerSec))} events/s, CPU s/1M ${medianWithRange(repeated.map((r) => r.relay.cpuSecondsPerMillion.relay))}, ` +
          `JS thread µs/event ${medianWithRange(repeated.map((r) => r.relay.jsThreadUsPerEvent))}, PostgreSQL ${medianWithRange(repeated.map((r) => r.relay.cpuSecondsPerMillion.postgres))}, ` +
          `Kafka ${medianWithRange(repeated.map((r) => r.relay.cpuSecondsPerMillion.kafka))}, peak RSS ${medianWithRange(repeated.map((r) => r.relayPeakRssMiB))} MiB; missing ${repeated.map((r) => r.relay.missing).join('/')}`,
        ...consumerClients.flatMap((consumerClient) => {
          const drains = repeated.flatMap((r) => r.consumers.filter((c) => c.client === consumerClient).map((c) => c.figures));
          if (drains.length === 0) return [];
          return [
            `${name} consumer on ${consumerClient}: ${medianWithRange(drains.map((d) => d.eventsPerSec))} events/s, CPU s/1M ${medianWithRange(drains.map((d) => d.cpuSecondsPerMillion.consumer))}, ` +
              `JS thread µs/event ${medianWithRange(drains.map((d) => d.jsThreadUsPerEvent))}, PostgreSQL ${medianWithRange(drains.map((d) => d.cpuSecondsPerMillion.postgres))}; missing ${drains.map((d) => d.missing).join('/')}`,
          ];
        }),
      ];
    }),
  );
}

/** The figures compared to the anchor, and how each is read from a run. */
const RATIO_FIGURES = {
  eventsPerSec: (run: DrainRun) => run.relay.eventsPerSec,
  relayCpuPerMillion: (run: DrainRun) => run.relay.cpuSecondsPerMillion.relay,
  relayPeakRss: (run: DrainRun) => run.relayPeakRssMiB,
} as const;

/** One figure's ratios to the anchor over the rounds: median (the lower middle), least and most. */
export interface RatioSpread {
  median: number | null;
  min: number | null;
  max: number | null;
}

/** A relay's drains against the anchor's, as the summary stores them (so prose can quote them). */
export interface RelayRatios {
  strategy: string;
  kafkaClient: string;
  /** Rounds that held a drain of both. */
  rounds: number;
  eventsPerSec: RatioSpread;
  relayCpuPerMillion: RatioSpread;
  relayPeakRss: RatioSpread;
}

const subjectOf = (run: DrainRun) => `${run.strategy} | ${run.kafkaClient}`;
// Rationale: three significant digits hold a ratio's spread between rounds
// (a few percent) with room to spare, for a peer at a hundredth of the anchor too.
const roundRatio = (x: number | null) => (x === null ? null : Number(x.toPrecision(3)));
const spreadOf = (r: AnchorRatio | undefined): RatioSpread => ({ median: roundRatio(r?.median ?? null), min: roundRatio(r?.min ?? null), max: roundRatio(r?.max ?? null) });

/**
 * Every relay's ratios to the anchor (its first Kafka client's drains), each
 * against the anchor of its own sitting and round; none without an anchor drained.
 */
export function anchorRatios(runs: readonly DrainRun[], anchor: string): RelayRatios[] {
  const anchorRun = runs.find((r) => r.strategy === anchor);
  if (!anchorRun) return [];
  const anchorKey = subjectOf(anchorRun);
  const byFigure = Object.fromEntries(
    Object.entries(RATIO_FIGURES).map(([figure, read]) => [figure, ratiosToAnchor(runs, anchorKey, subjectOf, (r) => r.window, read)]),
  ) as Record<keyof typeof RATIO_FIGURES, AnchorRatio[]>;
  const subjects = [...new Set(runs.map(subjectOf))].filter((s) => s !== anchorKey);
  return subjects.map((subject) => {
    const [strategy = '', kafkaClient = ''] = subject.split(' | ');
    const of = (figure: keyof typeof RATIO_FIGURES) => byFigure[figure].find((r) => r.subject === subject);
    return {
      strategy,
      kafkaClient,
      rounds: of('eventsPerSec')?.ratios.length ?? 0,
      eventsPerSec: spreadOf(of('eventsPerSec')),
      relayCpuPerMillion: spreadOf(of('relayCpuPerMillion')),
      relayPeakRss: spreadOf(of('relayPeakRss')),
    };
  });
}

/** A ratio as the report prints it: two decimals, or two significant digits below a tenth. */
export const ratioFigure = (x: number) => (x >= 0.1 ? x.toFixed(2) : x.toPrecision(2));
export const ratioText = (r: RatioSpread) => (r.median === null ? 'n/a' : `${ratioFigure(r.median)} [${ratioFigure(r.min!)}–${ratioFigure(r.max!)}]`);

/** A sitting's probes and steal as printed after a run (`of`: which comparison, where a folder holds several). */
export function noiseLine(n: SittingNoise, of?: string): string {
  return (
    `sitting ${n.sitting}${of ? ` (${of})` : ''}: CPU probe ${n.probeMin}–${n.probeMax} ns/op around its windows (moved ${n.movedPercent}%${n.noisy ? ': NOISY' : ''}), ` +
    `steal up to ${n.stealMaxPercent ?? 'n/a'}%${n.unsettledWindows > 0 ? `, ${n.unsettledWindows} window(s) measured before the probe settled` : ''}`
  );
}

/** Each sitting's probes and steal, and every relay's ratios to the anchor: the lines printed after a run. */
export function sittingLines(runs: readonly DrainRun[], anchor: string | undefined): string[] {
  const windows = runs.flatMap((r) => (r.window ? [r.window] : []));
  const noise = sittingNoise(windows).map((n) => noiseLine(n));
  if (anchor === undefined) return noise;
  return [
    ...noise,
    ...anchorRatios(runs, anchor).map(
      (r) =>
        `${r.strategy} on ${r.kafkaClient} / ${anchor}, per round: events/s ${ratioText(r.eventsPerSec)}, relay CPU s / 1M ${ratioText(r.relayCpuPerMillion)}, ` +
        `relay peak RSS ${ratioText(r.relayPeakRss)}`,
    ),
  ];
}

/**
 * The sittings the drains ran in (their probes and steal), and every relay
 * against the anchor, round by round: ratios carry from host to host.
 */
export function sittingReport(extra: { runs: readonly DrainRun[]; sittings?: readonly SittingRecord[] | undefined; anchor?: string | undefined }): string[] {
  const table = sittingTable(extra.runs.flatMap((r) => (r.window ? [r.window] : [])), extra.sittings ?? [], 'drains');
  if (table.length === 0) return [];
  const lines = [
    `The drains ran interleaved, every relay once per round${extra.anchor ? `, the anchor (${extra.anchor}) first` : ''}; the CPU probe was read before and after each drain until two readings agreed while the rest of the host was quiet, ` +
      "and the share of CPU time the hypervisor stole was read over each. A sitting whose probe moved by more than 10% is marked noisy.",
    '',
    ...table,
  ];
  const { anchor } = extra;
  if (anchor === undefined) return lines;
  const ratios = anchorRatios(extra.runs, anchor);
  if (ratios.length === 0) return lines;
  return [
    ...lines,
    `Each relay against the anchor, ${anchor}, in the same round of the same sitting (relay ÷ ${anchor}): median of the rounds, the range in brackets. ` +
      'Above 1 is faster for events/s, costlier for CPU and memory.',
    '',
    `| relay | Kafka client | rounds | events/s ÷ ${anchor} | relay CPU per event ÷ ${anchor} | relay peak RSS ÷ ${anchor} |`,
    '|---|---|---:|---:|---:|---:|',
    ...ratios.map((r) => {
      const { driver } = parseStrategy(r.strategy);
      return `| ${r.strategy} | ${driver.usesOurKafkaClient ? r.kafkaClient : 'its own'} | ${r.rounds} | ${ratioText(r.eventsPerSec)} | ${ratioText(r.relayCpuPerMillion)} | ${ratioText(r.relayPeakRss)} |`;
    }),
    '',
  ];
}

/** Each sitting of a comparison: when, where and on what code it ran, how far its probe moved, the most steal in one of its windows (`what`: its windows' name). */
export function sittingTable(windows: readonly SittingWindow[], sittings: readonly SittingRecord[], what: string): string[] {
  const noise = sittingNoise(windows);
  if (noise.length === 0) return [];
  const records = new Map(sittings.map((s) => [s.sitting, s]));
  return [
    `| sitting | started | commit | CPU | probe around the ${what} (ns/op) | moved | steal, most in one | ${what} measured before the probe settled |`,
    '|---:|---|---|---|---:|---:|---:|---:|',
    ...noise.map((n) => {
      const record = records.get(n.sitting);
      return (
        `| ${n.sitting} | ${record?.startedAt.slice(0, 16).replace('T', ' ') ?? '?'} | ${record?.commit.slice(0, 7) ?? '?'} | ${record?.cpuModel ?? '?'} | ${n.probeMin}–${n.probeMax} | ` +
        `${n.movedPercent}%${n.noisy ? ' (noisy)' : ''} | ${n.stealMaxPercent === null ? 'n/a' : `${n.stealMaxPercent}%`} | ${n.unsettledWindows} |`
      );
    }),
    '',
  ];
}

/** What a comparison of drains measures, and how long its sitting may last. */
export interface RoundsPlan {
  /** In the order each round drains them: the anchor first. */
  strategies: readonly Strategy[];
  clients: readonly KafkaClientName[];
  /** Consumer-only drains after each relay's first client (none: no consumer drain). */
  consumerClients: readonly ConsumerKafkaClientName[];
  /** Relays with a backlog of their own; the others drain `backlog`. */
  backlogs: ReadonlyMap<string, number>;
  backlog: number;
  rounds: number;
  resume: boolean;
  budgetMinutes: number;
  /** How many sittings the folder's results already hold: a new sitting counts on from there. */
  earlierSittings?: number;
  /** Progress lines start with it. */
  label: string;
}

export interface RoundsResult {
  runs: DrainRun[];
  failed: FailedDrainRun[];
  /** The sittings of this comparison (several when it was resumed). */
  sittings: SittingRecord[];
  /** Why the comparison stopped before its last round, if it did. */
  incomplete?: string;
  lines: string[];
  /** Call once the results are written: a complete comparison's journal goes then. */
  afterWrite(): void;
}

/** Drains every relay of the plan once per round, interleaved, between settled probes; resumable round by round. */
export async function drainRounds(context: ScenarioContext, plan: RoundsPlan): Promise<RoundsResult> {
  const { strategies, clients, consumerClients, backlogs } = plan;
  // What decides the runs: a resumed sitting must measure the same comparison with the same settings.
  const key = JSON.stringify({
    order: strategies.map((s) => s.name),
    backlog: plan.backlog,
    backlogs: [...backlogs].sort(([a], [b]) => a.localeCompare(b)),
    clients,
    consumerClients,
    rounds: plan.rounds,
    parameters: context.parameters,
  });
  const journal = SittingJournal.open<RoundUnit>(context.outDir, key, plan.resume, plan.budgetMinutes, plan.earlierSittings);
  const units: RoundUnit[] = [];
  const lines: string[] = [];
  let measuredHere = 0;
  let lastRoundMs = 0;
  let incomplete: string | undefined;
  for (let round = 1; round <= plan.rounds; round++) {
    const kept = journal.completed(round);
    if (kept) {
      units.push(...kept);
      continue;
    }
    // Every sitting measures a round at least: a resume always gets further.
    if (measuredHere > 0 && journal.wouldOverrun(lastRoundMs)) {
      incomplete = `stopped at the sitting's ${plan.budgetMinutes}-minute budget before round ${round} of ${plan.rounds}: run the same command with --resume to measure the rest in a new sitting`;
      break;
    }
    const roundStarted = Date.now();
    const roundUnits: RoundUnit[] = [];
    for (const strategy of strategies) {
      for (const [index, client] of clientsFor(strategy, clients).entries()) {
        // The consumer-only drains read the first relay client's topics: what
        // the consumer costs does not depend on which client wrote the records.
        const consumersHere = index === 0 ? consumerClients : [];
        if (!context.quiet) process.stderr.write(`${plan.label}: round ${round}/${plan.rounds} (sitting ${journal.sitting}): ${strategy.name} on ${client}\n`);
        try {
          const at = { sitting: journal.sitting, round };
          roundUnits.push({ run: await drainOnce(context, strategy, client, consumersHere, round - 1, false, backlogs.get(strategy.name) ?? plan.backlog, at) });
        } catch (error) {
          rethrowIfStopping(error);
          roundUnits.push({ failed: { strategy: strategy.name, kafkaClient: client, attempt: round, error: describeError(error) } });
          lines.push(`${strategy.name} on ${client}, round ${round}: FAILED: ${describeError(error)}`);
        }
      }
    }
    journal.record(round, roundUnits);
    units.push(...roundUnits);
    measuredHere += 1;
    lastRoundMs = Date.now() - roundStarted;
  }
  return {
    runs: units.flatMap((u) => (u.run ? [u.run] : [])),
    failed: units.flatMap((u) => (u.failed ? [u.failed] : [])),
    sittings: [...journal.sittings],
    ...(incomplete === undefined ? {} : { incomplete }),
    lines,
    // Only once the results are written: until then a stopped run can still resume.
    afterWrite: () => {
      if (incomplete === undefined) journal.finish();
    },
  };
}
