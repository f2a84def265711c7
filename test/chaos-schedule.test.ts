/**
 * The crash matrix's fault schedule, on a fake row with fake injections: a
 * kind that missed every drawn shot gets make-up shots until it hits, and a
 * kind that never hits is left for the verdict to fail.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FAULTS, type FaultSpec } from '../bench/chaos/faults.js';
import type { Row } from '../bench/chaos/row-processes.js';
import { MATRIX } from '../bench/chaos/rows.js';
import { injectFaults, kindsNotHit, tallyFaults } from '../bench/chaos/schedule.js';
import { log } from './helpers.js';

const spec = MATRIX.find((row) => row.name === 'logical-message+cdc')!;

/** A row with no processes: only what the schedule reads. */
function fakeRow(faultWindowS: number): Row {
  const servers = {} as Row['options']['servers'];
  return {
    spec: { ...spec, faults: ['terminate-walsender'] },
    options: { servers, workDir: '', seed: 1234, faultWindowS, drainTimeoutS: 1, transactionsPerSecond: 1, log },
    relays: ['relay'],
    consumers: [],
    supervisor: { events: [] },
    run: { topic: 't', relay: undefined },
  } as unknown as Row;
}

/** The table with the walsender fault's cadence shortened and its injection scripted: hit on the nth shot, or never. */
function scripted(hitOnShot: number) {
  let shots = 0;
  const fault: FaultSpec = {
    ...FAULTS['terminate-walsender'],
    cadence: { every: () => [20, 30] },
    inject: async () => ({ target: 'slot', hit: ++shots >= hitOnShot }),
  };
  return { table: { ...FAULTS, 'terminate-walsender': fault }, shots: () => shots };
}

describe('crash matrix fault schedule', () => {
  it('injects a kind that missed every shot of the window again, after it, until it hits', async () => {
    const row = fakeRow(0.05);
    // Seed 1234 draws two shots into the 50 ms window, 20-30 ms apart: both miss, the third hits.
    const { table, shots } = scripted(3);
    const { log: faultLog } = await injectFaults(row, table);
    assert.equal(shots(), 3, `shots: ${JSON.stringify(faultLog)}`);
    // The third came after the window, marked so no latency is measured from it (the writer stops next).
    assert.deepEqual(faultLog.map((f) => f.makeUp === true), [false, false, true]);
    assert.ok(faultLog[2]!.at >= 50, `the make-up shot at ${faultLog[2]!.at} ms, after the 50 ms window`);
    const tally = tallyFaults(row, faultLog);
    assert.deepEqual(tally['terminate-walsender'], { scheduled: 3, hit: 1 });
    assert.deepEqual(kindsNotHit(row.spec, tally), []);
  });

  it('gives up after three make-up shots, so the verdict still fails a kind that never acts', async () => {
    const row = fakeRow(0.05);
    const { table, shots } = scripted(Number.POSITIVE_INFINITY);
    const { log: faultLog } = await injectFaults(row, table);
    assert.equal(shots(), 2 + 3);
    assert.deepEqual(kindsNotHit(row.spec, tallyFaults(row, faultLog)), ['terminate-walsender']);
  });

  it('gives a soak no make-up shots: it injects until every kind has hit', async () => {
    const row = fakeRow(0.05);
    row.options = { ...row.options, targetHits: 1_000 };
    const { table, shots } = scripted(Number.POSITIVE_INFINITY);
    const { log: faultLog } = await injectFaults(row, table);
    assert.equal(shots(), 2);
    assert.ok(faultLog.every((f) => f.makeUp === undefined));
  });

  it('adds nothing to a kind that hit in the window', async () => {
    const row = fakeRow(0.05);
    const { table, shots } = scripted(1);
    await injectFaults(row, table);
    assert.equal(shots(), 2);
  });
});
