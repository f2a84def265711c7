/**
 * `bench:compare` on summaries written here (a known change, known noise, a
 * known difference of machine) and on the published results against
 * themselves; the command line is run as a user runs it. `bench:ab`'s order,
 * its checks of its arguments and its section of the report, on the same
 * summaries (a real sitting builds two commits: far too long for a test).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import type { Environment } from '../bench/harness/environment.js';
import { abOrder, type AbResult } from '../bench/report/ab.js';
import { compareResults, judge, loadResults, loadSide } from '../bench/report/compare.js';
import { buildReport } from '../bench/report.js';
import { PROJECT_ROOT } from '../src/config.js';

const COMPARE = path.join(PROJECT_ROOT, 'dist', 'bench', 'compare.js');
const AB = path.join(PROJECT_ROOT, 'dist', 'bench', 'ab.js');
const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const environment = {
  date: '2026-12-01T00:00:00.000Z',
  cpuModel: 'AMD EPYC',
  cores: 2,
  memoryGiB: 23.5,
  os: 'Linux 6.18 (x64)',
  node: 'v20.20.2',
  postgres: '18.4',
  postgresSettings: { fsync: 'on', synchronous_commit: 'on' },
  fsync: { p50Ms: 0.1, p99Ms: 0.2, maxMs: 0.6, samples: 200, path: '/data' },
  kafka: 'Apache Kafka 4.1.1',
  java: 'openjdk 17',
  gitCommit: 'a'.repeat(40),
  gitChanges: [],
  gitDirty: false,
  dependencies: {},
};

interface Repeats {
  eventsPerSec: number[];
  p99: number[];
  cpu: number[];
}

/** A results folder with one steady-load scenario of one relay, measured `repeats.eventsPerSec.length` times. */
function resultsFolder(repeats: Repeats, env: Partial<Environment> = {}): string {
  const root = mkdtempSync(path.join(tmpdir(), 'outbox-bench-compare-'));
  dirs.push(root);
  mkdirSync(path.join(root, 'cdc'));
  const n = repeats.eventsPerSec.length;
  const run = {
    name: 'cdc',
    eventsPerSec: repeats.eventsPerSec[0],
    e2eMs: { p50: 4, p99: repeats.p99[0], p999: 20 },
    cpuSecondsPerMillion: { total: repeats.cpu[0] },
    ...(n > 1
      ? { spread: { runs: n, eventsPerSec: repeats.eventsPerSec, e2eP50Ms: Array(n).fill(4), e2eP99Ms: repeats.p99, e2eP999Ms: Array(n).fill(20), cpuSecondsPerMillion: repeats.cpu, lostPerRun: Array(n).fill(0), lost: 0, unexpected: 0 } }
      : {}),
  };
  const summary = { scenario: 'cdc', title: 'CDC', date: environment.date, command: 'test', parameters: {}, runs: [run], environment: { ...environment, ...env } };
  writeFileSync(path.join(root, 'cdc', 'summary.json'), JSON.stringify(summary));
  return root;
}

const compare = (...args: string[]) => spawnSync(process.execPath, [COMPARE, ...args], { encoding: 'utf8' });

describe('compare', () => {
  it('calls a change beyond both sides\' spread better or worse, by the figure\'s direction', () => {
    assert.equal(judge([1_000, 1_010, 990], [1_300, 1_310, 1_290], 'higher').verdict, 'better');
    assert.equal(judge([1_000, 1_010, 990], [1_300, 1_310, 1_290], 'lower').verdict, 'worse');
    assert.equal(judge([10, 10.2, 9.9], [7, 7.1, 6.9], 'lower').verdict, 'better');
  });

  it('calls a change inside either side\'s spread within noise, even when the medians moved', () => {
    // Medians 1,000 and 1,150 (+15%), but A's own repeats range over 40% of its median.
    const verdict = judge([800, 1_000, 1_200], [1_100, 1_150, 1_200], 'higher');
    assert.equal(verdict.verdict, 'within noise');
    assert.ok(verdict.noise >= 0.4);
  });

  it('asks a single run for 10% before it calls a change', () => {
    assert.equal(judge([1_000], [1_080], 'higher').verdict, 'within noise');
    assert.equal(judge([1_000], [1_120], 'higher').verdict, 'better');
  });

  it('compares two folders per relay and figure from the command line', () => {
    const a = resultsFolder({ eventsPerSec: [2_000, 2_010, 1_990], p99: [10, 10.3, 9.8], cpu: [275, 280, 272] });
    const b = resultsFolder({ eventsPerSec: [2_600, 2_610, 2_590], p99: [10.1, 10.2, 9.9], cpu: [200, 204, 198] });
    const result = compare(a, b, '--json');
    assert.equal(result.status, 0, result.stderr);
    const comparison = JSON.parse(result.stdout) as ReturnType<typeof compareResults>;
    const verdict = (figure: string) => comparison.figures.find((f) => f.subject === 'cdc' && f.figure === figure)?.verdict;
    assert.equal(verdict('events/s'), 'better');
    assert.equal(verdict('e2e p99 ms'), 'within noise');
    assert.equal(verdict('CPU-s per million'), 'better');
    const table = compare(a, b);
    assert.equal(table.status, 0, table.stderr);
    assert.match(table.stdout, /\| cdc \| events\/s \(higher is better\) \| 2,000 \(1,990-2,010, n=3\) \| 2,600 \(2,590-2,610, n=3\) \| \+30\.0% \| ±5% \| \*\*better\*\* \|/);
    assert.match(table.stdout, /Verdict rule: /);
  });

  it('pools the runs of alternated sittings: each folder of a side is one sample', () => {
    const run = (eventsPerSec: number, p99: number, cpu: number) => resultsFolder({ eventsPerSec: [eventsPerSec], p99: [p99], cpu: [cpu] });
    const a = [run(2_000, 10, 275), run(2_020, 10.4, 280), run(1_990, 9.9, 270)];
    const b = [run(2_010, 10.1, 300), run(1_995, 10, 305), run(2_005, 10.2, 310)];
    const result = compare(a.join(','), b.join(','), '--json');
    assert.equal(result.status, 0, result.stderr);
    const comparison = JSON.parse(result.stdout) as ReturnType<typeof compareResults>;
    const figure = (name: string) => comparison.figures.find((f) => f.subject === 'cdc' && f.figure === name);
    assert.deepEqual(figure('events/s')?.a, [2_000, 2_020, 1_990], 'every run of A is a sample');
    assert.equal(figure('events/s')?.verdict, 'within noise');
    assert.equal(figure('CPU-s per million')?.verdict, 'worse', '+10% beyond both sides\' spread');
    assert.match(compare(a.join(','), `${b[0]},${path.join(b[1]!, 'missing')}`).stderr, /missing is not a folder/);
  });

  it('refuses runs from different environments and names the fields that differ', () => {
    const a = resultsFolder({ eventsPerSec: [2_000], p99: [10], cpu: [275] });
    const b = resultsFolder({ eventsPerSec: [2_000], p99: [10], cpu: [275] }, { cores: 8, postgresSettings: { fsync: 'off', synchronous_commit: 'on' } });
    const refused = compare(a, b);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /cores: A 2; B 8/);
    assert.match(refused.stderr, /postgresSettings\.fsync: A on; B off/);
    assert.doesNotMatch(refused.stderr, /synchronous_commit/);
    const forced = compare(a, b, '--allow-different-environments');
    assert.equal(forced.status, 0, forced.stderr);
    assert.match(forced.stdout, /Environments differ[^\n]*\n- cores: A 2; B 8/);
  });

  it('refuses runs from hosts whose CPU probes differ beyond their noise, and only those', () => {
    const probe = (nsPerOp: number) => ({ cpuProbe: { nsPerOp, spreadPercent: 3, trials: 9, what: 'test' } });
    const same = { eventsPerSec: [2_000], p99: [10], cpu: [275] };
    const a = resultsFolder(same, probe(1_000));
    // The same model and kernel: only the probe tells the slower host apart.
    const refused = compare(a, resultsFolder(same, probe(2_100)));
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /cpuProbe: A 1000 ns per operation; B 2100 ns per operation/);
    assert.equal(compare(a, resultsFolder(same, probe(1_060))).status, 0, 'within 10%: the same host');
    assert.equal(compare(a, resultsFolder(same)).status, 0, 'an older result without a probe is not refused for it');
  });

  it('says what is wrong with its arguments', () => {
    const empty = mkdtempSync(path.join(tmpdir(), 'outbox-bench-compare-'));
    dirs.push(empty);
    const a = resultsFolder({ eventsPerSec: [2_000], p99: [10], cpu: [275] });
    assert.equal(compare(a).status, 2);
    assert.match(compare(a, empty).stderr, /holds no summary\.json/);
    assert.match(compare(a, path.join(empty, 'missing')).stderr, /is not a folder/);
    assert.equal(compare('--help').status, 0);
  });

  it('finds every published relay within noise of itself', () => {
    const published = loadResults(path.join(PROJECT_ROOT, 'results'));
    const comparison = compareResults(published, published);
    const scenarios = new Set(comparison.figures.map((f) => f.scenario));
    for (const scenario of ['cdc', 'polling', 'drain', 'saturation']) assert.ok(scenarios.has(scenario), `${scenario} compared`);
    assert.ok(comparison.figures.every((f) => f.verdict === 'within noise' && f.change === 0));
    assert.deepEqual(comparison.environment, []);
  });
});

describe('bench:ab', () => {
  it('alternates the sides, each first in half the rounds', () => {
    assert.deepEqual(abOrder(3).map(([round, side]) => `${round}${side}`), ['1A', '1B', '2B', '2A', '3A', '3B']);
  });

  it('checks its arguments before it checks out, builds or starts anything', () => {
    // Its runs start servers of their own: a broker with the tests' quick-start JIT is refused, as the runner refuses it.
    const { KAFKA_BROKERS: _brokers, ...env } = process.env;
    const ab = (...args: string[]) => spawnSync(process.execPath, [AB, ...args], { encoding: 'utf8', env: { ...env, OUTBOX_BENCH_KAFKA_JIT: 'full' } });
    assert.equal(ab('--help').status, 0);
    // The commit that added the quick scenario: the one before it has a runner, but no quick.
    const quickAdded = spawnSync('git', ['log', '--diff-filter=A', '--format=%H', '--', 'bench/scenarios/quick.ts'], { cwd: PROJECT_ROOT, encoding: 'utf8' }).stdout.trim().split('\n').at(-1);
    assert.ok(quickAdded, 'git log finds the commit that added bench/scenarios/quick.ts');
    const refusals: [string[], RegExp][] = [
      [['HEAD', 'HEAD~1'], /expected <commit-a> <commit-b> <scenario>, got 2/],
      [['HEAD', 'HEAD~1', 'write-cost'], /"write-cost" is not a scenario bench:ab compares; one of polling, skip-locked, cdc, /],
      [['HEAD', 'HEAD~1', 'drain', '--', '--nope'], /--nope/],
      [['HEAD', 'HEAD~1', 'drain', '--rounds', '0'], /--rounds must be a whole number from 1 to 10, got "0"/],
      [['HEAD', 'no-such-ref', 'drain'], /B: "no-such-ref" is not a commit of this repository/],
      [['HEAD', 'HEAD', 'drain'], /HEAD and HEAD are the same commit/],
      [['HEAD', 'HEAD~1', 'drain', '--', '--mode', 'cdc', '--out', 'x'], /give --out before the --/],
      [['HEAD', `${quickAdded}~1`, 'quick'], /B: [0-9a-f]{10} has no quick scenario/],
    ];
    for (const [args, message] of refusals) {
      const refused = ab(...args);
      assert.equal(refused.status, 2, `${args.join(' ')}: ${refused.stderr}`);
      assert.match(refused.stderr, message);
      assert.doesNotMatch(refused.stderr, /checking out|installing/);
    }
    const quickStart = spawnSync(process.execPath, [AB, 'HEAD', 'HEAD~1', 'drain'], { encoding: 'utf8', env: { ...env, OUTBOX_BENCH_KAFKA_JIT: 'quick-start' } });
    assert.notEqual(quickStart.status, 0);
    assert.match(quickStart.stderr, /quick-start/);
    assert.doesNotMatch(quickStart.stderr, /checking out|installing/);
  });

  it('shows a sitting with both commits, the order of its runs, the probes they read and each figure\'s verdict', () => {
    const run = (cpu: number, probe: number) => resultsFolder({ eventsPerSec: [2_000], p99: [10], cpu: [cpu] }, { cpuProbe: { nsPerOp: probe, spreadPercent: 3, trials: 9, what: 'test' } });
    const a = [run(275, 1_000), run(280, 1_050), run(270, 1_200)];
    const b = [run(300, 1_020), run(305, 1_100), run(310, 1_010)];
    const sides: AbResult['sides'] = [{ label: 'A', ref: 'v1', commit: 'a'.repeat(40) }, { label: 'B', ref: 'HEAD', commit: 'b'.repeat(40) }];
    const probes = [1_000, 1_020, 1_100, 1_050, 1_200, 1_010];
    const runs = abOrder(3).map(([round, side], i) => ({ side, round, folder: `runs/${side}-${round}`, startedAt: environment.date, probeNsPerOp: probes[i]! }));
    const extra: AbResult = { scenario: 'cdc', sides, flags: [], rounds: 3, runs, comparison: compareResults(loadSide(a), loadSide(b)) };
    const root = mkdtempSync(path.join(tmpdir(), 'outbox-bench-ab-'));
    dirs.push(root);
    mkdirSync(path.join(root, 'ab-cdc'));
    writeFileSync(path.join(root, 'ab-cdc', 'summary.json'), JSON.stringify({ scenario: 'ab', title: 't', date: environment.date, command: 'npm run bench:ab -- v1 HEAD cdc', parameters: {}, runs: [], extra, environment }));
    const readme = buildReport(root);
    assert.match(readme, /## Code against host: cdc at aaaaaaa and bbbbbbb/);
    assert.match(readme, /runs in the order A B B A A B\)/);
    // 1,000 to 1,200: 20% apart, more than the probe's own noise.
    assert.match(readme, /read the CPU probe at 1,000-1,200 ns per operation: the host moved more than the probe's noise during the sitting \(noisy\)\./);
    assert.match(readme, /\| cdc \| CPU-s per million \(lower is better\) \| 275 \(270-280, n=3\) \| 305 \(300-310, n=3\) \| \+10\.9% \| ±5% \| \*\*worse\*\* \|/);
    assert.ok(readme.includes('| cdc | events/s (higher is better) | 2,000 (2,000-2,000, n=3) | 2,000 (2,000-2,000, n=3) | +0.0% | ±5% | within noise |'));
    assert.doesNotMatch(readme, /Besides the code/, 'the probes are the only difference, shown once');
    // The results header and the where-measured table name both commits, not the commit that ran the sitting.
    assert.ok(readme.includes('- 2026-12-01, AMD EPYC (2 cores), commits aaaaaaa and bbbbbbb alternated, CPU probe 1,000-1,200 ns per operation: ab-cdc\n'), readme.slice(0, 800));
    assert.ok(readme.includes('| ab-cdc | 2026-12-01 | aaaaaaa and bbbbbbb | AMD EPYC | 1000-1200 | each side its own commit\'s, by design |'));
  });
});
