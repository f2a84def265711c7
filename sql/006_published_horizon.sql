-- 006: what a recovery after a lost replication slot can prove.
--
-- A CDC relay never marks rows, so when its slot is lost the rows that did
-- reach Kafka have to be told apart from the ones that did not by something
-- stronger than a timestamp. Each row carries the id of the transaction that
-- wrote it; the relay records snapshots ("fences") whose every visible
-- transaction it has seen Kafka acknowledge. A row whose transaction is
-- visible in the last such snapshot of a slot's incarnation, and not in the
-- snapshot the slot was created at, is proven delivered; every other
-- unpublished row is re-published (the consumer dedupes).

-- The writer's top-level transaction id. Not xmin: inside a SAVEPOINT xmin is
-- a subtransaction's id, which pg_visible_in_snapshot calls visible while the
-- outer transaction still runs (a snapshot lists top-level ids only). Added
-- nullable first and given its default afterwards, because a volatile default
-- in ADD COLUMN rewrites every partition and stamps old rows with the
-- migration's own id. A NULL txid is never proven: such rows are re-published.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS txid xid8;
ALTER TABLE outbox ALTER COLUMN txid SET DEFAULT pg_current_xact_id();

ALTER TABLE relay_cdc_slots
  -- The snapshot the slot's incarnation was created at (CREATE_REPLICATION_SLOT
  -- ... SNAPSHOT 'export'): transactions visible in it were never decoded by it.
  ADD COLUMN IF NOT EXISTS floor_snapshot pg_snapshot,
  -- The published horizon: a snapshot whose every visible transaction had
  -- committed before horizon_lsn, which the relay had confirmed (every event
  -- before it acknowledged by Kafka) when it stored them.
  ADD COLUMN IF NOT EXISTS horizon_snapshot pg_snapshot,
  ADD COLUMN IF NOT EXISTS horizon_lsn pg_lsn,
  ADD COLUMN IF NOT EXISTS horizon_at timestamptz,
  -- Set while `relay --recover-slot` runs: the slot then exists but rows
  -- before its start may not be re-published yet, so no relay may start on it.
  ADD COLUMN IF NOT EXISTS recovering boolean NOT NULL DEFAULT false,
  -- During a recovery: the new slot's exported snapshot; the unpublished rows
  -- visible in it are what the polling relay re-publishes before CDC resumes.
  ADD COLUMN IF NOT EXISTS republish_snapshot pg_snapshot;
