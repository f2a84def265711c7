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
import { yes, type Scenario } from '../scenario.js';
import { modeFlag, oneOf, parsedBy } from '../scenario-flags.js';
import { DEFAULT_STRATEGIES, drainOnce, parseStrategy, type DrainRun, type FailedDrainRun } from './drain/drain-once.js';

export { parseStrategy, type ConsumerDrain, type DrainRun, type FailedDrainRun } from './drain/drain-once.js';

/** What the drain scenario writes into its summary's `extra`. */
export interface DrainResult {
  events: number;
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
  return [
    name === 'drain' ? '## What one relay process and one consumer process carry' : `## Drain: \`${name}\``,
    '',
    `Command: \`${summary.command}\` at ${summary.environment.gitCommit?.slice(0, 7) ?? 'an unknown commit'}.`,
    '',
    `Relay-only drain: ${extra.events.toLocaleString('en-US')} events written 1,000 per transaction while no relay ran (the CDC slot existed first), ` +
      `then the relay process was spawned and Kafka's end offsets were read every ${extra.sampleMs ?? 100} ms. Rate and CPU from 10% to 90% of the events ` +
      `(n/a when that window held fewer than ${extra.minWindowReadings ?? 2} readings: too short to measure); ` +
      "CPU per process (PostgreSQL includes the walsender), and the relay's JavaScript thread apart (every replica's, for SKIP LOCKED): " +
      `what one process cannot scale past. Median of ${repeats} runs, the range in brackets.`,
    '',
    '| relay | Kafka client | events/s | relay CPU s / 1M | relay JS thread µs / event | PostgreSQL CPU s / 1M | Kafka CPU s / 1M | first event after (s) | missing |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|',
    ...[...relays].map(([key, runs]) => {
      const [strategy = '', client] = key.split(' | ');
      const r = runs.map((run) => run.relay);
      const { driver } = parseStrategy(strategy);
      // A JVM's main thread is not where its work runs, and such a relay publishes with a client of its own.
      const jsThread = driver.runtime === 'node' ? med(r.map((x) => x.jsThreadUsPerEvent)) : 'n/a (JVM)';
      return (
        `| ${strategy} | ${driver.usesOurKafkaClient ? client : 'its own'} | ${med(r.map((x) => x.eventsPerSec))} | ${med(r.map((x) => x.cpuSecondsPerMillion.relay))} | ${jsThread} | ` +
        `${med(r.map((x) => x.cpuSecondsPerMillion.postgres))} | ${med(r.map((x) => x.cpuSecondsPerMillion.kafka))} | ${med(r.map((x) => x.timeToFirstEventS))} | ${r.map((x) => x.missing).join(' / ')} |`
      );
    }),
    '',
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

export const drain: Scenario = {
  name: 'drain',
  description: 'relay-only drain of a pre-written backlog per relay and Kafka client, then a consumer-only drain of the topic',
  defaults: { partitions: 6, batchSize: 1_000, workers: 1, connectionsPerWorker: 8 },
  flags: {
    backlog: { description: 'events in each backlog (a multiple of 1,000: written 1,000 per transaction)', defaultValue: 1_000_000, min: 10_000, max: 20_000_000, formerly: ['drain-events'] },
    profile: { kind: 'yes-no', description: 'one more drain per relay and client under node --cpu-prof, for profiles only (not in the figures)', defaultValue: false },
    mode: modeFlag('relay modes to drain (a mode that runs several processes takes a count, as in cdc-sharded:4), or other relays by their driver names (ptp-replication, debezium-latency, ...)', DEFAULT_STRATEGIES.join(','), parsedBy(parseStrategy)),
    clients: { kind: 'list', description: 'relay Kafka clients to compare', defaultText: 'the --kafka-client', check: oneOf(KAFKA_CLIENTS) },
    'consumer-clients': { kind: 'list', description: "consumer Kafka clients to compare (on the first relay client's topics)", defaultText: 'the --consumer-kafka-client', check: oneOf(CONSUMER_KAFKA_CLIENTS) },
  },
  async run(context) {
    const strategies = context.list('mode', DEFAULT_STRATEGIES).map(parseStrategy);
    const clients = context.list('clients', [context.parameters.kafkaClient ?? context.config.kafkaClient]);
    const consumerClients = context.list('consumer-clients', [context.parameters.consumerKafkaClient ?? context.config.consumerKafkaClient]);
    const runs: DrainRun[] = [];
    const profiled: DrainRun[] = [];
    const failed: FailedDrainRun[] = [];
    const lines: string[] = [];
    for (const strategy of strategies) {
      // A relay that publishes with a Kafka client of its own is drained once, under the first client's name.
      const strategyClients = strategy.driver.usesOurKafkaClient ? clients : clients.slice(0, 1);
      for (const [index, client] of (strategyClients as KafkaClientName[]).entries()) {
        // The consumer-only drains read the first relay client's topics: what
        // the consumer costs does not depend on which client wrote the records.
        const consumersHere = index === 0 ? (consumerClients as ConsumerKafkaClientName[]) : [];
        const repeated: DrainRun[] = [];
        for (let attempt = 0; attempt < context.repeats; attempt++) {
          try {
            repeated.push(await drainOnce(context, strategy, client, consumersHere, attempt, false));
          } catch (error) {
            failed.push({ strategy: strategy.name, kafkaClient: client, attempt: attempt + 1, error: describeError(error) });
            lines.push(`${strategy.name} on ${client}, run ${attempt + 1}: FAILED: ${describeError(error)}`);
          }
        }
        runs.push(...repeated);
        if (yes(context, 'profile')) {
          try {
            profiled.push(await drainOnce(context, strategy, client, consumersHere, context.repeats, true));
          } catch (error) {
            lines.push(`${strategy.name} on ${client}, profiled run: FAILED: ${describeError(error)}`);
          }
        }
        lines.push(
          `${strategy.name} relay on ${client}: ${medianWithRange(repeated.map((r) => r.relay.eventsPerSec))} events/s, CPU s/1M ${medianWithRange(repeated.map((r) => r.relay.cpuSecondsPerMillion.relay))}, ` +
            `JS thread µs/event ${medianWithRange(repeated.map((r) => r.relay.jsThreadUsPerEvent))}, PostgreSQL ${medianWithRange(repeated.map((r) => r.relay.cpuSecondsPerMillion.postgres))}, ` +
            `Kafka ${medianWithRange(repeated.map((r) => r.relay.cpuSecondsPerMillion.kafka))}; missing ${repeated.map((r) => r.relay.missing).join('/')}`,
        );
        for (const consumerClient of consumersHere) {
          const drains = repeated.flatMap((r) => r.consumers.filter((c) => c.client === consumerClient).map((c) => c.figures));
          lines.push(
            `${strategy.name} consumer on ${consumerClient}: ${medianWithRange(drains.map((d) => d.eventsPerSec))} events/s, CPU s/1M ${medianWithRange(drains.map((d) => d.cpuSecondsPerMillion.consumer))}, ` +
              `JS thread µs/event ${medianWithRange(drains.map((d) => d.jsThreadUsPerEvent))}, PostgreSQL ${medianWithRange(drains.map((d) => d.cpuSecondsPerMillion.postgres))}; missing ${drains.map((d) => d.missing).join('/')}`,
          );
        }
      }
    }
    if (failed.length > 0 && runs.length === 0) throw new OutboxBenchError('CHECK_FAILED', `every drain failed: ${failed.map((f) => f.error).join('; ')}`);
    const extra: DrainResult = { events: context.option('backlog'), sampleMs: SAMPLE_MS, minWindowReadings: MIN_WINDOW_READINGS, runs, profiled, failed };
    return { title: 'Relay-only and consumer-only drains', runs: [], extra, lines };
  },
  report,
};
