/**
 * The polling relay: every interval (500 ms by default), claim the oldest
 * unpublished rows, publish them, wait for Kafka's acks, mark them published.
 * A backlog is drained pass after pass without waiting for the next tick.
 *
 * Only one poller publishes at a time: each pass takes a transaction-scoped
 * advisory lock and a second poller that cannot get it skips its tick. That
 * keeps two accidentally started pollers from publishing every event twice,
 * without writing a row lock into every claimed tuple.
 */
import type { TransactionSql } from '../../db.js';
import { selectOldestUnpublished, tryPollerLock } from '../../queries.js';
import type { RelayModeBehaviour } from '../contract.js';
import { startTableRelay, tableMode, TableRelay, type ClaimStrategy, type TableRelayOptions } from './relay.js';

export const pollingStrategy: ClaimStrategy = Object.freeze({
  name: 'polling',
  async claim(tx: TransactionSql, limit: number) {
    if (!(await tryPollerLock(tx))) return { rows: [] };
    return { rows: await selectOldestUnpublished(tx, limit, 'none') };
  },
});

export type PollingRelayOptions = Omit<TableRelayOptions, 'strategy'>;

export function createPollingRelay(options: PollingRelayOptions): TableRelay {
  return new TableRelay({ ...options, strategy: pollingStrategy });
}

export const pollingMode: RelayModeBehaviour = tableMode((runtime, options) => startTableRelay(runtime, options, pollingStrategy, { leased: false }));
