/**
 * The live progress line says only what has been measured: during a warm-up
 * no event is in the measured window, so it prints no p99 at all rather than
 * a p99 of 0 ms.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mergeProgress } from '../bench/harness/processes.js';
import { formatProgress } from '../bench/harness/progress.js';

describe('progress line', () => {
  it('prints no p99 before an event of the measured window has arrived, and the p99 after', () => {
    const warmUp = formatProgress({ elapsedS: 35, phase: 'prewarm', ratePerSec: 500, lag: { events: null, bytes: 0 }, p99Ms: null });
    assert.match(warmUp, /p99: nothing measured yet/);
    assert.doesNotMatch(warmUp, /0\.0 ms/);
    const measured = formatProgress({ elapsedS: 95, phase: 'steady', ratePerSec: 500, lag: { events: 12, bytes: null }, p99Ms: 41.25 });
    assert.match(measured, /p99 so far 41\.3 ms/);
    assert.match(measured, /lag 12 events/);
    assert.match(formatProgress({ elapsedS: -0.2, phase: 'start', ratePerSec: 0, lag: { events: null, bytes: null }, p99Ms: null }), /^ +0 s  start/);
  });

  it('a consumer group with no member past the warm-up has no p99, not a p99 of 0', () => {
    assert.equal(mergeProgress([undefined, undefined]), undefined);
    assert.deepEqual(mergeProgress([{ distinct: 40, p99Ms: null }, { distinct: 2, p99Ms: null }, undefined]), { distinct: 42, p99Ms: null });
    assert.deepEqual(mergeProgress([{ distinct: 40, p99Ms: null }, { distinct: 60, p99Ms: 12.5 }, { distinct: 5, p99Ms: 30 }]), { distinct: 105, p99Ms: 30 });
  });
});
