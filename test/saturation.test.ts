/**
 * The sustained-rate rule: a step passes on what was offered and how the lag
 * moved, never on a delivered count, and the reported rate is one that
 * passed twice, with the lowest failure within the search's resolution above
 * it. Judged on synthetic run results, so each rule is tested alone; so is
 * a workload sweep's bookkeeping around the same search.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { PipelineContext, PipelineParameters } from '../bench/harness/pipeline.js';
import { judge, searchSustained, type SearchOptions } from '../bench/harness/saturation.js';
import { lossVerdict } from '../bench/harness/summary.js';
import { buildReport } from '../bench/report.js';
import type { ScenarioContext } from '../bench/scenario.js';
import { mergeEntries, runSweep, sweep, sweepDefinitions, type SweepEntry } from '../bench/scenarios/sweeps.js';
import { resolveConfig } from '../src/config.js';
import type { Infra } from '../src/infra/index.js';
import { fakeRunResult as result, TEST_ENVIRONMENT } from './fake-run.js';
import { log, scratchDir, testParameters } from './helpers.js';

const OPTIONS: SearchOptions = { startRate: 2_000, maxRate: 100_000, growth: 1.6, p99LimitMs: 2_000 };

/** A relay that keeps up to `always` on every try, and up to `onFirstTry` on a rate's first try only. */
function keepsUp(always: number, onFirstTry: number): NonNullable<SearchOptions['run']> {
  const tries = new Map<number, number>();
  return async (_context, p) => {
    const attempt = (tries.get(p.rate) ?? 0) + 1;
    tries.set(p.rate, attempt);
    return result(p.rate, { slope: p.rate <= always || (p.rate <= onFirstTry && attempt === 1) ? 0 : 1_000 });
  };
}

describe('sustained-rate rule', () => {
  it('fails a step whose lag grows, even when it applied more per second than was offered', () => {
    // The published case: 11,068 applied per second at 10,600 offered, a late warm-up backlog arriving.
    const step = judge(10_600, 'search', result(10_600, { appliedPerSec: 11_068, slope: 200 }), OPTIONS);
    assert.equal(step.passed, false);
    assert.match(step.reasons.join(), /lag grew 200 events\/s per s \(limit 53\)/);
    assert.equal(step.lagSlopeLimit, 53);
  });

  it('fails a step that applied less than 98% of its window in time, lost anything, or broke the p99 limit', () => {
    assert.match(judge(5_000, 'search', result(5_000, { delivered: 0.97 }), OPTIONS).reasons.join(), /97\.0% of the window's orders applied within 2000 ms/);
    assert.match(judge(5_000, 'search', result(5_000, { lost: 1 }), OPTIONS).reasons.join(), /1 lost/);
    assert.match(judge(5_000, 'search', result(5_000, { p99: 2_000 }), OPTIONS).reasons.join(), /p99 2000 ms >= 2000 ms/);
    assert.match(judge(5_000, 'search', result(5_000, { slope: null }), OPTIONS).reasons.join(), /lag could not be read/);
    const cut = { ...result(5_000), undrained: 40, parameters: { ...result(5_000).parameters, drainLimitS: 120 } };
    assert.deepEqual(judge(5_000, 'search', cut, OPTIONS).reasons, ['40 not applied when the drain was cut 120 s after the load (late or lost: not told apart)']);
    // The relay's own account of missing orders goes with them when the drain was cut too.
    const explainLoss = (evidence: Record<string, unknown>) => `the relay reported ${String(evidence['skipped'])}`;
    assert.deepEqual(judge(5_000, 'search', { ...cut, evidence: { skipped: 40 } }, { ...OPTIONS, explainLoss }).reasons, ['40 not applied when the drain was cut 120 s after the load (late or lost: not told apart) (the relay reported 40)']);
    assert.equal(lossVerdict(cut), '40 UNDRAINED (the drain was cut: late or lost), LOST 0, unexpected 0', 'a cut drain never reads "nothing lost"');
    assert.equal(judge(5_000, 'search', result(5_000, { delivered: 0.98, slope: 25 }), OPTIONS).passed, true);
  });

  it('brackets the limit: bisects until the lowest failure is within 5% of the highest pass, then confirms', async () => {
    // Keeps up to 4,000: a search started at 12,700 (a sweep's guided start) steps down by its factor, then bisects.
    const run = async (_context: PipelineContext, p: PipelineParameters) => result(p.rate, { slope: p.rate <= 4_000 ? 0 : 1_000 });
    const search = await searchSustained({ name: 'fake' } as PipelineContext, { durationS: 20 } as PipelineParameters, { ...OPTIONS, startRate: 12_700, run }, () => {});
    assert.deepEqual(
      search.steps.map((s) => `${s.rate}:${s.attempt}:${s.passed ? 'pass' : 'fail'}`),
      ['12700:search:fail', '7938:search:fail', '4961:search:fail', '3101:search:pass', '4000:search:pass', '4500:search:fail', '4300:search:fail', '4200:search:fail', '4000:confirm:pass'],
    );
    assert.deepEqual([search.sustainedRate, search.lowestFailedRate, search.bracketWidth, search.resolution], [4_000, 4_200, 0.05, 0.05]);
  });

  it('takes a failed confirmation as the top of the bracket and bisects on below it, never dropping past an untried rate', async () => {
    // Keeps up to 3,000 always, up to 3,200 only on a rate's first try: the old search fell back from 3,200 to 2,000.
    const run = keepsUp(3_000, 3_200);
    const search = await searchSustained({ name: 'fake' } as PipelineContext, { durationS: 20 } as PipelineParameters, { ...OPTIONS, run }, () => {});
    assert.deepEqual(search.steps.map((s) => `${s.rate}:${s.attempt}:${s.passed ? 'pass' : 'fail'}`), [
      '2000:search:pass',
      '3200:search:pass',
      '5120:search:fail',
      '4200:search:fail',
      '3700:search:fail',
      '3500:search:fail',
      '3400:search:fail',
      '3300:search:fail',
      '3200:confirm:fail',
      '2600:search:pass',
      '2900:search:pass',
      '3100:search:pass',
      '3100:confirm:fail',
      '3000:search:pass',
      '3000:confirm:pass',
    ]);
    assert.deepEqual([search.sustainedRate, search.lowestFailedRate, search.bracketWidth], [3_000, 3_100, 0.033]);
  });

  it('stops bisecting at its step limit, confirms downward, and says how wide its bracket stayed', async () => {
    // Keeps up to 3,200 always, up to 4,100 only on a rate's first try; six steps allowed.
    const run = keepsUp(3_200, 4_100);
    const search = await searchSustained({ name: 'fake' } as PipelineContext, { durationS: 20 } as PipelineParameters, { ...OPTIONS, maxSteps: 6, run }, () => {});
    assert.deepEqual(
      search.steps.map((s) => `${s.rate}:${s.attempt}:${s.passed ? 'pass' : 'fail'}`),
      ['2000:search:pass', '3200:search:pass', '5120:search:fail', '4200:search:fail', '3700:search:pass', '4000:search:pass', '4000:confirm:fail', '3700:confirm:fail', '3200:confirm:pass'],
    );
    assert.deepEqual([search.sustainedRate, search.lowestFailedRate, search.bracketWidth], [3_200, 3_700, 0.156]);
  });

  it('publishes no bracket when nothing failed up to the maximum', async () => {
    const run = async (_context: PipelineContext, p: PipelineParameters) => result(p.rate);
    const search = await searchSustained({ name: 'fake' } as PipelineContext, { durationS: 20 } as PipelineParameters, { ...OPTIONS, maxRate: 10_000, run }, () => {});
    assert.deepEqual(search.steps.map((s) => `${s.rate}:${s.attempt}`), ['2000:search', '3200:search', '5120:search', '8192:search', '8192:confirm']);
    assert.deepEqual([search.sustainedRate, search.lowestFailedRate, search.bracketWidth], [8_192, null, null]);
  });

  it('steps below 100/s only when allowed to, bisects to the nearest 10 there, and never bisects without a passing rate', async () => {
    // A slow peer that keeps up to 40/s.
    const run = async (_context: PipelineContext, p: PipelineParameters) => result(p.rate, { slope: p.rate <= 40 ? 0 : 1_000 });
    const slow = { ...OPTIONS, startRate: 100, growth: 2, run };
    const tried = async (options: SearchOptions) => {
      const search = await searchSustained({ name: 'fake' } as PipelineContext, { durationS: 30 } as PipelineParameters, options, () => {});
      return { sustained: search.sustainedRate, steps: search.steps.map((s) => `${s.rate}:${s.attempt}:${s.passed ? 'pass' : 'fail'}`) };
    };
    assert.deepEqual(await tried({ ...slow, minRate: 20 }), { sustained: 40, steps: ['100:search:fail', '50:search:fail', '25:search:pass', '40:search:pass', '40:confirm:pass'] });
    assert.deepEqual(await tried(slow), { sustained: 0, steps: ['100:search:fail'] });
  });

  it('refuses steps shorter than 20 s', async () => {
    await assert.rejects(searchSustained({ name: 'fake' } as PipelineContext, { durationS: 10 } as PipelineParameters, OPTIONS, () => {}), /at least 20 s measured/);
  });
});

describe('workload sweeps', () => {
  it('sweeps a point per relay by the sustained-rate rule, and merges a sitting into the earlier ones', async () => {
    const root = await scratchDir();
    const outDir = path.join(root, 'sweep-partitions');
    mkdirSync(outDir, { recursive: true });
    const scenario = sweep('partitions');
    const parameters = { ...testParameters(), ...scenario.defaults } as PipelineParameters;
    // An earlier sitting measured the 24-partition point.
    const earlier: SweepEntry = { point: '24', relay: 'cdc-message', sustainedRate: 1_234, atSustained: null, steps: [], commit: 'earlier', date: '2026-11-30T12:00:00.000Z' };
    const summary = (extra: object) => ({ scenario: scenario.name, title: 'test', date: new Date().toISOString(), command: 'test', parameters, runs: [], extra, environment: TEST_ENVIRONMENT });
    writeFileSync(path.join(outDir, 'summary.json'), JSON.stringify(summary({ sweep: 'partitions', property: 'x', points: ['1', '6', '24'], entries: [earlier] })));
    // cdc-message keeps up with 500 events/s; polling with nothing the search may offer. The runs stand in for the
    // pipeline (the search is the saturation rule's, tested above); each is seen with the point's parameters.
    const offered: string[] = [];
    const run = async (_context: PipelineContext, p: PipelineParameters) => {
      offered.push(`${p.relayMode}@${p.rate}/${p.partitions}`);
      return result(p.rate, { slope: p.relayMode === 'cdc-message' ? 0 : 1_000 });
    };
    const options: Record<string, number> = { 'start-rate': 500, 'max-rate': 500, 'p99-limit-ms': 2_000 };
    const context: ScenarioContext = {
      config: resolveConfig(),
      infra: undefined as unknown as Infra,
      log,
      parameters,
      outDir,
      quiet: true,
      repeats: 1,
      option: (name) => options[name]!,
      list: (name, fallback) => (name === 'mode' ? ['cdc-message', 'polling'] : name === 'points' ? ['1'] : fallback),
    };
    const { lines: _lines, ...extra } = await runSweep(sweepDefinitions(1).find((d) => d.name === 'partitions')!, context, run);
    assert.deepEqual(offered, ['cdc-message@500/1', 'cdc-message@500/1', 'polling@500/1', 'polling@313/1', 'polling@196/1', 'polling@123/1']);
    // Entries in the saturation scenario's order of relays, point by point.
    assert.deepEqual(extra.entries.map((e) => [e.point, e.relay, e.sustainedRate]), [['1', 'polling', 0], ['1', 'cdc-message', 500], ['24', 'cdc-message', 1_234]]);
    const fresh = extra.entries.find((e) => e.point === '1' && e.relay === 'cdc-message')!;
    assert.deepEqual(fresh.steps.map((s) => [s.rate, s.attempt, s.passed]), [[500, 'search', true], [500, 'confirm', true]]);
    // The point's figures are the confirming run's.
    assert.deepEqual([fresh.atSustained?.p50Ms, fresh.atSustained?.p99Ms, fresh.atSustained?.cpuSecondsPerMillion.relay], [20, 80, 40]);
    assert.equal(extra.entries.find((e) => e.relay === 'polling')!.atSustained, null, 'no figures for a relay that passed nothing');
    // A sitting replaces only its own points; the report shows what is still missing.
    assert.deepEqual(mergeEntries([earlier, { ...earlier, point: '1', sustainedRate: 1 }], [fresh], ['1', '6', '24']).map((e) => e.sustainedRate), [500, 1_234]);
    writeFileSync(path.join(outDir, 'summary.json'), JSON.stringify(summary(extra)));
    const readme = buildReport(root);
    assert.match(readme, /## Workload sweep: partitions of the topic/);
    assert.match(readme, /\| 1 \| cdc-message \| 500 \|/);
    assert.match(readme, /\| 1 \| polling \| none passed twice \|/);
    assert.match(readme, /Not measured yet: polling at 6, cdc-message at 6, polling at 24\./);
    assert.match(readme, /charts\/sweep-partitions\.png/);
    // A merged folder names every sitting's day and commit, not only the last one's, and no
    // one sitting's probe for all of them (sweep points record none of their own).
    const today = new Date().toISOString().slice(0, 10);
    assert.ok(readme.includes(`| sweep-partitions | 2026-11-30 to ${today} | ${fresh.commit.slice(0, 7)}, earlier | x | not recorded |`), readme.split('\n').filter((l) => l.startsWith('| sweep-')).join('\n'));
    await assert.rejects(
      scenario.run({ ...context, list: (name, fallback) => (name === 'points' ? ['7'] : fallback) }),
      (error: Error & { code?: string }) => error.code === 'USAGE' && /unknown point\(s\) 7; its points are 1, 6, 24/.test(error.message),
    );
  });
});
