/**
 * The crash-injection matrix: each row runs writer, relay(s) and consumer as
 * supervised processes on servers of its own, injects faults on a seeded
 * schedule, stops the faults, drains, and checks the history. The same seed
 * gives the same schedule, so any row can be replayed.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Sql } from '../../src/db.js';
import { checkClaims, readEvidence, type ClaimReport } from '../../src/relay/table/evidence.js';
import { FAULTS, type FaultRecord } from './faults.js';
import { checkHistory, latencyAroundFaults, readJsonLines, type CheckReport, type DeliveryRecord, type FaultLatency, type LatencySpan, type WriteRecord } from './history.js';
import { setUpRow, startComponents, type Row, type RowOptions } from './row-processes.js';
import type { RowSpec } from './rows.js';
import { injectFaults, kindsNotHit, tallyFaults, totalHits, type FaultTally } from './schedule.js';

export { MATRIX, type RowSpec } from './rows.js';
export { startChaosServers, type ChaosServers } from './servers.js';
export type { RowOptions } from './row-processes.js';
export type { FaultKind, FaultRecord } from './faults.js';

export interface RowResult {
  name: string;
  description: string;
  seed: number;
  report: CheckReport;
  /** Per fault kind: how many were injected and how many hit a process doing work. */
  faults: FaultTally;
  /** SKIP LOCKED rows: the claim evidence checked (no bucket held by two replicas at once). */
  claims?: ClaimReport;
  /** Times each component was started (1 = never restarted). */
  starts: Record<string, number>;
  passed: boolean;
  failures: string[];
  faultLog: FaultRecord[];
  /** For lost events of a table outbox: still unpublished (a relay stuck) or marked (published and gone). */
  lostDiagnosis?: { unpublished: number; marked: number; missing: number };
  /** How long the faults ran, s. */
  faultWindowS: number;
  /** A soak's faults stopped because they had hit as asked, before the window ran out. */
  stoppedOnHits: boolean;
  /** SIGKILL exits of processes started after the faults ended: they start without a failpoint, so none should die so (a process started inside the window keeps its own). */
  killedAfterFaults: number;
  /** Events committed per second from the writer's first commit to its last (the load the row ran at). */
  committedPerSec: number;
  /** Commit-to-receipt latency before the first fault and in the 10 s after each server or group fault. */
  latency: { baseline: LatencySpan; faults: FaultLatency[] };
}

// Rationale: a leader election, a rebalance or a promotion settles within a
// few seconds here; 10 s after a fault's start holds its whole effect, and
// the faults that carry latency come at least 5 s apart.
const FAULT_LATENCY_SPAN_MS = 10_000;

async function collect(sql: Sql, spec: RowSpec, writerHistory: string, consumerHistory: string): Promise<CheckReport> {
  const writes = readJsonLines<WriteRecord>(writerHistory);
  const deliveries = readJsonLines<DeliveryRecord>(consumerHistory);
  const inOutbox = new Set((await sql<{ eventId: string }[]>`SELECT event_id::text FROM outbox`).map((r) => r.eventId));
  const orders = new Set((await sql<{ orderId: string }[]>`SELECT order_id::text FROM orders`).map((r) => r.orderId));
  const applications = new Map((await sql<{ eventId: string; n: number }[]>`SELECT event_id::text, count(*)::int AS n FROM order_ledger GROUP BY 1`).map((r) => [r.eventId, r.n]));
  return checkHistory({
    writes,
    deliveries,
    // The outbox table is the record of table-mode events; without one, a new
    // order (version 1) exists exactly when its OrderPlaced event does.
    existsInDatabase: (event) => (spec.writer.store === 'table' ? inOutbox.has(event.eventId) : event.version === 1 && orders.has(event.aggregateId)),
    applications,
  });
}

/** Ids of committed-but-undelivered events, from the two histories (writes acknowledged as committed only). */
function checkHistoryLost(writerHistory: string, consumerHistory: string): string[] {
  const delivered = new Set(readJsonLines<DeliveryRecord>(consumerHistory).map((d) => d.eventId));
  const writes = readJsonLines<WriteRecord>(writerHistory);
  const committed = new Set(writes.filter((w) => w.type === 'committed').map((w) => w.txn));
  return writes.flatMap((w) => (w.type === 'pending' && committed.has(w.txn) ? w.events.map((e) => e.eventId) : [])).filter((id) => !delivered.has(id));
}

/**
 * The load a row ran at: its committed events over the span from the first
 * commit to the last. Not over the fault window, which begins while the
 * writer process is still starting and ends before it stops.
 */
function committedRate(writes: readonly WriteRecord[], committed: number): number {
  let first = Infinity;
  let last = -Infinity;
  for (const write of writes) {
    if (write.type !== 'committed') continue;
    first = Math.min(first, write.at);
    last = Math.max(last, write.at);
  }
  return last > first ? Math.round(committed / ((last - first) / 1_000)) : 0;
}

/** Processes started after the fault window that died by SIGKILL: every fault had stopped, so each would be a failpoint left armed. */
function killedAfterFaults(row: Row): number {
  const { events } = row.supervisor;
  const lateStarts = new Set(events.filter((e) => e.event === 'started' && e.at >= row.faultsOverAt!).map((e) => e.pid));
  return events.filter((e) => e.event === 'exited' && e.signal === 'SIGKILL' && lateStarts.has(e.pid)).length;
}

/** Drains until every committed event is applied, or nothing moves for the timeout. */
async function drainRow(row: Row): Promise<CheckReport> {
  const { spec, options, sql } = row;
  let report = await collect(sql, spec, row.writerHistory, row.consumerHistory);
  let lastProgress = Date.now();
  let lastDelivered = report.delivered;
  // A row that is expected to lose events will never drain completely:
  // stop waiting once deliveries have been still for a few seconds.
  const patienceMs = (spec.expect.lost === 'some' ? 5 : options.drainTimeoutS) * 1_000;
  let dumped = false;
  while (report.notApplied > 0 && Date.now() - lastProgress < patienceMs) {
    await sleep(1_000);
    report = await collect(sql, spec, row.writerHistory, row.consumerHistory);
    if (report.delivered !== lastDelivered) {
      lastDelivered = report.delivered;
      lastProgress = Date.now();
    } else if (!dumped && Date.now() - lastProgress > 10_000) {
      // Stalled: record who holds what, for whoever reads this row afterwards.
      dumped = true;
      const activity = await sql`
        SELECT a.pid, a.application_name, a.state, a.wait_event_type, a.wait_event, a.xact_start, a.state_change, left(a.query, 120) AS query,
               (SELECT array_agg(l.mode) FROM pg_locks l WHERE l.pid = a.pid AND l.relation = 'relay_buckets'::regclass) AS bucket_locks
        FROM pg_stat_activity a WHERE a.datname = current_database()`.catch((error: unknown) => [{ error: String(error) }]);
      writeFileSync(path.join(row.dir, 'stall.json'), `${JSON.stringify({ at: new Date().toISOString(), report, activity, supervisor: row.supervisor.events }, null, 2)}\n`);
    }
  }
  await row.supervisor.stopAll();
  return collect(sql, spec, row.writerHistory, row.consumerHistory);
}

/** What the row expects, against what happened. */
function judgeRow(spec: RowSpec, report: CheckReport, faults: FaultTally, claims: ClaimReport | undefined): string[] {
  const failures: string[] = [];
  if (report.committed === 0) failures.push('nothing was committed');
  for (const kind of kindsNotHit(spec, faults)) failures.push(`no ${kind} fault hit a process doing work (${faults[kind]?.scheduled ?? 0} injected)`);
  if (spec.expect.lost === 'some' && report.lost === 0) failures.push('expected the naive dual write to lose events, it lost none');
  if (spec.expect.lost === 'none' && report.lost > 0) failures.push(`${report.lost} committed events were lost`);
  if (spec.expect.lost === 'none' && report.notApplied > 0) failures.push(`${report.notApplied} committed events were never applied`);
  if (spec.expect.duplicates === 'some' && report.duplicateDeliveries === 0) failures.push('expected duplicate deliveries (proof the crashes hit between publish and acknowledgement), saw none');
  if (report.appliedTwice > 0) failures.push(`${report.appliedTwice} side effects applied twice`);
  if (report.unexpected > 0) failures.push(`${report.unexpected} events delivered that were never committed`);
  if (spec.expect.reorderings === 'none' && report.reorderings > 0) failures.push(`${report.reorderings} per-aggregate reorderings`);
  if (claims && !claims.disjoint) failures.push(`${claims.overlaps.length} buckets held by two replicas at once`);
  return failures;
}

export async function runRow(spec: RowSpec, options: RowOptions): Promise<RowResult> {
  const row = await setUpRow(spec, options);
  const { sql, supervisor } = row;
  try {
    await startComponents(row);
    const faultsFrom = Date.now();
    const { log: faultLog, stoppedOnHits } = await injectFaults(row);
    row.faultsOverAt = Date.now();
    const faultWindowS = Math.round((Date.now() - faultsFrom) / 100) / 10;
    const faultsWithLatency = faultLog.filter((f) => f.kind !== 'failpoint' && FAULTS[f.kind].latency && f.hit && !f.makeUp);
    await supervisor.stop('writer');
    for (const name of row.relays) if (supervisor.isPaused(name)) supervisor.signal(name, 'SIGCONT');
    const report = await drainRow(row);

    const faults = tallyFaults(row, faultLog);
    const claims = row.evidenceDir ? checkClaims(readEvidence(row.evidenceDir)) : undefined;
    const failures = judgeRow(spec, report, faults, claims);
    const hit = totalHits(faults);
    if (options.targetHits !== undefined && hit < options.targetHits) {
      failures.push(`only ${hit} faults hit a process at work in ${faultWindowS} s; the soak asks for ${options.targetHits}`);
    }
    const starts: Record<string, number> = {};
    for (const event of supervisor.events) if (event.event === 'started') starts[event.name] = (starts[event.name] ?? 0) + 1;
    let lostDiagnosis: RowResult['lostDiagnosis'];
    if (report.lost > 0 && spec.writer.store === 'table') {
      const lost = checkHistoryLost(row.writerHistory, row.consumerHistory);
      const rows = await sql<{ published: boolean }[]>`SELECT published_at IS NOT NULL AS published FROM outbox WHERE event_id = ANY(${lost}::uuid[])`;
      lostDiagnosis = { unpublished: rows.filter((r) => !r.published).length, marked: rows.filter((r) => r.published).length, missing: lost.length - rows.length };
      failures.push(`lost events: ${lostDiagnosis.unpublished} never published, ${lostDiagnosis.marked} marked published, ${lostDiagnosis.missing} not in the outbox`);
    }
    return {
      name: spec.name,
      description: spec.description,
      seed: options.seed,
      report,
      faults,
      ...(claims ? { claims } : {}),
      starts,
      passed: failures.length === 0,
      failures,
      faultLog,
      ...(lostDiagnosis ? { lostDiagnosis } : {}),
      faultWindowS,
      stoppedOnHits,
      killedAfterFaults: killedAfterFaults(row),
      committedPerSec: committedRate(readJsonLines<WriteRecord>(row.writerHistory), report.committed),
      latency: latencyAroundFaults(readJsonLines<WriteRecord>(row.writerHistory), readJsonLines<DeliveryRecord>(row.consumerHistory), faultsWithLatency, faultsFrom, FAULT_LATENCY_SPAN_MS),
    };
  } finally {
    await supervisor.stopAll().catch(() => {});
    await row.run.close();
  }
}
