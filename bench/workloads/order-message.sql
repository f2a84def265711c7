-- An order and its OrderPlaced event in one transaction, the event as a
-- logical decoding message (the table-less outbox; the cdc-message relay
-- reads it). outbox_frame (sql/007_outbox_frame.sql) builds the frame the
-- relay expects (docs/workloads.md):
--
--   npm run bench:cdc -- --workload sql:bench/workloads/order-message.sql
--
-- (bench:cdc runs the relay of the store a script writes: cdc-message here)
--
-- pg_logical_emit_message must be transactional (true): a message outside
-- the transaction would be published even if the order rolled back.
\set amount random(100, 9999)
\set customer random(1, 10000)
WITH placed AS (
  INSERT INTO orders (order_id, customer_id, amount_cents, currency)
  VALUES (gen_random_uuid(), 'customer-' || :customer::text, :amount, 'EUR')
  RETURNING order_id, customer_id, amount_cents, currency
)
SELECT pg_logical_emit_message(true, 'outbox', outbox_frame(
         :event_id::uuid, 'order', order_id::text, 1, 'OrderPlaced',
         json_build_object('orderId', order_id, 'customerId', customer_id, 'amountCents', amount_cents, 'currency', currency)::text,
         json_build_object('intended_at', :intended_at::text)::text))
FROM placed;
