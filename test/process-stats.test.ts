/**
 * CPU readings of a process tree whose children come and go (as
 * PostgreSQL's backends do): a reading never goes backwards.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { processTreeCpuSeconds } from '../bench/harness/process-stats.js';

describe('process CPU', () => {
  it('counts a tree\'s children whether they are running or reaped, so its CPU never goes backwards', async (t) => {
    // A parent that keeps starting a child which burns CPU (tens of ms, no forks of its own) and is reaped: exits land inside scans.
    const parent = spawn('bash', ['-c', 'while :; do sh -c \'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done\'; done'], { stdio: 'ignore' });
    t.after(() => parent.kill('SIGKILL'));
    await sleep(200);
    const readings: number[] = [];
    const until = Date.now() + 3_000;
    while (Date.now() < until) {
      const cpu = processTreeCpuSeconds(parent.pid!);
      assert.ok(cpu !== undefined, 'the parent is alive');
      readings.push(cpu);
      await sleep(1);
    }
    const drops = readings.slice(1).flatMap((cpu, i) => (cpu < readings[i]! ? [readings[i]! - cpu] : []));
    assert.deepEqual(drops, [], `${drops.length} of ${readings.length} readings lower than the one before, by ${drops.join(", ")} s`);
    // The children's CPU is in it: the tree burned most of a core for the 3 s.
    assert.ok(readings.at(-1)! - readings[0]! > 1, `${readings.at(-1)! - readings[0]!} CPU-s in 3 s`);
  });
});
