-- 007: the table-less outbox's event frame, built in the database.
--
-- A transaction that writes its events as logical decoding messages hands
-- the CDC relay a binary frame per event (format version 1: length-prefixed
-- fields, see src/outbox-frame.ts). Node services build it with
-- encodeOutboxFrame; this function builds the same bytes in SQL, for writers
-- in other languages and for `--workload sql:<file>` scripts:
--
--   SELECT pg_logical_emit_message(true, 'outbox',
--     outbox_frame(event_id, 'order', order_id::text, 1, 'OrderPlaced', payload::text));
--
-- The payload and headers are taken as text so that their bytes reach Kafka
-- as written (jsonb would reformat them).
CREATE OR REPLACE FUNCTION outbox_frame(
  p_event_id          uuid,
  p_aggregate_type    text,
  p_aggregate_id      text,
  p_aggregate_version integer,
  p_event_type        text,
  p_payload           text,
  p_headers           text DEFAULT '{}'
)
RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
  frame   bytea := '\x01'::bytea;
  field   bytea;
  payload bytea := convert_to(p_payload, 'UTF8');
BEGIN
  -- A NULL would make the frame NULL, and pg_logical_emit_message (strict)
  -- would then write nothing: an event lost without an error.
  IF num_nulls(p_event_id, p_aggregate_type, p_aggregate_id, p_aggregate_version, p_event_type, p_payload, p_headers) > 0 THEN
    RAISE EXCEPTION 'outbox_frame: every argument is required, got a NULL';
  END IF;
  FOREACH field IN ARRAY ARRAY[
    convert_to(p_event_id::text, 'UTF8'), convert_to(p_aggregate_type, 'UTF8'), convert_to(p_aggregate_id, 'UTF8'),
    convert_to(p_aggregate_version::text, 'UTF8'), convert_to(p_event_type, 'UTF8'), convert_to(p_headers, 'UTF8')
  ] LOOP
    -- Each field's length is an unsigned 16-bit integer: the low two bytes of its int4.
    IF octet_length(field) > 65535 THEN
      RAISE EXCEPTION 'outbox_frame: a field of % bytes does not fit a frame (at most 65,535)', octet_length(field);
    END IF;
    frame := frame || substring(int4send(octet_length(field)) FROM 3 FOR 2) || field;
  END LOOP;
  RETURN frame || int4send(octet_length(payload)) || payload;
END
$$;
