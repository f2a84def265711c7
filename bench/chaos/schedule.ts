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
function drawSchedule(row: Row, random: () => number, windowMs: number, soak: boolean): Scheduled[] {
  const schedule: Scheduled[] = [];
  const every = (kind: FaultKind, [min, max]: readonly [number, number]) => {
    for (let at = min + random() * (max - min); at < windowMs; at += min + random() * (max - min)) schedule.push({ at, kind });
  };
  for (const kind of row.spec.faults) {
    const fault: FaultSpec = FAULTS[kind];
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
export async function injectFaults(row: Row): Promise<{ log: FaultRecord[]; stoppedOnHits: boolean }> {
  const { spec, options } = row;
  const random = seededRandom(options.seed);
  const targets = faultTargets(row, random);
  const windowMs = options.faultWindowS * 1_000;
  const started = Date.now();
  const soak = options.targetHits !== undefined;
  // The schedule is drawn from the seed before anything runs.
  const schedule = drawSchedule(row, random, windowMs, soak);
  const log: FaultRecord[] = [];
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
    const at = Date.now() - started;
    const shot: Shot | undefined = await FAULTS[fault.kind].inject(targets, spec);
    if (fault.server) serverFaultEnded = Date.now();
    if (shot) log.push({ at, kind: fault.kind, ...shot });
  }
  while (Date.now() < started + windowMs) {
    if (reached()) return { log, stoppedOnHits: true };
    await sleep(Math.min(500, Math.max(0, started + windowMs - Date.now())));
  }
  return { log, stoppedOnHits: false };
}
