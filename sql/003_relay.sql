-- 003: what the relays share.

-- Ordered SKIP LOCKED relays: aggregates are hashed into a fixed number of
-- buckets, and a replica publishes only the buckets whose rows it has locked
-- (FOR UPDATE SKIP LOCKED) in its current transaction. One owner per bucket at
-- a time means one publisher per aggregate at a time, in version order.
CREATE TABLE IF NOT EXISTS relay_buckets (
  bucket  integer PRIMARY KEY CHECK (bucket >= 0)
);

-- The bucket of an aggregate. SQL-language and immutable, so the planner
-- inlines it into the claim query.
CREATE OR REPLACE FUNCTION outbox_bucket(p_aggregate_id text, p_buckets integer)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (hashtext(p_aggregate_id) & 2147483647) % p_buckets;
