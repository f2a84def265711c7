/**
 * How the load hands events to a relay that has a table of its own: the
 * names of such tables and the shape of the module that writes into one.
 * A leaf (it imports nothing of the harness), so the load workers can name
 * these types without importing the drivers.
 */
import type { Sql } from '../../src/db.js';
import type { OutboxStore, PlaceOrderInput, WrittenEvent } from '../../src/orders/write-path.js';

/**
 * The write paths a relay brings of its own, by the name a run's parameters
 * and published summary give them (`store`): pg-transactional-outbox's table.
 */
export type OwnStore = 'ptp';

/** Where a run's load writes its events: our outbox (table rows or logical messages), or a relay's own table. */
export type LoadStore = OutboxStore | OwnStore;

/** The module a relay's own write path lives in: what the load workers call, once per transaction. */
export interface OwnWritePath {
  placeOrders(sql: Sql, inputs: readonly PlaceOrderInput[]): Promise<WrittenEvent[]>;
}
