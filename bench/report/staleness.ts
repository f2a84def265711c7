/**
 * Whether a results folder was measured before the last change to the code
 * it measures: the scenario's module and every module it imports, in bench/
 * and src/ (read from the sources' import lines), and the SQL the project
 * migrates with. A folder measured at an older commit than that code's last
 * change is marked, so a reader knows its figures may not be today's code's.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/config.js';

/** A scenario whose module is not named after it: the sweeps, our table relays, the soak. */
const MODULE_OF: Record<string, string> = {
  polling: 'table-relays',
  'skip-locked': 'table-relays',
  'chaos-soak': 'chaos',
};

/**
 * The peers' own code (their drivers, JMX and JVM readers, their SQL): every
 * scenario's import closure holds the driver registry, but only the peers
 * comparison and the frontier run a peer, so a change there marks them alone.
 */
const PEER_SCENARIOS = new Set(['peers', 'frontier']);
const PEER_CODE = /^bench\/drivers\/(debezium|jmx|jvm-threads|ptp[\w-]*)\.ts$/;

/** The module a scenario runs from, relative to the project (bench/scenarios/<name>.ts). */
export function scenarioModule(scenario: string, root = PROJECT_ROOT): string | undefined {
  const name = scenario.startsWith('sweep-') ? 'sweeps' : (MODULE_OF[scenario] ?? scenario);
  const file = `bench/scenarios/${name}.ts`;
  return existsSync(path.join(root, file)) ? file : undefined;
}

/** The sources a scenario's figures depend on: its module's import closure, a peer's code only for the scenarios that run one. */
export function measuredCode(scenario: string, root = PROJECT_ROOT): string[] | undefined {
  const module = scenarioModule(scenario, root);
  if (!module) return undefined;
  return importClosure(module, root).filter((file) => PEER_SCENARIOS.has(scenario) || !PEER_CODE.test(file));
}

const IMPORT = /(?:import|export)\s[^'"]*?from\s+['"](\.{1,2}\/[^'"]+)\.js['"]|import\(\s*['"](\.{1,2}\/[^'"]+)\.js['"]\s*\)/g;

/** Every project source a module imports, itself included (relative paths, .ts), following imports to the end. */
export function importClosure(entry: string, root = PROJECT_ROOT): string[] {
  const seen = new Set<string>();
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    let text: string;
    try {
      text = readFileSync(path.join(root, file), 'utf8');
    } catch {
      continue;
    }
    for (const match of text.matchAll(IMPORT)) {
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), `${match[1] ?? match[2]}.ts`));
      if (!seen.has(target)) queue.push(target);
    }
  }
  return [...seen].sort();
}

function git(args: string[], root: string): string | undefined {
  try {
    return execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

/** What the report says of a folder's code: unchanged since it was measured, changed (the last change), or unknown. */
export type CodeSince = { changed: false } | { changed: true; commit: string; date: string; commits: number } | { unknown: string };

/**
 * Whether the code a scenario measures changed after `measuredAt` (the
 * oldest commit its figures come from): the last commit touching its import
 * closure or sql/, and whether `measuredAt` already contains it.
 */
export function codeSince(scenario: string, measuredAt: string, root = PROJECT_ROOT): CodeSince {
  const code = measuredCode(scenario, root);
  if (!code) return { unknown: `no module for ${scenario}` };
  const commit = measuredAt.replace(/-dirty$/, '');
  if (git(['cat-file', '-e', `${commit}^{commit}`], root) === undefined) return { unknown: `commit ${commit.slice(0, 7)} is not in this history` };
  const paths = ['--', ...code, 'sql/', ...(scenario === 'peers' ? [] : [':(exclude)sql/peers'])];
  const last = git(['log', '-1', '--format=%H %cs', ...paths], root);
  if (!last) return { unknown: 'no git history' };
  const [hash = '', date = ''] = last.split(' ');
  // merge-base --is-ancestor answers by its exit status: 0 when the measured commit already holds the change.
  if (git(['merge-base', '--is-ancestor', hash, commit], root) !== undefined) return { changed: false };
  // How many commits since touched it: one refactor reads apart from weeks of changes.
  return { changed: true, commit: hash, date, commits: Number(git(['rev-list', '--count', `${commit}..HEAD`, ...paths], root) ?? Number.NaN) };
}

/** The table cell for a folder. */
export function codeSinceCell(since: CodeSince): string {
  if ('unknown' in since) return `unknown (${since.unknown})`;
  return since.changed ? `**changed since**: ${since.commits} commit${since.commits === 1 ? '' : 's'}, the last ${since.commit.slice(0, 7)} (${since.date})` : 'unchanged';
}
