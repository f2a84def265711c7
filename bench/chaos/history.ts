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
