/**
 * The history of a crash-injection run and the checker that judges it, in
 * the manner of Jepsen's queue checkers: what the writers say they wrote,
 * what the consumer says it received, and what the database says was
 * applied, compared after the faults stop and the pipeline has drained.
 */
import { readFileSync } from 'node:fs';
import { OrderingChecker, type OrderingViolation } from '../../src/chaos/ordering.js';

export interface WrittenEventRecord {
  eventId: string;
  aggregateId: string;
  version: number;
}

/**
 * A writer appends `pending` before a transaction and `committed` once its
 * COMMIT returned. A transaction with only `pending` (the writer was killed,
 * or the commit's outcome was lost with the connection) is *unknown*: the
 * checker asks the database whether it happened.
 */
export type WriteRecord =
  | { type: 'pending'; txn: string; at: number; events: WrittenEventRecord[] }
  | { type: 'committed'; txn: string; at: number }
  | { type: 'failed'; txn: string; at: number; error: string };

/** One message as the consumer received it, before applying it. */
export interface DeliveryRecord {
  eventId: string;
  aggregateId: string;
  version: number;
  partition: number;
  offset: string;
  at: number;
}

export interface CheckInput {
  writes: readonly WriteRecord[];
  deliveries: readonly DeliveryRecord[];
  /** For writes of unknown outcome: did the database keep this event? */
  existsInDatabase: (event: WrittenEventRecord) => boolean;
  /** How many times each event's side effect was applied (ledger rows per event id). */
  applications: ReadonlyMap<string, number>;
}

export interface CheckReport {
  /** Events whose transaction committed (acknowledged, or found in the database). */
  committed: number;
  /** Of those, outcome was unknown to the writer and resolved by reading the database. */
  resolvedByReading: number;
  /** Events whose transaction did not commit. */
  notCommitted: number;
  /** Distinct events the consumer received. */
  delivered: number;
  /** Committed, never delivered. */
  lost: number;
  lostExamples: string[];
  /** Delivered, never committed. */
  unexpected: number;
  unexpectedExamples: string[];
  /** Deliveries beyond the first of each event. */
  duplicateDeliveries: number;
  /** Committed events whose side effect was never applied after the drain. */
  notApplied: number;
  /** Events whose side effect was applied more than once. */
  appliedTwice: number;
  appliedTwiceExamples: string[];
  /** Per-aggregate order violations among the deliveries. */
  reorderings: number;
  reorderingExamples: OrderingViolation[];
}

export function checkHistory(input: CheckInput): CheckReport {
  const pending = new Map<string, WrittenEventRecord[]>();
  const outcome = new Map<string, 'committed' | 'failed'>();
  for (const record of input.writes) {
    if (record.type === 'pending') pending.set(record.txn, record.events);
    else if (record.type === 'committed') outcome.set(record.txn, 'committed');
    else if (!outcome.has(record.txn)) outcome.set(record.txn, 'failed');
  }
  const committed = new Map<string, WrittenEventRecord>();
  let resolvedByReading = 0;
  let notCommitted = 0;
  for (const [txn, events] of pending) {
    const known = outcome.get(txn);
    for (const event of events) {
      if (known === 'committed') {
        committed.set(event.eventId, event);
      } else if (input.existsInDatabase(event)) {
        // Unknown or reported failed, yet it is there: the commit happened.
        committed.set(event.eventId, event);
        resolvedByReading += 1;
      } else {
        notCommitted += 1;
      }
    }
  }

  const delivered = new Set<string>();
  let duplicateDeliveries = 0;
  const ordering = new OrderingChecker();
  for (const delivery of input.deliveries) {
    if (delivered.has(delivery.eventId)) duplicateDeliveries += 1;
    else delivered.add(delivery.eventId);
    ordering.observe(delivery.aggregateId, delivery.version);
  }

  const lost = [...committed.keys()].filter((id) => !delivered.has(id));
  const unexpected = [...delivered].filter((id) => !committed.has(id));
  const notApplied = [...committed.keys()].filter((id) => (input.applications.get(id) ?? 0) === 0).length;
  const appliedTwice = [...input.applications].filter(([, count]) => count > 1).map(([id]) => id);
  return {
    committed: committed.size,
    resolvedByReading,
    notCommitted,
    delivered: delivered.size,
    lost: lost.length,
    lostExamples: lost.slice(0, 10),
    unexpected: unexpected.length,
    unexpectedExamples: unexpected.slice(0, 10),
    duplicateDeliveries,
    notApplied,
    appliedTwice: appliedTwice.length,
    appliedTwiceExamples: appliedTwice.slice(0, 10),
    reorderings: ordering.violations.length,
    reorderingExamples: ordering.violations.slice(0, 10),
  };
}

/** Reads a JSON Lines history file; a torn last line (a kill mid-write) is skipped. */
export function readJsonLines<T>(file: string): T[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const records: T[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      records.push(JSON.parse(line) as T);
    } catch {
      // torn line
    }
  }
  return records;
}

/** Latency of the events committed in one span of a run. */
export interface LatencySpan {
  /** Events of acknowledged commits in the span that were received. */
  events: number;
  /** Commit acknowledgement to the consumer's first receipt. */
  p50Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
  /** The writer's transaction, begin to acknowledged commit (what a failover of the database costs the writer). */
  commitP99Ms: number | null;
  commitMaxMs: number | null;
  /** The longest time without any acknowledged commit (a database failover stops the writers for this long). */
  commitGapMs: number | null;
}

/** A fault and the latency of the events committed while it acted (from its start to `spanMs` after). */
export interface FaultLatency extends LatencySpan {
  kind: string;
  target: string;
  /** ms since the fault window opened. */
  at: number;
}

const quantile = (sorted: readonly number[], q: number) => (sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!);

interface Sample {
  committed: number;
  /** ms from the commit's acknowledgement to the first receipt; one per event. */
  receipt: number;
  /** ms the transaction took, begin to acknowledged commit. */
  commit: number;
}

function spanOf(samples: readonly Sample[], commitGapMs: number | null): LatencySpan {
  const receipts = samples.map((s) => s.receipt).sort((a, b) => a - b);
  const commits = samples.map((s) => s.commit).sort((a, b) => a - b);
  return {
    events: receipts.length,
    p50Ms: quantile(receipts, 0.5),
    p99Ms: quantile(receipts, 0.99),
    maxMs: receipts.at(-1) ?? null,
    commitP99Ms: quantile(commits, 0.99),
    commitMaxMs: commits.at(-1) ?? null,
    commitGapMs,
  };
}

// Rationale: the first seconds of a row carry its start-up (the producer's
// and the consumer's first connections, about a second here), which is not
// the steady latency a fault is compared with.
const BASELINE_SKIP_MS = 2_000;

/**
 * What each fault did to latency: commit acknowledgement to first receipt
 * (both clocks are this machine's) of the events committed from the fault's
 * start to `spanMs` after it, beside the events committed between the row's
 * start-up and its first fault; and the writer's commit times in each.
 */
export function latencyAroundFaults(
  writes: readonly WriteRecord[],
  deliveries: readonly DeliveryRecord[],
  faults: readonly { kind: string; target: string; at: number }[],
  windowStart: number,
  spanMs: number,
): { baseline: LatencySpan; faults: FaultLatency[] } {
  const committedAt = new Map<string, number>();
  for (const record of writes) if (record.type === 'committed') committedAt.set(record.txn, record.at);
  const firstReceipt = new Map<string, number>();
  for (const delivery of deliveries) if (!firstReceipt.has(delivery.eventId)) firstReceipt.set(delivery.eventId, delivery.at);
  const samples: Sample[] = [];
  for (const record of writes) {
    if (record.type !== 'pending') continue;
    const committed = committedAt.get(record.txn);
    if (committed === undefined) continue;
    for (const event of record.events) {
      const received = firstReceipt.get(event.eventId);
      // A receipt before the acknowledgement: the relay saw the commit before the writer heard back.
      if (received !== undefined) samples.push({ committed, receipt: Math.max(0, received - committed), commit: committed - record.at });
    }
  }
  const acks = [...committedAt.values()].sort((a, b) => a - b);
  /** The longest wait for the next acknowledgement that ends in [from, to). */
  const gap = (from: number, to: number) => {
    let longest: number | null = null;
    for (let i = 1; i < acks.length; i++) if (acks[i]! >= from && acks[i]! < to) longest = Math.max(longest ?? 0, acks[i]! - acks[i - 1]!);
    return longest;
  };
  const firstFault = faults.length > 0 ? windowStart + Math.min(...faults.map((f) => f.at)) : Number.POSITIVE_INFINITY;
  const steadyFrom = windowStart + BASELINE_SKIP_MS;
  return {
    baseline: spanOf(
      samples.filter((s) => s.committed >= steadyFrom && s.committed < firstFault),
      gap(steadyFrom, firstFault),
    ),
    faults: faults.map((fault) => {
      const from = windowStart + fault.at;
      return { kind: fault.kind, target: fault.target, at: fault.at, ...spanOf(samples.filter((s) => s.committed >= from && s.committed < from + spanMs), gap(from, from + spanMs)) };
    }),
  };
}
