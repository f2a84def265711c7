/**
 * A row's fault schedule, drawn from its seed from the fault table
 * (faults.ts), and the loop that runs it; with what was injected and what hit.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { seededRandom } from '../../src/chaos/failpoints.js';
import { FAULTS, type FaultKind, type FaultRecord, type FaultSpec, type FaultTargets } from './faults.js';
import type { Shot } from './injectors.js';
import type { Row } from './row-processes.js';
import type { RowSpec } from './rows.js';

/** Per fault kind (and `failpoint`): how many were injected and how many hit a process doing work. */
export type FaultTally = Record<string, { scheduled: number; hit: number }>;

// Rationale: a server fault's cost is measured on the events committed after
// it. A restart here takes 1-3 s, so two restarts at fixed fractions of a
// short window could follow each other with no commit in between (the reduced
// matrix's 8 s row once did); 2 s of service first (about 50 transactions at
// the test's 25 per second) gives every such fault events to measure.
const SERVER_FAULT_GAP_MS = 2_000;
// Rationale: a kind drawn two or three times in the reduced matrix's 8 s
// window can miss each time on a slow host (a walsender looked for while a
// CI host took more than its 1.5 s wait to restart the relay; the row then
// failed "no terminate-walsender fault hit"). Up to three more shots after
// the window, a cadence apart, make the row's verdict rest on faults that
// acted instead of on the host's speed; a kind that still misses fails it.
const MAKE_UP_SHOTS = 3;

/** The fault table (faults.ts); a test passes its own injections. */
type FaultTable = Readonly<Record<FaultKind, FaultSpec>>;

interface Scheduled {
  at: number;
  kind: FaultKind;
  /** A server fault at a fixed fraction of the window: it waits for some service after the one before. */
  server?: true;
}

/** Failpoint crashes so far: SIGKILLs of supervised processes the matrix did not send (a failpoint ends its process with one). */
function failpointKills(row: Row, log: readonly FaultRecord[]): number {
  const kills = row.supervisor.events.filter((e) => e.event === 'exited' && e.signal === 'SIGKILL').length;
  return Math.max(0, kills - log.filter((f) => f.kind !== 'failpoint' && FAULTS[f.kind].killsProcess).length);
}

/** What was injected and what hit, by kind, failpoint crashes so far included. */
export function tallyFaults(row: Row, log: readonly FaultRecord[]): FaultTally {
  const faults: FaultTally = {};
  for (const fault of log) {
    const count = (faults[fault.kind] ??= { scheduled: 0, hit: 0 });
    count.scheduled += 1;
    if (fault.hit) count.hit += 1;
  }
  // A failpoint fires only inside the work it interrupts: each one is a hit.
  const failpoints = failpointKills(row, log);
  if (failpoints > 0) faults.failpoint = { scheduled: failpoints, hit: failpoints };
  return faults;
}

export const totalHits = (faults: FaultTally) => Object.values(faults).reduce((sum, f) => sum + f.hit, 0);

/** The row's fault kinds that never hit a process at work: the soak waits for them, the verdict fails on them. */
export const kindsNotHit = (spec: RowSpec, faults: FaultTally) => spec.faults.filter((kind) => !faults[kind]?.hit);

/**
 * The row's faults over the window, in the order its kinds are listed (each
 * kind's draws come from the one seeded stream, so the order is part of the
 * schedule a seed replays).
 */
function drawSchedule(row: Row, table: FaultTable, random: () => number, windowMs: number, soak: boolean): Scheduled[] {
  const schedule: Scheduled[] = [];
  const every = (kind: FaultKind, [min, max]: readonly [number, number]) => {
    for (let at = min + random() * (max - min); at < windowMs; at += min + random() * (max - min)) schedule.push({ at, kind });
  };
  for (const kind of row.spec.faults) {
    const fault: FaultSpec = table[kind];
    if (fault.process === 'relay' && row.relays.length === 0) continue;
    const cadence = fault.cadence;
    if ('every' in cadence) every(kind, cadence.every(row.spec));
    else if ('once' in cadence) schedule.push({ at: windowMs * cadence.once, kind });
    else if (soak) every(kind, cadence.soakEvery);
    else for (const fraction of cadence.server) schedule.push({ at: windowMs * fraction, kind, server: true });
  }
  return schedule.sort((a, b) => a.at - b.at);
}

function faultTargets(row: Row, random: () => number): FaultTargets {
  const { servers } = row.options;
  return {
    sql: row.sql,
    supervisor: row.supervisor,
    postgres: servers.postgres,
    failover: servers.failover,
    kafka: servers.kafka,
    relays: row.relays,
    consumers: row.consumers,
    startConsumer: (name) => row.startConsumer(name, false),
    topic: row.run.topic,
    relay: row.run.relay,
    evidenceDir: row.evidenceDir,
    random,
  };
}

/**
 * Runs the seeded fault schedule over the fault window (in a soak, until the
 * row's faults hit `targetHits` times and each kind hit at least once);
 * returns what was injected and what hit.
 */
export async function injectFaults(row: Row, table: FaultTable = FAULTS): Promise<{ log: FaultRecord[]; stoppedOnHits: boolean }> {
  const { spec, options } = row;
  const random = seededRandom(options.seed);
  const targets = faultTargets(row, random);
  const windowMs = options.faultWindowS * 1_000;
  const started = Date.now();
  const soak = options.targetHits !== undefined;
  // The schedule is drawn from the seed before anything runs.
  const schedule = drawSchedule(row, table, random, windowMs, soak);
  const log: FaultRecord[] = [];
  /** Injects one fault of the kind and logs what it did; a make-up shot is marked so. */
  const shoot = async (kind: FaultKind, makeUp = false): Promise<Shot | undefined> => {
    const at = Date.now() - started;
    const shot = await table[kind].inject(targets, spec);
    if (shot) log.push({ at, kind, ...shot, ...(makeUp ? { makeUp } : {}) });
    return shot;
  };
  // A soak stops early only once every kind of the row has hit too: the row is
  // judged on each kind having hit a process at work, and a kind drawn rarely
  // (a walsender between two relay kills) could otherwise miss every chance.
  const reached = () => {
    if (!soak) return false;
    const faults = tallyFaults(row, log);
    return totalHits(faults) >= options.targetHits! && kindsNotHit(spec, faults).length === 0;
  };
  let serverFaultEnded = Number.NEGATIVE_INFINITY;
  for (const fault of schedule) {
    // A second server fault waits for some service after the first, whose recovery is measured from it.
    const due = fault.server ? Math.max(started + fault.at, serverFaultEnded + SERVER_FAULT_GAP_MS) : started + fault.at;
    if (fault.server && due >= started + windowMs) continue;
    // A row whose only faults are failpoints reaches its hits between scheduled faults.
    while (Date.now() < due) {
      if (reached()) return { log, stoppedOnHits: true };
      await sleep(Math.min(500, Math.max(0, due - Date.now())));
    }
    if (reached()) return { log, stoppedOnHits: true };
    await shoot(fault.kind);
    if (fault.server) serverFaultEnded = Date.now();
  }
  while (Date.now() < started + windowMs) {
    if (reached()) return { log, stoppedOnHits: true };
    await sleep(Math.min(500, Math.max(0, started + windowMs - Date.now())));
  }
  if (!soak) await makeUpShots(row, table, random, log, shoot);
  return { log, stoppedOnHits: false };
}

/**
 * After the window, each periodic kind that never hit is injected again, up
 * to MAKE_UP_SHOTS times a cadence apart, until it hits (a soak needs none:
 * it waits for every kind). Server faults keep their fixed places.
 */
async function makeUpShots(row: Row, table: FaultTable, random: () => number, log: readonly FaultRecord[], shoot: (kind: FaultKind, makeUp: true) => Promise<Shot | undefined>): Promise<void> {
  for (const kind of kindsNotHit(row.spec, tallyFaults(row, log))) {
    const cadence = table[kind].cadence;
    if (!('every' in cadence)) continue;
    const [min, max] = cadence.every(row.spec);
    for (let shot = 0; shot < MAKE_UP_SHOTS; shot++) {
      await sleep(min + random() * (max - min));
      if ((await shoot(kind, true))?.hit) break;
    }
  }
}
