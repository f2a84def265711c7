-- 002: outbox partitions, created ahead of time.
--
-- Partitions are aligned to multiples of a fixed width since the Unix epoch
-- (a day width starts at UTC midnight). The width is chosen once per schema
-- (minutes in benchmarks, a day in production) and stored, because partitions
-- of two different widths would overlap.

CREATE TABLE IF NOT EXISTS outbox_partitioning (
  singleton  boolean  PRIMARY KEY DEFAULT true CHECK (singleton),
  width      interval NOT NULL CHECK (width >= interval '1 minute')
);

-- Creates the partition holding `ts` and the next `ahead` ones, if missing.
-- Returns how many partitions it created. Safe to call concurrently.
CREATE OR REPLACE FUNCTION outbox_ensure_partitions(p_width interval, p_ahead integer, p_from timestamptz DEFAULT now())
RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  stored     interval;
  width_s    double precision;
  first_lo   timestamptz;
  lo         timestamptz;
  hi         timestamptz;
  part_name  text;
  created    integer := 0;
BEGIN
  IF p_ahead < 0 THEN
    RAISE EXCEPTION 'outbox_ensure_partitions: ahead must be >= 0, got %', p_ahead;
  END IF;
  -- Serialise partition creation per schema: two relays topping up at once
  -- would otherwise race on CREATE TABLE.
  PERFORM pg_advisory_xact_lock(hashtext(current_schema() || '.outbox_partitions'));

  INSERT INTO outbox_partitioning (width) VALUES (p_width) ON CONFLICT (singleton) DO NOTHING;
  SELECT width INTO stored FROM outbox_partitioning;
  IF stored <> p_width THEN
    RAISE EXCEPTION 'outbox partitions in schema % are % wide; asked for %', current_schema(), stored, p_width
      USING HINT = 'Use the same --partition-width as before, or start with a fresh schema.';
  END IF;

  width_s := extract(epoch FROM stored);
  first_lo := to_timestamp(floor(extract(epoch FROM p_from) / width_s) * width_s);
  FOR i IN 0 .. p_ahead LOOP
    lo := first_lo + (stored * i);
    hi := lo + stored;
    part_name := 'outbox_p' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD"t"HH24MISS');
    IF to_regclass(quote_ident(part_name)) IS NULL THEN
      EXECUTE format('CREATE TABLE %I PARTITION OF outbox FOR VALUES FROM (%L) TO (%L)', part_name, lo, hi);
      -- A unique constraint on the partitioned parent would have to include
      -- created_at, which would make it meaningless; per partition it still
      -- guards against a writer that bypasses the aggregate's row lock.
      EXECUTE format('CREATE UNIQUE INDEX %I ON %I (aggregate_id, aggregate_version)', part_name || '_aggregate_version_key', part_name);
      created := created + 1;
    END IF;
  END LOOP;
  RETURN created;
END;
$$;

-- The outbox partitions in bound order, with their ranges.
CREATE OR REPLACE VIEW outbox_partitions AS
SELECT c.relname::text AS partition_name,
       (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\)'))[1]::timestamptz AS range_start,
       (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz AS range_end
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'outbox'::regclass;
