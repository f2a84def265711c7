/**
 * SKIP LOCKED relay replicas, two ways.
 *
 * Ordered (`skip-locked`): aggregates hash into a fixed number of buckets. A
 * pass locks a share of the free buckets that hold the oldest unpublished
 * rows with FOR UPDATE SKIP LOCKED, and publishes only rows of those buckets,
 * oldest first, holding the locks until it has marked them. One owner per bucket at a time means one publisher per
 * aggregate at a time, in version order, however many replicas run.
 *
 * The lease is PostgreSQL's own: each replica's session runs with
 * idle_in_transaction_session_timeout = --lease-ms. A replica that stalls
 * mid-pass (SIGSTOP, GC pause, partition) is terminated by the server, its
 * locks are released and its marks can never commit (fencing); whatever it
 * publishes late is a duplicate of an older version, never a reordering,
 * because the next owner re-publishes the same rows in order first.
 *
 * Naive (`naive-skip-locked`): `ORDER BY id LIMIT n FOR UPDATE SKIP LOCKED`.
 * Claims are disjoint, but replica B can publish version 2 of an aggregate
 * while replica A still holds version 1: it reorders. It exists as the
 * negative control that the ordering checker must catch.
 */
import type { TransactionSql } from '../../db.js';
import { OutboxBenchError } from '../../errors.js';
import { claimBuckets, seedBuckets, selectOldestUnpublished, selectUnpublishedInBuckets } from '../../queries.js';
import type { Sql } from '../../db.js';
import type { RelayModeBehaviour } from '../contract.js';
import { startTableRelay, tableMode, type ClaimStrategy } from './relay.js';

export interface BucketedOptions {
  /** Buckets in total; the same on every replica. */
  buckets: number;
  /** Replicas sharing them; each pass claims about buckets / replicas. */
  replicas: number;
  /** Which replica this is (0-based). */
  replicaIndex: number;
}

export function bucketedStrategy(options: BucketedOptions): ClaimStrategy {
  const share = Math.max(1, Math.ceil(options.buckets / options.replicas));
  return Object.freeze({
    name: 'skip-locked',
    async claim(tx: TransactionSql, limit: number) {
      // Rationale: the buckets of the oldest `limit` unpublished rows are where
      // this pass's work is; looking at twice that many finds spare buckets
      // when other replicas hold the first ones.
      const owned = await claimBuckets(tx, share, options.buckets, 2 * limit);
      if (owned.length === 0) return { rows: [], buckets: [] };
      return { rows: await selectUnpublishedInBuckets(tx, owned, options.buckets, limit), buckets: owned };
    },
  });
}

export const naiveSkipLockedStrategy: ClaimStrategy = Object.freeze({
  name: 'naive-skip-locked',
  async claim(tx: TransactionSql, limit: number) {
    return { rows: await selectOldestUnpublished(tx, limit, 'skip-locked') };
  },
});

/**
 * Makes sure the bucket rows exist and that every replica agrees on their
 * number: two replicas hashing with different counts would both own some
 * aggregates.
 */
export async function prepareBuckets(sql: Sql, buckets: number): Promise<void> {
  const count = await seedBuckets(sql, buckets);
  if (count !== buckets) {
    throw new OutboxBenchError(
      'CONFIG_INVALID',
      `relay_buckets holds ${count} buckets but --buckets is ${buckets}; every replica must use the same count. ` +
        'To change it, stop all skip-locked replicas, DELETE FROM relay_buckets, and start them with the new --buckets.',
    );
  }
}

export const skipLockedMode: RelayModeBehaviour = tableMode(
  (runtime, options) => {
    const { buckets, replicas } = runtime.config;
    const strategy = bucketedStrategy({ buckets, replicas, replicaIndex: options.index });
    return startTableRelay(runtime, options, strategy, { leased: true, prepare: (sql) => prepareBuckets(sql, buckets) });
  },
  (sql, settings) => prepareBuckets(sql, settings.buckets),
);

export const naiveSkipLockedMode: RelayModeBehaviour = tableMode((runtime, options) => startTableRelay(runtime, options, naiveSkipLockedStrategy, { leased: true }));
