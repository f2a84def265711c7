/**
 * pg-transactional-outbox's write path, as the load workers call it: they
 * import this module by the URL its driver gives (bench/drivers/ptp.ts), so
 * the load generator knows no relay by name.
 */
import type { Sql } from '../../src/db.js';
import type { NewOrder } from '../../src/queries.js';
import { orderPlacedEvent, validateOrder, type PlaceOrderInput, type WrittenEvent } from '../../src/orders/write-path.js';
import type { OwnWritePath } from './write-path.js';

/** The library's outbox table in a run's schema (created with its DatabaseSetup). */
export const PTP_TABLE = 'ptp_outbox';

/**
 * Orders and their messages in the library's table, one statement (one
 * transaction), as its initializeMessageStorage would insert them. The
 * segment is the aggregate id, which is how the library keeps per-aggregate
 * order. New orders only: the library's table has no amendments.
 */
export const placeOrders: OwnWritePath['placeOrders'] = async (sql: Sql, inputs: readonly PlaceOrderInput[]): Promise<WrittenEvent[]> => {
  const orders: NewOrder[] = inputs.map(validateOrder);
  const events = orders.map((order, i) => orderPlacedEvent(order, inputs[i]!.headers, inputs[i]!.note, inputs[i]!.eventId));
  const written = events.map((e) => ({ orderId: e.aggregateId, eventId: e.eventId, aggregateVersion: 1 }));
  await sql`
    WITH placed AS (
      INSERT INTO orders (order_id, customer_id, amount_cents, currency)
      SELECT * FROM unnest(${orders.map((o) => o.orderId)}::uuid[], ${orders.map((o) => o.customerId)}::text[],
                           ${orders.map((o) => o.amountCents)}::bigint[], ${orders.map((o) => o.currency)}::text[])
    )
    INSERT INTO ${sql(PTP_TABLE)} (id, aggregate_type, aggregate_id, message_type, segment, payload, metadata)
    SELECT m.id, 'order', m.aggregate_id, 'OrderPlaced', m.aggregate_id, m.payload::jsonb, m.metadata::jsonb
    FROM unnest(${events.map((e) => e.eventId)}::uuid[], ${events.map((e) => e.aggregateId)}::text[],
                ${events.map((e) => e.payload)}::text[], ${events.map((e) => JSON.stringify(e.headers ?? {}))}::text[])
         WITH ORDINALITY AS m(id, aggregate_id, payload, metadata, ord)
    ORDER BY m.ord`;
  return written;
};
