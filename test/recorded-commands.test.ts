/**
 * The commands recorded in published summaries still parse through the one
 * runner, old flag names included, and mean what they meant; `--help` is
 * written from the same specs the parser reads.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { PROJECT_ROOT } from '../src/config.js';
import { RUNNER_SCENARIOS, SCENARIO_NAMES, SCENARIO_REGISTRY, SCENARIOS } from '../bench/registry.js';
import { flagsOf, parseCommand, type Command } from '../bench/runner/command.js';
import { help } from '../bench/runner/help.js';
import type { Scenario } from '../bench/scenario.js';

const RESULTS = path.join(PROJECT_ROOT, 'results');

/** Every command line a published summary records: its own, and a soak's per row. */
function recordedCommands(): string[] {
  const commands = new Set<string>();
  for (const folder of readdirSync(RESULTS)) {
    const file = path.join(RESULTS, folder, 'summary.json');
    if (!existsSync(file)) continue;
    const summary = JSON.parse(readFileSync(file, 'utf8')) as { command?: string; extra?: { rows?: { run?: { command: string } }[] } };
    if (summary.command) commands.add(summary.command);
    for (const row of summary.extra?.rows ?? []) if (row.run) commands.add(row.run.command);
  }
  return [...commands];
}

/**
 * The runner's arguments of a recorded command: `npm run chaos -- ...` and `node dist/bench/chaos.js ...`
 * are `chaos ...`; `npm run bench:ab -- A B <scenario> [its options] -- <flags>` ran `<scenario> <flags>` at each commit.
 */
function argvOf(command: string): string[] {
  const words = command.split(/\s+/).filter(Boolean);
  if (words.slice(0, 4).join(' ') === 'npm run bench:ab --') {
    const split = words.indexOf('--', 4);
    return [words[6]!, ...(split < 0 ? [] : words.slice(split + 1))];
  }
  if (words.slice(0, 3).join(' ') === 'npm run chaos') return ['chaos', ...words.slice(words[3] === '--' ? 4 : 3)];
  if (words.slice(0, 2).join(' ') === 'node dist/bench/chaos.js') return ['chaos', ...words.slice(2)];
  assert.deepEqual(words.slice(0, 2), ['node', 'dist/bench/run.js'], command);
  return words.slice(2);
}

const namesAScenario = (command: Command) => command.shared.length + command.groups.length > 0;

function sharedValue(command: Command, scenario: string, flag: string): unknown {
  const found = command.shared.find((s) => s.scenario.name === scenario);
  assert.ok(found, `${scenario} selected`);
  return found.flags.values.get(flag);
}

describe('recorded commands and the runner vocabulary', () => {
  it('parses every command recorded in results/, without running it', () => {
    const commands = recordedCommands();
    assert.ok(commands.length >= 10, `${commands.length} recorded commands`);
    for (const command of commands) assert.ok(namesAScenario(parseCommand(argvOf(command))), `${command} names a scenario`);
  });

  it('parses every npm script that runs the runner or the chaos entry', () => {
    const { scripts } = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    const entries = Object.entries(scripts).filter(([, line]) => /^node dist\/bench\/(run|chaos)\.js/.test(line));
    assert.ok(entries.some(([name]) => name === 'chaos'), 'npm run chaos is one of them');
    for (const [name, line] of entries) assert.ok(namesAScenario(parseCommand(argvOf(line))), `npm run ${name}`);
  });

  it('keeps the meaning of the old names: --tps counted transactions of 5 events, --window-s is the duration', () => {
    const soak = parseCommand(argvOf('npm run chaos -- --soak 100 --seed 20261201 --window-s 3600 --tps 200'));
    const [chaos] = soak.groups;
    assert.ok(chaos);
    assert.equal(chaos.flags.values.get('rate'), 1_000);
    assert.equal(chaos.flags.values.get('duration-s'), 3_600);
    assert.equal(chaos.flags.values.get('seed'), 20_261_201);
    assert.equal(chaos.flags.values.get('soak'), 100);
    assert.ok(chaos.members.every((row) => row.name !== 'postgres-failover' && row.name !== 'naive-dual-write'), 'a soak takes the rows it can repeat');
    assert.ok(soak.notices.some((n) => /--tps is now --rate/.test(n)));
    const matrix = parseCommand(['chaos', '--rows', 'outbox+cdc,kafka-broker-kill', '--drain-s', '30']);
    assert.deepEqual(matrix.groups[0]?.members.map((row) => row.name), ['outbox+cdc', 'kafka-broker-kill']);
    assert.equal(matrix.groups[0]?.flags.values.get('drain-timeout-s'), 30);
    assert.equal(matrix.groups[0]?.flags.values.get('rate'), 200, 'the matrix offers 40 transactions of 5 events a second');
    assert.throws(() => parseCommand(['chaos', '--soak', '5', '--rows', 'postgres-failover']), /cannot take faults again and again/);

    const sweep = parseCommand(argvOf('node dist/bench/run.js sweep-payload --points 10KB --strategies skip-locked --sweep-start-rate 2000'));
    assert.deepEqual(sharedValue(sweep, 'sweep-payload', 'mode'), ['skip-locked']);
    assert.deepEqual(sharedValue(sweep, 'sweep-payload', 'points'), ['10KB']);
    assert.equal(sharedValue(sweep, 'sweep-payload', 'start-rate'), 2_000);
    const drain = parseCommand(argvOf('node dist/bench/run.js drain --strategies cdc --drain-events 300000 --profile 1 --repeats 1'));
    assert.equal(sharedValue(drain, 'drain', 'backlog'), 300_000);
    assert.equal(sharedValue(drain, 'drain', 'profile'), true);
    assert.equal(sharedValue(drain, 'drain', 'repeats'), 1);
    const http = parseCommand(['http', '--http-p99-ms', '80', '--http-compare', '0', '--no-http-search']);
    assert.equal(sharedValue(http, 'http', 'p99-limit-ms'), 80);
    assert.equal(sharedValue(http, 'http', 'http-compare'), false);
    assert.equal(sharedValue(http, 'http', 'http-search'), false);
  });

  it('refuses what no spec allows, naming the flag', () => {
    assert.throws(() => parseCommand(['polling', '--turbo']), /unknown flag --turbo(?!;)/);
    assert.throws(() => parseCommand(['polling', '--ratee', '5']), /unknown flag --ratee; did you mean --rate\?/);
    assert.throws(() => parseCommand(['saturation', '--strategie', 'cdc']), /unknown flag --strategie; did you mean --mode\?/, 'a former name, --strategies, is met by the flag it became');
    assert.throws(() => parseCommand(['saturation', '--mode', 'fax']), /flag --mode: "fax" is not one of/);
    assert.throws(() => parseCommand(['http', '--http-compare=maybe']), /flag --http-compare: "maybe" is not yes or no/);
    assert.throws(() => parseCommand(['chaos', '--rate', '2']), /flag --rate: 2 is out of range/);
    assert.throws(() => parseCommand(['nonesuch']), /unknown scenario nonesuch \(known: polling, /);
    assert.throws(() => parseCommand(['pollin']), /unknown scenario pollin; did you mean polling\?/);
  });

  it('keys every scenario by its own name, in the order all runs them', () => {
    for (const [key, scenario] of Object.entries(SCENARIO_REGISTRY)) assert.equal(scenario.name, key);
    assert.deepEqual(
      SCENARIOS.map((s) => s.name),
      [...SCENARIO_NAMES],
    );
    assert.equal(new Set(RUNNER_SCENARIOS.map((s) => s.name)).size, RUNNER_SCENARIOS.length, 'no two scenarios share a name');
  });

  it('writes --help from the specs: every flag of every scenario, group and the runner', () => {
    const text = help();
    for (const scenario of RUNNER_SCENARIOS) {
      assert.match(text, new RegExp(`^  ${scenario.name.replace(/[+]/g, '\\+')} `, 'm'), scenario.name);
      const flags = scenario.servers === 'own' ? flagsOf(scenario.group) : flagsOf(scenario as Scenario);
      for (const flag of Object.keys(flags)) assert.ok(text.includes(`--${flag} `), `--${flag} of ${scenario.name}`);
    }
  });
});
