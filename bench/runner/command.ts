/**
 * A runner command line, read without running anything: which scenarios it
 * names and every flag's value for each of them, from the scenarios' own
 * flag specs. The runner runs what this returns; the recorded commands of
 * published summaries are checked through it.
 */
import { OutboxBenchError } from '../../src/errors.js';
import { flagTable, flagValue, parseArgv, type FlagSpecs, type FlagTable, type FlagValue } from '../flags.js';
import { closestName } from '../../src/command-kit.js';
import { RUNNER_SCENARIOS as SCENARIOS } from '../registry.js';
import type { AnyScenario, OwnServersScenario, Scenario, ScenarioGroup } from '../scenario.js';
import { PARAMETER_SPECS, RUNNER_FLAGS } from './parameters.js';

/** The flags one scenario (or one group's sitting) reads, with their values. */
export interface ResolvedFlags {
  specs: FlagSpecs;
  values: ReadonlyMap<string, FlagValue>;
  given: ReadonlySet<string>;
}

export interface Command {
  help: boolean;
  /** The names given (scenarios, groups, `all`), as the summary's replay line leaves them out. */
  names: string[];
  /** Scenarios on the shared servers, in the order named. */
  shared: { scenario: Scenario; flags: ResolvedFlags }[];
  /** Groups of scenarios on servers of their own, each with its members named. */
  groups: { group: ScenarioGroup; members: OwnServersScenario[]; flags: ResolvedFlags }[];
  runner: ResolvedFlags;
  /** One line per former flag name used, and per flag no named scenario reads. */
  notices: string[];
}

const isOwn = (scenario: AnyScenario): scenario is OwnServersScenario => scenario.servers === 'own';

export function groupsOf(scenarios: readonly AnyScenario[]): ScenarioGroup[] {
  return [...new Set(scenarios.filter(isOwn).map((s) => s.group))];
}

/** The flags a scenario reads: the runner's, then the pipeline's or its group's, then its own. */
export function flagsOf(scenario: Scenario | ScenarioGroup): FlagSpecs {
  const own = 'open' in scenario ? scenario.flags : { ...PARAMETER_SPECS, ...scenario.flags };
  return { ...RUNNER_FLAGS, ...own };
}

let table: FlagTable | undefined;
/** Every flag of every scenario, read once. */
function allFlags(): FlagTable {
  const sets = [RUNNER_FLAGS, ...SCENARIOS.filter((s): s is Scenario => !isOwn(s)).map(flagsOf), ...groupsOf(SCENARIOS).map(flagsOf)];
  return (table ??= flagTable(sets));
}

/** `--rows a,b` of the crash matrix's old runner: its rows are scenarios now, named like any other. */
function rowsAsNames(argv: readonly string[], notices: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    const inline = token.startsWith('--rows=') ? token.slice('--rows='.length) : undefined;
    if (token !== '--rows' && inline === undefined) {
      out.push(token);
      continue;
    }
    const names = (inline ?? argv[++i] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    notices.push(`--rows is now the rows' own names: node dist/bench/run.js ${names.join(' ')}`);
    out.push(...names);
  }
  return out;
}

/** Values for every flag in `specs`: the one given, or the default. */
export function resolveFlags(specs: FlagSpecs, given: ReadonlyMap<string, string | true>): ResolvedFlags {
  const values = new Map<string, FlagValue>();
  const has = (name: string) => given.has(name);
  for (const [name, spec] of Object.entries(specs)) {
    const raw = given.get(name);
    if (raw !== undefined) values.set(name, flagValue(name, raw, spec));
    else if (spec.kind === undefined || spec.kind === 'number') values.set(name, spec.defaultFrom?.(has) ?? spec.defaultValue);
    else if (spec.kind === 'yes-no') values.set(name, spec.defaultValue);
  }
  return { specs, values, given: new Set([...given.keys()].filter((name) => name in specs)) };
}

function unknownScenario(names: readonly string[]): OutboxBenchError {
  const known = [...SCENARIOS.filter((s) => !isOwn(s)).map((s) => s.name), ...groupsOf(SCENARIOS).map((g) => g.name)];
  const near = names.length === 1 ? closestName(names[0]!, [...known, 'all']) : undefined;
  return new OutboxBenchError('USAGE', `unknown scenario ${names.join(', ')}${near ? `; did you mean ${near}?` : ''} (known: ${known.join(', ')} and the rows of chaos)`);
}

/** The named scenarios: `all` is every one not left out of it; a group's name alone, its members (unless some are named). */
function select(positionals: readonly string[], given: ReadonlyMap<string, string | true>): AnyScenario[] {
  const unknown = positionals.filter((n) => n !== 'all' && !SCENARIOS.some((s) => s.name === n) && !groupsOf(SCENARIOS).some((g) => g.name === n));
  if (unknown.length > 0) throw unknownScenario(unknown);
  const named = new Set<AnyScenario>();
  for (const name of positionals) {
    if (name === 'all') for (const s of SCENARIOS) if (!s.standalone) named.add(s);
    const scenario = SCENARIOS.find((s) => s.name === name);
    if (scenario) named.add(scenario);
  }
  for (const group of groupsOf(SCENARIOS)) {
    if (!positionals.includes(group.name) || [...named].some((s) => isOwn(s) && s.group === group)) continue;
    for (const member of group.members({ given: (flag) => given.has(flag) })) named.add(member);
  }
  return [...named];
}

/** Reads a command line; a USAGE error for an unknown scenario or flag, or a value its spec refuses. */
export function parseCommand(argv: readonly string[]): Command {
  const notices: string[] = [];
  const parsed = parseArgv(rowsAsNames(argv, notices), allFlags());
  notices.push(...parsed.notices);
  const runner = resolveFlags(RUNNER_FLAGS, parsed.given);
  const command: Command = { help: runner.values.get('help') === true, names: parsed.positionals, shared: [], groups: [], runner, notices };
  if (command.help) return command;
  if (parsed.positionals.length === 0) throw new OutboxBenchError('USAGE', 'name a scenario');
  const scenarios = select(parsed.positionals, parsed.given);
  for (const scenario of scenarios) if (!isOwn(scenario)) command.shared.push({ scenario, flags: resolveFlags(flagsOf(scenario), parsed.given) });
  for (const group of groupsOf(scenarios)) {
    const members = scenarios.filter((s): s is OwnServersScenario => isOwn(s) && s.group === group);
    group.check?.(members, { given: (flag) => parsed.given.has(flag) });
    command.groups.push({ group, members, flags: resolveFlags(flagsOf(group), parsed.given) });
  }
  const read = new Set([...command.shared, ...command.groups].flatMap((s) => Object.keys(s.flags.specs)));
  const unread = [...parsed.given.keys()].filter((flag) => !read.has(flag));
  if (unread.length > 0) notices.push(`${unread.map((f) => `--${f}`).join(', ')}: no scenario named reads it; ignored`);
  return command;
}
