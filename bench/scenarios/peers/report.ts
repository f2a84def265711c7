/**
 * The peers comparison's section of results/README.md, from its summary:
 * the table of every relay, a relay's heap and queue readings, a relay's
 * logged defects, and the charts.
 */
import { createHistogram, decodeHistogram } from '../../../src/latency.js';
import type { QueueFigures } from '../../drivers/jmx.js';
import { bars, latencyByPercentile } from '../../report/charts.js';
import { probesDiffer, type CpuProbe } from '../../harness/environment.js';
import { medianWithRange } from '../../report/format.js';
import { median } from '../../harness/stats.js';
import { f, save, whole, type ReportContext, type Summary } from '../../report/kit.js';
import { sittingReport } from '../drain/rounds.js';
import type { DrainRun as RelayDrainRun } from '../drain/drain-once.js';
import { latencySection } from './latency-report.js';
import { currentSettings } from './relays.js';
import { chartedMaximum, lowestFailed, type DrainComparison, type PeerPoint, type PeerResult, type PeersResult } from './results.js';
import { COMMON_RATE, DRAIN_SECONDS_AT_MAX, MAX_BACKLOG, MIN_BACKLOG, PREWARM_MAX_RATE, PREWARM_S } from './sizing.js';

const TITLE = '## Peers side by side: Debezium and pg-transactional-outbox';

const mr = (values: readonly (number | null | undefined)[]) => medianWithRange(values, (n) => f(n));

function pointCell(point: PeerPoint | undefined): string {
  if (!point) return 'n/a';
  if (point.skipped) return `not run: ${point.skipped}`;
  const at = point.measuredAt ? ` (at ${point.measuredAt.commit.slice(0, 7)}, ${point.measuredAt.date.slice(0, 10)})` : '';
  return `${mr(point.runs.map((r) => r.e2eMs.p50))} / ${mr(point.runs.map((r) => r.e2eMs.p99))} / ${mr(point.runs.map((r) => r.e2eMs.p999))}${at}`;
}

function queueCell(observations: Record<string, unknown> | undefined): string {
  const queue = observations?.queue as QueueFigures | null | undefined;
  if (!queue || queue.readings === 0) return 'not read';
  return `${f(queue.remainingMedian)} of ${f(queue.capacity)} free (${f(queue.remainingMin)}–${f(queue.remainingMax)}); ${queue.verdict}`;
}

/**
 * What the peers table can claim about its hosts: relays run one sitting at a
 * time, and hosts of one model here have differed up to threefold, so rows
 * from hosts of different speeds are not a like-for-like comparison.
 */
export function hostNote(peers: readonly Pick<PeerResult, 'name' | 'cpuProbe'>[]): string {
  const probed = peers.filter((p): p is typeof p & { cpuProbe: CpuProbe } => p.cpuProbe !== undefined);
  const unprobed = peers.filter((p) => p.cpuProbe === undefined).map((p) => p.name);
  const parts: string[] = [];
  if (probed.length > 0) {
    const ns = probed.map((p) => p.cpuProbe.nsPerOp);
    const [fastest, slowest] = [Math.min(...ns), Math.max(...ns)];
    parts.push(
      probesDiffer(fastest, slowest)
        ? `**Hosts of different speeds**: the CPU probe read ${whole(fastest)} to ${whole(slowest)} ns per operation across these relays' sittings ` +
            `(${probed.map((p) => `${p.name} ${whole(p.cpuProbe.nsPerOp)}`).join(', ')}); their rates and CPU per event do not compare one to one.`
        : `Every probed relay ran on a host of one speed (CPU probe ${whole(fastest)}-${whole(slowest)} ns per operation).`,
    );
  }
  if (unprobed.length > 0) {
    parts.push(
      `The host's speed was not recorded for ${unprobed.join(', ')} (measured before the CPU probe existed): ` +
        'their sittings may have run on hosts of different speeds, which these figures cannot show.',
    );
  }
  return parts.join(' ');
}

const point = (p: PeerResult, label: PeerPoint['label']) => p.points.find((x) => x.label === label);

/**
 * The relay-only drains: each relay's figures as measured (medians of its
 * rounds), then its ratios to the anchor of its own rounds, with the
 * sittings they came from: the ratios are what carries from host to host.
 */
function drainSection(peers: readonly PeerResult[], drains: DrainComparison | undefined): string[] {
  if (!drains || drains.runs.length === 0) return [];
  const names = Object.entries(drains.drainNames).sort(([a], [b]) => peers.findIndex((p) => p.name === a) - peers.findIndex((p) => p.name === b));
  const sittingsOf = (runs: readonly RelayDrainRun[]) => [...new Set(runs.map((r) => r.window?.sitting))].join(', ');
  return [
    `### Relay-only drains, against our CDC relay in the same sitting`,
    '',
    ...(drains.incomplete ? [`> **Incomplete**: ${drains.incomplete}.`, ''] : []),
    "Each relay alone on a backlog written while no relay ran, timed from its spawn by Kafka's end offsets, 10%–90% rate; CPU of its whole process tree " +
      "(a JVM's every thread) over the same part, per million events; peak resident memory of its process tree over the drain, and for a JVM the most its heap held after a " +
      "collection (its GC log: what it keeps live, where resident memory says what it reserved). No process watches a relay during its drain. Absolute figures belong to their sitting's host; " +
      'compare relays by their ratios to the anchor (the next table).',
    '',
    '| relay | drained as | backlog | sittings | events/s | relay CPU s / 1M | peak RSS (MiB) | JVM heap after GC, most (MiB) | first event after (s) | missing |',
    '|---|---|---:|---|---:|---:|---:|---:|---:|---:|',
    ...names.flatMap(([name, drainName]) => {
      const runs = drains.runs.filter((r) => r.strategy === drainName);
      if (runs.length === 0) return [];
      const relay = peers.find((p) => p.name === name);
      return [
        `| ${name}${relay && drainedOtherwise(relay, drains) ? ' (with its earlier settings)' : ''} | ${drainName} | ${whole(drains.backlogs[drainName])} | ${sittingsOf(runs)} | ${mr(runs.map((r) => r.relay.eventsPerSec))} | ${mr(runs.map((r) => r.relay.cpuSecondsPerMillion.relay))} | ` +
          `${mr(runs.map((r) => r.relayPeakRssMiB))} | ${runs.some((r) => r.relayHeapAfterGc) ? mr(runs.map((r) => r.relayHeapAfterGc?.maxMiB)) : 'n/a'} | ` +
          `${mr(runs.map((r) => r.relay.timeToFirstEventS))} | ${runs.map((r) => r.relay.missing).join(' / ')} |`,
      ];
    }),
    '',
    ...sittingReport({ runs: drains.runs, sittings: drains.sittings, anchor: drains.anchor }),
  ];
}

/** How the comparison was measured, in one paragraph. */
function intro(summary: Summary<Partial<PeersResult>>, extra: Partial<PeersResult>, peers: readonly PeerResult[]): string {
  const commits = [...new Set(peers.map((p) => p.commit.slice(0, 7)))];
  return (
    `Same machine, same load generator (${summary.parameters.ordersPerTransaction} new orders per transaction), the same idempotent consumer, clock and CPU accounting. ` +
      `Debezium ${extra.debezium} (Kafka Connect standalone, Outbox Event Router) reads our outbox table; pg-transactional-outbox ${extra.ptp} ` +
      'gets an equivalent table of its own, created with its DatabaseSetup. Every run starts with a prewarm of ' +
      `${PREWARM_S} s at min(${PREWARM_MAX_RATE}, half the relay's maximum) events/s, inside the run, so class loading and JIT are over before anything is measured. ` +
      `*Max*: the saturation search (${summary.parameters.durationS} s steps, confirmed twice; Debezium's lag is judged by the orders committed and not yet applied, ` +
      'since Connect confirms its slot only when it flushes offsets). ' +
      `*Drain*: relay-only, as \`npm run bench:drain\` measures ours: a backlog of max(${MIN_BACKLOG.toLocaleString('en-US')}, ${DRAIN_SECONDS_AT_MAX} s × max) ` +
      `events (at most ${MAX_BACKLOG.toLocaleString('en-US')}, the most for a relay with no maximum yet) written while no relay runs, then the relay is started and timed ` +
      "by Kafka's end offsets from its spawn, 10%–90% rate; every relay drained once per round, interleaved with our CDC relay (the anchor) in the same sitting (below). " +
      `Latency at a common ${extra.commonRate?.toLocaleString('en-US') ?? COMMON_RATE} events/s and at 50% and 80% of each relay's own maximum. ` +
      `Medians of ${Math.max(...peers.map((p) => point(p, 'common')?.runs.length ?? 0))} runs, their range in brackets. Memory: the highest sum of resident memory over every process of the relay ` +
      `(replicas, shards, the JVM), read once a second. Measured at ${commits.join(', ')}.`
  );
}

/** A relay's relay-only drains in the comparison (none when it was not drained relay-only yet). */
function drainsOf(p: Pick<PeerResult, 'name'>, drains: DrainComparison | undefined): RelayDrainRun[] {
  const name = drains?.drainNames[p.name];
  return name === undefined ? [] : (drains?.runs ?? []).filter((r) => r.strategy === name);
}

/** Whether a relay's drains ran with settings it no longer has (they stay in the drains' own tables, named so). */
const drainedOtherwise = (p: Pick<PeerResult, 'name' | 'settings'>, drains: DrainComparison | undefined) => {
  const then = drains?.settings?.[p.name];
  return then !== undefined && then !== (currentSettings(p.name) ?? p.settings);
};

/** A relay whose latency phase ran with settings other than today's (a peer's configuration changed since). */
const measuredOtherwise = (p: PeerResult) => {
  const now = currentSettings(p.name);
  return now !== undefined && now !== p.settings;
};

/** A relay's row of the table. */
function tableRow(p: PeerResult, drains: DrainComparison | undefined): string {
  const common = point(p, 'common');
  const half = point(p, 'half');
  const eighty = point(p, 'eighty');
  const allRuns = p.points.flatMap((x) => x.runs);
  const otherwise = drainedOtherwise(p, drains);
  const drained = otherwise ? [] : drainsOf(p, drains);
  const memory = Math.max(...allRuns.map((r) => r.relayMemoryMiB ?? 0), ...drained.map((d) => d.relayPeakRssMiB ?? 0));
  const lost = allRuns.reduce((sum, r) => sum + r.lost, 0);
  const drainCell = otherwise ? 'drained with its earlier settings only (below)' : drained.length === 0 ? 'not drained relay-only yet' : mr(drained.map((d) => d.relay.eventsPerSec));
  const cpuRuns = common && !common.skipped ? common.runs : (eighty?.runs ?? []);
  const cpuNote = common && !common.skipped ? '' : ' (at 80%)';
  const searched = p.sustainedSteps.length > 0;
  const maxAt = p.maximumMeasuredAt ? ` (at ${p.maximumMeasuredAt.commit.slice(0, 7)}, ${p.maximumMeasuredAt.date.slice(0, 10)})` : '';
  const maxCell = !searched ? 'not searched' : p.sustainedRate > 0 ? `${whole(p.sustainedRate)}${maxAt}` : `below ${whole(Math.min(...p.sustainedSteps.map((s) => s.rate)))}${maxAt}`;
  // A point kept from an earlier sitting whose maximum was searched again since is a share of that earlier maximum.
  const ofEarlier = (x: PeerPoint) => x.measuredAt !== undefined && p.maximumMeasuredAt?.commit !== x.measuredAt.commit;
  const share = (x: PeerPoint | undefined) => (!x ? 'not measured' : x.skipped ? pointCell(x) : `${whole(x.rate)}/s${ofEarlier(x) ? ' (of an earlier maximum)' : ''}: ${pointCell(x)}`);
  return (
    `| ${p.name}${measuredOtherwise(p) ? ' †' : ''} | ${maxCell} | ${searched ? lowestFailed(p) : 'n/a'} | ${drainCell} | ` +
    `${pointCell(common)} | ${share(half)} | ${share(eighty)} | ` +
    `${mr(cpuRuns.map((r) => r.cpuSecondsPerMillion.relay))}${cpuNote} | ${mr(cpuRuns.map((r) => r.cpuSecondsPerMillion.total))}${cpuNote} | ${memory > 0 ? f(memory) : 'n/a'} | ` +
    `${lost} | ${allRuns.reduce((sum, r) => sum + r.duplicates, 0)} |`
  );
}

/** The readings of relays with a heap of their own (Debezium's streaming queue over JMX), and the heaps they were tried with. */
function heapSection(peers: readonly PeerResult[]): string[] {
  const lines: string[] = [];
  const debezium = peers.filter((p) => p.heapChecks);
  if (debezium.length > 0) {
    lines.push(
      "Debezium's streaming queue (between the WAL reader and Connect's producer loop), read over JMX with Kafka's JmxTool once a second, and the smallest heap that sustained its maximum:",
      '',
      '| profile | heap (MiB) | heaps tried at the max | queue at the max | queue at 80% of max |',
      '|---|---:|---|---|---|',
      ...debezium.map((p) => {
        const eighty = point(p, 'eighty')?.runs[0]?.peer;
        const tried = (p.heapChecks ?? []).map((h) => `${h.heapMb}: ${h.passed ? 'sustained' : h.reasons.join('; ')}`).join('<br>');
        return `| ${p.name} | ${f(p.heapMb)} | ${tried} | ${queueCell(p.atMax)} | ${queueCell(eighty)} |`;
      }),
      '',
    );
  }
  return lines;
}

/** What a relay logged as skipped (pg-transactional-outbox's MESSAGE_NOT_FOUND), where it did. */
function notFoundSection(peers: readonly PeerResult[], extra: Partial<PeersResult>): string[] {
  const lines: string[] = [];
  const ptp = peers.filter((p) => p.name.startsWith('pg-transactional-outbox'));
  for (const p of ptp) {
    const evidence = [...(p.drains ?? []).map((d) => d.peer), ...p.points.flatMap((x) => x.runs.map((r) => r.peer))].filter(Boolean) as { messageNotFound: number; lines: string[] }[];
    const count = evidence.reduce((sum, e) => sum + (e.messageNotFound ?? 0), 0);
    if (count === 0) continue;
    lines.push(
      `**${p.name}: ${count} messages skipped as MESSAGE_NOT_FOUND**, the library's defect in ${extra.ptp}: a message it cannot find when it starts ` +
        "handling it (replication can announce a row before the library's own SELECT sees it) is logged, acknowledged and never published; later releases " +
        'retry it. The runs count such messages as lost. The first lines it logged:',
      '',
      '```',
      ...evidence.flatMap((e) => e.lines).slice(0, 3),
      '```',
      '',
    );
  }
  return lines;
}

function charts(context: ReportContext, peers: readonly PeerResult[], extra: Partial<PeersResult>): string[] {
  const drainMedian = (p: PeerResult) => median(drainsOf(p, extra.drains).map((d) => d.relay.eventsPerSec)) ?? null;
  const lines: string[] = [];
  // Short names keep the legend on one line and the bar labels apart.
  const chartName = (name: string) => name.replace('ours: ', '').replace('debezium-', 'dbz ').replace('pg-transactional-outbox', 'ptp');
  const legend = `dbz = Debezium ${extra.debezium}, ptp = pg-transactional-outbox ${extra.ptp}, the rest are ours`;
  const throughput = bars(
    peers.map((p) => chartName(p.name)),
    [
      { name: 'relay-only drain (events/s, median)', values: peers.map(drainMedian) },
      { name: 'sustained maximum (events/s)', values: peers.map(chartedMaximum) },
    ],
    'Throughput: our relays and their peers, warm',
    'events per second',
    `same machine, same consumer; ${legend}`,
  );
  lines.push(`![Peers throughput](${save(context.charts, 'peers-throughput', throughput)})`, '');
  const withCommon = peers.filter((p) => (point(p, 'common')?.runs.length ?? 0) > 0);
  if (withCommon.length > 0) {
    const latency = latencyByPercentile(
      withCommon.map((p) => {
        const merged = createHistogram();
        for (const r of point(p, 'common')!.runs) merged.add(decodeHistogram(r.histogram));
        return { name: chartName(p.name), histogram: merged };
      }),
      'End-to-end latency by percentile at 1,000 events/s, warm',
      `every repeat's events together; ${legend}`,
    );
    lines.push(`![Peers latency](${save(context.charts, 'peers-latency', latency)})`, '');
  }
  return lines;
}

export function peersReport(context: ReportContext, folder: string): string[] {
  const summary = context.summaries.get(folder) as Summary<Partial<PeersResult>> | undefined;
  const extra = summary?.extra;
  if (!summary || !extra) return [];
  if (extra.version !== 2 || !extra.peers) {
    return [
      TITLE,
      '',
      `> The published comparison (${summary.date.slice(0, 10)}) was measured cold (a fresh JVM inside short windows) and once; it is not shown. ` +
        'Run `npm run bench:peers` (or one relay at a time with `--mode`) to measure it warm and repeated.',
      '',
    ];
  }
  const peers = extra.peers;
  return [
    TITLE,
    '',
    intro(summary, extra, peers),
    '',
    '| relay | max events/s | lowest rate that failed | relay-only drain events/s | e2e p50 / p99 / p99.9 at 1,000/s (ms) | at 50% of max | at 80% of max | relay CPU-s / 1M at 1,000/s | total CPU-s / 1M | relay memory (MiB) | lost | duplicates |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...peers.map((p) => tableRow(p, extra.drains)),
    '',
    ...(peers.some(measuredOtherwise)
      ? [
          `† Its maximum and latency were measured with settings other than today's: ` +
            `${peers.filter(measuredOtherwise).map((p) => `${p.name}, at ${p.commit.slice(0, 7)}`).join('; ')}. Both settings are under "How each relay was configured".`,
          '',
        ]
      : []),
    hostNote(peers),
    '',
    ...drainSection(peers, extra.drains),
    ...latencySection(peers, extra.latency),
    ...heapSection(peers),
    ...notFoundSection(peers, extra),
    '<details><summary>How each relay was configured</summary>',
    '',
    ...peers.map(
      (p) =>
        `- **${p.name}**: ${measuredOtherwise(p) ? `at ${p.commit.slice(0, 7)} (its maximum and latency): ` : ''}${p.settings.replace(/\.$/, '')}${p.kafkaClient ? ` (Kafka client: ${p.kafkaClient})` : ''}` +
        (measuredOtherwise(p) ? `. Today: ${currentSettings(p.name)}` : ''),
    ),
    '',
    '</details>',
    '',
    ...charts(context, peers, extra),
  ];
}
