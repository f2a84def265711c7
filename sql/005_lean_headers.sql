-- 005: the relays send two headers per event by default (the event id and the
-- aggregate version); the event type travels only with `--kafka-headers all`,
-- so the side effect records it when it is known.
ALTER TABLE order_ledger ALTER COLUMN event_type DROP NOT NULL;
