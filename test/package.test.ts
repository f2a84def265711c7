/**
 * The package as a dependent gets it. patches/postgres+3.4.9.patch is applied
 * to this checkout's node_modules by `prepare` (patch-package), which never
 * runs for a project that installs outbox-bench; so the package bundles its
 * patched postgres.js (bundleDependencies). This packs the built tree as
 * `npm publish` would, installs the tarball into a throwaway project with
 * install scripts on, as a dependent does, and runs the terminated-backend
 * check (porsager/postgres#1208; test/fixtures/terminated-backend.mjs) there,
 * against the copy outbox-bench loads and, as a control, against the
 * project's own unpatched copy from the registry.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { PROJECT_ROOT } from '../src/config.js';
import { scratchDir } from './helpers.js';

const execFileAsync = promisify(execFile);

// Rationale: installing the tarball's dependencies from npm's cache (where
// `npm ci` left them) took 6 s on the 2-core host; 3 minutes leaves room
// for a cold cache that has to ask the registry.
const NPM_TIMEOUT_MS = 3 * 60_000;

/**
 * The environment for a nested npm: `npm test` hands its scripts npm_*
 * variables (the lifecycle event, this checkout's prefix) that would make the
 * inner npm act on this checkout instead of the throwaway project. npm's cache
 * and user config stay, so the install can be served from the cache.
 */
function npmEnv(): NodeJS.ProcessEnv {
  const keep = new Set(['npm_config_cache', 'npm_config_userconfig', 'npm_config_registry']);
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key) || keep.has(key.toLowerCase())));
}

async function npm(args: string[], cwd: string): Promise<string> {
  const { stdout } = await execFileAsync('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd, env: npmEnv(), timeout: NPM_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

interface PackInfo {
  filename: string;
  bundled: string[];
  files: { path: string }[];
}

interface CheckResult {
  packageDir: string;
  patched: boolean;
  outcome: string;
  uncaught: string[];
}

async function runCheck(project: string, which: 'outbox-bench' | 'postgres'): Promise<CheckResult> {
  const { stdout } = await execFileAsync(process.execPath, ['terminated-backend.mjs', which], {
    cwd: project,
    env: { PATH: process.env.PATH, DATABASE_URL: process.env.DATABASE_URL },
    timeout: 60_000,
  });
  return JSON.parse(stdout) as CheckResult;
}

describe('the packed package', () => {
  it('bundles the patched postgres.js: installed as a dependency, a query on a terminated reserved backend gets CONNECTION_CLOSED, not an uncaught throw', async (t) => {
    assert.ok(process.env.DATABASE_URL, 'run through `npm test`, which starts the servers');
    const scratch = await scratchDir('outbox-bench-pack-');
    const manifest = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    for (const hook of ['preinstall', 'install', 'postinstall']) {
      assert.equal(manifest.scripts[hook], undefined, `a dependent runs "${hook}", and has no patch-package (a devDependency) to run it with`);
    }

    // --ignore-scripts: `npm test` has just built dist/, and prepare would also build the native Kafka client.
    const [packed] = JSON.parse(await npm(['pack', '--ignore-scripts', '--json', '--pack-destination', scratch], PROJECT_ROOT)) as PackInfo[];
    assert.ok(packed);
    assert.deepEqual(packed.bundled, ['postgres']);
    const files = new Set(packed.files.map((f) => f.path));
    for (const file of ['dist/src/index.js', 'dist/src/index.d.ts', 'node_modules/postgres/src/connection.js', 'node_modules/postgres/cjs/src/connection.js']) {
      assert.ok(files.has(file), `the tarball holds ${file}`);
    }
    assert.ok(![...files].some((file) => file.startsWith('dist/test/') || file.startsWith('dist/bench/')), 'the tarball holds no tests or benchmarks');

    const project = path.join(scratch, 'project');
    mkdirSync(project);
    writeFileSync(path.join(project, 'package.json'), `${JSON.stringify({ name: 'dependent', private: true, type: 'module' }, null, 2)}\n`);
    // The project's own postgres.js, the registry's unpatched release, is the control.
    const { version } = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'node_modules', 'postgres', 'package.json'), 'utf8')) as { version: string };
    const installStarted = performance.now();
    await npm(['install', '--prefer-offline', path.join(scratch, packed.filename), `postgres@${version}`], project);
    t.diagnostic(`tarball installed in ${((performance.now() - installStarted) / 1_000).toFixed(1)} s`);
    copyFileSync(path.join(PROJECT_ROOT, 'test', 'fixtures', 'terminated-backend.mjs'), path.join(project, 'terminated-backend.mjs'));

    const bundled = await runCheck(project, 'outbox-bench');
    assert.equal(bundled.packageDir, path.join(project, 'node_modules', 'outbox-bench', 'node_modules', 'postgres'), 'outbox-bench loads its bundled copy');
    assert.deepEqual({ patched: bundled.patched, outcome: bundled.outcome, uncaught: bundled.uncaught }, { patched: true, outcome: 'CONNECTION_CLOSED', uncaught: [] });

    // Without the patch the same steps throw where nobody can catch it: the check tells the two apart.
    const own = await runCheck(project, 'postgres');
    t.diagnostic(`outbox-bench's copy: ${bundled.outcome}; the registry's: ${own.outcome}, uncaught ${JSON.stringify(own.uncaught)}`);
    assert.equal(own.packageDir, path.join(project, 'node_modules', 'postgres'));
    assert.equal(own.patched, false);
    assert.notEqual(own.outcome, 'CONNECTION_CLOSED');
    assert.ok(own.uncaught.length > 0, `the unpatched copy threw uncaught (outcome: ${own.outcome})`);
  });
});
