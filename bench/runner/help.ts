/**
 * `node dist/bench/run.js --help`, written from the scenarios' and groups'
 * flag specs: a flag is listed once per meaning, with the scenarios that
 * read it that way.
 */
import { helpLine, type FlagSpec, type FlagSpecs } from '../flags.js';
import { RUNNER_SCENARIOS, SCENARIOS } from '../registry.js';
import type { OwnServersScenario } from '../scenario.js';
import { groupsOf } from './command.js';
import { PARAMETER_SPECS, RUNNER_FLAGS } from './parameters.js';

/** Each (flag, spec) once, with the names of those that declare it: sweeps and relays share their specs. */
function ownFlagLines(owners: readonly { name: string; flags?: FlagSpecs | undefined }[]): string[] {
  const seen = new Map<string, { name: string; spec: FlagSpec; owners: string[] }>();
  for (const owner of owners) {
    for (const [name, spec] of Object.entries(owner.flags ?? {})) {
      const key = `${name}\u0000${helpLine(name, spec)}`;
      const entry = seen.get(key) ?? { name, spec, owners: [] };
      entry.owners.push(owner.name);
      seen.set(key, entry);
    }
  }
  return [...seen.values()].sort((a, b) => a.name.localeCompare(b.name)).map((e) => helpLine(e.name, e.spec, e.owners.join(', ')));
}

const flagLines = (specs: FlagSpecs) => Object.entries(specs).map(([name, spec]) => helpLine(name, spec));

export function help(): string {
  const rows = RUNNER_SCENARIOS.filter((s): s is OwnServersScenario => s.servers === 'own');
  const groups = groupsOf(RUNNER_SCENARIOS);
  return [
    'Usage: node dist/bench/run.js <scenario...|all|chaos> [flags]',
    '',
    'Scenarios on servers the runner starts once (or DATABASE_URL / KAFKA_BROKERS / `npm run infra:up`):',
    ...SCENARIOS.map((s) => `  ${s.name.padEnd(22)} ${s.description}${s.standalone ? ' (not part of all: long)' : ''}`),
    '',
    ...groups.flatMap((group) => [
      `Scenarios on servers of their own: ${group.name}, ${group.description}:`,
      ...rows.filter((r) => r.group === group).map((r) => `  ${r.name.padEnd(22)} ${r.description}`),
      '',
      `Flags of ${group.name} and its rows:`,
      ...flagLines(group.flags),
      '',
    ]),
    'Flags of every scenario on the shared servers (each has its own defaults):',
    ...flagLines(PARAMETER_SPECS),
    '',
    'Flags of some scenarios:',
    ...ownFlagLines(SCENARIOS),
    '',
    'Flags of the runner:',
    ...flagLines(RUNNER_FLAGS),
    '',
    'Former flag names are still accepted and say their new name. Run benchmarks alone on the machine: anything else running skews them.',
  ].join('\n');
}
