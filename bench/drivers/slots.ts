/**
 * The replication slots and publications of relays that provision
 * themselves (Debezium, pg-transactional-outbox's replication mode): named
 * after the relay under one prefix, so that a sitting can drop whatever a
 * stopped run of any of them left behind before the next run starts.
 */
import { createSql } from '../../src/db.js';
import { dropIdleSlots } from '../../src/relay/cdc/slot.js';

const PREFIX = 'peer_';

const slugOf = (label: string) => label.replace(/[^a-z0-9]+/gi, '_').replace(/^_|_$/g, '').toLowerCase();

/** The slot and publication a relay with this label uses in every run. */
export function replicationNames(label: string): { slot: string; publication: string } {
  return { slot: `${PREFIX}${slugOf(label)}_slot`, publication: `${PREFIX}${slugOf(label)}_pub` };
}

/** Drops every idle slot of such a relay (an active one belongs to a relay still running). */
export async function dropRelaySlots(databaseUrl: string): Promise<void> {
  const sql = createSql(databaseUrl, 'public', { max: 1 });
  try {
    await dropIdleSlots(sql, { prefix: PREFIX });
  } finally {
    await sql.end({ timeout: 5 });
  }
}
