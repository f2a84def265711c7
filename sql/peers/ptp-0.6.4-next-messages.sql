-- pg-transactional-outbox's polling function as its version 0.6.4 creates it
-- (lib/src/setup/database-setup.ts, createPollingFunction, at commit
-- aac88badf4c4a8d18ad967bc58e8f006a853099a of github.com/Zehelein/pg-transactional-outbox),
-- rendered for the benchmark's table and function names; __SCHEMA__ is the run's schema.
--
-- 0.6.4 checks a segment head's locked_until before it locks the row; 0.5.7,
-- the newest release the registry here serves, locks first, so a poll could
-- hold the row lock of a message a handler was about to take, and the handler's
-- NOWAIT lock failed (a 5 s retry, an attempt counted). Nothing else changed
-- between the two versions' function, table or indexes, and 0.5.7's
-- JavaScript calls it with the same arguments and reads the same rows.
--
-- Copyright 2023 Frank Zehelein
--
-- Permission is hereby granted, free of charge, to any person obtaining a copy of
-- this software and associated documentation files (the "Software"), to deal in
-- the Software without restriction, including without limitation the rights to
-- use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of
-- the Software, and to permit persons to whom the Software is furnished to do so,
-- subject to the following conditions:
--
-- The above copyright notice and this permission notice shall be included in all
-- copies or substantial portions of the Software.
--
-- THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
-- IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS
-- FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR
-- COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER
-- IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
-- CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.

DROP FUNCTION IF EXISTS __SCHEMA__.ptp_next_outbox_messages(integer, integer);
CREATE OR REPLACE FUNCTION __SCHEMA__.ptp_next_outbox_messages(
  max_size integer, lock_ms integer)
    RETURNS SETOF __SCHEMA__.ptp_outbox
    LANGUAGE 'plpgsql'

AS $BODY$
DECLARE
  loop_row __SCHEMA__.ptp_outbox%ROWTYPE;
  message_row __SCHEMA__.ptp_outbox%ROWTYPE;
  ids uuid[] := '{}';
BEGIN

  IF max_size < 1 THEN
    RAISE EXCEPTION 'The max_size for the next messages batch must be at least one.' using errcode = 'MAXNR';
  END IF;

  -- get (only) the oldest message of every segment but only return it if it is not locked
  FOR loop_row IN
    SELECT * FROM __SCHEMA__.ptp_outbox m WHERE m.id in (SELECT DISTINCT ON (segment) id
      FROM __SCHEMA__.ptp_outbox
      WHERE processed_at IS NULL AND abandoned_at IS NULL
      ORDER BY segment, created_at) order by created_at
  LOOP
    BEGIN
      EXIT WHEN cardinality(ids) >= max_size;

      -- if the message is marked as locked --> skip it
      IF loop_row.locked_until > NOW() THEN
        CONTINUE;
      END IF;

      SELECT *
        INTO message_row
        FROM __SCHEMA__.ptp_outbox
        WHERE id = loop_row.id
        FOR NO KEY UPDATE NOWAIT; -- throw/catch error when locked

      ids := array_append(ids, message_row.id);
    EXCEPTION
      WHEN lock_not_available THEN
        CONTINUE;
      WHEN serialization_failure THEN
        CONTINUE;
    END;
  END LOOP;

  -- if max_size not reached: get the oldest parallelizable message independent of segment
  IF cardinality(ids) < max_size THEN
    FOR loop_row IN
      SELECT * FROM __SCHEMA__.ptp_outbox
        WHERE concurrency = 'parallel' AND processed_at IS NULL AND abandoned_at IS NULL AND locked_until < NOW()
          AND id NOT IN (SELECT UNNEST(ids))
        order by created_at
    LOOP
      BEGIN
        EXIT WHEN cardinality(ids) >= max_size;

        SELECT *
          INTO message_row
          FROM __SCHEMA__.ptp_outbox
          WHERE id = loop_row.id
          FOR NO KEY UPDATE NOWAIT; -- throw/catch error when locked

        ids := array_append(ids, message_row.id);
      EXCEPTION
        WHEN lock_not_available THEN
          CONTINUE;
        WHEN serialization_failure THEN
          CONTINUE;
      END;
    END LOOP;
  END IF;

  -- set a short lock value so the the workers can each process a message
  IF cardinality(ids) > 0 THEN

    RETURN QUERY
      UPDATE __SCHEMA__.ptp_outbox
        SET locked_until = clock_timestamp() + (lock_ms || ' milliseconds')::INTERVAL, started_attempts = started_attempts + 1
        WHERE ID = ANY(ids)
        RETURNING *;

  END IF;
END;
$BODY$;
