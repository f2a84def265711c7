/**
 * The peers comparison's maxima and latency against the anchor, for the
 * results page and the lines printed after a sitting: each sitting's probes,
 * every relay's ratios to the anchor, the rule that picks Debezium's latency
 * poll interval, and where a JVM relay's CPU goes.
 */
import { DEBEZIUM_LATENCY, DEBEZIUM_POLL_INTERVALS_MS, pollIntervalOf } from '../../drivers/debezium.js';
import type { ThreadCpuFigures } from '../../drivers/jvm-threads.js';
import { sittingNoise } from '../../harness/sitting.js';
import { medianWithRange } from '../../report/format.js';
import { f, whole } from '../../report/kit.js';
import { noiseLine, ratioFigure, ratioText, sittingTable } from '../drain/rounds.js';
import type { LatencyComparison, LatencyRatios, PeerPoint, PeerResult } from './results.js';
import { COMMON_RATE, SEARCH_DRAIN_LIMIT_S } from './sizing.js';

const mr = (values: readonly (number | null | undefined)[]) => medianWithRange(values, (n) => f(n));
const point = (p: PeerResult, label: PeerPoint['label']) => p.points.find((x) => x.label === label);

/** What a JVM's busiest thread groups used at its confirmed maximum, in cores. */
function threadsCell(atMax: Record<string, unknown> | undefined): string {
  const threads = atMax?.threads as ThreadCpuFigures | null | undefined;
  if (!threads) return 'not read';
  return `${threads.cores.toFixed(2)} cores: ${threads.groups.slice(0, 4).map((g) => `${g.group} ${g.cores.toFixed(2)}`).join(', ')}`;
}

/**
 * The latency profile's poll interval by its rule (see
 * DEBEZIUM_POLL_INTERVALS_MS): the lowest e2e p99 at the common rate; among
 * the intervals whose p99 ranges overlap the lowest's, the least relay CPU
 * per event. Read from ratios to one anchor, so sittings need not match
 * hosts; each interval's result is its candidate's, or the profile's when it
 * ran with that interval; undefined until every interval has been measured.
 */
export function pollIntervalChoice(ratios: readonly LatencyRatios[], peers: readonly Pick<PeerResult, 'name' | 'settings'>[], profileMs: number): string | undefined {
  const configured = [...peers, ...ratios.filter((r) => !peers.some((p) => p.name === r.relay)).map((r) => ({ name: r.relay, settings: '' }))];
  const candidates = DEBEZIUM_POLL_INTERVALS_MS.map((ms) => {
    const named = configured.filter((p) => pollIntervalOf(p.name, p.settings) === ms).map((p) => p.name);
    // A candidate's own runs first; the profile's when it ran with this interval.
    const relay = named.find((n) => n !== DEBEZIUM_LATENCY.name) ?? named[0];
    return { ms, relay, r: ratios.find((x) => x.relay === relay) };
  });
  if (candidates.some((c) => c.r?.p99.median == null || c.r.relayCpuPerMillion.median == null)) return undefined;
  const measured = candidates as { ms: number; relay: string; r: LatencyRatios }[];
  const lowest = measured.reduce((a, b) => (b.r.p99.median! < a.r.p99.median! ? b : a));
  const overlapping = measured.filter((c) => c.r.p99.min! <= lowest.r.p99.max!);
  const chosen = overlapping.reduce((a, b) => (b.r.relayCpuPerMillion.median! < a.r.relayCpuPerMillion.median! ? b : a));
  return (
    `Debezium's latency profile, poll.interval.ms by its rule (the lowest e2e p99 at ${COMMON_RATE.toLocaleString('en-US')} events/s; among intervals whose p99 ranges overlap it, the least relay CPU per event), ` +
    `each against the anchor: ` +
    measured.map((c) => `${c.ms} ms (${c.relay}): p99 ${ratioText(c.r.p99)}, relay CPU per event ${ratioText(c.r.relayCpuPerMillion)}`).join('; ') +
    `. The rule picks ${chosen.ms} ms; the profile runs ${profileMs} ms${chosen.ms === profileMs ? '.' : ': its setting is to change.'}`
  );
}

/**
 * The maxima and latency measured with the anchor: the sittings, then each
 * relay's ratios to the anchor of its own sitting (its maximum) and round
 * (at the common rate).
 */
export function latencySection(peers: readonly PeerResult[], latency: LatencyComparison | undefined): string[] {
  if (!latency || latency.runs.length === 0) return [];
  const ratios = latency.ratios ?? [];
  const rank = (name: string) => peers.findIndex((p) => p.name === name);
  const heapOf = (relay: string) => {
    const heaps = latency.runs.filter((r) => r.relay === relay && r.kind === 'common').map((r) => r.heapAfterGcMiB);
    return heaps.some((h) => typeof h === 'number') ? mr(heaps) : 'n/a';
  };
  // The anchor is searched in every sitting that searches: each of its brackets says its sitting.
  const bracket = (relay: string) => {
    const found = latency.maxima.filter((x) => x.relay === relay);
    const one = (m: (typeof found)[number]) => `${whole(m.sustainedRate)}–${m.lowestFailedRate === null ? 'none failed' : whole(m.lowestFailedRate)}`;
    return found.length === 0 ? 'n/a' : found.length === 1 ? one(found[0]!) : found.map((m) => `${one(m)} (sitting ${m.sitting})`).join('; ');
  };
  const jvms = peers.filter((p) => (p.atMax?.threads ?? null) !== null && latency.maxima.some((m) => m.relay === p.name));
  // At the common rate: each JVM relay's run of median CPU, as its threads read it.
  const atCommon = peers.flatMap((p) => {
    const threads = (point(p, 'common')?.runs ?? []).map((r) => r.peer?.threads as ThreadCpuFigures | null | undefined).filter((t): t is ThreadCpuFigures => Boolean(t));
    const mid = [...threads].sort((a, b) => a.cores - b.cores)[Math.floor((threads.length - 1) / 2)];
    return mid ? [`${p.name}: ${threadsCell({ threads: mid })}`] : [];
  });
  return [
    `### Maxima and latency, against our CDC relay in the same sitting`,
    '',
    ...(latency.incomplete ? [`> **Incomplete**: ${latency.incomplete}.`, ''] : []),
    (latency.maxima.length > 0
      ? `Every relay's saturation search stepped round-robin with the anchor's (${latency.anchor}), one step of each per round, then every relay's latency points once per round, the anchor first; `
      : `Every relay's latency points once per round, the anchor (${latency.anchor}) first (no maximum was searched in these sittings: the maxima above are earlier sittings'); `) +
      'each run between two settled CPU probes, with the CPU the hypervisor stole over it. ' +
      `A search step's drain ends ${SEARCH_DRAIN_LIMIT_S} s after its load: what is not applied by then is undrained (late or lost, not told apart) and fails the step as a loss does; ` +
      'a loss the relay reported itself (a library\'s skipped messages) is named beside it. A maximum is compared with the anchor\'s from the same sitting; ' +
      `the figures at ${COMMON_RATE.toLocaleString('en-US')} events/s with the anchor's of the same round (median of the rounds, the range in brackets). Above 1 is faster for the maximum, ` +
      'slower or costlier for the rest. Relay memory is the peak resident memory of all the relay\'s processes over the run.',
    '',
    ...sittingTable(
      latency.runs.filter((r) => r.window.seconds > 0).map((r) => r.window),
      latency.sittings,
      'runs',
    ),
    `| relay | bracket, events/s (passed twice – failed) | max ÷ ${latency.anchor} | rounds | e2e p99 at 1,000/s ÷ ${latency.anchor} | relay CPU per event ÷ ${latency.anchor} | relay memory ÷ ${latency.anchor} | JVM heap after GC, most (MiB) |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    `| ${latency.anchor} (the anchor) | ${bracket(latency.anchor)} | 1 | | 1 | 1 | 1 | ${heapOf(latency.anchor)} |`,
    ...[...ratios]
      .sort((a, b) => rank(a.relay) - rank(b.relay))
      .map(
        (r) =>
          `| ${r.relay} | ${bracket(r.relay)} | ${r.maximum === null ? 'n/a' : ratioFigure(r.maximum)} | ${r.rounds} | ` +
          `${ratioText(r.p99)} | ${ratioText(r.relayCpuPerMillion)} | ${ratioText(r.relayMemory)} | ${heapOf(r.relay)} |`,
      ),
    '',
    ...((choice) => (choice ? [choice, ''] : []))(pollIntervalChoice(ratios, peers, Number(DEBEZIUM_LATENCY.connector['poll.interval.ms']))),
    ...(jvms.length > 0
      ? [
          'What limits a JVM relay at its maximum: its busiest thread groups over the confirmed step (from /proc, thread names as the kernel keeps them, numbers made N), in cores of this 2-core machine: ' +
            jvms.map((p) => `${p.name}: ${threadsCell(p.atMax)}`).join('; ') +
            '.',
          '',
        ]
      : []),
    ...(atCommon.length > 0
      ? [
          `Where a JVM relay's CPU goes at ${COMMON_RATE.toLocaleString('en-US')} events/s: its busiest thread groups over the window of its run of median CPU (from /proc, thread names as the kernel keeps them, a pool's numbers made N), in cores: ` +
            atCommon.join('; ') +
            '.',
          '',
        ]
      : []),
  ];
}

/** The lines printed after a sitting of maxima and latency: each sitting's probes, every relay's ratios to the anchor. */
export function latencyLines(latency: LatencyComparison): string[] {
  const noise = sittingNoise(latency.runs.filter((r) => r.window.seconds > 0).map((r) => r.window)).map((n) => noiseLine(n, 'maxima and latency'));
  return [
    ...noise,
    ...(latency.ratios ?? []).map(
      (r) =>
        `${r.relay} / ${latency.anchor}: max ${r.maximum === null ? 'n/a' : ratioFigure(r.maximum)}; at ${COMMON_RATE}/s, per round: e2e p99 ${ratioText(r.p99)}, ` +
        `relay CPU per event ${ratioText(r.relayCpuPerMillion)}, relay memory ${ratioText(r.relayMemory)}`,
    ),
  ];
}

