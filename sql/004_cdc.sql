-- 004: what the CDC relay remembers about its replication slots.
--
-- A slot that disappears must not be silently recreated: a new slot starts at
-- the current end of WAL, so every event committed in between would be
-- skipped. Remembering which slots this schema's relay created lets it tell
-- "first start" (create the slot) from "the slot is gone" (stop and say so).
CREATE TABLE IF NOT EXISTS relay_cdc_slots (
  slot_name      text        PRIMARY KEY,
  created_at     timestamptz NOT NULL DEFAULT now(),
  created_lsn    pg_lsn      NOT NULL,
  -- Last position the relay confirmed, and when: what a recovery after a lost
  -- slot has to republish from.
  confirmed_lsn  pg_lsn,
  confirmed_at   timestamptz
);
