/**
 * What goes on the wire for an outbox event, decided in one place for every
 * relay: the topic (routed by aggregate type), the key (the aggregate id:
 * one aggregate, one partition, one order), the payload as stored, and the
 * headers.
 *
 * Headers cost about as much as a record in a Kafka client's encoder, so by
 * default only two go out: the event id (`id`, which the inbox deduplicates
 * by) and the aggregate version (which consumers and the ordering checks
 * need). `--kafka-headers all` adds the event type, the aggregate type and
 * every header stored with the event (trace context, ...); `--forward-headers`
 * names stored headers to add one by one.
 */
import type { HeaderSet } from '../config.js';
import { HEADERS, type OutboxEventInput, type WireEvent } from '../events.js';
import type { OutboxColumns } from './cdc/pgoutput.js';
import type { TopicRouter } from './publisher.js';

export interface WireOptions {
  route: TopicRouter;
  headers: HeaderSet;
  /** Stored headers to forward besides the set (e.g. `traceparent`, `x-intended-at`). */
  forward: readonly string[];
}

type Headers = Record<string, Buffer | string>;

/** The fields of an event a record is made of (an outbox row has these and more). */
export type TextEvent = Omit<OutboxEventInput, 'headers'> & { readonly headers?: Readonly<Record<string, unknown>> | undefined };

const IDENTITY: ReadonlySet<string> = new Set(Object.values(HEADERS).filter((name) => name !== HEADERS.intendedAt));

export class WireEncoder {
  readonly #options: WireOptions;
  /** Topic by aggregate type: the relays see a handful of types, millions of times. */
  readonly #topics = new Map<string, string>();

  constructor(options: WireOptions) {
    this.#options = options;
  }

  #topic(aggregateType: string): string {
    let topic = this.#topics.get(aggregateType);
    if (topic === undefined) this.#topics.set(aggregateType, (topic = this.#options.route(aggregateType)));
    return topic;
  }

  /** An event as text: a row the table relays claimed (postgres.js hands over text), or one being written. */
  fromEvent(row: TextEvent): WireEvent {
    const headers: Headers = { [HEADERS.eventId]: row.eventId, [HEADERS.aggregateVersion]: String(row.aggregateVersion) };
    if (this.#options.headers === 'all') {
      headers[HEADERS.eventType] = row.eventType;
      headers[HEADERS.aggregateType] = row.aggregateType;
    }
    if (this.#options.headers === 'all' || this.#options.forward.length > 0) this.#addStored(headers, row.headers);
    return { topic: this.#topic(row.aggregateType), key: row.aggregateId, value: row.payload, headers };
  }

  /** An event the CDC relay decoded: views into the WAL message, forwarded as bytes. */
  fromColumns(columns: OutboxColumns): WireEvent {
    const headers: Headers = { [HEADERS.eventId]: columns.eventId, [HEADERS.aggregateVersion]: columns.aggregateVersion };
    if (this.#options.headers === 'all') {
      headers[HEADERS.eventType] = columns.eventType;
      headers[HEADERS.aggregateType] = columns.aggregateType;
    }
    if ((this.#options.headers === 'all' || this.#options.forward.length > 0) && columns.headers.length > 2) this.#addStored(headers, JSON.parse(columns.headers.toString('utf8')));
    return { topic: this.#topic(columns.aggregateType.toString('latin1')), key: columns.aggregateId, value: columns.payload, headers };
  }

  /** Stored headers (the jsonb column: any JSON) as strings, all of them or the forwarded ones. */
  #addStored(headers: Headers, stored: unknown): void {
    if (stored === null || typeof stored !== 'object') return;
    const all = this.#options.headers === 'all';
    for (const [name, value] of Object.entries(stored)) {
      if (value === null || value === undefined || (!all && !this.#options.forward.includes(name))) continue;
      // The event's identity comes from its columns, never from a stored header of the same name.
      if (IDENTITY.has(name)) continue;
      headers[name] = typeof value === 'string' ? value : JSON.stringify(value);
    }
  }
}
