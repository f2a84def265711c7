/**
 * A piscina worker that writes order events on a fixed timetable (open loop):
 * new orders, and amendments of orders it placed earlier (several events per
 * aggregate, optionally skewed towards a few hot aggregates).
 *
 * Event `seq` of this worker is *intended* at startAt + seq / rate (after a
 * slower prewarm phase, if the plan has one: see intendedTime). A
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
import { OutboxBenchError } from '../../src/errors.js';
import { nowMs } from '../../src/events.js';
import { createHistogram, encodeHistogram, recordMs } from '../../src/latency.js';
import { seededRandom } from '../../src/chaos/failpoints.js';
import type { Sql } from '../../src/db.js';
import { placeOrdersWithoutEvents, writeOrderEvents, type AmendOrderInput, type PlaceOrderInput, type WrittenEvent } from '../../src/orders/write-path.js';
import type { LoadStore, OwnWritePath } from '../drivers/write-path.js';
import { loadEventId } from './load-ids.js';
import { statementsFor, type BoundStatement, type SqlWorkload } from './sql-workload.js';
import { writeWorkloadTransaction } from './sql-workload-execution.js';

export interface LoadTask {
  databaseUrl: string;
  /** The run's tag, the first part of every event id (load-ids.ts). */
  runTag: string;
  schema: string;
  /**
   * Our outbox's table or logical messages; a relay's own table (new orders
   * only, through `writePath`); `none`: the business row alone, no event
   * (what an outbox costs).
   */
  store: LoadStore | 'none';
  /** The module (URL) of the write path of a relay with a table of its own: the worker imports it, knowing no relay by name. */
  writePath?: string;
  workerIndex: number;
  /** Orders per second offered by this worker. */
  rate: number;
  /** Epoch ms at which order 0 is intended; shared by all workers. */
  startAt: number;
  /** A slower first phase of the timetable (see LoadPlan.prewarm). */
  prewarm?: Prewarm | undefined;
  /** Orders this worker writes: the load plan's figure, the same one the consumer and the accounting use. */
  orders: number;
  /** Intended times in [measureFrom, measureTo) are measured; the rest is warm-up or tail. */
  measureFrom: number;
  measureTo: number;
  ordersPerTransaction: number;
  /** Transactions in flight at most (= connections of this worker). */
  connections: number;
  /** Approximate size of each event payload, bytes. */
  payloadBytes: number;
  /** Events per aggregate: 1 = every event places a new order; k = each order gets k-1 amendments. */
  eventsPerAggregate: number;
  /** Amendments pick among this many most recently placed orders of this worker. */
  keySpace: number;
  /** Share (0..1) of amendments that go to the `hotKeys` hottest orders. */
  hotKeyShare: number;
  hotKeys: number;
  /** Seed of the aggregate picks (and of a workload script's random()), so a run can be repeated. */
  seed: number;
  /** The user's own transaction (`--workload sql:<file>`) instead of the built-in orders; the run checked it with a dry run. */
  workload?: SqlWorkload | undefined;
}

export interface LoadResult {
  workerIndex: number;
  /** Events attempted (new orders and amendments). */
  attempted: number;
  /** Events whose transaction committed. */
  committed: number;
  failed: number;
  /** Epoch ms at which each order's commit returned; NaN if it failed. Index = seq. */
  commitAt: Float64Array;
  /** Intended send -> commit returned, measured window only (encoded HDR, µs). */
  commitLatency: string;
  /** Per committed transaction: [intended time of its last event (epoch ms), commit latency ms], flattened. */
  transactions: Float64Array;
  /** The first few distinct error messages. */
  errors: string[];
}

/** The first orders of each worker, at a rate of their own: a relay's warm-up before the run proper. */
export interface Prewarm {
  /** Orders per second per worker in this phase. */
  perWorkerRate: number;
  /** Orders of each worker in this phase (whole transactions). */
  orders: number;
  /** Its transactions' size (a drain's backlog is written in bigger ones than its prewarm). */
  ordersPerTransaction: number;
}

/** What the harness works out once and hands to every worker, the consumer and the accounting. */
export interface LoadPlan {
  /** Orders per second per worker (after the prewarm, if any). */
  perWorkerRate: number;
  /** Orders each worker writes (whole transactions), the prewarm's included. */
  ordersPerWorker: number[];
  /**
   * Orders written before the run's own warm-up and window, at a lower rate
   * (a JVM's class loading and JIT happen here, not in the window).
   */
  prewarm?: Prewarm;
}

/** A prewarm phase: `rate` orders per second, all workers together, for at least `seconds`. */
export interface PrewarmParameters {
  rate: number;
  seconds: number;
  /** Default: the run's own. */
  ordersPerTransaction?: number;
}

export function planLoad(p: { rate: number; workers: number; warmupS: number; durationS: number; ordersPerTransaction: number; prewarm?: PrewarmParameters | undefined }): LoadPlan {
  const perWorkerRate = p.rate / p.workers;
  const perTx = p.ordersPerTransaction;
  const wholeTransactions = (orders: number) => Math.floor(orders / perTx) * perTx;
  const orders = wholeTransactions((p.warmupS + p.durationS) * perWorkerRate);
  if (!p.prewarm || p.prewarm.seconds <= 0) return { perWorkerRate, ordersPerWorker: Array.from({ length: p.workers }, () => orders) };
  const warm = p.prewarm;
  const warmTx = warm.ordersPerTransaction ?? perTx;
  // Whole transactions, rounded up: the prewarm lasts at least what was asked.
  const prewarm = { perWorkerRate: warm.rate / p.workers, orders: Math.ceil((warm.seconds * warm.rate) / p.workers / warmTx) * warmTx, ordersPerTransaction: warmTx };
  if (!(prewarm.orders > 0)) throw new OutboxBenchError('USAGE', `a prewarm of ${warm.seconds} s at ${warm.rate} orders/s holds no transaction of ${warmTx}`);
  return { perWorkerRate, ordersPerWorker: Array.from({ length: p.workers }, () => prewarm.orders + orders), prewarm };
}

/** When each order of a worker is due: the prewarm's orders at its rate from `startAt`, the rest at `perWorkerRate` after them. */
export interface Timetable {
  startAt: number;
  perWorkerRate: number;
  prewarm?: Prewarm | undefined;
}

/** How long the prewarm phase of a timetable lasts, ms (0 without one). */
export function prewarmMs(t: Pick<Timetable, 'prewarm'>): number {
  return t.prewarm ? (t.prewarm.orders * 1_000) / t.prewarm.perWorkerRate : 0;
}

/** When order `seq` of a worker is due (epoch ms). */
export function intendedTime(t: Timetable, seq: number): number {
  const warm = t.prewarm;
  if (!warm || seq < warm.orders) return t.startAt + (seq * 1_000) / (warm?.perWorkerRate ?? t.perWorkerRate);
  return t.startAt + prewarmMs(t) + ((seq - warm.orders) * 1_000) / t.perWorkerRate;
}

function padding(bytes: number): string | undefined {
  // The event payload without a note is ~170 bytes of JSON.
  const extra = bytes - 170;
  return extra > 0 ? 'x'.repeat(extra) : undefined;
}

/** One transaction's writes, by the task's store. */
type WriteOrders = (sql: Sql, place: PlaceOrderInput[], amend: AmendOrderInput[]) => Promise<WrittenEvent[]>;

/** Writes the transaction of orders `firstSeq` .. `firstSeq + size - 1`. */
type WriteTransaction = (sql: Sql, firstSeq: number, size: number) => Promise<void>;

async function writerFor(task: LoadTask, due: (seq: number) => number): Promise<WriteTransaction> {
  const workload = task.workload;
  if (workload) {
    const random = seededRandom(task.seed + task.workerIndex);
    return (sql, firstSeq, size) => {
      const statements: BoundStatement[] = [];
      for (let seq = firstSeq; seq < firstSeq + size; seq++) {
        statements.push(...statementsFor(workload, { eventId: loadEventId(task.runTag, task.workerIndex, seq), intendedAt: due(seq), clientId: task.workerIndex }, random));
      }
      return writeWorkloadTransaction(sql, workload, statements);
    };
  }
  const write = await ordersWriterFor(task);
  const targets = new AmendTargets(task);
  const note = padding(task.payloadBytes);
  return async (sql, firstSeq, size) => {
    const { place, amend } = transactionOf(task, firstSeq, size, targets, note);
    targets.committed(await write(sql, place, amend));
  };
}

async function ordersWriterFor(task: LoadTask): Promise<WriteOrders> {
  if (task.writePath !== undefined) {
    const own = (await import(task.writePath)) as OwnWritePath;
    return (sql, place) => own.placeOrders(sql, place);
  }
  const { store } = task;
  if (store === 'none') return (sql, place) => placeOrdersWithoutEvents(sql, place);
  if (store === 'table' || store === 'message') return (sql, place, amend) => writeOrderEvents(sql, { place, amend }, store);
  throw new OutboxBenchError('USAGE', `the load has no write path for the ${store} store: its relay's driver names the module`);
}

/**
 * Orders this worker placed and saw committed: what amendments may target
 * (amending an order whose transaction is still in flight would fail), the
 * first `hotKeys` of them hot.
 */
class AmendTargets {
  readonly #recent: string[] = [];
  readonly #hot: string[] = [];
  #nextSlot = 0;
  readonly #random: () => number;
  readonly #task: Pick<LoadTask, 'hotKeyShare' | 'hotKeys' | 'keySpace'>;

  constructor(task: Pick<LoadTask, 'seed' | 'workerIndex' | 'hotKeyShare' | 'hotKeys' | 'keySpace'>) {
    this.#task = task;
    this.#random = seededRandom(task.seed + task.workerIndex);
  }

  pick(): string | undefined {
    const hot = this.#hot;
    const recent = this.#recent;
    if (hot.length > 0 && this.#random() < this.#task.hotKeyShare) return hot[Math.floor(this.#random() * hot.length)];
    return recent.length === 0 ? undefined : recent[Math.floor(this.#random() * recent.length)];
  }

  committed(written: readonly WrittenEvent[]): void {
    const { hotKeys, keySpace } = this.#task;
    for (const event of written) {
      if (event.aggregateVersion !== 1) continue;
      if (this.#hot.length < hotKeys) this.#hot.push(event.orderId);
      if (this.#recent.length < keySpace) this.#recent.push(event.orderId);
      else this.#recent[this.#nextSlot++ % keySpace] = event.orderId;
    }
  }
}

/** Orders `firstSeq` .. `firstSeq + size - 1` of a worker: new orders, and amendments of orders it placed. */
function transactionOf(task: LoadTask, firstSeq: number, size: number, targets: AmendTargets, note: string | undefined): { place: PlaceOrderInput[]; amend: AmendOrderInput[] } {
  const place: PlaceOrderInput[] = [];
  const amend: AmendOrderInput[] = [];
  for (let seq = firstSeq; seq < firstSeq + size; seq++) {
    // The id says which order this is; the consumer derives its intended time from it.
    const eventId = loadEventId(task.runTag, task.workerIndex, seq);
    const target = seq % task.eventsPerAggregate === 0 ? undefined : targets.pick();
    if (target) {
      amend.push({ orderId: target, deltaCents: 1 + (seq % 50), eventId });
    } else {
      place.push({
        customerId: `customer-${task.workerIndex}-${seq % 10_000}`,
        amountCents: 100 + (seq % 9_900),
        currency: 'EUR',
        ...(note ? { note } : {}),
        eventId,
      });
    }
  }
  return { place, amend };
}

export default async function runLoad(task: LoadTask): Promise<LoadResult> {
  const sql = createSql(task.databaseUrl, task.schema, { max: task.connections, applicationName: `outbox-bench-load-${task.workerIndex}`, textParameters: task.workload !== undefined });
  const perTx = task.ordersPerTransaction;
  const total = task.orders;
  const warm = task.prewarm;
  /** The size of the transaction that starts at `firstSeq`. */
  const sizeAt = (firstSeq: number) => (warm && firstSeq < warm.orders ? warm.ordersPerTransaction : perTx);
  const due = (seq: number) => intendedTime({ startAt: task.startAt, perWorkerRate: task.rate, prewarm: task.prewarm }, seq);
  const write = await writerFor(task, due);
  const commitAt = new Float64Array(total).fill(Number.NaN);
  const histogram = createHistogram();
  const errors = new Set<string>();
  let committed = 0;
  let failed = 0;
  const transactionsPlanned = warm ? warm.orders / warm.ordersPerTransaction + Math.ceil((total - warm.orders) / perTx) : Math.ceil(total / perTx);
  const transactions = new Float64Array(2 * transactionsPlanned);
  let transactionCount = 0;

  const send = async (firstSeq: number, size: number): Promise<void> => {
    try {
      await write(sql, firstSeq, size);
      const at = nowMs();
      const lastIntended = due(firstSeq + size - 1);
      transactions[2 * transactionCount] = lastIntended;
      transactions[2 * transactionCount + 1] = at - lastIntended;
      transactionCount += 1;
      for (let seq = firstSeq; seq < firstSeq + size; seq++) {
        commitAt[seq] = at;
        const intendedAt = due(seq);
        if (intendedAt >= task.measureFrom && intendedAt < task.measureTo) recordMs(histogram, at - intendedAt);
      }
      committed += size;
    } catch (error) {
      failed += size;
      if (errors.size < 5) errors.add(String((error as Error).message ?? error));
    }
  };

  const inFlight = new Set<Promise<void>>();
  for (let firstSeq = 0, size = sizeAt(0); firstSeq < total; firstSeq += size, size = sizeAt(firstSeq)) {
    const dueAt = due(firstSeq + size - 1);
    const wait = dueAt - nowMs();
    if (wait > 1) await sleep(wait);
    while (inFlight.size >= task.connections) await Promise.race(inFlight);
    const pending: Promise<void> = send(firstSeq, size).finally(() => inFlight.delete(pending));
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
    transactions: transactions.subarray(0, 2 * transactionCount),
    errors: [...errors],
  };
}
