/**
 * The order service over HTTP (fastify): POST /orders places an order and
 * writes its event in one transaction; POST /orders/:orderId/amendments
 * appends an event to an existing order; GET /health reports readiness.
 * Anything malformed is answered with a 4xx JSON error naming the problem,
 * before any SQL runs.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import type { Sql } from '../db.js';
import { isOutboxBenchError } from '../errors.js';
import { HEADERS } from '../events.js';
import type { Logger } from '../log.js';
import { GroupCommitter } from './group-commit.js';
import { amendOrders, MAX_NOTE, placeOrder, type OutboxStore } from './write-path.js';

export interface OrderServiceOptions {
  sql: Sql;
  log: Logger;
  store?: OutboxStore;
  /** Largest accepted body, bytes. */
  bodyLimit: number;
  /**
   * Group commit: orders arriving while earlier ones are written share one
   * statement, up to this many (0 = every order its own transaction).
   */
  groupCommitMax?: number;
}

// Rationale: statements in flight at once under group commit; four keep the
// 2 cores busy while each batch waits for its WAL flush, and leave most of
// the service's pool to health checks and amendments.
const GROUP_COMMIT_WRITERS = 4;

// PostgreSQL text and jsonb cannot hold U+0000; refused here, it would
// otherwise reach the INSERT and come back as a 500.
const NO_NUL = '^[^\\u0000]*$';

const orderBody = {
  type: 'object',
  additionalProperties: false,
  required: ['customerId', 'amountCents', 'currency'],
  properties: {
    orderId: { type: 'string', format: 'uuid' },
    customerId: { type: 'string', minLength: 1, maxLength: 200, pattern: NO_NUL },
    amountCents: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
    currency: { type: 'string', pattern: '^[A-Z]{3}$' },
    note: { type: 'string', maxLength: MAX_NOTE, pattern: NO_NUL },
  },
} as const;

const amendmentBody = {
  type: 'object',
  additionalProperties: false,
  required: ['deltaCents'],
  properties: { deltaCents: { type: 'integer', minimum: -Number.MAX_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER } },
} as const;

const orderParams = {
  type: 'object',
  required: ['orderId'],
  properties: { orderId: { type: 'string', format: 'uuid' } },
} as const;

interface OrderBody {
  orderId?: string;
  customerId: string;
  amountCents: number;
  currency: string;
  note?: string;
}

/**
 * Request headers carried into the event's Kafka headers: W3C trace context,
 * so a trace continues through the outbox, and the load generator's send time.
 */
export const PROPAGATED_HEADERS = Object.freeze(['traceparent', 'tracestate', HEADERS.intendedAt]);

function propagated(headers: Record<string, string | string[] | undefined>): Record<string, string> | undefined {
  let result: Record<string, string> | undefined;
  for (const name of PROPAGATED_HEADERS) {
    const value = headers[name];
    if (typeof value === 'string' && value.length > 0 && value.length <= 512) (result ??= {})[name] = value;
  }
  return result;
}

/** PostgreSQL's unique_violation: the client-chosen orderId exists already. */
const UNIQUE_VIOLATION = '23505';

export function createOrderService(options: OrderServiceOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: options.log.child({ component: 'http' }) as FastifyBaseLogger,
    // Per-request log lines would cost more than the request under load.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: options.bodyLimit,
    ajv: {
      // Reject, do not silently fix: no type coercion, no stripping.
      customOptions: { coerceTypes: false, removeAdditional: false, allErrors: true },
    },
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error.validation) {
      return reply.status(400).send({ error: 'INVALID_INPUT', message: error.message });
    }
    if (isOutboxBenchError(error, 'INVALID_INPUT')) {
      const notFound = /unknown order/.test(error.message);
      return reply.status(notFound ? 404 : 400).send({ error: notFound ? 'NOT_FOUND' : 'INVALID_INPUT', message: error.message });
    }
    if ((error as { code?: string }).code === UNIQUE_VIOLATION) {
      return reply.status(409).send({ error: 'CONFLICT', message: 'an order with this orderId exists already' });
    }
    const status = error.statusCode ?? 500;
    if (status >= 500) {
      request.log.error({ err: error }, 'request failed');
      return reply.status(status).send({ error: 'INTERNAL', message: 'the order could not be stored; nothing was written' });
    }
    // fastify's own 4xx: malformed JSON (400), body too large (413), wrong content type (415).
    return reply.status(status).send({ error: error.code ?? 'BAD_REQUEST', message: error.message });
  });

  app.setNotFoundHandler((request, reply) => {
    reply.status(404).send({ error: 'NOT_FOUND', message: `no route for ${request.method} ${request.url}` });
  });

  app.get('/health', async (_request, reply) => {
    try {
      await options.sql`SELECT 1`;
      return { status: 'ok' };
    } catch {
      return reply.status(503).send({ status: 'unavailable', message: 'database unreachable' });
    }
  });

  const group = options.groupCommitMax
    ? new GroupCommitter({ sql: options.sql, store: options.store ?? 'table', maxBatch: options.groupCommitMax, writers: GROUP_COMMIT_WRITERS })
    : undefined;
  app.post<{ Body: OrderBody }>('/orders', { schema: { body: orderBody } }, async (request, reply) => {
    const input = { ...request.body, headers: propagated(request.headers) };
    const written = group ? await group.place(input) : await placeOrder(options.sql, input, options.store ?? 'table');
    return reply.status(201).send(written);
  });

  app.post<{ Params: { orderId: string }; Body: { deltaCents: number } }>(
    '/orders/:orderId/amendments',
    { schema: { params: orderParams, body: amendmentBody } },
    async (request, reply) => {
      const [written] = await amendOrders(
        options.sql,
        [{ orderId: request.params.orderId, deltaCents: request.body.deltaCents, headers: propagated(request.headers) }],
        options.store ?? 'table',
      );
      return reply.status(201).send(written);
    },
  );

  return app;
}
