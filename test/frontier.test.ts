/**
 * bench:frontier's rounds and what it concludes from them, on runs made up
 * for the purpose: the order of the runs, ratios to the anchor of the same
 * round, each relay's Pareto frontier, and the decision table, which never
 * recommends a setting that lost events or fell behind in any run.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { PipelineParameters } from '../bench/harness/pipeline.js';
import type { SittingWindow } from '../bench/harness/sitting.js';
import type { ScenarioContext } from '../bench/scenario.js';
import { decisions, headToHead, paretoFrontier, subjectFigures } from '../bench/scenarios/frontier/analysis.js';
import { frontierRounds, type FrontierPlan } from '../bench/scenarios/frontier/measure.js';
import { decisionGrid, decisionTable, headToHeadTable, type FrontierResult } from '../bench/scenarios/frontier/report.js';
import { ANCHOR, SHAPES, SUBJECTS, shapeKey, type Subject } from '../bench/scenarios/frontier/subjects.js';
import { fakeRunResult } from './fake-run.js';

const subject = (key: string) => SUBJECTS.find((s) => s.key === key)!;
const cdcDelayed = subject('cdc, delay 20 ms');
const polling = subject('polling, interval 500 ms');
const [oneAt1000, tenAt2000] = [SHAPES[0]!, SHAPES[3]!];

// Made-up figures: the anchor is fastest and dearest, the delayed CDC relay between, polling slowest and cheapest.
const FIGURES: Record<string, { p99: number; relayCpu: number }> = {
  [ANCHOR.key]: { p99: 8, relayCpu: 300 },
  [cdcDelayed.key]: { p99: 40, relayCpu: 150 },
  [polling.key]: { p99: 600, relayCpu: 100 },
};

const window = (at: { sitting: number; round: number }): SittingWindow => {
  const probe = { nsPerOp: 3_000, readings: [3_000, 3_010], settled: true };
  return { ...at, startedAt: new Date().toISOString(), seconds: 30, probeBefore: probe, probeAfter: probe, stealPercent: 0 };
};

function planWith(calls: string[], lossAt?: { subject: Subject; shape: string; call: number }): FrontierPlan {
  let call = 0;
  return {
    subjects: [ANCHOR, cdcDelayed, polling],
    shapes: [oneAt1000, tenAt2000],
    repeats: 2,
    resume: false,
    budgetMinutes: 150,
    run: async (s: Subject, _name: string, p: PipelineParameters) => {
      calls.push(`${s.key}@${p.ordersPerTransaction}x${p.rate}`);
      call += 1;
      const { p99, relayCpu } = FIGURES[s.key]!;
      const lost = lossAt && lossAt.subject === s && lossAt.shape === `${p.ordersPerTransaction}x${p.rate}` && lossAt.call <= call ? 2 : 0;
      const result = fakeRunResult(p.rate, { p99, lost });
      result.cost.relay.cpuSecondsPerMillionEvents = relayCpu;
      return result;
    },
    inWindow: async (at, measure) => ({ value: await measure(), window: window(at) }),
  };
}

const contextIn = (outDir: string) => ({ outDir, parameters: { durationS: 20 } as PipelineParameters, quiet: true }) as unknown as ScenarioContext;

describe('bench:frontier', () => {
  it('runs a round per shape, every setting once with the anchor first, the shapes in turn and then again for the repeat', async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'frontier-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const calls: string[] = [];
    const measured = await frontierRounds(contextIn(dir), planWith(calls));
    const round = (shape: string) => [`${ANCHOR.key}@${shape}`, `${cdcDelayed.key}@${shape}`, `${polling.key}@${shape}`];
    assert.deepEqual(calls, [...round('1x1000'), ...round('10x2000'), ...round('1x1000'), ...round('10x2000')]);
    assert.deepEqual([...new Set(measured.runs.map((r) => r.window.round))], [1, 2, 3, 4]);
    assert.ok(measured.runs.every((r) => r.failure === undefined));
  });

  it('compares each setting with the anchor of its own round, and draws each relay\'s frontier through the settings none of its own beats', async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'frontier-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const measured = await frontierRounds(contextIn(dir), planWith([]));
    const figures = subjectFigures(measured.runs, ANCHOR.key);
    const delayed = figures.find((s) => s.subject === cdcDelayed.key && s.shape === '1x1000')!;
    // Whole pipeline: 50 + 5 + relay + 20 + 10 CPU-s per million (fake-run.ts).
    assert.equal(delayed.cpuPerMillion?.median, 235);
    assert.equal(delayed.cpuRatio?.median, 235 / 385);
    assert.equal(delayed.cpuRatio?.ratios.length, 2, 'one ratio per round');
    assert.equal(delayed.p99Ratio?.median, 5);
    const cdc = figures.filter((s) => s.relay === 'cdc' && s.shape === '1x1000');
    assert.deepEqual(paretoFrontier(cdc).map((s) => s.setting), ['delay 0 ms', 'delay 20 ms'], 'neither beats the other on both');
    const dominated = { ...cdc[1]!, setting: 'dominated', p99Ms: { median: 50, min: 50, max: 50 }, cpuPerMillion: { median: 300, min: 300, max: 300 } };
    assert.deepEqual(paretoFrontier([...cdc, dominated]).map((s) => s.setting), ['delay 0 ms', 'delay 20 ms'], 'a slower and dearer setting is off the frontier');
  });

  it('recommends for each budget the cheapest setting that held it in every run, and never one that lost events', async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'frontier-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    // The delayed CDC relay loses events in its second run at 10 events per transaction (the 10th call on is round 4).
    const measured = await frontierRounds(contextIn(dir), planWith([], { subject: cdcDelayed, shape: '10x2000', call: 10 }));
    const figures = subjectFigures(measured.runs, ANCHOR.key);
    const choice = (shape: string, budgetMs: number) => decisions(figures, [shape]).find((d) => d.budgetMs === budgetMs)?.choice?.subject;
    assert.equal(choice('1x1000', 10), ANCHOR.key);
    assert.equal(choice('1x1000', 50), cdcDelayed.key, 'the cheaper setting within 50 ms');
    assert.equal(choice('1x1000', 1_000), polling.key);
    assert.equal(choice('10x2000', 50), ANCHOR.key, 'a setting that lost events in one run is not recommended');
    const lossy = figures.find((s) => s.subject === cdcDelayed.key && s.shape === '10x2000')!;
    assert.deepEqual([lossy.runs, lossy.counted], [2, 1]);
    assert.match(lossy.failures[0] ?? '', /LOST 2/);
    const extra: FrontierResult = { anchor: ANCHOR.key, shapes: [shapeKey(oneAt1000), shapeKey(tenAt2000)], repeats: 2, runs: measured.runs, sittings: [] };
    const table = decisionTable(extra).join('\n');
    assert.match(table, /\| 1 event per transaction, 1,000 events\/s \| 50 ms \| cdc \| delay 20 ms \| 40\.0 \|/);
  });

  it('sets our CDC relay, at its cheapest setting within 50 ms, against polling at its default round by round', async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'frontier-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const measured = await frontierRounds(contextIn(dir), planWith([]));
    const [row, ...others] = headToHead(measured.runs, ['1x1000'], 'cdc', (s) => s.subject === polling.key);
    assert.equal(others.length, 0);
    // The delayed setting (p99 40 ms) is cheaper than the anchor (8 ms), and both are within 50 ms.
    assert.equal(row?.ours?.subject, cdcDelayed.key);
    // Whole pipeline: 50 + 5 + relay + 20 + 10 CPU-s per million (fake-run.ts), so 235 against 185.
    assert.deepEqual(row?.wholePipelineCpu?.ratios, [235 / 185, 235 / 185], 'one ratio per round');
    assert.equal(row?.relayCpu?.median, 1.5);
    assert.equal(row?.p99?.median, 40 / 600);
    const extra: FrontierResult = { anchor: ANCHOR.key, shapes: ['1x1000'], repeats: 2, runs: measured.runs, sittings: [] };
    assert.match(headToHeadTable(extra).join('\n'), /\| 1 event per transaction, 1,000 events\/s \| delay 20 ms \| polling, interval 500 ms \| 1\.27 \[1\.27–1\.27\] \| 1\.50 \[1\.50–1\.50\] \| 0\.067 /);
    // No cdc setting within the budget: the row says so instead of a ratio.
    const slow = measured.runs.map((r) => (r.relay === 'cdc' ? { ...r, e2eMs: { ...r.e2eMs!, p99: 60 } } : r));
    const [none] = headToHead(slow, ['1x1000'], 'cdc', (s) => s.subject === polling.key);
    assert.equal(none?.ours, undefined);
    assert.equal(none?.wholePipelineCpu, null);
  });

  it('folds the decision table into a row per budget and a column per load, with what each chosen relay asks besides itself', async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'frontier-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const measured = await frontierRounds(contextIn(dir), planWith([]));
    const extra: FrontierResult = { anchor: ANCHOR.key, shapes: [shapeKey(oneAt1000), shapeKey(tenAt2000)], repeats: 2, runs: measured.runs, sittings: [] };
    const grid = decisionGrid(extra);
    assert.equal(grid[0], '| p99 budget | 1 event per transaction, 1,000 events/s | 10 events per transaction, 2,000 events/s |');
    // Whole pipeline: 50 + 5 + relay + 20 + 10 CPU-s per million (fake-run.ts).
    assert.ok(grid.includes('| 10 ms | cdc, delay 0 ms · 385 | cdc, delay 0 ms · 385 |'), grid.join('\n'));
    assert.ok(grid.includes('| 50 ms | cdc, delay 20 ms · 235 | cdc, delay 20 ms · 235 |'), grid.join('\n'));
    assert.ok(grid.includes('| 1,000 ms | polling, interval 500 ms · 185 | polling, interval 500 ms · 185 |'), grid.join('\n'));
    assert.match(grid.join('\n'), /What you run besides the relay: cdc — a replication slot to watch \(it holds WAL while the relay is down\)\. polling — an outbox table to clean up\./);
  });
});
