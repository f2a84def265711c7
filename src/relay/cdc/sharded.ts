/**
 * Sharded CDC (`cdc-sharded`): the outbox table shared out over `--replicas`
 * replication slots, one relay process per slot, so that one process's
 * JavaScript thread no longer caps what CDC can carry.
 *
 * Shard i's publication carries only the outbox rows whose aggregate hashes
 * to i, by a row filter (PostgreSQL 15+):
 *
 *   (hashtext(aggregate_id) & 2147483647) % N = i
 *
 * so every event of an aggregate goes through one slot, in commit order, and
 * per-aggregate order holds as with one slot. Cleanup stays safe because
 * every shard's slot is recorded in relay_cdc_slots, and a partition is
 * dropped only once all of them confirmed past it.
 *
 * What it does not do:
 *  - Resharding. N is part of every publication's filter; starting with
 *    another N on existing publications fails with the fix (slot.ts), and
 *    moving live data between shards is out of scope.
 *  - The logical-message store. pgoutput sends every logical message to
 *    every slot that asks for messages, with no filter, so messages cannot
 *    be shared out: shard 0 publishes them and the others let them pass.
 *  - Make PostgreSQL cheaper: each slot has its own walsender, and each
 *    walsender decodes the whole WAL, so PostgreSQL's decoding CPU grows
 *    with N (docs/capacity.md has the measured cost per slot).
 */
import { OutboxBenchError } from '../../errors.js';
import type { Sql } from '../../db.js';
import type { Logger } from '../../log.js';
import { provisionCdc, recoverCdc, releaseCdc, slotsLag, startCdcRelay, type CdcProcess } from './modes.js';
import type { RelayModeBehaviour, RelaySettings } from '../contract.js';

/**
 * The slot, publication and row filter of shard `index` of `settings.replicas`.
 * The hash is the one of sql/003_relay.sql's outbox_bucket, written out
 * because a row filter may call built-in functions only.
 */
export function shardOf(settings: Pick<RelaySettings, 'slotName' | 'publicationName' | 'replicas'>, index: number): CdcProcess {
  return {
    slotName: `${settings.slotName}_${index}`,
    publicationName: `${settings.publicationName}_${index}`,
    rowFilter: `(hashtext(aggregate_id) & 2147483647) % ${settings.replicas} = ${index}`,
    publishLogicalMessages: index === 0,
    store: 'table',
  };
}

function shards(settings: RelaySettings): CdcProcess[] {
  return Array.from({ length: settings.replicas }, (_, index) => shardOf(settings, index));
}

export const cdcShardedMode: RelayModeBehaviour = Object.freeze<RelayModeBehaviour>({
  start(runtime, options) {
    if (options.index >= runtime.config.replicas) {
      throw new OutboxBenchError('USAGE', `shard ${options.index} does not exist: --replicas ${runtime.config.replicas} runs shards 0 to ${runtime.config.replicas - 1}`);
    }
    return startCdcRelay(runtime, options, shardOf(runtime.config, options.index));
  },
  provision: (sql: Sql, settings: RelaySettings, log: Logger, options) => provisionCdc(sql, settings, shards(settings), log, options),
  release: (sql: Sql, settings: RelaySettings) => releaseCdc(sql, shards(settings)),
  lag: (sql: Sql, settings: RelaySettings) => slotsLag(sql, shards(settings).map((s) => s.slotName)),
  slots: (settings: RelaySettings) => shards(settings).map((s) => s.slotName),
  recover: (runtime, slotName) => recoverCdc(runtime, shards(runtime.config), slotName),
});
