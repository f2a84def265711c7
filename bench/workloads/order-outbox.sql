-- An order and its OrderPlaced event in one transaction, the event as an
-- outbox row: the built-in load's transaction, as a workload script. Copy it
-- and put your own business statements in (docs/workloads.md):
--
--   npm run bench:polling -- --workload sql:bench/workloads/order-outbox.sql
--
-- :event_id and :intended_at are bound by the harness for every event; the
-- consumer's accounting reads the event id back from Kafka.
\set amount random(100, 9999)
\set customer random(1, 10000)
WITH placed AS (
  INSERT INTO orders (order_id, customer_id, amount_cents, currency)
  VALUES (gen_random_uuid(), 'customer-' || :customer::text, :amount, 'EUR')
  RETURNING order_id, customer_id, amount_cents, currency
)
INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload, headers)
SELECT :event_id::uuid, 'order', order_id::text, 1, 'OrderPlaced',
       jsonb_build_object('orderId', order_id, 'customerId', customer_id, 'amountCents', amount_cents, 'currency', currency),
       jsonb_build_object('intended_at', :intended_at::text)
FROM placed;
