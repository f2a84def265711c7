/**
 * The load of a run: a pool of piscina workers, each writing its share of
 * the load plan on the shared timetable (load-worker.ts).
 */
import { Piscina } from 'piscina';
import type { LoadPlan, LoadResult, LoadTask } from './load-worker.js';
import type { PipelineParameters } from './parameters.js';

export function loadPool(workers: number): Piscina {
  return new Piscina({ filename: new URL('./load-worker.js', import.meta.url).href, minThreads: workers, maxThreads: workers, idleTimeout: 60_000 });
}

/** Every load worker's share of the plan, on the shared timetable; resolves when all are written. */
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
  return Promise.all(
    l.plan.ordersPerWorker.map(
      (orders, workerIndex) =>
        pool.run({
          databaseUrl: l.databaseUrl,
          schema: l.schema,
          runTag: l.runTag,
          store: l.store ?? p.store,
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
        } satisfies LoadTask) as Promise<LoadResult>,
    ),
  );
}
