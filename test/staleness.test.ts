/**
 * The report's mark for a results folder measured before the last change to
 * the code it measures: which sources count (the scenario's import closure,
 * a peer's code only for the peers comparison), and the verdict read from a
 * real git history (a scratch repository, so the project's own history,
 * shallow or not, does not decide it).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { codeSince, codeSinceCell, measuredCode } from '../bench/report/staleness.js';

describe('code a results folder measures', () => {
  it("follows the scenario's imports to the end, and leaves a peer's code to the peers comparison", () => {
    const cleanup = measuredCode('cleanup') ?? [];
    for (const file of ['bench/scenarios/cleanup.ts', 'bench/harness/pipeline.ts', 'src/relay/cdc/relay.ts', 'bench/drivers/index.ts']) assert.ok(cleanup.includes(file), file);
    assert.ok(!cleanup.includes('bench/drivers/debezium.ts'), "a Debezium change is not cleanup's");
    assert.ok(measuredCode('peers')?.includes('bench/drivers/debezium.ts'));
    assert.ok(measuredCode('sweep-tx-size')?.includes('bench/scenarios/sweeps.ts'), 'a sweep runs from sweeps.ts');
    assert.equal(measuredCode('no-such-scenario'), undefined);
  });

  it('marks a folder measured before a change to a module its scenario imports, counts the commits since, and only those', (t) => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'staleness-'));
    t.after(() => rmSync(root, { recursive: true, force: true }));
    const git = (...args: string[]) => execFileSync('git', ['-c', 'user.name=test', '-c', 'user.email=test@example.com', ...args], { cwd: root, encoding: 'utf8' }).trim();
    const commit = (file: string, text: string) => {
      mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
      writeFileSync(path.join(root, file), text);
      git('add', '-A');
      git('commit', '-qm', file);
      return git('rev-parse', 'HEAD');
    };
    git('init', '-q');
    commit('bench/scenarios/x.ts', "import { y } from '../harness/y.js';\nexport const x = y;\n");
    const measured = commit('bench/harness/y.ts', 'export const y = 1;\n');
    assert.deepEqual(codeSince('x', measured, root), { changed: false });
    commit('docs/unrelated.md', 'prose\n');
    assert.deepEqual(codeSince('x', measured, root), { changed: false }, 'a change outside its code does not mark it');
    commit('bench/harness/y.ts', 'export const y = 2;\n');
    const last = commit('bench/harness/y.ts', 'export const y = 3;\n');
    const since = codeSince('x', measured, root);
    assert.ok('changed' in since && since.changed);
    assert.equal(since.commit, last);
    assert.equal(since.commits, 2);
    assert.match(codeSinceCell(since), /^\*\*changed since\*\*: 2 commits, the last [0-9a-f]{7} \(\d{4}-\d\d-\d\d\)$/);
    assert.match(codeSinceCell(codeSince('x', '0'.repeat(40), root)), /^unknown \(commit 0000000 is not in this history\)$/);
  });
});
