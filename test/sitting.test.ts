/**
 * The parts of a sitting that decide what a comparison publishes, on
 * synthetic readings: the probe settles only when two readings agree, steal
 * is read from /proc/stat's own columns, a sitting whose probe moved is
 * marked, a ratio only pairs a relay with the anchor of its own sitting and
 * round, and the journal resumes the comparison it belongs to and no other.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { readCpuTimes, ratiosToAnchor, settledProbe, SittingJournal, sittingNoise, stealPercent, type SittingWindow } from '../bench/harness/sitting.js';
import { mergeDrains, type DrainComparison } from '../bench/scenarios/peers.js';
import type { DrainRun } from '../bench/scenarios/drain.js';
import { scratchDir } from './helpers.js';

/** A reader that returns these readings in turn, on a host nothing else uses (or as busy as given). */
function readings(...values: (number | [number, number])[]): () => { nsPerOp: number; othersBusyPercent: number } {
  let i = 0;
  return () => {
    const value = values[Math.min(i++, values.length - 1)]!;
    return Array.isArray(value) ? { nsPerOp: value[0], othersBusyPercent: value[1] } : { nsPerOp: value, othersBusyPercent: 2 };
  };
}

function window(sitting: number, round: number, probes: [number, number] = [2_000, 2_000], steal: number | null = 0): SittingWindow {
  const probe = (ns: number) => ({ nsPerOp: ns, readings: [ns, ns], settled: true });
  return { sitting, round, startedAt: '2026-12-06T00:00:00.000Z', seconds: 10, probeBefore: probe(probes[0]), probeAfter: probe(probes[1]), stealPercent: steal };
}

describe('a sitting', () => {
  it('reads the probe until two readings in a row agree within 3%, and says when none did', () => {
    const busyThenQuiet = settledProbe(readings(3_500, 2_900, 2_100, 2_080));
    assert.deepEqual(busyThenQuiet, { nsPerOp: 2_090, readings: [3_500, 2_900, 2_100, 2_080], othersBusyPercent: [2, 2, 2, 2], settled: true });
    // Steady but slowed by the servers' own after-work: not read as the host's speed until they are quiet.
    const afterWork = settledProbe(readings([4_500, 40], [4_480, 35], [2_100, 3], [2_090, 2]));
    assert.deepEqual([afterWork.nsPerOp, afterWork.readings.length, afterWork.settled], [2_095, 4, true]);
    // 2,000 against 2,100 is 5% apart: not settled yet.
    assert.equal(settledProbe(readings(2_000, 2_100, 2_090)).readings.length, 3);
    const never = settledProbe(readings(2_000, 2_500, 3_000, 2_200, 3_300, [2_600, 50]));
    assert.equal(never.settled, false);
    assert.equal(never.readings.length, 20, 'twenty readings at most');
    assert.equal(never.nsPerOp, 2_600, 'the median of them all (the lower middle: a reading that was taken)');
  });

  it("reads steal from /proc/stat's eighth column, as a share of all the CPU time between two readings", () => {
    // user nice system idle iowait irq softirq steal guest guest_nice
    const before = readCpuTimes('cpu  100 0 50 800 10 0 0 40 999 999\ncpu0 1 2 3\n');
    const after = readCpuTimes('cpu  200 0 100 1500 10 0 0 140 999 999\n');
    assert.deepEqual(before, { steal: 40, idle: 810, total: 1_000 });
    assert.deepEqual(after, { steal: 140, idle: 1_510, total: 1_950 });
    // 100 ticks stolen of 950: guest time is inside user already, so it is not counted twice.
    assert.equal(stealPercent(before, after), 10.5);
    assert.equal(stealPercent(before, undefined), null);
    assert.equal(readCpuTimes('intr 1 2 3\n'), undefined);
    const here = readCpuTimes();
    if (existsSync('/proc/stat')) assert.ok(here && here.total > 0 && here.steal >= 0, JSON.stringify(here));
  });

  it('marks a sitting noisy when its probe moved more than 10%, each sitting apart', () => {
    const noise = sittingNoise([window(1, 1, [2_000, 2_050]), window(1, 2, [2_010, 2_100], 3.5), window(2, 3, [2_000, 2_400], null)]);
    assert.deepEqual(
      noise.map((n) => [n.sitting, n.probeMin, n.probeMax, n.movedPercent, n.noisy, n.stealMaxPercent]),
      [
        [1, 2_000, 2_100, 5, false, 3.5],
        [2, 2_000, 2_400, 20, true, null],
      ],
    );
  });

  it('pairs a relay with the anchor of its own sitting and round only', () => {
    type Run = { name: string; w: SittingWindow; rate: number | null };
    const runs: Run[] = [
      { name: 'cdc', w: window(1, 1), rate: 100 },
      { name: 'peer', w: window(1, 1), rate: 50 },
      { name: 'cdc', w: window(1, 2), rate: 80 },
      { name: 'peer', w: window(1, 2), rate: 60 },
      // A round whose anchor failed: no ratio, rather than one against another round's anchor.
      { name: 'peer', w: window(2, 3), rate: 70 },
      { name: 'other', w: window(1, 1), rate: null },
    ];
    const ratios = ratiosToAnchor(runs, 'cdc', (r) => r.name, (r) => r.w, (r) => r.rate);
    const peer = ratios.find((r) => r.subject === 'peer')!;
    assert.deepEqual(peer.ratios, [0.5, 0.75]);
    assert.deepEqual([peer.median, peer.min, peer.max], [0.5, 0.5, 0.75]);
    assert.deepEqual(ratios.find((r) => r.subject === 'other'), { subject: 'other', ratios: [], median: null, min: null, max: null });
  });

  it('keeps completed rounds for a resume of the same comparison only, numbering each sitting after the last', async () => {
    const dir = await scratchDir();
    const first = SittingJournal.open<string>(dir, 'comparison A', false, 150, 3);
    assert.equal(first.sitting, 4, 'after the three sittings the folder already holds');
    first.record(1, ['a1', 'b1']);
    assert.equal(first.wouldOverrun(0), false);
    assert.equal(first.wouldOverrun(151 * 60_000), true);
    assert.throws(() => SittingJournal.open<string>(dir, 'comparison B', true), /--resume: the sitting stopped in .* measured comparison A; this command measures comparison B/);
    const resumed = SittingJournal.open<string>(dir, 'comparison A', true);
    assert.equal(resumed.sitting, 5);
    assert.deepEqual(resumed.completed(1), ['a1', 'b1']);
    assert.equal(resumed.completed(2), undefined);
    assert.deepEqual(resumed.sittings.map((s) => s.sitting), [4, 5]);
    resumed.finish();
    assert.throws(() => SittingJournal.open<string>(dir, 'comparison A', true), /no stopped sitting to resume/);
    // Without --resume a journal left behind is replaced, not continued.
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'sitting-journal.json'), JSON.stringify({ key: 'comparison A', sittings: [{ sitting: 9 }], rounds: [{ round: 1, units: ['old'] }] }));
    const fresh = SittingJournal.open<string>(dir, 'comparison A', false);
    assert.equal(fresh.sitting, 1);
    assert.equal(fresh.completed(1), undefined);
  });

  it("merges a peers drain sitting: a relay drained again replaces its drains, the anchor's stay with the relays of their sitting", () => {
    const run = (strategy: string, sitting: number, round: number) => ({ strategy, window: window(sitting, round) }) as unknown as DrainRun;
    const record = (sitting: number) => ({ sitting, startedAt: '', commit: 'c', cpuModel: 'x' });
    const previous: DrainComparison = {
      anchor: 'cdc',
      drainNames: { 'ours: cdc': 'cdc', a: 'a', b: 'b' },
      backlogs: { cdc: 200_000, a: 20_000, b: 20_000 },
      sittings: [record(1), record(2)],
      runs: [run('cdc', 1, 1), run('a', 1, 1), run('cdc', 2, 1), run('b', 2, 1)],
    };
    const fresh: DrainComparison = { anchor: 'cdc', drainNames: { 'ours: cdc': 'cdc', b: 'b' }, backlogs: { cdc: 200_000, b: 30_000 }, sittings: [record(3)], runs: [run('cdc', 3, 1), run('b', 3, 1)] };
    const merged = mergeDrains(previous, fresh);
    // Sitting 2 held only b beside the anchor: b was drained again, so sitting 2 goes whole.
    assert.deepEqual(merged.runs.map((r) => [r.strategy, r.window?.sitting]), [['cdc', 1], ['a', 1], ['cdc', 3], ['b', 3]]);
    assert.deepEqual(merged.sittings.map((s) => s.sitting), [1, 3]);
    assert.deepEqual(merged.backlogs, { cdc: 200_000, a: 20_000, b: 30_000 });
  });
});
