/**
 * The load of a run: a pool of piscina workers, each writing its share of
 * the load plan on the shared timetable (load-worker.ts).
 */
import { Piscina } from 'piscina';
import { createSql } from '../../src/db.js';
import { OutboxBenchError } from '../../src/errors.js';
import type { LoadPlan, LoadResult, LoadTask } from './load-worker.js';
import type { PipelineParameters } from './parameters.js';
import type { RelayDriver } from '../drivers/types.js';
import { storeEvents, type SqlWorkload } from './sql-workload.js';
import { dryRunWorkload } from './sql-workload-execution.js';

export function loadPool(workers: number): Piscina {
  return new Piscina({ filename: new URL('./load-worker.js', import.meta.url).href, minThreads: workers, maxThreads: workers, idleTimeout: 60_000 });
}

/**
 * Every load worker's share of the plan, on the shared timetable; resolves
 * when all are written. A workload script must have passed checkWorkload.
 */
export function runLoad(
  pool: Piscina,
  l: {
    databaseUrl: string;
    schema: string;
    runTag: string;
    plan: LoadPlan;
    startAt: number;
    measureFrom: number;
    measureTo: number;
    p: PipelineParameters;
    store?: LoadTask['store'];
    /** A relay's own write path (a module URL), for the store it names. */
    writePath?: string | undefined;
  },
): Promise<LoadResult[]> {
  const { p } = l;
  const store = l.store ?? p.store;
  return Promise.all(
    l.plan.ordersPerWorker.map(
      (orders, workerIndex) =>
        pool.run({
          databaseUrl: l.databaseUrl,
          schema: l.schema,
          runTag: l.runTag,
          store,
          ...(l.writePath === undefined ? {} : { writePath: l.writePath }),
          workerIndex,
          rate: l.plan.perWorkerRate,
          startAt: l.startAt,
          prewarm: l.plan.prewarm,
          orders,
          measureFrom: l.measureFrom,
          measureTo: l.measureTo,
          ordersPerTransaction: p.ordersPerTransaction,
          connections: p.connectionsPerWorker,
          payloadBytes: p.payloadBytes,
          eventsPerAggregate: p.eventsPerAggregate,
          keySpace: p.keySpace,
          hotKeyShare: p.hotKeyShare,
          hotKeys: p.hotKeys,
          seed: p.seed,
          workload: p.workload,
        } satisfies LoadTask) as Promise<LoadResult>,
    ),
  );
}

/**
 * Refuses a workload script the run cannot account for, by a dry run in the
 * run's schema: before its relay, consumer and timetable start, so a refusal
 * costs nothing and the check's time is no load's delay. No-op without one.
 */
export async function checkWorkload(l: { databaseUrl: string; schema: string; p: PipelineParameters; store?: LoadTask['store'] | undefined; writePath?: string | undefined }): Promise<void> {
  const workload = l.p.workload;
  if (!workload) return;
  const store = l.store ?? l.p.store;
  const refuse = (why: string) => new OutboxBenchError('USAGE', `--workload sql:${workload.file} ${why}`);
  if (l.writePath !== undefined || (store !== 'table' && store !== 'message')) throw refuse(`cannot drive a run that writes ${store === 'none' ? 'no events' : "a relay's own table"}: it writes into our outbox`);
  if (workload.store !== store) {
    throw refuse(`writes ${storeEvents(workload.store)}; this run's relay reads ${storeEvents(store)}`);
  }
  if (l.p.eventsPerAggregate !== 1) throw refuse('writes what its file says: --events-per-aggregate applies to the built-in orders only');
  const sql = createSql(l.databaseUrl, l.schema, { max: 1, applicationName: 'outbox-bench-workload-dry-run', textParameters: true });
  try {
    await dryRunWorkload(sql, workload, { store, schema: l.schema });
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/**
 * The relays of a comparison that a workload script can drive: those that
 * read the store it writes, from our outbox (not from a table of their own).
 * `anchor`, when given, must be one it can drive: the comparison is made against it.
 */
export function subjectsForWorkload<T extends { parameters: Partial<PipelineParameters>; driver: RelayDriver }>(subjects: readonly T[], workload: SqlWorkload | undefined, anchor?: T): T[] {
  if (!workload) return [...subjects];
  const drives = (s: T) => (s.parameters.store ?? 'table') === workload.store && s.driver.backlog.kind !== 'own';
  const kept = subjects.filter(drives);
  if (kept.length === 0 || (anchor !== undefined && !drives(anchor))) {
    throw new OutboxBenchError('USAGE', `--workload sql:${workload.file} writes ${storeEvents(workload.store)}: ${kept.length === 0 ? 'none of these relays reads them' : 'the anchor of this comparison does not read them'}`);
  }
  return kept;
}
