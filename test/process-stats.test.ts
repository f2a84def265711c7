/**
 * CPU readings of a process tree whose children come and go (as
 * PostgreSQL's backends do): a reading never goes backwards. A tree's
 * processes are found at every depth, and its memory is theirs summed. A
 * process's main thread is told apart from its other threads.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { peakRssBytes, processCpuSeconds, processTreeCpuSeconds, processTreePids, processTreeRssBytes, threadCpuSeconds } from '../bench/harness/process-stats.js';

describe('process CPU', () => {
  it('counts a tree\'s children whether they are running or reaped, so its CPU never goes backwards', async (t) => {
    // A parent that keeps starting a child which burns CPU (tens of ms, no forks of its own) and is reaped: exits land inside scans.
    const parent = spawn('bash', ['-c', 'while :; do sh -c \'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done\'; done'], { stdio: 'ignore' });
    t.after(() => parent.kill('SIGKILL'));
    await sleep(200);
    const readings: number[] = [];
    const ownBefore = processCpuSeconds(parent.pid!)!;
    // Rationale: 3 s of scans, a ms apart, see a few hundred children exit.
    const until = performance.now() + 3_000;
    while (performance.now() < until) {
      const cpu = processTreeCpuSeconds(parent.pid!);
      assert.ok(cpu !== undefined, 'the parent is alive');
      readings.push(cpu);
      await sleep(1);
    }
    const drops = readings.slice(1).flatMap((cpu, i) => (cpu < readings[i]! ? [readings[i]! - cpu] : []));
    assert.deepEqual(drops, [], `${drops.length} of ${readings.length} readings lower than the one before, by ${drops.join(", ")} s`);
    // The children's CPU is in it: the tree's reading grew by more than the
    // parent's own CPU, which only waits for them.
    const treeGrew = readings.at(-1)! - readings[0]!;
    const ownGrew = processCpuSeconds(parent.pid!)! - ownBefore;
    assert.ok(treeGrew > ownGrew, `the tree's reading grew by ${treeGrew} s, the parent's own CPU by ${ownGrew} s`);
  });

  it("reads a busy worker thread's CPU as the process's and not its main thread's", async (t) => {
    // The main thread waits on a timer while a worker thread spins: the drain's "main-thread CPU" must not count the worker.
    const script = "const { Worker } = require('node:worker_threads'); new Worker('for (;;) {}', { eval: true }); setInterval(() => {}, 1000);";
    const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
    t.after(() => child.kill('SIGKILL'));
    await sleep(200);
    const before = threadCpuSeconds(child.pid!)!;
    const processBefore = processCpuSeconds(child.pid!)!;
    await sleep(1_500);
    const after = threadCpuSeconds(child.pid!)!;
    const processGrew = processCpuSeconds(child.pid!)! - processBefore;
    const mainGrew = after.main - before.main;
    const otherGrew = after.other - before.other;
    assert.ok(processGrew > 0.2, `the process used ${processGrew} s of CPU in 1.5 s with a spinning worker`);
    assert.ok(mainGrew < processGrew / 4, `main thread ${mainGrew} s of the process's ${processGrew} s`);
    assert.ok(otherGrew > processGrew / 2, `other threads ${otherGrew} s of the process's ${processGrew} s`);
  });

  it('finds every process of a tree, grandchildren included, and sums their memory', async (t) => {
    // A shell whose child shell starts a grandchild: three levels, as a relay supervisor's replicas would be two.
    const root = spawn('bash', ['-c', 'bash -c "sleep 30 & wait" & sleep 30 & wait'], { stdio: 'ignore' });
    t.after(() => {
      for (const pid of processTreePids(root.pid!).reverse()) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    });
    let pids: number[] = [];
    for (let i = 0; i < 50 && pids.length < 4; i++) {
      await sleep(50);
      pids = processTreePids(root.pid!);
    }
    assert.equal(pids[0], root.pid, 'the root comes first');
    assert.equal(pids.length, 4, `root, its sleep and its child shell, and that shell's sleep: ${pids.join(', ')}`);
    const total = processTreeRssBytes(root.pid!);
    assert.ok(total !== undefined && total > peakRssBytes(root.pid!)!, `the tree's ${total} bytes hold more than the root's own`);
    assert.deepEqual(processTreePids(2 ** 22 + 1), [], 'a process that does not exist has no tree');
  });
});
