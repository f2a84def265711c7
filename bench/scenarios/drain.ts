/**
 * What one relay process and one consumer process can carry, each alone.
 *
 * Relay-only drain: a backlog (1,000,000 events by default, 1,000 per
 * transaction) is written while no relay runs (the CDC slot exists before
 * the first write), then the relay process is spawned and the run times,
 * from Kafka's end offsets, how fast the events arrive. Rate and CPU come
 * from the part between 10% and 90% of the backlog, CPU split by process
 * (relay, PostgreSQL with its walsender, Kafka) and, for the relay, between
 * its JavaScript thread and its other threads: the JavaScript thread is
 * what one process cannot scale past.
 *
 * Consumer-only drain: the filled topic is then applied by the consumer
 * (inbox + ledger) from the beginning, timed the same way.
 *
 * `--profile` adds one more drain per relay and client, run under
 * `node --cpu-prof`: its profiles' top frames by self time go into the
 * summary, and its figures into none (the profiler costs CPU of its own).
 */
import { CONSUMER_KAFKA_CLIENTS, KAFKA_CLIENTS, type ConsumerKafkaClientName, type KafkaClientName } from '../../src/config.js';
import { describeError, OutboxBenchError } from '../../src/errors.js';
import { MIN_WINDOW_READINGS, SAMPLE_MS } from '../harness/drain-figures.js';
import { medianWithRange } from '../report/format.js';
import { leastSquares, median } from '../harness/stats.js';
import { profileTable } from '../harness/profile.js';
import { current, f, groupBy, type ReportContext } from '../report/kit.js';
import { yes, type FlagReader, type Scenario } from '../scenario.js';
import { modeFlag, oneOf, parsedBy } from '../scenario-flags.js';
import { SITTING_BUDGET_MINUTES, type SittingRecord } from '../harness/sitting.js';
import { rethrowIfStopping } from '../harness/running.js';
import { clientsFor, DEFAULT_STRATEGIES, drainOnce, parseStrategy, type DrainRun, type FailedDrainRun } from './drain/drain-once.js';
import { anchorOf, anchorRatios, backlogsOf, DEFAULT_ANCHOR, drainRounds, sittingLines, sittingReport, summaryLines, type RelayRatios } from './drain/rounds.js';

export { parseStrategy, type ConsumerDrain, type DrainRun, type FailedDrainRun } from './drain/drain-once.js';

/** What the drain scenario writes into its summary's `extra`. */
export interface DrainResult {
  /** The backlog of every relay not given one of its own. */
  events: number;
  /** Relays given a backlog of their own (`--backlog-for`), by name. */
  backlogs?: Record<string, number>;
  /** The relay every other is compared to, round by round; absent in older results. */
  anchor?: string;
  /** Each relay's ratios to the anchor (derived from the runs, stored so that prose can quote them). */
  ratios?: RelayRatios[];
  /** The sittings the runs were measured in (a resumed comparison has several); absent in older results. */
  sittings?: SittingRecord[];
  /** Why the comparison is not complete (it stopped at its sitting budget), if it is not. */
  incomplete?: string;
  sampleMs?: number;
  minWindowReadings?: number;
  runs: DrainRun[];
  profiled?: DrainRun[];
  failed?: FailedDrainRun[];
}

/**
 * Relay-only and consumer-only drains: what one process of each carries.
 * `results/drain-<name>/` holds further drain runs (another client set, say),
 * each shown under its own heading with the command that made it.
 */
function report(context: ReportContext, name: string): string[] {
  const summary = current<DrainResult>(context, name);
  const extra = summary?.extra;
  if (!summary || !extra || extra.runs.length === 0) return [];
  const relays = groupBy(extra.runs, (run) => `${run.strategy} | ${run.kafkaClient}`);
  const consumers = groupBy(
    extra.runs.flatMap((run) => run.consumers.map((c) => ({ strategy: run.strategy, ...c }))),
    (c) => `${c.strategy} | ${c.client}`,
  );
  const med = (values: readonly (number | null | undefined)[]) => medianWithRange(values, f);
  const repeats = Math.max(...[...relays.values()].map((g) => g.length));
  // Results older than the memory reading have none to show.
  const withRss = extra.runs.some((run) => run.relayPeakRssMiB !== undefined);
  return [
    name === 'drain' ? '## What one relay process and one consumer process carry' : `## Drain: \`${name}\``,
    '',
    `Command: \`${summary.command}\` at ${summary.environment.gitCommit?.slice(0, 7) ?? 'an unknown commit'}.`,
    '',
    ...(extra.incomplete ? [`> **Incomplete**: ${extra.incomplete}.`, ''] : []),
    `Relay-only drain: ${extra.events.toLocaleString('en-US')} events${backlogNote(extra.backlogs)} written 1,000 per transaction while no relay ran (the CDC slot existed first), ` +
      `then the relay process was spawned and Kafka's end offsets were read every ${extra.sampleMs ?? 100} ms. Rate and CPU from 10% to 90% of the events ` +
      `(n/a when that window held fewer than ${extra.minWindowReadings ?? 2} readings: too short to measure); ` +
      "CPU per process (PostgreSQL includes the walsender), and the relay's JavaScript thread apart (every replica's, for SKIP LOCKED): " +
      `what one process cannot scale past. Median of ${repeats} runs, the range in brackets.`,
    '',
    `| relay | Kafka client | events/s | relay CPU s / 1M | relay JS thread µs / event | PostgreSQL CPU s / 1M | Kafka CPU s / 1M |${withRss ? ' relay peak RSS (MiB) |' : ''} first event after (s) | missing |`,
    `|---|---|---:|---:|---:|---:|---:|${withRss ? '---:|' : ''}---:|---:|`,
    ...[...relays].map(([key, runs]) => {
      const [strategy = '', client] = key.split(' | ');
      const r = runs.map((run) => run.relay);
      const { driver } = parseStrategy(strategy);
      // A JVM's main thread is not where its work runs, and such a relay publishes with a client of its own.
      const jsThread = driver.runtime === 'node' ? med(r.map((x) => x.jsThreadUsPerEvent)) : 'n/a (JVM)';
      return (
        `| ${strategy} | ${driver.usesOurKafkaClient ? client : 'its own'} | ${med(r.map((x) => x.eventsPerSec))} | ${med(r.map((x) => x.cpuSecondsPerMillion.relay))} | ${jsThread} | ` +
        `${med(r.map((x) => x.cpuSecondsPerMillion.postgres))} | ${med(r.map((x) => x.cpuSecondsPerMillion.kafka))} | ${withRss ? `${med(runs.map((run) => run.relayPeakRssMiB))} | ` : ''}${med(r.map((x) => x.timeToFirstEventS))} | ${r.map((x) => x.missing).join(' / ')} |`
      );
    }),
    '',
    ...sittingReport(extra),
    ...scaleOutLines(extra.runs),
    'Consumer-only drain: the consumer process applied the filled topic (of the first relay client\'s runs) from the beginning into inbox and ledger, ' +
      'one inbox transaction per Kafka batch, timed the same way from the inbox side. It records no latency (a backlog has none worth reporting), ' +
      'so its CPU is the consumer\'s and its bookkeeping\'s only.',
    '',
    '| relay (its topic) | consumer Kafka client | events/s | consumer CPU s / 1M | consumer JS thread µs / event | PostgreSQL CPU s / 1M | Kafka CPU s / 1M | missing |',
    '|---|---|---:|---:|---:|---:|---:|---:|',
    ...[...consumers].map(([key, drains]) => {
      const [strategy, client] = key.split(' | ');
      const d = drains.map((x) => x.figures);
      return (
        `| ${strategy} | ${client} | ${med(d.map((x) => x.eventsPerSec))} | ${med(d.map((x) => x.cpuSecondsPerMillion.consumer))} | ${med(d.map((x) => x.jsThreadUsPerEvent))} | ` +
        `${med(d.map((x) => x.cpuSecondsPerMillion.postgres))} | ${med(d.map((x) => x.cpuSecondsPerMillion.kafka))} | ${d.map((x) => x.missing).join(' / ')} |`
      );
    }),
    '',
    ...profileLines(extra.profiled ?? []),
  ];
}

/** The relays that drained a backlog of their own, for the report's first sentence. */
function backlogNote(backlogs: Record<string, number> | undefined): string {
  const own = Object.entries(backlogs ?? {});
  return own.length === 0 ? '' : ` (${own.map(([name, events]) => `${name}: ${events.toLocaleString('en-US')}`).join(', ')})`;
}

/**
 * For a mode drained with several process counts (`cdc-sharded:1,2,4`): the
 * cost model. Per count, the medians; then the least-squares line of
 * PostgreSQL's CPU per event over the count: what each added process (for
 * CDC, each slot with its walsender) costs the database.
 */
function scaleOutLines(runs: readonly DrainRun[]): string[] {
  // Our modes only: another relay runs as many processes as it runs.
  const byMode = groupBy(
    runs.filter((run) => parseStrategy(run.strategy).relayMode !== undefined),
    (run) => parseStrategy(run.strategy).relayMode!,
  );
  return [...byMode].flatMap(([mode, modeRuns]) => {
    const byCount = [...groupBy(modeRuns, (run) => String(parseStrategy(run.strategy).replicas))].map(([count, group]) => ({
      n: Number(count),
      eventsPerSec: median(group.map((r) => r.relay.eventsPerSec)),
      relay: median(group.map((r) => r.relay.cpuSecondsPerMillion.relay)),
      js: median(group.map((r) => r.relay.jsThreadUsPerEvent)),
      postgres: median(group.map((r) => r.relay.cpuSecondsPerMillion.postgres)),
    }));
    if (byCount.length < 2) return [];
    byCount.sort((a, b) => a.n - b.n);
    const points = byCount.flatMap((c) => (c.postgres === undefined ? [] : [{ x: c.n, y: c.postgres }]));
    const fit = leastSquares(points);
    return [
      `How \`${mode}\` scales with its processes (medians of the runs above). A process's JavaScript thread spends the µs per event shown on each of its own events, ` +
        'so 1M ÷ that is what one process carries at most; PostgreSQL\'s CPU per event is fitted to a line over the process count.',
      '',
      '| processes | events/s | events/s per process | relay CPU s / 1M (all processes) | JS thread µs / event | one process at most, events/s | PostgreSQL CPU s / 1M |',
      '|---:|---:|---:|---:|---:|---:|---:|',
      ...byCount.map(
        (c) =>
          `| ${c.n} | ${f(c.eventsPerSec)} | ${f(c.eventsPerSec === undefined ? undefined : c.eventsPerSec / c.n)} | ${f(c.relay)} | ${f(c.js)} | ${f(c.js ? 1e6 / c.js : undefined)} | ${f(c.postgres)} |`,
      ),
      '',
      ...(fit
        ? [`PostgreSQL CPU s per million events ≈ ${f(fit.intercept)} + ${f(fit.slope)} × processes (least squares over ${points.length} counts): each added process costs the database about ${f(fit.slope)} CPU s per million events.`, '']
        : []),
    ];
  });
}

/** The top frames of the profiled run of each relay and client (a run of its own, outside the figures). */
function profileLines(runs: readonly DrainRun[]): string[] {
  return runs.flatMap((run) => [
    ...(run.relayProfile ? profileTable(`CPU profile of the ${run.strategy} relay on ${run.kafkaClient}`, run.relayProfile, f) : []),
    ...run.consumers.flatMap((c) => (c.profile ? profileTable(`CPU profile of the consumer on ${c.client} (${run.strategy} topic)`, c.profile, f) : [])),
  ]);
}

/** What --anchor, --mode, --backlog and --backlog-for ask for, checked together. */
function drainPlan(flags: FlagReader) {
  const anchor = anchorOf(flags.list('anchor', [DEFAULT_ANCHOR]));
  const named = flags.list('mode', DEFAULT_STRATEGIES);
  // The anchor first in every round, drained whether or not --mode names it.
  const order = anchor === undefined ? named : [anchor, ...named.filter((n) => n !== anchor)];
  const backlog = flags.option('backlog');
  return { anchor, order, backlog, backlogs: backlogsOf(flags.list('backlog-for', []), order, backlog) };
}

export const drain: Scenario = {
  name: 'drain',
  takesWorkload: true,
  description: 'relay-only drain of a pre-written backlog per relay and Kafka client, then a consumer-only drain of the topic',
  defaults: { partitions: 6, batchSize: 1_000, workers: 1, connectionsPerWorker: 8 },
  flags: {
    backlog: { description: 'events in each backlog (a multiple of 1,000: written 1,000 per transaction)', defaultValue: 1_000_000, min: 10_000, max: 20_000_000, formerly: ['drain-events'] },
    profile: { kind: 'yes-no', description: 'one more drain per relay and client under node --cpu-prof, for profiles only (not in the figures)', defaultValue: false },
    mode: modeFlag('relay modes to drain (a mode that runs several processes takes a count, as in cdc-sharded:4), or other relays by their driver names (ptp-replication, debezium-latency, ...)', DEFAULT_STRATEGIES.join(','), parsedBy(parseStrategy)),
    anchor: { kind: 'list', description: 'the relay every other is compared to: drained first in every round (added when --mode leaves it out), the others published as ratios to it; none for no anchor', defaultText: DEFAULT_ANCHOR },
    'backlog-for': { kind: 'list', description: 'a backlog of its own for a relay, as name=events (ptp-polling=20000): one far slower than the rest drains fewer events', defaultText: 'none' },
    'consumer-drain': { kind: 'yes-no', description: "after each relay's first client, the consumer-only drain of its topic", defaultValue: true },
    resume: { kind: 'yes-no', description: 'go on with the comparison stopped in this folder, in a new sitting (its completed rounds are kept; one stopped halfway is measured again)', defaultValue: false },
    'sitting-minutes': { description: 'a sitting ends before a round that would take it past this many minutes (resume it with --resume)', defaultValue: SITTING_BUDGET_MINUTES, min: 1, max: 1_440 },
    clients: { kind: 'list', description: 'relay Kafka clients to compare', defaultText: 'the --kafka-client', check: oneOf(KAFKA_CLIENTS) },
    'consumer-clients': { kind: 'list', description: "consumer Kafka clients to compare (on the first relay client's topics)", defaultText: 'the --consumer-kafka-client', check: oneOf(CONSUMER_KAFKA_CLIENTS) },
  },
  checkFlags: (flags) => void drainPlan(flags),
  async run(context) {
    const { anchor, order, backlog, backlogs } = drainPlan(context);
    const strategies = order.map(parseStrategy);
    const clients = context.list('clients', [context.parameters.kafkaClient ?? context.config.kafkaClient]) as KafkaClientName[];
    const consumerClients = yes(context, 'consumer-drain')
      ? (context.list('consumer-clients', [context.parameters.consumerKafkaClient ?? context.config.consumerKafkaClient]) as ConsumerKafkaClientName[])
      : [];
    const measured = await drainRounds(context, {
      strategies,
      clients,
      consumerClients,
      backlogs,
      backlog,
      rounds: context.repeats,
      resume: yes(context, 'resume'),
      budgetMinutes: context.option('sitting-minutes'),
      label: 'drain',
    });
    const { runs, failed, incomplete } = measured;
    const lines = [...measured.lines];
    const profiled: DrainRun[] = [];
    // The profiled runs come after a complete comparison only: a resumed one would profile twice.
    if (yes(context, 'profile') && incomplete === undefined) {
      for (const strategy of strategies) {
        for (const client of clientsFor(strategy, clients)) {
          try {
            profiled.push(await drainOnce(context, strategy, client, client === clients[0] ? consumerClients : [], context.repeats, true, backlogs.get(strategy.name) ?? backlog));
          } catch (error) {
            rethrowIfStopping(error);
            lines.push(`${strategy.name} on ${client}, profiled run: FAILED: ${describeError(error)}`);
          }
        }
      }
    }
    lines.push(...summaryLines(runs, strategies, clients, consumerClients), ...sittingLines(runs, anchor));
    if (incomplete !== undefined) lines.push(incomplete);
    if (failed.length > 0 && runs.length === 0) throw new OutboxBenchError('CHECK_FAILED', `every drain failed: ${failed.map((f) => f.error).join('; ')}`);
    const extra: DrainResult = {
      events: context.option('backlog'),
      ...(backlogs.size > 0 ? { backlogs: Object.fromEntries(backlogs) } : {}),
      sampleMs: SAMPLE_MS,
      minWindowReadings: MIN_WINDOW_READINGS,
      ...(anchor === undefined ? {} : { anchor, ratios: anchorRatios(runs, anchor) }),
      sittings: measured.sittings,
      ...(incomplete === undefined ? {} : { incomplete }),
      runs,
      profiled,
      failed,
    };
    return { title: 'Relay-only and consumer-only drains', runs: [], extra, lines, afterWrite: measured.afterWrite };
  },
  report,
};
