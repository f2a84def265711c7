/**
 * Builds results/README.md, results/index.html (bench/report/page.ts) and
 * results/charts/ from the summaries in results/<folder>/summary.json:
 * `node dist/bench/report.js [results-dir]`.
 * Each scenario writes its own section (Scenario.report) from its own
 * summary, in the registry's order; the relays side by side, the crash
 * matrix, the environment and how to reproduce are added here. Numbers are
 * copied from the summaries, never typed in.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../src/config.js';
import { chaosReport, chaosSoakReport } from './chaos/report.js';
import { abReport, abSitting, type AbResult } from './report/ab.js';
import { SCENARIOS } from './registry.js';
import { current, isLegacy, loadSummaries, type ReportContext, type Summary } from './report/kit.js';
import { buildPage } from './report/page.js';
import { syncQuotes } from './report/quotes.js';
import { sittingNoise } from './harness/sitting.js';
import type { DrainComparison } from './scenarios/peers/results.js';
import { relaysSideBySide } from './report/side-by-side.js';
import { codeSince, codeSinceCell } from './report/staleness.js';

export { formatFaults } from './chaos/report.js';

/** Scenarios whose legacy summaries are left out (their sections read only the current shape). */
const CURRENT_ONLY = ['polling', 'skip-locked', 'cdc', 'saturation', 'drain', 'fastest-path', 'http'];

function notShownSection(context: ReportContext): string[] {
  const skipped = CURRENT_ONLY.filter((name) => context.summaries.has(name) && !current(context, name));
  if (skipped.length === 0) return [];
  return ['## Not shown', '', `Results measured under the harness's earlier rules, left out until re-run: ${skipped.map((name) => `\`${name}\``).join(', ')}.`, ''];
}

/**
 * Every scenario's sections, in the registry's order: its own folder first,
 * then the folders of further runs of it (`results/<name>-<label>/`).
 */
function scenarioSections(context: ReportContext): string[] {
  return SCENARIOS.flatMap((scenario) => {
    if (!scenario.report) return [];
    const folders = [...context.summaries].filter(([folder, summary]) => folder === scenario.name || (folder.startsWith(`${scenario.name}-`) && summary.scenario === scenario.name)).map(([folder]) => folder);
    return folders.sort().flatMap((folder) => scenario.report!(context, folder));
  });
}

/** A line at the top when any published summary was measured on a tree with uncommitted changes. */
function dirtyBanner(summaries: Map<string, Summary>): string[] {
  const dirty = [...summaries.values()].filter((s) => s.environment.gitDirty);
  if (dirty.length === 0) return [];
  return [
    `> **Measured with uncommitted changes** (\`--allow-dirty\`): ${dirty
      .map((s) => `${s.scenario} (commit ${s.environment.gitCommit.slice(0, 10)}${s.environment.gitChanges ? `; changed: ${s.environment.gitChanges.join(', ')}` : ''})`)
      .join('; ')}. These figures cannot be tied to a commit.`,
    '',
  ];
}

function environmentSection(summaries: Map<string, Summary>): string[] {
  // The newest current summary speaks for the machine; legacy ones lack the settings.
  const env = [...summaries.values()].filter((s) => !isLegacy(s)).sort((a, b) => b.date.localeCompare(a.date))[0]?.environment;
  if (!env) return [];
  const fsync = 'notMeasured' in env.fsync ? `not measured: ${env.fsync.notMeasured}` : `p50 ${env.fsync.p50Ms} ms, p99 ${env.fsync.p99Ms} ms, max ${env.fsync.maxMs} ms (${env.fsync.samples} × 8 KiB write + fdatasync)`;
  return [
    '## Environment',
    '',
    'Read from the machine and the servers when the newest of these results was measured; each `summary.json` holds its own.',
    '',
    `| | |`,
    `|---|---|`,
    `| date | ${env.date} |`,
    `| CPU | ${env.cpuModel}, ${env.cores} cores |`,
    `| memory | ${env.memoryGiB} GiB |`,
    `| OS | ${env.os} |`,
    `| Node.js | ${env.node} |`,
    `| PostgreSQL | ${env.postgres} |`,
    `| PostgreSQL settings | ${Object.entries(env.postgresSettings).map(([name, value]) => `${name} = ${value}`).join(', ')} |`,
    `| fsync latency of the data directory's disk | ${fsync} |`,
    `| CPU speed probe | ${env.cpuProbe ? `${env.cpuProbe.nsPerOp} ns per operation, lower is faster (${env.cpuProbe.what}; slowest trial +${env.cpuProbe.spreadPercent}%)` : 'not recorded'} |`,
    `| Kafka | ${env.kafka} |`,
    `| Java | ${env.java} |`,
    `| git commit | ${env.gitCommit}${env.gitDirty ? ` (with uncommitted changes: ${env.gitChanges.join(', ')})` : ' (clean tree)'} |`,
    `| dependencies | ${Object.entries(env.dependencies).map(([name, version]) => `${name} ${version}`).join(', ')} |`,
    '',
    `Everything runs on this one machine at once: PostgreSQL, the Kafka broker, the relay, the consumer and the load generator ` +
      `compete for the same ${env.cores} cores, so absolute rates are this machine's. CPU seconds per million events transfer to other machines ` +
      `in proportion to their speed, and hosts of the same CPU model have differed up to threefold here: the probe reads the host of each result.`,
    '',
    'Where each folder was measured (a probe reads "not recorded" for results older than it), and whether the code it measures ' +
      '(its scenario and every module it imports, and sql/) changed after the commit it was measured at (for a merged folder, after the oldest of its commits):',
    '',
    '| results | measured | commit | CPU | CPU probe (ns per operation) | code it measures |',
    '|---|---|---|---|---:|---|',
    ...[...summaries].map(([folder, summary]) => {
      const { dates, commits, probes, oldest } = provenance(summary);
      const code = summary.scenario === 'ab' ? 'each side its own commit\'s, by design' : codeSinceCell(codeSince(summary.scenario, oldest));
      return `| ${folder} | ${dates} | ${commits} | ${summary.environment.cpuModel} | ${probes} | ${code} |`;
    }),
    '',
  ];
}

/** The days and commits a folder's figures come from: one run's, or (peers and sweeps, merged over sittings) each entry's. */
function provenance(summary: Summary): { dates: string; commits: string; probes: string; oldest: string } {
  if (summary.scenario === 'ab' && summary.extra) {
    // Two commits' code, alternated: neither is "the" commit, and the code since is each side's own.
    const ab = summary.extra as AbResult;
    return {
      oldest: summary.environment.gitCommit,
      dates: summary.date.slice(0, 10),
      commits: ab.sides.map((s) => s.commit.slice(0, 7)).join(' and '),
      // Each run read its own probe (or none, at a commit older than it), as a merged folder's entries do.
      probes: mergedProbes(ab.runs.map((r) => (r.probeNsPerOp === null ? {} : { cpuProbe: { nsPerOp: r.probeNsPerOp } }))),
    };
  }
  const extra = (summary.extra as { peers?: MergedEntry[]; entries?: MergedEntry[] } | undefined) ?? {};
  const merged = [...(extra.peers ?? []), ...(extra.entries ?? [])];
  const days = [...new Set(merged.map((e) => e.date?.slice(0, 10)).filter((d): d is string => Boolean(d)))].sort();
  const commits = [...new Set(merged.map((e) => e.commit?.slice(0, 7)).filter((c): c is string => Boolean(c)))];
  const byDate = merged.filter((e) => e.commit && e.date).sort((a, b) => a.date!.localeCompare(b.date!));
  return {
    oldest: byDate[0]?.commit ?? summary.environment.gitCommit,
    dates: days.length === 0 ? summary.date.slice(0, 10) : days.length === 1 ? days[0]! : `${days[0]} to ${days[days.length - 1]}`,
    commits: (commits.length > 0 ? commits : [summary.environment.gitCommit.slice(0, 7)]).join(', '),
    probes: merged.length === 0 ? (summary.environment.cpuProbe?.nsPerOp.toString() ?? 'not recorded') : mergedProbes(merged),
  };
}

/** A merged folder's sittings each read their own host: their probes' range, or which went unread. */
function mergedProbes(merged: readonly MergedEntry[]): string {
  const ns = merged.map((e) => e.cpuProbe?.nsPerOp).filter((n): n is number => n !== undefined);
  if (ns.length === 0) return 'not recorded';
  const range = Math.min(...ns) === Math.max(...ns) ? `${ns[0]}` : `${Math.min(...ns)}-${Math.max(...ns)}`;
  return ns.length === merged.length ? range : `${range} (not recorded for ${merged.length - ns.length} of ${merged.length})`;
}

interface MergedEntry {
  commit?: string;
  date?: string;
  cpuProbe?: { nsPerOp: number };
}

/** One sitting as the header names it, and which part of a folder it measured (a merged folder's relay or sweep point), if not all of it. */
interface SittingOf {
  description: string;
  part?: string;
}

const probeText = (probe: string) => (probe === 'not recorded' ? 'CPU probe not recorded' : `CPU probe ${probe} ns per operation`);

/**
 * The sittings a folder's figures come from: the run's own, or for a folder
 * merged over sittings, each entry's (a peers relay, a sweep point) and each
 * sitting of its drain comparison, each with the probe read in it.
 */
function sittingsOf(summary: Summary): SittingOf[] {
  if (summary.scenario === 'ab' && summary.extra) return [{ description: abSitting(summary as Summary<AbResult>) }];
  const env = summary.environment;
  const host = `${env.cpuModel} (${env.cores} cores)`;
  const extra =
    (summary.extra as
      | { peers?: (MergedEntry & { name?: string })[]; entries?: (MergedEntry & { relay?: string; point?: string })[]; drains?: unknown; sittings?: unknown; runs?: unknown }
      | undefined) ?? {};
  const merged = [...(extra.peers ?? []), ...(extra.entries ?? [])];
  // Sittings of a drain comparison: the peers folder's, or a drain folder's own (several once resumed).
  const comparison: Pick<DrainComparison, 'sittings' | 'runs'> | undefined =
    extra.drains !== undefined && !Array.isArray(extra.drains)
      ? (extra.drains as DrainComparison)
      : Array.isArray(extra.sittings) && extra.sittings.length > 1
        ? (extra as Pick<DrainComparison, 'sittings' | 'runs'>)
        : undefined;
  const own = { description: `${summary.date.slice(0, 10)}, ${host}, commit ${env.gitCommit.slice(0, 7)}, ${probeText(env.cpuProbe?.nsPerOp.toString() ?? 'not recorded')}` };
  if (merged.length === 0 && !comparison) return [own];
  const entries = merged.map((e) => ({
    description: `${e.date?.slice(0, 10) ?? summary.date.slice(0, 10)}, ${host}, commit ${(e.commit ?? env.gitCommit).slice(0, 7)}, ${probeText(e.cpuProbe?.nsPerOp.toString() ?? 'not recorded')}`,
    part: 'name' in e && e.name ? e.name : 'relay' in e && e.relay ? `${e.relay} at ${e.point}` : 'an entry',
  }));
  const drainSittings = (comparison?.sittings ?? []).map((sitting) => {
    const noise = sittingNoise(comparison!.runs.flatMap((r) => (r.window?.sitting === sitting.sitting ? [r.window] : [])))[0];
    const probe = noise ? (noise.probeMin === noise.probeMax ? `${noise.probeMin}` : `${noise.probeMin}-${noise.probeMax}`) : 'not recorded';
    return { description: `${sitting.startedAt.slice(0, 10)}, ${sitting.cpuModel} (${env.cores} cores), commit ${sitting.commit.slice(0, 7)}, ${probeText(probe)}`, part: `drains, sitting ${sitting.sitting}` };
  });
  const all = [...entries, ...drainSittings];
  return all.length === 0 ? [own] : all;
}

/**
 * Every sitting the figures below come from: one line per day, CPU, commit
 * and probe reading, with its folders (and, for a folder merged over
 * sittings, the part each measured). Figures of different lines were
 * measured on different hosts or code, and are not compared with each other.
 */
function sittingsHeader(summaries: Map<string, Summary>): string[] {
  if (summaries.size === 0) return ['No results yet: run `npm run bench:all`.', ''];
  // Per sitting, per folder, the parts it measured there.
  const sittings = new Map<string, Map<string, string[]>>();
  for (const [folder, summary] of summaries) {
    const all = sittingsOf(summary);
    for (const { description, part } of all) {
      const folders = sittings.get(description) ?? new Map<string, string[]>();
      folders.set(folder, [...(folders.get(folder) ?? []), ...(part === undefined ? [] : [part])]);
      sittings.set(description, folders);
    }
  }
  // A folder wholly from one sitting is named alone; one spread over several names its part in each.
  const named = (folder: string, parts: string[]) => {
    const whole = parts.length === 0 || new Set(sittingsOf(summaries.get(folder)!).map((s) => s.description)).size === 1;
    return whole ? folder : `${folder} (${parts.join(', ')})`;
  };
  return [
    `The figures below come from ${sittings.size} sitting${sittings.size === 1 ? '' : 's'}; figures of different sittings ran on different hosts or code, and hosts of one CPU model have run the same code up to three times apart:`,
    '',
    ...[...sittings].map(([sitting, folders]) => `- ${sitting}: ${[...folders].map(([folder, parts]) => named(folder, parts)).join(', ')}`),
    '',
  ];
}

function reproduceSection(summaries: Map<string, Summary>): string[] {
  return [
    '## Reproduce',
    '',
    '```sh',
    'npm install',
    'npm run bench:all        # every scenario, then this report',
    '```',
    '',
    'or one scenario at a time (each writes `results/<scenario>/`), then `npm run bench:report`:',
    '',
    '```sh',
    ...[...summaries.values()].filter((s) => s.command).map((s) => s.command),
    '```',
    '',
  ];
}

export function buildReport(dir: string): string {
  const summaries = loadSummaries(dir);
  const charts = path.join(dir, 'charts');
  mkdirSync(charts, { recursive: true });
  const context: ReportContext = { summaries, charts };
  const lines = [
    '# outbox-bench results',
    '',
    '<!-- Generated by `npm run bench:report` from results/*/summary.json; do not edit by hand. -->',
    '',
    ...sittingsHeader(summaries),
    ...dirtyBanner(summaries),
    ...relaysSideBySide(context),
    ...scenarioSections(context),
    ...chaosReport(context),
    ...chaosSoakReport(context),
    ...abReport(context),
    ...notShownSection(context),
    ...environmentSection(summaries),
    ...reproduceSection(summaries),
  ];
  const text = `${lines.join('\n')}\n`;
  writeFileSync(path.join(dir, 'README.md'), text);
  buildPage(dir);
  return text;
}

const REPORT_USAGE = `Usage: npm run bench:report [-- <results-folder>]

Builds <results-folder>/README.md, index.html and charts/ from its <scenario>/summary.json files
(default: the project's results/). For the project's own results/, it also rewrites the figures and
tables README.md and docs/ quote from them.`;

/** `node dist/bench/report.js [folder]`: the exit code (0 written, 2 a usage error: nothing written). */
export function reportMain(argv: readonly string[]): number {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${REPORT_USAGE}\n`);
    return 0;
  }
  const refuse = (why: string) => {
    process.stderr.write(`bench:report: ${why} (npm run bench:report -- --help)\n`);
    return 2;
  };
  const flag = argv.find((a) => a.startsWith('-'));
  if (flag !== undefined) return refuse(`unknown flag ${flag}; it takes one results folder`);
  if (argv.length > 1) return refuse(`one results folder, not ${argv.length}`);
  const dir = path.resolve(argv[0] ?? path.join(PROJECT_ROOT, 'results'));
  if (!existsSync(dir)) return refuse(`no folder ${dir}`);
  const summaries = loadSummaries(dir);
  if (summaries.size === 0) return refuse(`${dir} holds no <scenario>/summary.json to report`);
  buildReport(dir);
  process.stdout.write(`wrote ${path.join(dir, 'README.md')}, ${path.join(dir, 'index.html')} and ${path.join(dir, 'charts')}/\n`);
  // The project's own results also speak for the figures README.md and docs/ quote from them.
  if (dir === path.join(PROJECT_ROOT, 'results')) {
    const drift = syncQuotes(PROJECT_ROOT, summaries, { write: true });
    // A generated passage is a table or more: named, not printed.
    for (const d of drift) process.stdout.write(`rewrote ${d.file}: ${d.marker}${d.marker.startsWith('block ') ? '' : `: ${d.holds} -> ${d.results}`}\n`);
  }
  return 0;
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = reportMain(process.argv.slice(2));
