/**
 * The peers comparison's own rules, each alone:
 *  - pg-transactional-outbox's adapter sends concurrent handler calls in one
 *    Kafka request, and each call settles with the request it went out in;
 *  - Debezium's queue readings (Kafka's JmxTool output) become the queue's
 *    figures over a window, and say which side limits the connector;
 *  - prewarm and backlog sizes follow each relay's own maximum;
 *  - --strategies picks relays by key or family, and refuses an unknown one;
 *  - a relay's new results replace its old ones, the others' stay;
 *  - maxima and latency run in rounds with the anchor (searches stepped
 *    round-robin), stop at the sitting's budget and resume, and merge with
 *    earlier sittings keeping each ratio's anchor; a JVM's CPU by thread.
 * The runs themselves (the relays, Debezium's JVM, the library) are measured
 * by `npm run bench:peers` against the real servers.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CONNECT_JVM_FLAGS, heapAfterGcOf } from '../bench/drivers/debezium.js';
import { parseJmxToolOutput, queueFigures, streamingMBean } from '../bench/drivers/jmx.js';
import { DRIVERS } from '../bench/drivers/index.js';
import { CoalescingSender } from '../bench/drivers/ptp-relay.js';
import { pollIntervalChoice } from '../bench/scenarios/peers/latency-report.js';
import { chartedMaximum, drainBacklogFor, hostNote, lowestFailed, mergePeers, prewarmFor, selectRelays, type PeerResult, type PeersResult } from '../bench/scenarios/peers.js';
import { whole } from '../bench/report/kit.js';
import { roundRate } from '../bench/harness/saturation.js';
import { runIdentifiers } from '../bench/harness/run-setup.js';
import { quoteIdentifier } from '../src/identifiers.js';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PipelineParameters } from '../bench/harness/pipeline.js';
import type { SittingWindow } from '../bench/harness/sitting.js';
import type { ScenarioContext } from '../bench/scenario.js';
import { anchoredRelays, type AnchoredPlan } from '../bench/scenarios/peers/measure.js';
import { latencyRatios, mergeLatency, mergeRuns, type LatencyComparison } from '../bench/scenarios/peers/results.js';
import { currentSettings } from '../bench/scenarios/peers/relays.js';
import { buildReport } from '../bench/report.js';
import type { Summary } from '../bench/report/kit.js';
import { PROJECT_ROOT } from '../src/config.js';
import type { RunSummary } from '../bench/harness/summary.js';
import { threadCpuBetween } from '../bench/drivers/jvm-threads.js';
import { threadGroupCpuSeconds, threadGroupOf } from '../bench/harness/process-stats.js';
import { fakeRunResult } from './fake-run.js';

describe('pg-transactional-outbox adapter', () => {
  it('sends calls made together in one request, calls made meanwhile in the next, and fails a request\'s calls with it', async () => {
    const requests: number[][] = [];
    let release: () => void = () => {};
    let fail = false;
    const sender = new CoalescingSender<number>(async (items) => {
      requests.push(items);
      await new Promise<void>((resolve) => (release = resolve));
      if (fail) throw new Error('broker down');
    });
    const first = [1, 2, 3].map((n) => sender.send(n));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(requests, [[1, 2, 3]], 'three concurrent calls, one request');
    // While it is in flight, two more arrive: they wait for it, then go together.
    const second = [4, 5].map((n) => sender.send(n));
    release();
    await Promise.all(first);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(requests, [[1, 2, 3], [4, 5]]);
    fail = true;
    release();
    const outcomes = await Promise.allSettled(second);
    assert.deepEqual(outcomes.map((o) => o.status), ['rejected', 'rejected'], 'a failed request fails every call in it');
    // And the sender goes on afterwards.
    fail = false;
    const third = sender.send(6);
    await new Promise((resolve) => setImmediate(resolve));
    release();
    await third;
    assert.deepEqual(requests.at(-1), [6]);
  });
});

describe('Debezium queue readings', () => {
  const mbean = streamingMBean('dbz_run');
  // JmxTool's default output: a quoted header ("time", then the keys sorted), then a line per reading.
  const output = (rows: [at: number, remaining: number][]) =>
    [
      'Trying to connect to JMX url: service:jmx:rmi:///jndi/rmi://127.0.0.1:1/jmxrmi',
      `"time","${mbean}:MilliSecondsBehindSource","${mbean}:QueueRemainingCapacity","${mbean}:QueueTotalCapacity","${mbean}:TotalNumberOfEventsSeen"`,
      ...rows.map(([at, remaining]) => `${at},12,${remaining},8192,${at}`),
    ].join('\n');

  it('reads JmxTool\'s lines by attribute name', () => {
    const readings = parseJmxToolOutput(output([[1_000, 8_000], [2_000, 100]]));
    assert.deepEqual(readings, [
      { at: 1_000, values: { MilliSecondsBehindSource: 12, QueueRemainingCapacity: 8_000, QueueTotalCapacity: 8_192, TotalNumberOfEventsSeen: 1_000 } },
      { at: 2_000, values: { MilliSecondsBehindSource: 12, QueueRemainingCapacity: 100, QueueTotalCapacity: 8_192, TotalNumberOfEventsSeen: 2_000 } },
    ]);
    assert.deepEqual(parseJmxToolOutput('Could not connect to JMX url'), [], 'no header, no readings');
  });

  it('says the producing side limits a connector whose queue stays full, and the reading side one whose queue stays empty', () => {
    const full = queueFigures(parseJmxToolOutput(output([[1_000, 10], [2_000, 0], [3_000, 500], [9_000, 8_192]])), 1_000, 3_000);
    assert.equal(full.readings, 3, 'only the window\'s readings');
    assert.equal(full.capacity, 8_192);
    assert.deepEqual([full.remainingMin, full.remainingMedian, full.remainingMax], [0, 10, 500]);
    assert.equal(full.fullShare, 1);
    assert.match(full.verdict, /full: handing records to Kafka limits it/);
    const empty = queueFigures(parseJmxToolOutput(output([[1_000, 8_192], [2_000, 8_100], [3_000, 8_000]])), 0, 5_000);
    assert.equal(empty.emptyShare, 1);
    assert.match(empty.verdict, /empty: reading the WAL/);
    assert.equal(queueFigures([], 0, 1).verdict, 'not read');
  });

  it("reads the heap each collection left from the JVM's GC log, in MiB whatever the unit", () => {
    const log = [
      '[0.301s][info][gc] Using G1',
      '[1.412s][info][gc] GC(0) Pause Young (Normal) (G1 Evacuation Pause) 24M->6M(256M) 2.1ms',
      '[2.100s][info][gc] GC(1) Pause Young (Concurrent Start) (G1 Humongous Allocation) 1G->300M(1G) 8.0ms',
      '[2.200s][info][gc] GC(2) Concurrent Mark Cycle 12.3ms',
      '[3.000s][info][gc] GC(3) Pause Remark 310M->2048K(1G) 1.0ms',
    ].join('\n');
    assert.deepEqual(heapAfterGcOf(log), { collections: 3, maxMiB: 300, lastMiB: 2 });
    assert.equal(heapAfterGcOf('[0.301s][info][gc] Using G1\n'), undefined, 'no collection yet');
    // Connect starts with the launcher's flags: a 256 MiB initial heap, G1 with its pause goal.
    assert.deepEqual(CONNECT_JVM_FLAGS.slice(0, 1), ['-Xms256M']);
    assert.ok(CONNECT_JVM_FLAGS.includes('-XX:MaxGCPauseMillis=20') && CONNECT_JVM_FLAGS.includes('-XX:InitiatingHeapOccupancyPercent=35'));
  });
});

describe('peers sizing and merging', () => {
  it('prewarms at half the maximum up to 1,000/s for a minute, and drains two minutes of the maximum within 20,000-200,000', () => {
    assert.deepEqual(prewarmFor(30_000), { rate: 1_000, seconds: 60 });
    assert.deepEqual(prewarmFor(700), { rate: 350, seconds: 60 });
    assert.equal(prewarmFor(0).seconds, 60, 'a relay that sustained nothing is still warmed');
    assert.equal(drainBacklogFor(100), 20_000);
    assert.equal(drainBacklogFor(1_000), 120_000);
    assert.equal(drainBacklogFor(30_000), 200_000);
    // Whole transactions of 1,000, as a drain writes its backlog; a relay with no maximum yet drains the largest.
    assert.equal(drainBacklogFor(190), 23_000);
    assert.equal(drainBacklogFor(undefined), 200_000);
  });

  it('runs the points of a slow maximum below it: rates to the nearest 10 under 1,000/s, the nearest 100 above', () => {
    assert.deepEqual([roundRate(50 * 0.5), roundRate(50 * 0.8)], [30, 40]);
    assert.deepEqual([roundRate(3_500 * 0.5), roundRate(3_500 * 0.8)], [1_800, 2_800]);
    assert.equal(roundRate(0), 10);
  });

  it('selects relays by key or family, the optional Debezium defaults only by name, and names the choices for an unknown one', () => {
    const keys = (named: string[]) => selectRelays(named).map((r) => r.key);
    assert.deepEqual(keys(['ptp', 'cdc']), ['cdc', 'ptp-polling', 'ptp-replication'], 'cdc is one relay, not every name holding it');
    assert.deepEqual(keys(['debezium']), ['debezium-throughput', 'debezium-latency']);
    assert.deepEqual(keys(['debezium-default']), ['debezium-default']);
    assert.ok(!keys([]).includes('debezium-default') && !keys([]).includes('ptp-polling-batch5') && keys([]).includes('cdc-sharded'), 'every relay but the optional ones by default');
    const [batch5] = selectRelays(['ptp-polling-batch5']);
    assert.equal(batch5?.driver, DRIVERS['ptp-polling-batch5'], 'the variant runs with its own driver');
    assert.match(batch5?.settings ?? '', /nextMessagesBatchSize 5 \(default 5\), nextMessagesPollingIntervalInMs 100 \(default 500\)/);
    assert.notEqual(batch5?.name, selectRelays(['ptp-polling'])[0]?.name, 'a variant\'s results do not replace those of the batch of 50');
    assert.throws(() => selectRelays(['kafka-streams']), (error: Error & { code?: string }) => error.code === 'USAGE' && /polling, skip-locked/.test(error.message));
  });

  it('draws no maximum bar for a relay that passed no rate, and its maximum otherwise', () => {
    assert.equal(chartedMaximum({ sustainedRate: 0 }), null);
    assert.equal(chartedMaximum({ sustainedRate: 3_500 }), 3_500);
  });

  it('prints offered rates whole, a slow peer\'s as much as a fast one\'s', () => {
    assert.equal(whole(90), '90');
    assert.equal(whole(8_000), '8,000');
    assert.equal(whole(undefined), 'n/a');
  });

  it('names the lowest rate above the maximum that failed, and whether it failed only on confirmation', () => {
    const step = (rate: number, attempt: 'search' | 'confirm', passed: boolean) => ({ rate, attempt, passed, reasons: [], p99Ms: 0, deliveredShare: passed ? 1 : 0.5 });
    // cdc-sharded's published search: 8,000 passed once, then failed its confirmation.
    const sharded = [step(4_000, 'search', true), step(8_000, 'search', true), step(16_000, 'search', false), step(10_000, 'search', false), step(8_000, 'confirm', false), step(4_000, 'confirm', true)];
    assert.equal(lowestFailed({ sustainedRate: 4_000, sustainedSteps: sharded }), '8,000 (passed once, failed its confirmation)');
    assert.equal(lowestFailed({ sustainedRate: 7_000, sustainedSteps: [step(7_000, 'search', true), step(8_000, 'search', false), step(7_000, 'confirm', true)] }), '8,000');
    assert.equal(lowestFailed({ sustainedRate: 0, sustainedSteps: [step(100, 'search', false), step(50, 'search', false)] }), '50');
    assert.equal(lowestFailed({ sustainedRate: 20_000, sustainedSteps: [step(20_000, 'search', true), step(20_000, 'confirm', true)] }), 'none tried');
  });

  it('says when the relays\' sittings ran on hosts of different speeds, or were not probed at all', () => {
    const probe = (nsPerOp: number) => ({ nsPerOp, spreadPercent: 3, trials: 9, what: 'test' });
    const same = hostNote([{ name: 'a', cpuProbe: probe(3_000) }, { name: 'b', cpuProbe: probe(3_250) }]);
    assert.match(same, /^Every probed relay ran on a host of one speed \(CPU probe 3,000-3,250 ns per operation\)\.$/);
    const apart = hostNote([{ name: 'a', cpuProbe: probe(1_500) }, { name: 'b', cpuProbe: probe(3_100) }]);
    assert.match(apart, /Hosts of different speeds.*1,500 to 3,100 ns per operation.*a 1,500, b 3,100.*do not compare one to one/);
    const older = hostNote([{ name: 'a', cpuProbe: probe(3_000) }, { name: 'old' }]);
    assert.match(older, /one speed.*not recorded for old \(measured before the CPU probe existed\)/);
    assert.doesNotMatch(older, /not recorded for a\b/);
  });

  it('replaces a relay\'s results and keeps the others\', in the relays\' order', () => {
    const result = (name: string, sustainedRate: number): PeerResult => ({
      name,
      settings: '',
      kafkaClient: null,
      sustainedRate,
      sustainedSteps: [],
      prewarm: { rate: 1, seconds: 60 },
      drains: [],
      points: [],
      commit: 'c',
      date: 'd',
    });
    const merged = mergePeers([result('debezium-throughput', 1), result('ours: cdc', 2)], [result('ours: polling', 3), result('debezium-throughput', 4)]);
    assert.deepEqual(
      merged.map((p) => [p.name, p.sustainedRate]),
      [
        ['ours: polling', 3],
        ['ours: cdc', 2],
        ['debezium-throughput', 4],
      ],
    );
  });
});

describe('maxima and latency with an anchor', () => {
  const [anchor, polling] = [selectRelays(['cdc'])[0]!, selectRelays(['polling'])[0]!];
  // Our CDC relay keeps up to 3,000/s at p99 20 ms, polling to 1,500/s at p99 400 ms.
  const limits: Record<string, { max: number; p99: number }> = { [anchor.name]: { max: 3_000, p99: 20 }, [polling.name]: { max: 1_500, p99: 400 } };
  const contextIn = (outDir: string) =>
    ({ outDir, parameters: { durationS: 30 } as PipelineParameters, option: (name: string) => (name === 'max-rate' ? 100_000 : undefined), config: { kafkaClient: 'kafkajs' }, quiet: true }) as unknown as ScenarioContext;
  const window = (at: { sitting: number; round: number }): SittingWindow => {
    const probe = { nsPerOp: 3_000, readings: [3_000, 3_010], settled: true };
    return { ...at, startedAt: new Date().toISOString(), seconds: 30, probeBefore: probe, probeAfter: probe, stealPercent: 0 };
  };
  const planWith = (calls: string[], overrides: Partial<AnchoredPlan> = {}): AnchoredPlan => ({
    relays: [anchor, polling],
    maxima: true,
    latency: true,
    points: ['common'],
    rounds: 2,
    resume: false,
    budgetMinutes: 150,
    earlierSittings: 0,
    previous: [],
    run: async (relay, _name, p) => {
      calls.push(`${relay.key}@${p.rate}`);
      await sleep(5);
      const { max, p99 } = limits[relay.name]!;
      return fakeRunResult(p.rate, { slope: p.rate <= max ? 0 : 1_000, p99 });
    },
    inWindow: async (at, measure) => ({ value: await measure(), window: window(at) }),
    ...overrides,
  });

  it('steps every search round-robin with the anchor first, and publishes each relay against the anchor of its sitting and round', async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'anchored-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const calls: string[] = [];
    const measured = await anchoredRelays(contextIn(dir), planWith(calls));
    // Round by round: each search's next step, the anchor's first; polling's search ends sooner, the anchor's goes on alone.
    assert.deepEqual(calls.slice(0, 6), ['cdc@1000', 'polling@1000', 'cdc@2000', 'polling@2000', 'cdc@4000', 'polling@1500']);
    assert.deepEqual(calls.slice(-4), ['cdc@1000', 'polling@1000', 'cdc@1000', 'polling@1000'], 'then the latency rounds, every relay once per round, the anchor first');
    assert.deepEqual(
      measured.comparison.maxima.map((m) => [m.relay, m.sustainedRate, m.sitting]),
      [
        [anchor.name, 3_000, 1],
        [polling.name, 1_500, 1],
      ],
    );
    const [ratios] = latencyRatios(measured.comparison);
    assert.deepEqual([ratios?.relay, ratios?.maximum, ratios?.rounds, ratios?.p99.median, ratios?.p99.min, ratios?.p99.max], [polling.name, 0.5, 2, 20, 20, 20]);
    assert.deepEqual(
      measured.results.map((r) => [r.name, r.sustainedRate, r.points.map((p) => `${p.label}:${p.runs.length}`).join()]),
      [
        [anchor.name, 3_000, 'common:2'],
        [polling.name, 1_500, 'common:2'],
      ],
    );
    assert.equal(measured.runs.length, 4, 'every common-rate run is published as a run');
  });

  it("names the relay's own reports of a step's losses beside them: the library's skipped messages, one for one", async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'anchored-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const [replication] = selectRelays(['ptp-replication']);
    // Above 1,000/s its library skips 3 messages a step (and logs each); the anchor loses none.
    const measured = await anchoredRelays(
      contextIn(dir),
      planWith([], {
        relays: [anchor, replication!],
        latency: false,
        run: async (relay, _name, p) => {
          if (relay !== replication || p.rate <= 1_000) return fakeRunResult(p.rate);
          return { ...fakeRunResult(p.rate, { lost: 3 }), evidence: { messageNotFound: 3, lines: [] } };
        },
      }),
    );
    const steps = measured.results.find((r) => r.name === replication!.name)!.sustainedSteps;
    const failed = steps.filter((s) => !s.passed);
    assert.ok(failed.length > 0, JSON.stringify(steps));
    for (const step of failed) assert.deepEqual(step.reasons, ['3 lost (the library logged 3 MESSAGE_NOT_FOUND warnings)']);
    // The anchor's driver reports nothing of its own: a loss of ours would read "N lost", unexplained.
    assert.equal(anchor.driver.explainLoss, undefined);
  });

  it('stops at its budget after a round, and resumes in a new sitting to the same outcome without running a kept round again', async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'anchored-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const first: string[] = [];
    // A budget of 10 ms: the first round (two runs of 5 ms) is measured, the second would overrun.
    const stopped = await anchoredRelays(contextIn(dir), planWith(first, { budgetMinutes: 10 / 60_000 }));
    assert.deepEqual(first, ['cdc@1000', 'polling@1000']);
    assert.match(stopped.comparison.incomplete ?? '', /budget before round 2 \(maxima\).*--resume/);
    assert.deepEqual(stopped.results, [], 'a stopped sitting publishes no relay results');
    await assert.rejects(anchoredRelays(contextIn(dir), planWith([], { resume: true, points: ['half'] })), /measured .* this command measures/);
    const rest: string[] = [];
    const resumed = await anchoredRelays(contextIn(dir), planWith(rest, { resume: true }));
    assert.deepEqual(rest.slice(0, 2), ['cdc@2000', 'polling@2000'], 'the kept round is not run again');
    assert.deepEqual(resumed.comparison.sittings.map((s) => s.sitting), [1, 2]);
    assert.deepEqual(resumed.comparison.maxima.map((m) => [m.sustainedRate, m.sitting]), [
      [3_000, 1],
      [1_500, 1],
    ]);
    assert.equal(resumed.comparison.incomplete, undefined);
  });

  it("keeps a relay's earlier maximum and points when only its latency is measured, unless its settings changed since", async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'anchored-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const earlier = (name: string, settings: string): PeerResult => ({
      name,
      settings,
      kafkaClient: null,
      sustainedRate: 1_500,
      sustainedSteps: [{ rate: 1_500, attempt: 'confirm', passed: true, reasons: [], p99Ms: 1, deliveredShare: 1 }],
      prewarm: { rate: 750, seconds: 60 },
      points: [{ label: 'half', rate: 750, runs: [] }],
      commit: 'old',
      date: '2026-12-01T00:00:00.000Z',
    });
    const calls: string[] = [];
    const measured = await anchoredRelays(contextIn(dir), planWith(calls, { maxima: false, previous: [earlier(anchor.name, anchor.settings), earlier(polling.name, 'configured otherwise')] }));
    assert.deepEqual(calls, ['cdc@1000', 'polling@1000', 'cdc@1000', 'polling@1000'], 'the points run at the common rate, no search');
    const [kept, changed] = measured.results;
    assert.deepEqual([kept?.sustainedRate, kept?.maximumMeasuredAt?.commit, kept?.points.map((p) => `${p.label}:${p.measuredAt?.commit ?? 'now'}`).join()], [1_500, 'old', 'common:now,half:old']);
    assert.deepEqual([changed?.sustainedRate, changed?.sustainedSteps.length, changed?.points.map((p) => p.label).join()], [0, 0, 'common'], "another configuration's maximum and points are not this relay's");
    assert.deepEqual([...measured.reconfigured], [polling.name], 'its earlier windows go at the merge');
  });

  it("runs a JVM relay's latency points with the heap found for its configuration, its default after a change", async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'anchored-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const debezium = selectRelays(['debezium-latency'])[0]!;
    limits[debezium.name] = { max: 3_000, p99: 50 };
    const heaps = async (settings: string) => {
      const used: (number | undefined)[] = [];
      const previous = [{ name: debezium.name, settings, kafkaClient: null, sustainedRate: 3_000, sustainedSteps: [], heapMb: 512, prewarm: { rate: 1_000, seconds: 60 }, points: [], commit: 'old', date: 'd' }];
      const plan = planWith([], { relays: [anchor, debezium], maxima: false, rounds: 1, previous });
      await anchoredRelays(contextIn(mkdtempSync(path.join(dir, 'x'))), { ...plan, run: async (relay, name, p, heapMb) => (relay === debezium && used.push(heapMb), plan.run!(relay, name, p, heapMb)) });
      return used;
    };
    assert.deepEqual(await heaps(debezium.settings), [512]);
    assert.deepEqual(await heaps('poll.interval.ms 20, configured otherwise'), [debezium.driver.heap!.mb]);
  });

  it("keeps the anchor's earlier runs only while their sitting holds another relay's, and a relay's part measured again replaces its earlier one", () => {
    const w = (sitting: number, round = 1) => window({ sitting, round });
    const earlier: LatencyComparison = {
      anchor: 'A',
      sittings: [1, 2].map((sitting) => ({ sitting, startedAt: '', commit: 'c', cpuModel: 'm' })),
      runs: [
        { relay: 'A', kind: 'common', rate: 1_000, p99Ms: 10, window: w(1) },
        { relay: 'B', kind: 'common', rate: 1_000, p99Ms: 30, window: w(1) },
        { relay: 'A', kind: 'common', rate: 1_000, p99Ms: 12, window: w(2) },
        { relay: 'C', kind: 'common', rate: 1_000, p99Ms: 60, window: w(2) },
      ],
      maxima: [],
    };
    const fresh: LatencyComparison = {
      anchor: 'A',
      sittings: [{ sitting: 3, startedAt: '', commit: 'c', cpuModel: 'm' }],
      runs: [
        { relay: 'A', kind: 'common', rate: 1_000, p99Ms: 20, window: w(3) },
        { relay: 'C', kind: 'common', rate: 1_000, p99Ms: 40, window: w(3) },
      ],
      maxima: [],
    };
    const merged = mergeLatency(earlier, fresh);
    assert.deepEqual(merged.sittings.map((s) => s.sitting), [1, 3], "sitting 2 is gone with C's earlier runs");
    // B configured otherwise since, its maximum searched now: its earlier points were another configuration's and go too.
    const searched: LatencyComparison = { ...fresh, runs: [...fresh.runs, { relay: 'B', kind: 'confirm', rate: 900, passed: true, window: w(3) }], maxima: [{ relay: 'B', sitting: 3, sustainedRate: 900, lowestFailedRate: 1_000, bracketWidth: 0.11 }] };
    assert.deepEqual(mergeLatency(earlier, searched).runs.filter((r) => r.relay === 'B').map((r) => r.kind), ['common', 'confirm'], 'kept while its settings hold');
    assert.deepEqual(mergeLatency(earlier, searched, new Set(['B'])).runs.filter((r) => r.relay === 'B').map((r) => r.kind), ['confirm']);
    assert.deepEqual(
      latencyRatios(merged).map((r) => [r.relay, r.p99.median]),
      [
        ['B', 3],
        ['C', 2],
      ],
    );
  });

  it('says which kept figures belong to an earlier configuration or maximum: a drain of other settings, a point of an earlier maximum', (t) => {
    // The published comparison, with the fields that decide it set here.
    const summary = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'results', 'peers', 'summary.json'), 'utf8')) as Summary<PeersResult>;
    const peers = summary.extra!.peers;
    const cdc = peers.find((p) => p.name === 'ours: cdc')!;
    const polling = peers.find((p) => p.name === 'ours: polling')!;
    // cdc's maximum searched now, its 50% point kept from an earlier sitting; polling's both from one earlier sitting.
    delete cdc.maximumMeasuredAt;
    cdc.points.find((x) => x.label === 'half')!.measuredAt = { commit: 'a'.repeat(40), date: '2026-12-04T00:00:00.000Z' };
    polling.maximumMeasuredAt = { commit: 'b'.repeat(40), date: '2026-12-04T00:00:00.000Z' };
    for (const x of polling.points) x.measuredAt = { commit: 'b'.repeat(40), date: '2026-12-04T00:00:00.000Z' };
    const drains = summary.extra!.drains!;
    const readmeWith = (latencySettings: string | undefined) => {
      drains.settings = { ...drains.settings, 'debezium-latency': latencySettings ?? currentSettings('debezium-latency')! };
      const root = mkdtempSync(path.join(os.tmpdir(), 'outbox-bench-peers-report-'));
      t.after(() => rmSync(root, { recursive: true, force: true }));
      mkdirSync(path.join(root, 'peers'));
      writeFileSync(path.join(root, 'peers', 'summary.json'), JSON.stringify(summary));
      return buildReport(root);
    };
    const row = (readme: string, name: string) => readme.split('\n').find((l) => l.startsWith(`| ${name} | `))!;
    const earlier = readmeWith('poll.interval.ms 20');
    assert.match(row(earlier, 'ours: cdc'), /\| [\d,]+\/s \(of an earlier maximum\): /);
    assert.doesNotMatch(row(earlier, 'ours: polling'), /of an earlier maximum/);
    assert.match(row(earlier, 'debezium-latency'), /\| drained with its earlier settings only \(below\) \|/);
    assert.ok(earlier.includes('| debezium-latency (with its earlier settings) | debezium-latency |'), 'the drains table names them');
    const same = readmeWith(undefined);
    assert.match(row(same, 'debezium-latency'), /\| [\d,]+ \([\d,]+–[\d,]+\) \| /, 'drained as configured now: its rate');
    assert.ok(!same.includes('(with its earlier settings)'));
  });

  it('keeps the runs of earlier sittings it did not measure again, and none of a relay configured otherwise', () => {
    const run = (name: string, sitting: number) => ({ name, sitting }) as unknown as RunSummary;
    const earlier = [run('peer-ours_cdc-common-r1', 1), run('peer-ours_polling-common-r1', 1), run('peer-debezium_latency-common-r1', 1), run('peer-debezium_latency_poll20-common-r1', 1)];
    const fresh = [run('peer-ours_cdc-common-r1', 2), run('peer-debezium_latency-common-r1', 2)];
    const merged = mergeRuns(earlier, fresh, new Set(['debezium-latency']));
    assert.deepEqual(merged.map((r) => `${r.name}@${(r as unknown as { sitting: number }).sitting}`), [
      'peer-ours_polling-common-r1@1',
      'peer-debezium_latency_poll20-common-r1@1',
      'peer-ours_cdc-common-r1@2',
      'peer-debezium_latency-common-r1@2',
    ]);
    // A sitting that measured no point (a maxima sitting) leaves the earlier runs as they were.
    assert.deepEqual(mergeRuns(earlier, [], new Set()), earlier);
    assert.deepEqual(mergeRuns(earlier, [], new Set(['debezium-latency'])).map((r) => r.name), ['peer-ours_cdc-common-r1', 'peer-ours_polling-common-r1', 'peer-debezium_latency_poll20-common-r1']);
  });

  it("picks Debezium's latency poll interval by its rule: the lowest p99, then among overlapping p99 ranges the least CPU", () => {
    const spread = (median: number, min: number, max: number) => ({ median, min, max });
    const ratio = (relay: string, p99: [number, number, number], cpu: number) => ({ relay, maximum: null, rounds: 3, p99: spread(...p99), relayCpuPerMillion: spread(cpu, cpu, cpu), relayMemory: spread(3, 3, 3) });
    // The profile measured with 20 ms (its recorded settings say so), its candidates by name.
    const peers = [
      { name: 'debezium-latency', settings: 'poll.interval.ms 20 (a partial batch waits at most 20 ms) and producer linger.ms 0' },
      { name: 'debezium-latency-poll10', settings: '' },
      { name: 'debezium-latency-poll5', settings: '' },
    ];
    const ratios = (p5: [number, number, number], cpu5: number) => [ratio('debezium-latency', [1.5, 1.4, 1.6], 6), ratio('debezium-latency-poll10', [1.3, 1.2, 1.45], 7), ratio('debezium-latency-poll5', p5, cpu5)];
    assert.match(pollIntervalChoice(ratios([1, 0.9, 1.1], 9), peers, 20) ?? '', /20 ms \(debezium-latency\).*The rule picks 5 ms; the profile runs 20 ms: its setting is to change\./, "no other range reaches 5 ms's");
    assert.match(pollIntervalChoice(ratios([1.25, 1.15, 1.35], 9), peers, 20) ?? '', /The rule picks 10 ms/, "10 ms's range overlaps and costs less; 20 ms's does not overlap");
    assert.equal(pollIntervalChoice(ratios([1.25, 1.15, 1.35], 9).slice(0, 2), peers, 20), undefined, 'not until every interval was measured');
    // Once the profile runs the chosen interval, the candidate measured by name still speaks for it.
    const after = [...peers.slice(1), { name: 'debezium-latency-poll20', settings: '' }, { name: 'debezium-latency', settings: 'poll.interval.ms 10 (chosen)' }];
    const measured = [ratio('debezium-latency-poll20', [1.5, 1.4, 1.6], 6), ratio('debezium-latency-poll10', [1.3, 1.2, 1.45], 7), ratio('debezium-latency-poll5', [1.25, 1.15, 1.35], 9)];
    assert.match(pollIntervalChoice(measured, after, 10) ?? '', /10 ms \(debezium-latency-poll10\).*The rule picks 10 ms; the profile runs 10 ms\.$/);
    // The profile's windows at an earlier interval, kept under a name that says it, count as that interval's.
    const kept = [ratio('debezium-latency at 20 ms', [1.5, 1.4, 1.6], 6), ...measured.slice(1)];
    assert.match(pollIntervalChoice(kept, after.filter((p) => p.name !== 'debezium-latency-poll20'), 10) ?? '', /20 ms \(debezium-latency at 20 ms\)/);
  });

  it("reads a process's CPU by thread group, and a window's busiest groups first", () => {
    assert.equal(threadGroupOf('GC Thread#12'), 'GC Thread#N');
    assert.equal(threadGroupOf('pool-3-thread-1'), 'pool-N-thread-N');
    assert.deepEqual(['C2 CompilerThre', 'G1 Conc#0'].map(threadGroupOf), ['C2 CompilerThre', 'G1 Conc#N']);
    const now = threadGroupCpuSeconds(process.pid);
    const own = process.cpuUsage();
    const total = [...(now?.values() ?? [])].reduce((a, b) => a + b, 0);
    // Clock ticks are 10 ms: the groups add up to this process's CPU within a few ticks per thread.
    assert.ok(Math.abs(total - (own.user + own.system) / 1e6) < 0.05 * (now?.size ?? 1) + 0.05, `${total} against ${(own.user + own.system) / 1e6}`);
    const figures = threadCpuBetween({ atMs: 0, groups: new Map([['a', 1], ['b', 0]]) }, { atMs: 2_000, groups: new Map([['a', 2], ['b', 1.5], ['c', 0.2]]) });
    assert.deepEqual(figures, { seconds: 2, cores: 1.35, groups: [{ group: 'b', cores: 0.75 }, { group: 'a', cores: 0.5 }, { group: 'c', cores: 0.1 }] });
  });
});

describe('run identifiers', () => {
  it('keeps a long peer step\'s schema within PostgreSQL\'s 63 characters, apart from its confirmation\'s, and short names as they are', () => {
    const step = runIdentifiers('bench', 'peer-pg-transactional-outbox replication-search-160');
    const confirmation = runIdentifiers('bench', 'peer-pg-transactional-outbox replication-search-160-confirm');
    for (const ids of [step, confirmation]) {
      assert.ok(ids.schema.length <= 63, ids.schema);
      assert.ok(ids.base.length <= 50, ids.base);
      assert.doesNotThrow(() => quoteIdentifier(ids.schema));
      assert.doesNotThrow(() => quoteIdentifier(`${ids.base}_slot`));
    }
    assert.notEqual(step.schema, confirmation.schema);
    assert.notEqual(step.base, confirmation.base);
    assert.deepEqual(runIdentifiers('bench', 'peer-pg-transactional-outbox replication-search-160-confirm'), confirmation);
    assert.deepEqual(runIdentifiers('bench', 'cdc-1000'), { schema: 'bench_cdc_1000', base: 'bench_cdc_1000' });
  });
});
