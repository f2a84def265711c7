/**
 * `npm run bench:compare -- <results-a> <results-b>`: did a change make the
 * relays faster or slower? See bench/report/compare.ts for the figures and
 * the verdict rule.
 */
import { existsSync, statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { describeError } from '../src/errors.js';
import { compareResults, formatComparison, loadSide, VERDICT_RULE } from './report/compare.js';

const HELP = `Usage: npm run bench:compare -- <results-a>[,<results-a>...] <results-b>[,<results-b>...] [options]

Compares two results folders (each a results/ folder, or one scenario's folder
with a summary.json): per scenario and relay, the change in throughput,
latency p50/p99/p99.9 and CPU-s per million events from A to B, each side's
median, range and number of runs, and a verdict per figure.

A side may be several folders, comma-separated: the runs of one build in a
sitting that alternated the two builds (A, B, A, B, ...); their samples are
pooled, each run one sample.

Verdict rule: ${VERDICT_RULE}.

Runs from different machines or server settings are refused, with the fields
that differ, unless --allow-different-environments is given.

Options:
  --allow-different-environments  compare anyway, listing the differences
  --json                          print the comparison as JSON
  -h, --help                      this text

Exit status: 0 compared; 1 refused (environments differ); 2 bad arguments or folders.`;

const OPTIONS = {
  'allow-different-environments': { type: 'boolean' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

const parse = (args: string[]) => parseArgs({ args, options: OPTIONS, allowPositionals: true });

function main(): number {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`compare: ${describeError(error)}\n\n${HELP}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (positionals.length !== 2) {
    process.stderr.write(`compare: expected two results folders, got ${positionals.length}\n\n${HELP}\n`);
    return 2;
  }
  const [dirA, dirB] = positionals as [string, string];
  const [dirsA, dirsB] = [dirA, dirB].map((side) => side.split(',').filter(Boolean)) as [string[], string[]];
  for (const dir of [...dirsA, ...dirsB]) {
    if (!existsSync(dir) || !statSync(dir).isDirectory()) {
      process.stderr.write(`compare: ${dir} is not a folder\n`);
      return 2;
    }
  }
  let a: ReturnType<typeof loadSide>;
  let b: ReturnType<typeof loadSide>;
  try {
    a = loadSide(dirsA);
    b = loadSide(dirsB);
  } catch (error) {
    process.stderr.write(`compare: cannot read the summaries: ${describeError(error)}\n`);
    return 2;
  }
  for (const [dir, summaries] of [[dirA, a], [dirB, b]] as const) {
    if (summaries.size === 0) {
      process.stderr.write(`compare: ${dir} holds no summary.json (neither its own nor in a folder of it)\n`);
      return 2;
    }
  }
  const comparison = compareResults(a, b);
  if (comparison.environment.length > 0 && !values['allow-different-environments']) {
    process.stderr.write(
      `compare: refused: the runs come from different environments, so a change could be the machine's, not the code's:\n` +
        comparison.environment.map((d) => `  ${d.field}: A ${d.a}; B ${d.b}\n`).join('') +
        `Compare on one machine, or pass --allow-different-environments to compare anyway.\n`,
    );
    return 1;
  }
  if (comparison.figures.length === 0) {
    process.stderr.write(`compare: no scenario and relay has figures on both sides\n${comparison.notCompared.map((n) => `  ${n.scenario}: ${n.reason}\n`).join('')}`);
    return 2;
  }
  process.stdout.write(values.json ? `${JSON.stringify(comparison, null, 2)}\n` : `${formatComparison(comparison, { a: dirA, b: dirB }).join('\n')}\n`);
  return 0;
}

process.exitCode = main();
