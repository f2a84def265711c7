/**
 * The history checker on synthetic histories, one anomaly at a time: a
 * checker that cannot see a lost event proves nothing.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkHistory, latencyAroundFaults, type CheckInput, type DeliveryRecord, type WriteRecord } from '../bench/chaos/history.js';

const ev = (id: string, aggregate = `agg-${id}`, version = 1) => ({ eventId: id, aggregateId: aggregate, version });
const delivery = (id: string, aggregate = `agg-${id}`, version = 1, offset = '0'): DeliveryRecord => ({ eventId: id, aggregateId: aggregate, version, partition: 0, offset, at: 0 });

function input(writes: WriteRecord[], deliveries: DeliveryRecord[], options: Partial<CheckInput> = {}): CheckInput {
  const applications = new Map<string, number>();
  for (const d of deliveries) applications.set(d.eventId, 1);
  return { writes, deliveries, existsInDatabase: () => false, applications, ...options };
}

const committed = (txn: string, ...events: ReturnType<typeof ev>[]): WriteRecord[] => [
  { type: 'pending', txn, at: 0, events },
  { type: 'committed', txn, at: 1 },
];

describe('history checker', () => {
  it('passes a clean history', () => {
    const report = checkHistory(input([...committed('t1', ev('a'), ev('b'))], [delivery('a'), delivery('b')]));
    assert.equal(report.committed, 2);
    assert.equal(report.lost, 0);
    assert.equal(report.duplicateDeliveries, 0);
    assert.equal(report.appliedTwice, 0);
    assert.equal(report.reorderings, 0);
  });

  it('reports a committed event that was never delivered as lost', () => {
    const report = checkHistory(input([...committed('t1', ev('a'), ev('b'))], [delivery('a')]));
    assert.equal(report.lost, 1);
    assert.deepEqual(report.lostExamples, ['b']);
  });

  it('resolves unknown outcomes by reading the database, both ways', () => {
    const writes: WriteRecord[] = [
      { type: 'pending', txn: 't1', at: 0, events: [ev('kept')] },
      { type: 'pending', txn: 't2', at: 0, events: [ev('gone')] },
      { type: 'failed', txn: 't2', at: 1, error: 'connection lost' },
    ];
    const report = checkHistory(input(writes, [], { existsInDatabase: (e) => e.eventId === 'kept' }));
    assert.equal(report.committed, 1);
    assert.equal(report.resolvedByReading, 1);
    assert.equal(report.notCommitted, 1);
    assert.equal(report.lost, 1, 'the committed-but-unknown event still has to be delivered');
  });

  it('reports an event delivered but never committed as unexpected', () => {
    const writes: WriteRecord[] = [{ type: 'pending', txn: 't1', at: 0, events: [ev('a')] }, { type: 'failed', txn: 't1', at: 1, error: 'rolled back' }];
    const report = checkHistory(input(writes, [delivery('a')]));
    assert.equal(report.unexpected, 1);
  });

  it('counts duplicate deliveries, which are fine, and side effects applied twice, which are not', () => {
    const report = checkHistory(input([...committed('t1', ev('a'))], [delivery('a'), delivery('a', 'agg-a', 1, '1')], { applications: new Map([['a', 2]]) }));
    assert.equal(report.duplicateDeliveries, 1);
    assert.equal(report.appliedTwice, 1);
    assert.deepEqual(report.appliedTwiceExamples, ['a']);
  });

  it('reports a version delivered after a later one as a reordering, but not a re-delivery', () => {
    const writes = committed('t1', ev('v1', 'x', 1), ev('v2', 'x', 2), ev('v3', 'x', 3));
    const inOrderWithRedelivery = checkHistory(input(writes, [delivery('v1', 'x', 1), delivery('v2', 'x', 2), delivery('v1', 'x', 1), delivery('v2', 'x', 2), delivery('v3', 'x', 3)]));
    assert.equal(inOrderWithRedelivery.reorderings, 0);
    const reordered = checkHistory(input(writes, [delivery('v1', 'x', 1), delivery('v3', 'x', 3), delivery('v2', 'x', 2)]));
    assert.equal(reordered.reorderings, 2, 'the gap (v3 before v2) and the late v2');
    assert.equal(reordered.reorderingExamples[0]?.kind, 'gap');
  });

  it('reports side effects never applied after the drain', () => {
    const report = checkHistory(input([...committed('t1', ev('a'), ev('b'))], [delivery('a'), delivery('b')], { applications: new Map([['a', 1]]) }));
    assert.equal(report.notApplied, 1);
  });
});

describe('latency around faults', () => {
  // One transaction of one event every 100 ms from t = 0 to 20 s, begun 5 ms before its commit; received 10 ms after
  // it, except those committed in [8 s, 9 s), received at 9.5 s (a fault held them); no commit in [8.2 s, 9 s).
  const writes: WriteRecord[] = [];
  const deliveries: DeliveryRecord[] = [];
  for (let t = 0; t < 20_000; t += 100) {
    if (t >= 8_200 && t < 9_000) continue;
    const id = `e${t}`;
    writes.push({ type: 'pending', txn: id, at: t - 5, events: [ev(id)] }, { type: 'committed', txn: id, at: t });
    deliveries.push({ ...delivery(id), at: t >= 8_000 && t < 9_000 ? 9_500 : t + 10 });
  }
  const { baseline, faults } = latencyAroundFaults(writes, deliveries, [{ kind: 'kill-leader', target: 'broker 1', at: 8_000 }], 0, 10_000);

  it('compares the events a fault delayed with the steady ones before it, leaving the start-up out', () => {
    assert.equal(baseline.events, 60, 'committed from 2 s to 8 s');
    assert.equal(baseline.p99Ms, 10);
    assert.equal(baseline.maxMs, 10);
    assert.equal(faults.length, 1);
    assert.equal(faults[0]!.maxMs, 1_500, 'the event committed at 8.0 s waited until 9.5 s');
    assert.equal(faults[0]!.events, 100 - 8, '10 s from the fault, less the commits it stopped');
  });

  it('measures how long the writes stopped', () => {
    assert.equal(baseline.commitGapMs, 100);
    assert.equal(faults[0]!.commitGapMs, 900, 'from 8.1 s to 9.0 s');
    assert.equal(faults[0]!.commitMaxMs, 5);
  });
});
