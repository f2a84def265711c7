/**
 * The environment recorded with every result is read from the machine and
 * the servers, and publishing refuses a tree that cannot be tied to a commit.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { assertCleanTree, captureEnvironment, gitChanges, runningKafkaJit } from '../bench/harness/environment.js';
import { resolveConfig } from '../src/config.js';
import { acquireInfra } from '../src/infra/index.js';
import { log, scratchDir, testEnv } from './helpers.js';

describe('environment of a result', () => {
  it('reads how a running broker\'s JVM compiles from its command line, not from this run\'s settings', async (t) => {
    // A stand-in process carrying the flag on its command line, as a broker left up by `infra up` would.
    const quick = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30_000)', '--', '-XX:TieredStopAtLevel=1'], { stdio: 'ignore' });
    t.after(() => quick.kill('SIGKILL'));
    await once(quick, 'spawn');
    const local = (pid: number | undefined) => ({ kafka: { external: false, brokers: [], pid: () => pid, start: async () => {}, stop: async () => {} } });
    assert.equal(runningKafkaJit(local(quick.pid)), 'quick-start');
    assert.equal(runningKafkaJit(local(process.pid)), 'full');
    assert.equal(runningKafkaJit(local(undefined)), undefined, 'no process to read');
    assert.equal(runningKafkaJit({ kafka: { ...local(process.pid).kafka, external: true } }), undefined, 'an external cluster');
  });

  it('reads Java, the PostgreSQL settings, the disk, Kafka and the machine', async (t) => {
    const env = await testEnv(t);
    const infra = await acquireInfra({ config: resolveConfig(), log });
    t.after(() => infra.release());
    const environment = await captureEnvironment(env.sql, resolveConfig(), infra);
    // `java -version` writes to stderr: a blank here was the old defect.
    assert.match(environment.java, /version "\d+/);
    for (const name of ['fsync', 'synchronous_commit', 'wal_level', 'shared_buffers', 'max_wal_size']) {
      assert.ok(environment.postgresSettings[name], `${name} recorded`);
    }
    assert.equal(environment.postgresSettings.wal_level, 'logical');
    assert.ok(environment.cores >= 1 && environment.memoryGiB > 0 && environment.cpuModel.length > 0);
    const probe = environment.cpuProbe!;
    assert.ok(probe.nsPerOp > 0 && probe.spreadPercent >= 0 && probe.trials === 9, JSON.stringify(probe));
    assert.match(environment.kafka, infra.kafka.external ? /external/ : /Apache Kafka \d+\.\d+/);
    if (infra.postgres.external) {
      assert.ok('notMeasured' in environment.fsync);
    } else {
      assert.ok('samples' in environment.fsync && environment.fsync.samples === 200, JSON.stringify(environment.fsync));
      assert.ok(environment.fsync.p50Ms > 0);
    }
  });

  it('refuses to publish from a tree with changes outside results/, unless allowed', async () => {
    const repo = await scratchDir();
    const git = (...args: string[]) => execFileSync('git', ['-c', 'user.email=t@example.org', '-c', 'user.name=t', ...args], { cwd: repo, stdio: 'pipe' });
    git('init', '-q');
    mkdirSync(path.join(repo, 'results'));
    mkdirSync(path.join(repo, 'src'));
    writeFileSync(path.join(repo, 'results', 'summary.json'), '{}\n');
    writeFileSync(path.join(repo, 'src', 'relay.ts'), 'export {};\n');
    git('add', '.');
    git('commit', '-qm', 'init');

    writeFileSync(path.join(repo, 'results', 'summary.json'), '{"new": true}\n');
    assert.deepEqual(gitChanges(repo), [], 'new results alone are a clean tree');
    assertCleanTree(false, repo);

    writeFileSync(path.join(repo, 'src', 'relay.ts'), 'export const changed = 1;\n');
    assert.deepEqual(gitChanges(repo), ['src/relay.ts']);
    assert.throws(() => assertCleanTree(false, repo), /uncommitted changes outside results\/ \(src\/relay\.ts\).*--allow-dirty/);
    assert.doesNotThrow(() => assertCleanTree(true, repo));
  });
});
