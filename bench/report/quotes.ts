/**
 * Figures that README.md and docs/*.md quote from results/: each sits between
 * markers that name where it comes from,
 *
 *   <!-- result saturation extra.strategies[name=cdc].search.sustainedRate -->20,971<!-- /result -->
 *
 * `npm run bench:report` writes every one from results/<folder>/summary.json,
 * and `npm test` fails when a file holds a figure its summary does not say, so
 * prose cannot drift from what was measured.
 *
 * A path is dot-separated keys; `[field=value,...]` keeps the array items
 * that match (all of them, so what follows applies to each; a space in a
 * value is written `%20`, a comma `%2C`; a field may be nested, `[window.sitting=3]`), `[*]` keeps them all, `[n]` takes one. A path that ends in several numbers must say how they become one:
 * `|median`, `|min` or `|max`. A trailing `:<digits>` prints that many
 * decimals below 100 (the report's own format: whole numbers with separators
 * from 100 on). An aggregate may also be written `@median` (`@min`, `@max`),
 * which a Markdown table cell can hold.
 *
 * A figure derived from results (an upper bound, a sum of costs) sits
 * between markers that give its formula, each figure of it in braces:
 *
 *   <!-- derive:0 1000000 / {drain extra.runs[strategy=cdc].relay.jsThreadUsPerEvent@median} -->138,889<!-- /derive -->
 *
 * (`+ - * /` and parentheses; `:<digits>` as above), so a derived figure is
 * written and checked from the summaries like a quoted one.
 *
 * A whole passage a scenario's report generates (a table) sits between
 * markers on lines of their own, written and checked the same way:
 *
 *   <!-- block frontier decisions -->
 *   | your load | p99 budget | use | ...
 *   <!-- /block -->
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { OutboxBenchError } from '../../src/errors.js';
import { midpointMedian } from '../harness/stats.js';
import { blockText } from './blocks.js';
import { f, type Summary } from './kit.js';

const MARKER = /<!-- result (\S+) (\S+?)(?::(\d))? -->(.*?)<!-- \/result -->/g;
const DERIVED = /<!-- derive(?::(\d))? (.+?) -->(.*?)<!-- \/derive -->/g;
// An HTML comment alone on a line, then a blank line: Markdown reads the passage between them as Markdown again.
const BLOCK = /^<!-- block (\S+) (\S+) -->\n([\s\S]*?)^<!-- \/block -->$/gm;
// A quoted median is the midpoint of the middle two for an even count (an aggregate is only asked of values that exist).
const AGGREGATES = { median: (xs: number[]) => midpointMedian(xs)!, min: (xs: number[]) => Math.min(...xs), max: (xs: number[]) => Math.max(...xs) } as const;

/** A key of an object, or undefined for anything else. */
const propertyOf = (value: unknown, key: string): unknown => (value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined);

/** One path step applied to every value reached so far. */
function step(values: unknown[], segment: string): unknown[] {
  const match = /^([^[\]]*)(?:\[([^\]]+)\])?$/.exec(segment);
  if (!match) throw new Error(`cannot read "${segment}"`);
  const [, key, selector] = match;
  let reached = key ? values.map((v) => propertyOf(v, key)) : values;
  if (selector === undefined) return reached;
  if (/^\d+$/.test(selector)) return reached.map((v) => (Array.isArray(v) ? v[Number(selector)] : undefined));
  if (selector === '*') return reached.flatMap((v) => (Array.isArray(v) ? v : []));
  // A value with a space (a relay named "ours: cdc") is written %20, and a comma %2C, as in a URL: a
  // marker's path has no spaces, and a comma separates the selector's fields.
  const wanted = selector.split(',').map((pair) => pair.split('=').map((part) => part.replaceAll('%20', ' ').replaceAll('%2C', ',')) as [string, string]);
  reached = reached.flatMap((v) => (Array.isArray(v) ? v : []));
  const field = (item: unknown, key: string) => key.split('.').reduce(propertyOf, item);
  return reached.filter((item) => item !== null && typeof item === 'object' && wanted.every(([k, want]) => String(field(item, k)) === want));
}

/** The figure a marker names, printed as the report prints it. */
export function quotedValue(summary: Summary, source: string, digits: number | undefined): string {
  const value = quotedFigure(summary, source);
  return typeof value === 'number' ? f(value, digits) : value;
}

/** The figure a marker names: a number, or a text as the summary holds it. */
function quotedFigure(summary: Summary, source: string): number | string {
  const [pathText, aggregate] = source.split(/[|@]/);
  let values: unknown[] = [summary];
  // A dot inside a selector is a nested key of the item ([window.sitting=3]), not a path step.
  for (const segment of pathText!.split(/\.(?![^[]*\])/)) values = step(values, segment);
  const found = values.filter((v) => v !== undefined && v !== null);
  if (found.length === 0) throw new Error('nothing there');
  if (found.length > 1 || aggregate) {
    const of = aggregate === undefined ? undefined : AGGREGATES[aggregate as keyof typeof AGGREGATES];
    if (!of) throw new Error(`${found.length} values there: end the path with |median, |min or |max`);
    if (!found.every((v): v is number => typeof v === 'number')) throw new Error('an aggregate needs numbers');
    return of(found);
  }
  const [value] = found;
  return typeof value === 'number' ? value : String(value);
}

/**
 * A derived marker's formula evaluated: each `{folder path}` read from its
 * summary, then + - * / and parentheses, left to right within a precedence.
 */
export function derivedValue(formula: string, summaries: ReadonlyMap<string, Summary>): number {
  const numbers: number[] = [];
  const expression = formula.replace(/\{(\S+) ([^}]+)\}/g, (_, folder: string, source: string) => {
    const summary = summaries.get(folder);
    if (!summary) throw new Error(`no results/${folder}/summary.json`);
    const value = quotedFigure(summary, source.trim());
    if (typeof value !== 'number') throw new Error(`{${folder} ${source}} is not a number`);
    numbers.push(value);
    return `#${numbers.length - 1}`;
  });
  const tokens = expression.match(/#\d+|\d[\d_]*(?:\.\d+)?|[-+*/()]|\S/g) ?? [];
  let at = 0;
  const peek = () => tokens[at];
  const atom = (): number => {
    const token = tokens[at++];
    if (token === '(') {
      const value = sum();
      if (tokens[at++] !== ')') throw new Error(`unbalanced parentheses in "${formula}"`);
      return value;
    }
    if (token?.startsWith('#')) return numbers[Number(token.slice(1))]!;
    if (token !== undefined && /^\d/.test(token)) return Number(token.replaceAll('_', ''));
    throw new Error(`cannot read "${token ?? 'the end'}" in "${formula}"`);
  };
  const product = (): number => {
    let value = atom();
    while (peek() === '*' || peek() === '/') value = tokens[at++] === '*' ? value * atom() : value / atom();
    return value;
  };
  const sum = (): number => {
    let value = product();
    while (peek() === '+' || peek() === '-') value = tokens[at++] === '+' ? value + product() : value - product();
    return value;
  };
  const value = sum();
  if (at !== tokens.length) throw new Error(`cannot read "${tokens[at]}" in "${formula}"`);
  if (!Number.isFinite(value)) throw new Error(`"${formula}" is not a finite number`);
  return value;
}

export interface QuoteDrift {
  file: string;
  marker: string;
  holds: string;
  /** What the summary says, or why it could not be read. */
  results: string;
}

/** A text with every marker's figure written from the summaries, and the markers that differed or could not be read. */
export function renderQuotes(text: string, summaries: ReadonlyMap<string, Summary>, file: string): { text: string; drift: QuoteDrift[] } {
  const drift: QuoteDrift[] = [];
  /** One marker written with its figure (`value` reads it, or throws why it cannot), any difference or failure in `drift`. */
  const write = (within: string, marker: string, name: string, holds: string, offset: number, value: () => string): string => {
    let written: string;
    try {
      // A line that opens with a comment is an HTML block to Markdown: the paragraph would break there.
      if (offset === 0 || within[offset - 1] === '\n') throw new Error('it starts a line, where Markdown reads it as an HTML block; put a word before it');
      written = value();
    } catch (error) {
      drift.push({ file, marker: name, holds, results: `unreadable: ${(error as Error).message}` });
      return marker;
    }
    if (written !== holds) drift.push({ file, marker: name, holds, results: written });
    return marker.replace(`-->${holds}<!--`, `-->${written}<!--`);
  };
  const digitsOf = (digits: string | undefined) => (digits === undefined ? undefined : Number(digits));
  const quoted = text.replace(MARKER, (marker, folder: string, source: string, digits: string | undefined, holds: string, offset: number) =>
    write(text, marker, `${folder} ${source}`, holds, offset, () => {
      const summary = summaries.get(folder);
      if (!summary) throw new Error(`no results/${folder}/summary.json`);
      return quotedValue(summary, source, digitsOf(digits));
    }),
  );
  const derived = quoted.replace(DERIVED, (marker, digits: string | undefined, formula: string, holds: string, offset: number) =>
    write(quoted, marker, `derive ${formula}`, holds, offset, () => f(derivedValue(formula, summaries), digitsOf(digits))),
  );
  const blocks = derived.replace(BLOCK, (marker, folder: string, name: string, holds: string) => {
    let written: string;
    try {
      const summary = summaries.get(folder);
      if (!summary) throw new Error(`no results/${folder}/summary.json`);
      written = `\n${blockText(folder, name, summary)}\n\n`;
    } catch (error) {
      drift.push({ file, marker: `block ${folder} ${name}`, holds, results: `unreadable: ${(error as Error).message}` });
      return marker;
    }
    if (written !== holds) drift.push({ file, marker: `block ${folder} ${name}`, holds, results: written });
    return `<!-- block ${folder} ${name} -->\n${written}<!-- /block -->`;
  });
  return { text: blocks, drift };
}

/** README.md and every page of docs/. */
export function quotingFiles(root: string): string[] {
  const docs = path.join(root, 'docs');
  return [path.join(root, 'README.md'), ...readdirSync(docs).filter((name) => name.endsWith('.md')).sort().map((name) => path.join(docs, name))];
}

/**
 * Writes every quoted figure from the summaries (`write`), or only reports
 * what differs. An unreadable marker is never written over: it is an error.
 */
export function syncQuotes(root: string, summaries: ReadonlyMap<string, Summary>, { write }: { write: boolean }): QuoteDrift[] {
  const drift: QuoteDrift[] = [];
  for (const file of quotingFiles(root)) {
    const text = readFileSync(file, 'utf8');
    const rendered = renderQuotes(text, summaries, path.relative(root, file));
    drift.push(...rendered.drift);
    if (write && rendered.text !== text) writeFileSync(file, rendered.text);
  }
  const unreadable = drift.filter((d) => d.results.startsWith('unreadable'));
  if (write && unreadable.length > 0) {
    throw new OutboxBenchError('CHECK_FAILED', `quoted figures that name nothing in results/: ${unreadable.map((d) => `${d.file}: ${d.marker} (${d.results})`).join('; ')}`);
  }
  return drift;
}
