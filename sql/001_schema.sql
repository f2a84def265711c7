-- 001: the business table, the transactional outbox, the consumer's inbox and
-- the side effect it applies. Every name is unqualified: migrate() runs this
-- with search_path set to the configured schema, so tests get their own copy.

-- The business table. `version` is the aggregate version of the order: each
-- event about the order bumps it under the row lock, so versions of one
-- aggregate are unique, gap-free and committed in increasing order.
CREATE TABLE IF NOT EXISTS orders (
  order_id      uuid        PRIMARY KEY,
  customer_id   text        NOT NULL,
  amount_cents  bigint      NOT NULL CHECK (amount_cents >= 0),
  currency      text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  status        text        NOT NULL DEFAULT 'placed',
  version       integer     NOT NULL DEFAULT 1 CHECK (version > 0),
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Outbox ids come from a sequence with CACHE 1 (the default) on purpose: the
-- ordered relays rely on "a later version of an aggregate has a larger id",
-- which holds because a writer takes the aggregate's row lock before it draws
-- the id. A per-session cache would hand out ids out of that order.
CREATE SEQUENCE IF NOT EXISTS outbox_id_seq AS bigint CACHE 1;

-- The outbox, range-partitioned by created_at so that delivered history is
-- dropped a partition at a time instead of deleted row by row.
CREATE TABLE IF NOT EXISTS outbox (
  id                 bigint      NOT NULL DEFAULT nextval('outbox_id_seq'),
  event_id           uuid        NOT NULL,
  aggregate_type     text        NOT NULL,
  aggregate_id       text        NOT NULL,
  aggregate_version  integer     NOT NULL CHECK (aggregate_version > 0),
  event_type         text        NOT NULL,
  payload            jsonb       NOT NULL,
  headers            jsonb       NOT NULL DEFAULT '{}'::jsonb,
  created_at         timestamptz NOT NULL DEFAULT now(),
  published_at       timestamptz,
  PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);

ALTER SEQUENCE outbox_id_seq OWNED BY outbox.id;

-- "Oldest unpublished first" reads only this partial index, whose size is the
-- backlog, not the history: the poll stays cheap however much was published.
CREATE INDEX IF NOT EXISTS outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;

-- The idempotent consumer's memory of what it has processed.
CREATE TABLE IF NOT EXISTS inbox (
  event_id      uuid        PRIMARY KEY,
  processed_at  timestamptz NOT NULL DEFAULT now()
);
-- The retention sweep deletes by age.
CREATE INDEX IF NOT EXISTS inbox_processed_at_idx ON inbox (processed_at);

-- The side effect the consumer applies: one ledger entry per event. event_id
-- is deliberately not unique here: if an event were ever applied twice it
-- would show up as two rows, which is what the checks look for.
CREATE TABLE IF NOT EXISTS order_ledger (
  entry_id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_id           uuid        NOT NULL,
  order_id           text        NOT NULL,
  aggregate_version  integer     NOT NULL,
  event_type         text        NOT NULL,
  amount_cents       bigint,
  applied_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS order_ledger_event_id_idx ON order_ledger (event_id);
