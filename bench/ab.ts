/**
 * `npm run bench:ab -- <commit-a> <commit-b> <scenario> [--rounds n] [--out dir] [-- scenario flags]`:
 * is a difference between two published figures the code's or the host's?
 * Both commits are built in worktrees of their own (.cache/ab/<commit>/,
 * each with its own npm ci), then the scenario runs at each commit in turn
 * on this one machine, in the order A B, B A, A B, ... so that a host that
 * drifts during the sitting weighs on both alike. Each run is the commit's
 * own runner with its own servers; the runs land in <out>/runs/, and
 * <out>/summary.json holds their comparison (bench/report/compare.ts's
 * figures and verdicts) with the CPU probe each run read, for the report's
 * "Code against host" section.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { PROJECT_ROOT, resolveConfig } from '../src/config.js';
import { describeError, EXIT, exitCodeFor, OutboxBenchError } from '../src/errors.js';
import { assertFullKafkaJit } from './harness/environment.js';
import { abOrder, type AbResult, type AbRun, type AbSide } from './report/ab.js';
import { COMPARED_SCENARIOS, compareResults, formatComparison, loadResults, loadSide } from './report/compare.js';
import type { Summary } from './report/kit.js';
import { parseCommand } from './runner/command.js';

const HELP = `Usage: npm run bench:ab -- <commit-a> <commit-b> <scenario> [options] [-- <scenario flags>]

Runs one scenario at two commits, alternated on this machine (A B, B A, A B, ...),
and compares them: what changed with the code, measured on one host in one sitting.
Each commit is built once in .cache/ab/<commit>/ (a git worktree, npm ci); each run
uses that commit's own runner and servers, so the scenario flags must be ones both
commits accept. Scenarios: ${COMPARED_SCENARIOS.join(', ')}.

Options:
  --rounds <n>   runs of each commit (default 3)
  --out <dir>    where the runs and the comparison go (default results/ab-<scenario>);
                 an earlier sitting's runs there are replaced
  -h, --help     this text

Example, the relay-only drain of the CDC relay at an older commit against today's:
  npm run bench:ab -- 7c78ac7 HEAD drain --rounds 3 -- --strategies cdc --repeats 1`;

const OPTIONS = {
  rounds: { type: 'string' },
  out: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

// Rationale: three runs a side is the least that shows a spread of its own
// (compare.ts's verdict needs one); ten bounds a sitting of the longer
// scenarios to what this 2-core machine can hold steady.
const DEFAULT_ROUNDS = 3;
const MAX_ROUNDS = 10;

/** Written into a checkout once its npm ci (install, tsc, the bundled client) succeeded: a build stopped halfway has none. */
const BUILT_MARKER = '.ab-built';

interface Plan {
  sides: [AbSide, AbSide];
  scenario: string;
  rounds: number;
  out: string;
  flags: string[];
  command: string;
}

/** The command line, checked before anything is checked out, built or started. */
function planOf(argv: readonly string[]): Plan | 'help' {
  const split = argv.indexOf('--');
  const own = split < 0 ? argv : argv.slice(0, split);
  const flags = split < 0 ? [] : argv.slice(split + 1);
  const { values, positionals } = parseArgs({ args: [...own], options: OPTIONS, allowPositionals: true });
  if (values.help) return 'help';
  if (positionals.length !== 3) throw new OutboxBenchError('USAGE', `expected <commit-a> <commit-b> <scenario>, got ${positionals.length} argument(s)`);
  const [a, b, scenario] = positionals as [string, string, string];
  if (!COMPARED_SCENARIOS.includes(scenario)) throw new OutboxBenchError('USAGE', `"${scenario}" is not a scenario bench:ab compares; one of ${COMPARED_SCENARIOS.join(', ')}`);
  const rounds = values.rounds === undefined ? DEFAULT_ROUNDS : Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > MAX_ROUNDS) throw new OutboxBenchError('USAGE', `--rounds must be a whole number from 1 to ${MAX_ROUNDS}, got "${values.rounds}"`);
  if (flags.some((flag) => flag === '--out' || flag.startsWith('--out='))) throw new OutboxBenchError('USAGE', 'the runs\' folders are bench:ab\'s to choose: give --out before the --');
  // Today's runner reads the flags as a check; an older commit's may still refuse one it did not know.
  parseCommand([scenario, ...flags]);
  assertFullKafkaJit(resolveConfig());
  const sides = [sideOf('A', a, scenario), sideOf('B', b, scenario)] as [AbSide, AbSide];
  if (sides[0].commit === sides[1].commit) throw new OutboxBenchError('USAGE', `${a} and ${b} are the same commit (${sides[0].commit.slice(0, 10)})`);
  const out = path.resolve(values.out ?? path.join(PROJECT_ROOT, 'results', `ab-${scenario}`));
  const command = `npm run bench:ab -- ${a} ${b} ${scenario} --rounds ${rounds}${values.out ? ` --out ${values.out}` : ''}${flags.length > 0 ? ` -- ${flags.join(' ')}` : ''}`;
  return { sides, scenario, rounds, out, flags, command };
}

/** A commit given on the command line, resolved, with the runner and the scenario it must have. */
function sideOf(label: 'A' | 'B', ref: string, scenario: string): AbSide {
  const git = (...args: string[]) => spawnSync('git', args, { cwd: PROJECT_ROOT, encoding: 'utf8' });
  const resolved = git('rev-parse', '--verify', '--quiet', `${ref}^{commit}`);
  const commit = resolved.stdout.trim();
  if (resolved.status !== 0 || commit === '') throw new OutboxBenchError('USAGE', `${label}: "${ref}" is not a commit of this repository`);
  if (git('cat-file', '-e', `${commit}:bench/registry.ts`).status !== 0 || git('cat-file', '-e', `${commit}:bench/run.ts`).status !== 0) {
    throw new OutboxBenchError('USAGE', `${label}: ${commit.slice(0, 10)} has no benchmark runner (bench/run.ts and bench/registry.ts)`);
  }
  // Before building, a quick look: the name quoted in the registry or a scenario file (each commit
  // declares its scenarios its own way). After building, its runner's --help decides (assertScenarioListed).
  if (git('grep', '--quiet', '--fixed-strings', `'${scenario}'`, commit, '--', 'bench/registry.ts', 'bench/scenarios').status !== 0) {
    throw new OutboxBenchError('USAGE', `${label}: ${commit.slice(0, 10)} has no ${scenario} scenario`);
  }
  return { label, ref, commit };
}

let running: ChildProcess | undefined;
let stopping = false;

/**
 * A child in a process group of its own, so that a Ctrl-C reaches bench:ab
 * alone and the child gets exactly one signal, forwarded: a second one would
 * make a runner kill its servers instead of stopping them.
 */
async function runChild(command: string, args: string[], cwd: string): Promise<number | NodeJS.Signals> {
  const child = spawn(command, args, { cwd, stdio: ['ignore', 'inherit', 'inherit'], detached: true });
  running = child;
  try {
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (c, s) => resolve([c, s]));
    });
    return code ?? signal ?? 1;
  } finally {
    running = undefined;
  }
}

function assertRunning(): void {
  if (stopping) throw new OutboxBenchError('SHUTTING_DOWN', 'stopped before the sitting ended');
}

/** The commit's checkout in .cache/ab/, with its dependencies installed and built (once: an earlier sitting's is reused). */
async function buildOf(side: AbSide): Promise<string> {
  const dir = path.join(PROJECT_ROOT, '.cache', 'ab', side.commit.slice(0, 12));
  const step = async (what: string, command: string, args: string[], cwd: string) => {
    process.stderr.write(`bench:ab: ${side.label}: ${what} ${side.commit.slice(0, 10)}\n`);
    const exit = await runChild(command, args, cwd);
    assertRunning();
    if (exit !== 0) throw new OutboxBenchError('BUILD_FAILED', `${side.label}: ${what} ${side.commit.slice(0, 10)} failed (${command} ${args.join(' ')}: exit ${exit})`);
  };
  if (!existsSync(dir)) await step('checking out', 'git', ['worktree', 'add', '--detach', dir, side.commit], PROJECT_ROOT);
  if (!existsSync(path.join(dir, BUILT_MARKER))) {
    // npm ci runs the project's prepare script, which builds with tsc.
    await step('installing and building', 'npm', ['ci', '--no-audit', '--no-fund'], dir);
    writeFileSync(path.join(dir, BUILT_MARKER), `${new Date().toISOString()}\n`);
  }
  return dir;
}

/** The built runner's own list of scenarios (its --help) holds the one compared. */
function assertScenarioListed(side: AbSide, dir: string, scenario: string): void {
  const help = spawnSync(process.execPath, [path.join(dir, 'dist', 'bench', 'run.js'), '--help'], { cwd: dir, encoding: 'utf8' });
  const listed = `${help.stdout}${help.stderr}`.split('\n').some((line) => line.trimStart().split(/\s+/)[0] === scenario);
  if (!listed) throw new OutboxBenchError('USAGE', `${side.label}: ${side.commit.slice(0, 10)}'s runner lists no ${scenario} scenario (node dist/bench/run.js --help in ${dir})`);
}

/** One run of the scenario at one commit: its own runner, its own servers, its own folder. */
async function measure(plan: Plan, side: AbSide, dir: string, round: number): Promise<AbRun> {
  const folder = path.join(plan.out, 'runs', `${side.label}-${round}`);
  mkdirSync(folder, { recursive: true });
  process.stderr.write(`\nbench:ab: round ${round} of ${plan.rounds}: ${side.label} (${side.commit.slice(0, 10)}) ${plan.scenario}\n`);
  const startedAt = new Date().toISOString();
  const exit = await runChild(process.execPath, [path.join(dir, 'dist', 'bench', 'run.js'), plan.scenario, ...plan.flags, '--out', folder], dir);
  assertRunning();
  if (exit !== 0) throw new OutboxBenchError('BUILD_FAILED', `${side.label} (${side.commit.slice(0, 10)}) ${plan.scenario} failed (exit ${exit}); nothing was compared`);
  const summary = loadResults(folder).get(plan.scenario) as Summary | undefined;
  if (!summary) throw new OutboxBenchError('BUILD_FAILED', `${side.label}: the run wrote no ${plan.scenario}/summary.json under ${folder}`);
  // The run's own report (its page, charts and their scripts) says nothing the comparison does not: only its results stay.
  for (const entry of readdirSync(folder)) if (entry !== plan.scenario) rmSync(path.join(folder, entry), { recursive: true, force: true });
  return { side: side.label, round, folder: path.relative(plan.out, folder), startedAt, probeNsPerOp: summary.environment.cpuProbe?.nsPerOp ?? null };
}

/** Every run of the sitting, compared, written beside them; its table printed. */
async function sitting(plan: Plan): Promise<void> {
  const { sides } = plan;
  const dirs = { A: await buildOf(sides[0]), B: await buildOf(sides[1]) };
  assertScenarioListed(sides[0], dirs.A, plan.scenario);
  assertScenarioListed(sides[1], dirs.B, plan.scenario);
  // A sitting replaces the last one's runs: a scenario that merges into its folder would pool them otherwise.
  rmSync(path.join(plan.out, 'runs'), { recursive: true, force: true });
  const runs: AbRun[] = [];
  for (const [round, label] of abOrder(plan.rounds)) runs.push(await measure(plan, label === 'A' ? sides[0] : sides[1], dirs[label], round));
  const folders = (label: 'A' | 'B') => runs.filter((r) => r.side === label).map((r) => path.join(plan.out, r.folder));
  const comparison = compareResults(loadSide(folders('A')), loadSide(folders('B')));
  if (comparison.figures.length === 0) throw new OutboxBenchError('BUILD_FAILED', `the two sides' ${plan.scenario} summaries hold no figure in common: ${comparison.notCompared.map((n) => n.reason).join('; ')}`);
  const first = loadResults(folders('A')[0]!).get(plan.scenario)!;
  // The host as the first run that read the CPU probe read it (an older commit's runner reads none).
  const probed = runs.find((r) => r.probeNsPerOp !== null);
  const host = probed ? loadResults(path.join(plan.out, probed.folder)).get(plan.scenario)! : first;
  const summary: Summary<AbResult> = {
    scenario: 'ab',
    title: `${plan.scenario} at ${sides[0].commit.slice(0, 7)} and ${sides[1].commit.slice(0, 7)}, alternated`,
    date: runs[0]!.startedAt,
    command: plan.command,
    parameters: first.parameters,
    runs: [],
    extra: { scenario: plan.scenario, sides, flags: plan.flags, rounds: plan.rounds, runs, comparison },
    // Each run's runner refused a tree with changes in its own checkout, so the figures are both
    // commits' (extra.sides), whatever this checkout holds.
    environment: { ...host.environment, gitDirty: false, gitChanges: [] },
  };
  writeFileSync(path.join(plan.out, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  const label = (side: AbSide) => `${side.ref} (${side.commit.slice(0, 7)})`;
  process.stdout.write(`${formatComparison(comparison, { a: label(sides[0]), b: label(sides[1]) }).join('\n')}\n\nwrote ${path.join(plan.out, 'summary.json')}; npm run bench:report shows it\n`);
}

async function main(): Promise<number> {
  let plan: Plan | 'help';
  try {
    plan = planOf(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`bench:ab: ${describeError(error)}\n(npm run bench:ab -- --help for usage)\n`);
    return exitCodeFor(error);
  }
  if (plan === 'help') {
    process.stdout.write(`${HELP}\n`);
    return EXIT.OK;
  }
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`\nbench:ab: ${signal}: stopping the run in progress; the sitting is not compared\n`);
      if (running) running.kill(signal);
      else process.exit(130);
    });
  }
  // Whatever ends bench:ab, its child (in a group of its own) is not left running.
  process.once('exit', () => running?.kill('SIGTERM'));
  try {
    await sitting(plan);
    return EXIT.OK;
  } catch (error) {
    process.stderr.write(`bench:ab: ${describeError(error)}\n`);
    return stopping ? 130 : exitCodeFor(error);
  }
}

process.exitCode = await main();
