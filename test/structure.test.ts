/**
 * The shape of the code, checked: no import circle in src/ or bench/ (dpdm,
 * dynamic imports included, since a registry's loaders are imports too), the
 * vocabulary modules (config, errors, log and what they stand on) import
 * nothing of the project above them, and no function or file is longer than
 * a reader can hold, unless its file's header says why (`@length-exception`).
 *
 * Each check first runs on a small bad sample, so a checker that went blind
 * (a parser that finds no functions, a dpdm that finds no imports) fails here
 * instead of passing everything.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parse } from '@babel/parser';
import { parseCircular, parseDependencyTree } from 'dpdm';
import { PROJECT_ROOT } from '../src/config.js';

/** Longest function, in lines, before it needs a reason. */
const MAX_FUNCTION_LINES = 80;
/** Longest file, in lines, before it needs a reason. */
const MAX_FILE_LINES = 400;
/** bench/ may keep this many long functions (each with its reason); src/ none. */
const BENCH_LONG_FUNCTIONS = 5;

/**
 * The vocabulary every module uses, and the only project files each may
 * import: nothing above them, so that importing config.ts never loads a relay.
 */
const LEAVES: Readonly<Record<string, readonly string[]>> = {
  'src/errors.ts': [],
  'src/identifiers.ts': ['src/errors.ts'],
  'src/config.ts': ['src/errors.ts', 'src/identifiers.ts'],
  'src/log.ts': ['src/config.ts'],
};

function sourceFiles(folder: string): string[] {
  return readdirSync(path.join(PROJECT_ROOT, folder), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts'))
    .map((file) => path.join(folder, file))
    .sort();
}

async function importCircles(root: string, entries: string[]): Promise<string[][]> {
  const tree = await parseDependencyTree(entries, { context: root, cwd: root, tsconfig: path.join(root, 'tsconfig.json'), transform: false, skipDynamicImports: false });
  return parseCircular(tree, false);
}

async function projectImports(root: string, file: string): Promise<string[]> {
  const tree = await parseDependencyTree([file], { context: root, cwd: root, tsconfig: path.join(root, 'tsconfig.json'), transform: false });
  return (tree[file] ?? []).flatMap((dependency) => (dependency.id?.endsWith('.ts') && !dependency.id.includes('node_modules') ? [dependency.id] : []));
}

interface LongPart {
  name: string;
  lines: number;
}

/** Functions (declarations, methods, arrows) longer than MAX_FUNCTION_LINES. */
function longFunctions(text: string): LongPart[] {
  const found: LongPart[] = [];
  const visit = (node: unknown, parentName: string | undefined): void => {
    if (node === null || typeof node !== 'object') return;
    if (Array.isArray(node)) {
      for (const child of node) visit(child, parentName);
      return;
    }
    const n = node as { type?: string; loc?: { start: { line: number }; end: { line: number } }; body?: unknown; id?: { name?: string }; key?: { name?: string } };
    if (typeof n.type !== 'string') return;
    const ownName = n.id?.name ?? n.key?.name ?? parentName;
    if (/Function|Method/.test(n.type) && n.body && n.loc) {
      const lines = n.loc.end.line - n.loc.start.line + 1;
      if (lines > MAX_FUNCTION_LINES) found.push({ name: ownName ?? '(anonymous)', lines });
    }
    for (const [key, value] of Object.entries(n)) {
      if (key !== 'loc' && key !== 'leadingComments' && key !== 'trailingComments' && key !== 'innerComments') visit(value, ownName);
    }
  };
  visit(parse(text, { sourceType: 'module', plugins: ['typescript'] }).program, undefined);
  return found;
}

/** `@length-exception <name|file>: <reason>` lines of the file's header comment. */
function lengthExceptions(text: string): Map<string, string> {
  const header = /^\s*\/\*\*([\s\S]*?)\*\//.exec(text)?.[1] ?? '';
  const exceptions = new Map<string, string>();
  for (const match of header.matchAll(/@length-exception\s+([\w$-]+):\s*([^\n]*(?:\n\s*\*\s+(?!@)[^\n]*)*)/g)) {
    exceptions.set(match[1]!, match[2]!.replace(/\n\s*\*\s*/g, ' ').trim());
  }
  return exceptions;
}

interface LengthFinding {
  file: string;
  part: string;
  lines: number;
  reason: string | undefined;
}

function lengthFindings(file: string, text: string): LengthFinding[] {
  const exceptions = lengthExceptions(text);
  const findings: LengthFinding[] = longFunctions(text).map((f) => ({ file, part: f.name, lines: f.lines, reason: exceptions.get(f.name) }));
  const lines = text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
  if (lines > MAX_FILE_LINES) findings.push({ file, part: 'file', lines, reason: exceptions.get('file') });
  return findings;
}

describe('code structure', () => {
  it('finds an import circle, a long function and a long file in bad samples (the checkers are not blind)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outbox-structure-'));
    try {
      // The project's module resolution: './b.js' names b.ts.
      writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext' } }));
      writeFileSync(path.join(dir, 'a.ts'), "import { b } from './b.js';\nexport const a = () => b;\n");
      writeFileSync(path.join(dir, 'b.ts'), "export const b = async () => (await import('./a.js')).a;\n");
      assert.equal((await importCircles(dir, ['a.ts'])).length, 1, 'a -> b -> (dynamic) a is a circle');
      assert.deepEqual(await projectImports(dir, 'a.ts'), ['b.ts']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const long = `/**\n * @length-exception kept: a reason\n */\nexport function kept() {\n${'  f();\n'.repeat(90)}}\nconst arrow = () => {\n${'  f();\n'.repeat(85)}};\n${'//\n'.repeat(300)}`;
    const findings = lengthFindings('sample.ts', long);
    assert.deepEqual(
      findings.map((f) => [f.part, f.reason]),
      [['kept', 'a reason'], ['arrow', undefined], ['file', undefined]],
    );
  });

  it('has no import circle in src/ or bench/, dynamic imports included', async () => {
    const circles = await importCircles(PROJECT_ROOT, [...sourceFiles('src'), ...sourceFiles('bench')]);
    assert.deepEqual(circles.map((circle) => circle.join(' -> ')), []);
  });

  it('keeps config, errors and log leaves: they import nothing of the project above them', async () => {
    for (const [file, allowed] of Object.entries(LEAVES)) {
      const imports = await projectImports(PROJECT_ROOT, file);
      const above = imports.filter((imported) => !allowed.includes(imported));
      assert.deepEqual(above, [], `${file} imports ${above.join(', ')}`);
    }
  });

  it(`has no function over ${MAX_FUNCTION_LINES} lines in src/, at most ${BENCH_LONG_FUNCTIONS} in bench/, no file over ${MAX_FILE_LINES}, each exception with its reason in its header`, () => {
    const findings = [...sourceFiles('src'), ...sourceFiles('bench')].flatMap((file) => lengthFindings(file, readFileSync(path.join(PROJECT_ROOT, file), 'utf8')));
    const describe = (f: LengthFinding) => `${f.file}: ${f.part} (${f.lines} lines)`;
    assert.deepEqual(findings.filter((f) => f.reason === undefined).map(describe), [], 'long without a @length-exception reason in the file header');
    assert.deepEqual(findings.filter((f) => f.reason !== undefined && f.reason.length < 20).map(describe), [], 'a reason of a few words is no reason');
    assert.deepEqual(findings.filter((f) => f.file.startsWith('src/') && f.part !== 'file').map(describe), [], 'src/ has no long function');
    const benchFunctions = findings.filter((f) => f.file.startsWith('bench/') && f.part !== 'file');
    assert.ok(benchFunctions.length <= BENCH_LONG_FUNCTIONS, `bench/ has ${benchFunctions.length} long functions: ${benchFunctions.map(describe).join('; ')}`);
  });

  it('keeps no stale @length-exception (the part it excuses is long)', () => {
    const stale: string[] = [];
    for (const file of [...sourceFiles('src'), ...sourceFiles('bench')]) {
      const text = readFileSync(path.join(PROJECT_ROOT, file), 'utf8');
      const long = new Set(lengthFindings(file, text).map((f) => f.part));
      for (const part of lengthExceptions(text).keys()) if (!long.has(part)) stale.push(`${file}: ${part}`);
    }
    assert.deepEqual(stale, []);
  });
});
