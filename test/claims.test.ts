/**
 * The claim checker: no bucket held by two replicas at overlapping server
 * times; a killed replica's hold lasts until its session ended; a holder the
 * lease cut off is the exception. On synthetic evidence, one rule at a time.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkClaims, type PassEvidence } from '../src/relay/table/evidence.js';

const claim = (replica: string, pass: number, claimedAt: number, buckets: number[], extra: Partial<Extract<PassEvidence, { type: 'claim' }>> = {}): PassEvidence => ({
  type: 'claim',
  replica,
  pid: 1,
  pass,
  claimedAt,
  backendPid: extra.backendPid ?? (replica === 'a' ? 100 : 200),
  eventIds: [`${replica}-${pass}`],
  buckets,
  ...extra,
});
const released = (replica: string, pass: number, releasedAt: number, pid = 1): PassEvidence => ({ type: 'release', replica, pid, pass, outcome: 'published', releasedAt });

describe('claim checker', () => {
  it('accepts a bucket handed over: released before the next claim', () => {
    const report = checkClaims([claim('a', 1, 1_000, [3]), released('a', 1, 1_040), claim('b', 1, 1_041, [3]), released('b', 1, 1_090)]);
    assert.deepEqual(report.overlaps, []);
    assert.equal(report.disjoint, true);
  });

  it('catches one bucket held by two replicas at once, even with different event ids', () => {
    const report = checkClaims([claim('a', 1, 1_000, [3, 4]), claim('b', 1, 1_020, [4, 5]), released('a', 1, 1_040), released('b', 1, 1_090)]);
    assert.equal(report.disjoint, false);
    assert.equal(report.overlaps.length, 1);
    assert.equal(report.overlaps[0]!.held, 'bucket 4');
    assert.deepEqual([report.overlaps[0]!.first.replica, report.overlaps[0]!.second.replica], ['a', 'b']);
  });

  it("counts a killed replica's hold until its session ended", () => {
    const killed: PassEvidence[] = [claim('a', 7, 1_000, [3]), claim('b', 1, 1_500, [3]), released('b', 1, 1_520)];
    // Without a record of the session's end only the claim itself is known.
    const unbounded = checkClaims(killed);
    assert.equal(unbounded.unreleasedPasses, 1);
    assert.equal(unbounded.disjoint, true);
    // The session was still there at 1,600: b's claim at 1,500 overlapped it.
    const bounded = checkClaims([...killed, { type: 'session-end', replica: 'a', backendPid: 100, lastSeenAt: 1_600 }]);
    assert.equal(bounded.boundedBySessionEnd, 1);
    assert.equal(bounded.disjoint, false);
    // Gone before b claimed: a clean handover.
    assert.equal(checkClaims([...killed, { type: 'session-end', replica: 'a', backendPid: 100, lastSeenAt: 1_400 }]).disjoint, true);
  });

  it('tells the passes of a restarted replica from those of the process before it', () => {
    // The second process of replica a counts from pass 1 again; its release must not end the first one's pass 1.
    const lines: PassEvidence[] = [claim('a', 1, 1_000, [3]), claim('b', 1, 1_100, [3]), released('b', 1, 1_150), claim('a', 1, 2_000, [3], { pid: 2, backendPid: 101 }), released('a', 1, 2_050, 2)];
    const report = checkClaims(lines);
    assert.equal(report.disjoint, true, JSON.stringify(report.overlaps));
    assert.equal(report.unreleasedPasses, 1);
  });

  it('excepts a holder the lease cut off, and counts it', () => {
    const lines: PassEvidence[] = [
      claim('a', 1, 1_000, [3], { leaseMs: 2_000 }),
      claim('b', 1, 3_100, [3], { leaseMs: 2_000 }),
      released('b', 1, 3_150),
      // a was stopped past its lease; its pass failed when it resumed.
      { type: 'release', replica: 'a', pid: 1, pass: 1, outcome: 'failed', failedAt: 5_000, error: 'write CONNECTION_CLOSED' },
    ];
    const report = checkClaims(lines);
    assert.equal(report.leaseCut, 1);
    assert.equal(report.disjoint, true);
  });

  it('compares event ids for strategies without buckets', () => {
    const lines: PassEvidence[] = [
      { type: 'claim', replica: 'a', pid: 1, pass: 1, claimedAt: 1_000, backendPid: 1, eventIds: ['e1', 'e2'] },
      { type: 'claim', replica: 'b', pid: 2, pass: 1, claimedAt: 1_010, backendPid: 2, eventIds: ['e2'] },
      released('a', 1, 1_050),
      released('b', 1, 1_060, 2),
    ];
    const report = checkClaims(lines);
    assert.equal(report.overlaps[0]?.held, 'event e2');
    assert.equal(report.reclaimedEvents, 1);
  });
});
