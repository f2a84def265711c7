/**
 * A piscina worker that writes orders on a fixed timetable (open loop).
 *
 * Order `seq` of this worker is *intended* at startAt + seq / rate. A
 * transaction of N orders is sent when its last order is due; if every
 * connection is busy it waits, and that wait shows in the latency, because
 * latency is measured from the intended time, not from the send. A stalled
 * database therefore shows up in the tail instead of silently lowering the
 * offered rate (no coordinated omission).
 *
 * Compiled .js only: piscina workers cannot load TypeScript on Node 20.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { createSql } from '../../src/db.js';
import { HEADERS, nowMs } from '../../src/events.js';
import { createHistogram, encodeHistogram, recordMs } from '../../src/latency.js';
import { placeOrders, type OutboxStore } from '../../src/orders/write-path.js';

export const LOAD_SEQ_HEADER = 'x-load-seq';

export interface LoadTask {
  databaseUrl: string;
  schema: string;
  store: OutboxStore;
  workerIndex: number;
  /** Orders per second offered by this worker. */
  rate: number;
  /** Epoch ms at which order 0 is intended; shared by all workers. */
  startAt: number;
  /** Orders are written for this long from startAt, ms. */
  durationMs: number;
  /** Intended times in [measureFrom, measureTo) are measured; the rest is warm-up or tail. */
  measureFrom: number;
  measureTo: number;
  ordersPerTransaction: number;
  /** Transactions in flight at most (= connections of this worker). */
  connections: number;
  /** Approximate size of each event payload, bytes. */
  payloadBytes: number;
}

export interface LoadResult {
  workerIndex: number;
  /** Orders attempted. */
  attempted: number;
  /** Orders whose transaction committed. */
  committed: number;
  failed: number;
  /** Epoch ms at which each order's commit returned; NaN if it failed. Index = seq. */
  commitAt: Float64Array;
  /** Intended send -> commit returned, measured window only (encoded HDR, µs). */
  commitLatency: string;
  /** The first few distinct error messages. */
  errors: string[];
}

function padding(bytes: number): string | undefined {
  // The event payload without a note is ~170 bytes of JSON.
  const extra = bytes - 170;
  return extra > 0 ? 'x'.repeat(extra) : undefined;
}

export default async function runLoad(task: LoadTask): Promise<LoadResult> {
  const sql = createSql(task.databaseUrl, task.schema, { max: task.connections, applicationName: `outbox-bench-load-${task.workerIndex}` });
  const perTx = task.ordersPerTransaction;
  const msPerOrder = 1_000 / task.rate;
  const total = Math.floor(task.durationMs / msPerOrder / perTx) * perTx;
  const commitAt = new Float64Array(total).fill(Number.NaN);
  const histogram = createHistogram();
  const errors = new Set<string>();
  const note = padding(task.payloadBytes);
  let committed = 0;
  let failed = 0;

  const send = async (firstSeq: number): Promise<void> => {
    const orders = [];
    for (let seq = firstSeq; seq < firstSeq + perTx; seq++) {
      const intendedAt = task.startAt + seq * msPerOrder;
      orders.push({
        customerId: `customer-${task.workerIndex}-${seq % 10_000}`,
        amountCents: 100 + (seq % 9_900),
        currency: 'EUR',
        ...(note ? { note } : {}),
        headers: { [HEADERS.intendedAt]: intendedAt.toFixed(3), [LOAD_SEQ_HEADER]: `${task.workerIndex}:${seq}` },
      });
    }
    try {
      await placeOrders(sql, orders, task.store);
      const at = nowMs();
      for (let seq = firstSeq; seq < firstSeq + perTx; seq++) {
        commitAt[seq] = at;
        const intendedAt = task.startAt + seq * msPerOrder;
        if (intendedAt >= task.measureFrom && intendedAt < task.measureTo) recordMs(histogram, at - intendedAt);
      }
      committed += perTx;
    } catch (error) {
      failed += perTx;
      if (errors.size < 5) errors.add(String((error as Error).message ?? error));
    }
  };

  const inFlight = new Set<Promise<void>>();
  for (let firstSeq = 0; firstSeq < total; firstSeq += perTx) {
    const dueAt = task.startAt + (firstSeq + perTx - 1) * msPerOrder;
    const wait = dueAt - nowMs();
    if (wait > 1) await sleep(wait);
    while (inFlight.size >= task.connections) await Promise.race(inFlight);
    const pending: Promise<void> = send(firstSeq).finally(() => inFlight.delete(pending));
    inFlight.add(pending);
  }
  await Promise.all(inFlight);
  await sql.end({ timeout: 5 });
  return {
    workerIndex: task.workerIndex,
    attempted: total,
    committed,
    failed,
    commitAt,
    commitLatency: encodeHistogram(histogram),
    errors: [...errors],
  };
}
