/**
 * The clock the pipeline's processes compare times with (src/events.ts):
 * a child process reads the anchor it was handed, not its own wall clock,
 * so a wall-clock step between two processes' starts cannot put one ahead
 * of the other; re-anchoring lines the clock up with the wall clock again.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CLOCK_ANCHOR_ENV, nowMs, reanchorClock } from '../src/events.js';

const EVENTS = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'events.js');

/** nowMs() as a new process reads it, with this environment. */
async function childNow(env: NodeJS.ProcessEnv): Promise<number> {
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', `const { nowMs } = await import(${JSON.stringify(EVENTS)}); process.stdout.write(String(nowMs()));`], { env });
  return Number(stdout);
}

describe('cross-process clock', () => {
  it('gives a child the anchor it inherits, whatever its own wall clock says', async () => {
    const before = nowMs();
    const child = await childNow(process.env);
    const after = nowMs();
    assert.ok(child >= before && child <= after, `the child read ${child}, between ${before} and ${after}`);
    // A child handed an anchor 35 s later reads 35 s later: the anchor, not its wall clock, sets its time.
    const anchor = Number(process.env[CLOCK_ANCHOR_ENV]);
    const shiftedBefore = nowMs();
    const shifted = await childNow({ ...process.env, [CLOCK_ANCHOR_ENV]: String(anchor + 35_000) });
    const shiftedAfter = nowMs();
    assert.ok(shifted - 35_000 >= shiftedBefore && shifted - 35_000 <= shiftedAfter, `the child read ${shifted - 35_000} + 35 s`);
  });

  it('re-anchors on the wall clock and hands the new anchor to the processes started afterwards', async () => {
    reanchorClock();
    // Bracketed by two wall-clock reads (ms resolution), not a tolerance a busy machine could overrun.
    const wallBefore = Date.now();
    const now = nowMs();
    const wallAfter = Date.now();
    assert.ok(now >= wallBefore - 1 && now <= wallAfter + 1, `in line with the wall clock: ${now}, read between ${wallBefore} and ${wallAfter}`);
    const before = nowMs();
    const child = await childNow(process.env);
    assert.ok(child >= before && child <= nowMs(), 'and a child started now agrees');
  });
});
