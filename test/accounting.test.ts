/**
 * How a run's records become its figures (bench/harness/accounting.ts),
 * on synthetic records so each rule is tested alone:
 *  - an order without an application time is lost, whatever the lane holds,
 *    unless the drain was cut at its limit (then it is undrained), and a
 *    drain that still moves ends at that limit and says so;
 *  - CPU is taken over the measured window and divided by the events applied
 *    inside it, never over the whole run;
 *  - a drain's clock starts when the relay process was spawned (or resumed
 *    after a prewarm), and its rate comes from the 10%-90% part of the
 *    backlog, the prewarm's orders left out;
 *  - a prewarm's orders are due at its own rate, the rest after them;
 *  - CDC lag in WAL bytes is converted to events with the WAL bytes written
 *    per event in the window, and its trend is a least-squares slope; a peer
 *    whose reading trails its publishing is judged by delivery's lag;
 *  - the HTTP phase divides each process's CPU by the orders its window
 *    holds, and by nothing when the window did not drain.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { account, type AccountInput } from '../bench/harness/accounting.js';
import type { ConsumerFinal } from '../bench/harness/consumer-process.js';
import { intendedTime, planLoad, type LoadResult } from '../bench/harness/load-worker.js';
import type { PipelineParameters } from '../bench/harness/parameters.js';
import type { ConsumerGroup } from '../bench/harness/processes.js';
import { drainUntilApplied } from '../bench/harness/run-steps.js';
import type { Running } from '../bench/harness/running.js';
import { COMPONENTS, RunSampler, type Component } from '../bench/harness/sampler.js';
import { cpuPerMillionOrders } from '../bench/scenarios/http.js';
import { createHistogram, encodeHistogram } from '../src/latency.js';
import { log } from './helpers.js';

const EMPTY = encodeHistogram(createHistogram());
// A minute ago: the timeline runs from the start to now, a point a second.
const START = Math.floor(Date.now()) - 60_000;

/** A sampler whose readings are given, not taken. */
function sampler(cpu: [at: number, seconds: number][], lag: { at: number; events: number | null; bytes: number | null; walBytes: number | null }[] = []): RunSampler {
  const s = new RunSampler({ cpu: () => ({}) as Record<Component, number>, lag: async () => ({ events: null, bytes: null }), walBytes: async () => null });
  for (const [at, seconds] of cpu) s.cpuSamples.push({ at, seconds: Object.fromEntries(COMPONENTS.map((c) => [c, seconds])) as Record<Component, number> });
  s.lagSamples.push(...lag);
  return s;
}

function load(workerIndex: number, commitAt: number[]): LoadResult {
  return { workerIndex, attempted: commitAt.length, committed: commitAt.filter((t) => !Number.isNaN(t)).length, failed: 0, commitAt: Float64Array.from(commitAt), commitLatency: EMPTY, transactions: new Float64Array(), errors: [] };
}

function final(appliedAt: number[][]): ConsumerFinal {
  return { type: 'final', received: 0, applied: 0, duplicates: 0, rejected: 0, foreign: 0, distinctIds: 0, appliedAt: appliedAt.map((lane) => Float64Array.from(lane)), endToEnd: EMPTY, receipt: EMPTY, kafkaToConsumer: EMPTY, receiptToApplied: EMPTY };
}

/** `n` orders of one worker at 100/s from START, each committed 5 ms after it was due. */
function commits(n: number): number[] {
  return Array.from({ length: n }, (_, seq) => START + seq * 10 + 5);
}

function input(overrides: Partial<AccountInput>): AccountInput {
  return {
    plan: { perWorkerRate: 100, ordersPerWorker: [100] },
    startAt: START,
    measureFrom: START,
    measureTo: START + 1_000,
    loads: [load(0, commits(100))],
    final: final([commits(100).map((t) => t + 20)]),
    sampler: sampler([[START - 5_000, 0], [START + 5_000, 10]]),
    memory: Object.fromEntries(COMPONENTS.map((c) => [c, undefined])) as AccountInput['memory'],
    graceMs: 2_000,
    ...overrides,
  };
}

describe('run accounting', () => {
  it('counts an order the consumer lane does not cover as lost, never as delivered', () => {
    // Worker 1's lane is one order short of the plan, as with per-worker
    // totals computed by a second formula: its last order has no time.
    const plan = { perWorkerRate: 50, ordersPerWorker: [50, 50] };
    const applied = (n: number) => Array.from({ length: n }, (_, seq) => START + seq * 20 + 30);
    const committed = Array.from({ length: 50 }, (_, seq) => START + seq * 20 + 5);
    const result = account(input({ plan, loads: [load(0, committed), load(1, committed)], final: final([applied(50), applied(49)]) }));
    assert.equal(result.sent, 100);
    assert.equal(result.delivered, 99);
    assert.equal(result.lost, 1);
    assert.equal(result.unexpected, 0);
    assert.equal(result.undrained, undefined, 'a drain that ran its course reports nothing undrained');
    // The same run with its drain cut at its limit: the missing order may still be on its way.
    const cut = account(input({ plan, loads: [load(0, committed), load(1, committed)], final: final([applied(50), applied(49)]), drainCut: true }));
    assert.deepEqual([cut.lost, cut.undrained, cut.delivered], [0, 1, 99]);
  });

  it('ends a drain at its limit while orders still arrive and says it was cut; one that ran its course was not', async () => {
    let distinct = 0;
    // One order more every poll, never all 1,000: only the limit (or a stall) ends the wait.
    const consumer = { progress: () => ({ distinct: (distinct += 1) }) } as unknown as ConsumerGroup;
    const running = {} as Running;
    const p = { drainTimeoutS: 30, drainLimitS: 0.5 } as PipelineParameters;
    const started = performance.now();
    assert.deepEqual(await drainUntilApplied(running, consumer, 1_000, p, log), { cut: true });
    assert.ok(performance.now() - started >= 500, 'not before its limit');
    assert.deepEqual(await drainUntilApplied(running, consumer, 1, p, log), { cut: false });
  });

  it('takes CPU over the measured window only and divides it by the events applied in that window', () => {
    // 50 CPU-s before the window (warm-up, start-up), then 1 CPU-s per second.
    const cpu: [number, number][] = [[START - 10_000, 0], [START, 50], [START + 1_000, 51], [START + 10_000, 60]];
    const result = account(input({ sampler: sampler(cpu) }));
    // Orders 0..97 are applied inside [START, START + 1000): 20 + 10 * seq + 5 < 1000.
    const inWindow = 98;
    assert.equal(result.eventsPerSec, inWindow);
    assert.equal(result.cost.relay.cpuSeconds, 1);
    assert.equal(result.cost.relay.cpuSecondsPerMillionEvents, Math.round((1 / inWindow) * 1e7) / 10);
  });

  it('times a drain from the relay spawn and takes its rate and CPU from 10% to 90% of the backlog', () => {
    const spawnedAt = START + 2_000;
    // The backlog was committed before the spawn; the first events arrive
    // 300 ms after it (before the relay could say it was ready), then one every 10 ms.
    const applied = Array.from({ length: 100 }, (_, seq) => spawnedAt + 300 + seq * 10);
    const cpu: [number, number][] = [[START - 1_000, 0], [spawnedAt, 20], [spawnedAt + 2_000, 40]];
    const result = account(input({ final: final([applied]), sampler: sampler(cpu), drainFrom: spawnedAt }));
    assert.equal(result.lost, 0);
    assert.equal(result.window.kind, 'drain');
    assert.equal(result.window.from, applied[9], 'the window opens when 10% of the backlog was applied');
    assert.equal(result.window.to, applied[89], 'and closes at 90%');
    assert.equal(result.drain?.timeToFirstEventS, 0.3);
    assert.equal(result.drain?.seconds, (applied[99]! - spawnedAt) / 1_000);
    assert.equal(result.drain?.eventsPerSec, 101, '81 events (10th to 90th) over 0.8 s');
    // 10 CPU-s per second during the drain: 8 CPU-s over the window's 81 events.
    assert.equal(result.cost.relay.cpuSeconds, 8);
    assert.equal(result.cost.relay.cpuSecondsPerMillionEvents, Math.round((8 / 81) * 1e7) / 10);
  });

  it('leaves a prewarm out of a drain: its figures are the backlog intended from the window on', () => {
    // 50 prewarm orders at 50/s (1 s), then a backlog of 100 at 1,000/s; the
    // relay pauses at the backlog's start and resumes 2 s later.
    const plan = { perWorkerRate: 1_000, ordersPerWorker: [150], prewarm: { perWorkerRate: 50, orders: 50, ordersPerTransaction: 1 } };
    const backlogFrom = START + 1_000;
    const resumedAt = backlogFrom + 2_000;
    const due = (seq: number) => intendedTime({ startAt: START, ...plan }, seq);
    const committed = Array.from({ length: 150 }, (_, seq) => due(seq) + 5);
    // Prewarm orders applied as they came, the last few only after the resume.
    const applied = committed.map((at, seq) => (seq < 45 ? at + 20 : seq < 50 ? resumedAt + 50 : resumedAt + 100 + (seq - 50) * 10));
    const cpu: [number, number][] = [[START - 1_000, 0], [resumedAt, 20], [resumedAt + 2_000, 40]];
    const result = account(input({ plan, measureFrom: backlogFrom, measureTo: backlogFrom + 100, loads: [load(0, committed)], final: final([applied]), sampler: sampler(cpu), drainFrom: resumedAt }));
    assert.equal(result.lost, 0);
    assert.equal(result.drain?.backlog, 100, 'the prewarm is not backlog');
    assert.equal(result.drain?.timeToFirstEventS, 0.1, 'the first backlog event, not a prewarm straggler');
    assert.equal(result.window.from, applied[50 + 9]);
    assert.equal(result.window.to, applied[50 + 89]);
    assert.equal(result.drain?.eventsPerSec, 101);
  });

  it('times a prewarm at its own rate and the orders after it at the run rate', () => {
    const plan = planLoad({ rate: 1_000, workers: 2, warmupS: 1, durationS: 2, ordersPerTransaction: 10, prewarm: { rate: 100, seconds: 3 } });
    assert.deepEqual(plan.prewarm, { perWorkerRate: 50, orders: 150, ordersPerTransaction: 10 });
    assert.deepEqual(plan.ordersPerWorker, [150 + 1_500, 150 + 1_500]);
    const t = { startAt: START, ...plan };
    assert.equal(intendedTime(t, 0), START);
    assert.equal(intendedTime(t, 149), START + 149 * 20);
    assert.equal(intendedTime(t, 150), START + 3_000, 'the run proper starts when the prewarm ends');
    assert.equal(intendedTime(t, 160), START + 3_000 + 10 * 2);
    assert.equal(intendedTime({ startAt: START, perWorkerRate: 500 }, 10), START + 20, 'no prewarm: one rate throughout');
    assert.equal(planLoad({ rate: 1_000, workers: 1, warmupS: 0, durationS: 1, ordersPerTransaction: 1, prewarm: { rate: 100, seconds: 0 } }).prewarm, undefined);
    // A drain writes its backlog 1,000 orders a commit; its prewarm keeps its own size, rounded up to whole transactions.
    const drain = planLoad({ rate: 50_000, workers: 1, warmupS: 0, durationS: 1, ordersPerTransaction: 1_000, prewarm: { rate: 55, seconds: 1, ordersPerTransaction: 10 } });
    assert.deepEqual(drain.prewarm, { perWorkerRate: 55, orders: 60, ordersPerTransaction: 10 });
  });

  it('reports the least-squares slope of the lag, CDC lag in WAL bytes converted with the bytes written per event', () => {
    // 100 orders committed in the window, 250 WAL bytes each; the slot falls
    // behind by 2,500 bytes (10 events) per second.
    const lag = Array.from({ length: 11 }, (_, i) => ({ at: START + i * 100, events: null, bytes: 1_000 + i * 250, walBytes: 50_000 + i * 2_500 }));
    const result = account(input({ sampler: sampler([[START - 5_000, 0], [START + 5_000, 10]], lag) }));
    assert.equal(result.lag.walBytesPerEvent, 250);
    assert.equal(result.lag.slopeEventsPerSec, 10);
  });

  it("takes the lag slope from delivery for a peer whose own reading trails it by design, not from the reading's sawtooth", () => {
    // 1,000 orders committed at 100/s and applied at 90/s: delivery falls
    // behind by 10 events a second. The relay's reading climbs for 3 s and
    // drops back to 0 (a position confirmed every 3 s).
    const committed = Array.from({ length: 1_000 }, (_, seq) => START + seq * 10 + 5);
    const applied = Array.from({ length: 1_000 }, (_, seq) => START + seq * (1_000 / 90) + 5);
    const sawtooth = Array.from({ length: 100 }, (_, i) => ({ at: START + 1_000 + i * 100, events: ((i * 100) % 3_000) * 2, bytes: null, walBytes: null }));
    const base = { plan: { perWorkerRate: 100, ordersPerWorker: [1_000] }, measureFrom: START + 1_000, measureTo: START + 9_000, loads: [load(0, committed)], final: final([applied]) };
    const fromReading = account(input({ ...base, sampler: sampler([[START - 5_000, 0], [START + 15_000, 10]], sawtooth) }));
    const fromDelivery = account(input({ ...base, sampler: sampler([[START - 5_000, 0], [START + 15_000, 10]], sawtooth), lagFromDelivery: true }));
    assert.ok(Math.abs((fromReading.lag.slopeEventsPerSec ?? 0) - 10) > 50, `the sawtooth's slope: ${fromReading.lag.slopeEventsPerSec}`);
    assert.equal(fromDelivery.lag.from, 'delivery');
    assert.ok(Math.abs((fromDelivery.lag.slopeEventsPerSec ?? 0) - 10) < 0.5, `delivery's slope: ${fromDelivery.lag.slopeEventsPerSec}`);
  });

  it("divides the HTTP phase's CPU of each process by the orders of its window", () => {
    const before = { service: 10, postgres: 100, kafka: 50, relay: 20, consumer: null };
    const after = { service: 12.5, postgres: 103, kafka: 50.5, relay: 21, consumer: 7 };
    // 500,000 orders: 2.5 CPU-s of the service is 5 CPU-s per million; a process read once only has no figure.
    assert.deepEqual(cpuPerMillionOrders(before, after, 500_000), { service: 5, postgres: 6, kafka: 1, relay: 2, consumer: null });
    assert.deepEqual(cpuPerMillionOrders(before, after, 0), { service: null, postgres: null, kafka: null, relay: null, consumer: null });
  });
});
