/**
 * The write path: an order and its event in one local transaction (the
 * transactional outbox), in the table or the table-less (WAL message) form,
 * and the naive dual write it replaces, kept for comparison.
 */
import { randomUUID } from 'node:crypto';
import { failpoint } from '../chaos/failpoints.js';
import type { Sql, TransactionSql } from '../db.js';
import { OutboxBenchError } from '../errors.js';
import type { OutboxEventInput } from '../events.js';
import {
  bumpOrderVersions,
  emitOutboxMessages,
  insertOrders,
  insertOrdersWithMessages,
  insertOrdersWithOutboxRows,
  insertOutboxRows,
  type NewOrder,
} from '../queries.js';
import type { WireEncoder } from '../relay/wire.js';
import type { EventPublisher } from '../relay/publisher.js';

/** Where events go: outbox table rows, or logical decoding messages in the WAL. */
export type OutboxStore = 'table' | 'message';

export const ORDER_AGGREGATE = 'order';
export const ORDER_PLACED = 'OrderPlaced';
export const ORDER_AMENDED = 'OrderAmended';

export interface PlaceOrderInput {
  /** Optional client-chosen id (uuid); makes a retried request detectable. */
  orderId?: string | undefined;
  customerId: string;
  amountCents: number;
  currency: string;
  /** Free text carried in the event payload (not stored on the order). */
  note?: string | undefined;
  /** Extra headers carried to Kafka with the event. */
  headers?: Readonly<Record<string, string>> | undefined;
  /** The event's id (uuid), when the caller chooses it; a random one otherwise. */
  eventId?: string | undefined;
}

export interface WrittenEvent {
  orderId: string;
  eventId: string;
  aggregateVersion: number;
}

export interface AmendOrderInput {
  orderId: string;
  deltaCents: number;
  headers?: Readonly<Record<string, string>> | undefined;
  /** The event's id (uuid), when the caller chooses it; a random one otherwise. */
  eventId?: string | undefined;
}

/** Longest order note, characters. */
export const MAX_NOTE = 16_384;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Validates a library caller's input with the same rules as the HTTP API. */
export function validateOrder(input: PlaceOrderInput): NewOrder {
  const problems: string[] = [];
  if (input.orderId !== undefined && !UUID.test(input.orderId)) problems.push('orderId must be a UUID');
  if (input.eventId !== undefined && !UUID.test(input.eventId)) problems.push('eventId must be a UUID');
  if (typeof input.customerId !== 'string' || input.customerId.length < 1 || input.customerId.length > 200) {
    problems.push('customerId must be a string of 1 to 200 characters');
  }
  if (!Number.isSafeInteger(input.amountCents) || input.amountCents < 0) problems.push('amountCents must be a non-negative integer');
  if (typeof input.currency !== 'string' || !/^[A-Z]{3}$/.test(input.currency)) problems.push('currency must be a 3-letter ISO 4217 code like "EUR"');
  if (input.note !== undefined && (typeof input.note !== 'string' || input.note.length > MAX_NOTE)) problems.push(`note must be a string of at most ${MAX_NOTE} characters`);
  // PostgreSQL text and jsonb cannot store U+0000.
  for (const field of ['customerId', 'note'] as const) {
    if (typeof input[field] === 'string' && input[field].includes('\u0000')) problems.push(`${field} must not contain U+0000`);
  }
  if (problems.length > 0) throw new OutboxBenchError('INVALID_INPUT', `invalid order: ${problems.join('; ')}`, { details: { problems } });
  return { orderId: input.orderId?.toLowerCase() ?? randomUUID(), customerId: input.customerId, amountCents: input.amountCents, currency: input.currency };
}

export function orderPlacedEvent(order: NewOrder, headers?: Readonly<Record<string, string>>, note?: string, eventId?: string): OutboxEventInput {
  const body = { orderId: order.orderId, customerId: order.customerId, amountCents: order.amountCents, currency: order.currency };
  return {
    eventId: eventId?.toLowerCase() ?? randomUUID(),
    aggregateType: ORDER_AGGREGATE,
    aggregateId: order.orderId,
    aggregateVersion: 1,
    eventType: ORDER_PLACED,
    payload: JSON.stringify(note === undefined ? body : { ...body, note }),
    ...(headers ? { headers } : {}),
  };
}

/**
 * Writes events inside the caller's own transaction: the building block for
 * services that already have a transaction of their own.
 */
export async function writeOutboxEvents(tx: TransactionSql, events: readonly OutboxEventInput[], store: OutboxStore = 'table'): Promise<void> {
  if (store === 'table') await insertOutboxRows(tx, events);
  else await emitOutboxMessages(tx, events);
}

/** Places one order and writes its OrderPlaced event atomically. */
export async function placeOrder(sql: Sql, input: PlaceOrderInput, store: OutboxStore = 'table'): Promise<WrittenEvent> {
  const [written] = await placeOrders(sql, [input], store);
  return written!;
}

/**
 * Places many orders and their events in one statement, hence one
 * transaction and one commit: the high-throughput intake path.
 */
export async function placeOrders(
  sql: Sql | TransactionSql,
  inputs: readonly PlaceOrderInput[],
  store: OutboxStore = 'table',
  beforeCommit?: BeforeCommit,
): Promise<WrittenEvent[]> {
  if (inputs.length === 0) return [];
  const orders = inputs.map(validateOrder);
  const events = orders.map((order, i) => orderPlacedEvent(order, inputs[i]!.headers, inputs[i]!.note, inputs[i]!.eventId));
  const written = events.map((event) => ({ orderId: event.aggregateId, eventId: event.eventId, aggregateVersion: 1 }));
  beforeCommit?.(written);
  if (store === 'table') await insertOrdersWithOutboxRows(sql, orders, events);
  else await insertOrdersWithMessages(sql, orders, events);
  return written;
}

/**
 * The business row alone, no event: the write an outbox adds to, kept as the
 * baseline that what the outbox costs a transaction is measured against.
 */
export async function placeOrdersWithoutEvents(sql: Sql | TransactionSql, inputs: readonly PlaceOrderInput[]): Promise<WrittenEvent[]> {
  if (inputs.length === 0) return [];
  const orders = inputs.map(validateOrder);
  await insertOrders(sql, orders);
  return orders.map((order) => ({ orderId: order.orderId, eventId: '', aggregateVersion: 1 }));
}

/**
 * Called with a transaction's events right before its COMMIT is sent. Crash
 * tests record them there: whatever happens next, the ids are known.
 */
export type BeforeCommit = (events: readonly WrittenEvent[]) => void;

/**
 * Appends OrderAmended events to existing orders, several per order allowed,
 * in one transaction. Versions are allocated under each order's row lock, so
 * concurrent writers of one aggregate get unique, increasing versions that
 * commit in version order. Unknown orders are reported, nothing is written.
 */
export async function amendOrders(sql: Sql, amendments: readonly AmendOrderInput[], store: OutboxStore = 'table'): Promise<WrittenEvent[]> {
  if (amendments.length === 0) return [];
  return sql.begin((tx) => amendOrdersIn(tx, amendments, store)) as Promise<WrittenEvent[]>;
}

/** amendOrders inside the caller's transaction. */
export async function amendOrdersIn(tx: TransactionSql, amendments: readonly AmendOrderInput[], store: OutboxStore = 'table'): Promise<WrittenEvent[]> {
  for (const a of amendments) {
    if (!UUID.test(a.orderId)) throw new OutboxBenchError('INVALID_INPUT', `orderId must be a UUID, got "${a.orderId}"`);
    if (!Number.isSafeInteger(a.deltaCents)) throw new OutboxBenchError('INVALID_INPUT', 'deltaCents must be an integer');
    if (a.eventId !== undefined && !UUID.test(a.eventId)) throw new OutboxBenchError('INVALID_INPUT', `eventId must be a UUID, got "${a.eventId}"`);
  }
  const perOrder = new Map<string, { count: number; deltaCents: number }>();
  for (const a of amendments) {
    const key = a.orderId.toLowerCase();
    const entry = perOrder.get(key) ?? { count: 0, deltaCents: 0 };
    entry.count += 1;
    entry.deltaCents += a.deltaCents;
    perOrder.set(key, entry);
  }
  const bumps = [...perOrder].map(([orderId, e]) => ({ orderId, count: e.count, deltaCents: e.deltaCents }));
  const newVersions = await bumpOrderVersions(tx, bumps);
  const missing = bumps.filter((b) => !newVersions.has(b.orderId)).map((b) => b.orderId);
  if (missing.length > 0) {
    throw new OutboxBenchError('INVALID_INPUT', `unknown order(s): ${missing.join(', ')}`, { details: { missing } });
  }
  // Hand out versions old+1 .. new in the order the amendments were given.
  const next = new Map([...perOrder].map(([orderId, e]) => [orderId, newVersions.get(orderId)! - e.count + 1]));
  const events: OutboxEventInput[] = amendments.map((a) => {
    const orderId = a.orderId.toLowerCase();
    const version = next.get(orderId)!;
    next.set(orderId, version + 1);
    return {
      eventId: a.eventId?.toLowerCase() ?? randomUUID(),
      aggregateType: ORDER_AGGREGATE,
      aggregateId: orderId,
      aggregateVersion: version,
      eventType: ORDER_AMENDED,
      payload: JSON.stringify({ orderId, deltaCents: a.deltaCents }),
      ...(a.headers ? { headers: a.headers } : {}),
    };
  });
  await writeOutboxEvents(tx, events, store);
  return events.map((e) => ({ orderId: e.aggregateId, eventId: e.eventId, aggregateVersion: e.aggregateVersion }));
}

/**
 * New orders and amendments of existing ones in one transaction (the load
 * generator's mixed workload). Without amendments it is placeOrders' single
 * statement.
 */
export async function writeOrderEvents(
  sql: Sql,
  work: { place: readonly PlaceOrderInput[]; amend: readonly AmendOrderInput[] },
  store: OutboxStore = 'table',
  beforeCommit?: BeforeCommit,
): Promise<WrittenEvent[]> {
  if (work.amend.length === 0) return placeOrders(sql, work.place, store, beforeCommit);
  return sql.begin(async (tx) => {
    const written = [...(await placeOrders(tx, work.place, store)), ...(await amendOrdersIn(tx, work.amend, store))];
    // The transaction commits when this callback returns.
    beforeCommit?.(written);
    return written;
  }) as Promise<WrittenEvent[]>;
}

/**
 * The naive dual write, for comparison only: commit the order, then publish.
 * A crash (or a Kafka outage) between the two loses the event for good.
 */
export async function placeOrdersDualWrite(
  sql: Sql,
  publisher: EventPublisher,
  wire: WireEncoder,
  inputs: readonly PlaceOrderInput[],
  beforeCommit?: BeforeCommit,
): Promise<WrittenEvent[]> {
  const orders = inputs.map(validateOrder);
  const events = orders.map((order, i) => orderPlacedEvent(order, inputs[i]!.headers, inputs[i]!.note));
  beforeCommit?.(events.map((event) => ({ orderId: event.aggregateId, eventId: event.eventId, aggregateVersion: 1 })));
  await insertOrders(sql, orders);
  failpoint('order.after-commit-before-publish');
  await publisher.publish(events.map((e) => wire.fromEvent(e)));
  return events.map((event) => ({ orderId: event.aggregateId, eventId: event.eventId, aggregateVersion: 1 }));
}
