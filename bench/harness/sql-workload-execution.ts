/**
 * A workload script against PostgreSQL: its transactions as the load
 * workers send them, and the dry run that refuses a script before a run.
 * The script itself: sql-workload.ts.
 */
import { randomUUID } from 'node:crypto';
import type { Sql } from '../../src/db.js';
import { OutboxBenchError } from '../../src/errors.js';
import { quoteIdentifier } from '../../src/identifiers.js';
import { OUTBOX_MESSAGE_PREFIX } from '../../src/queries.js';
import { statementsFor, type BoundStatement, type SqlWorkload } from './sql-workload.js';

/** PostgreSQL's message with its detail and hint, which say what to change. */
function serverMessage(error: unknown): string {
  const e = error as { message?: string; detail?: string; hint?: string };
  return [e.message ?? String(error), e.detail && `(${e.detail})`, e.hint && `hint: ${e.hint}`].filter(Boolean).join(' ');
}

/**
 * One transaction of the workload: the script's runs for its events. A lone
 * command goes alone (one round trip; PostgreSQL makes it a transaction);
 * several are pipelined between BEGIN and COMMIT, none waiting for the one
 * before. A failure names the file and the line of the command.
 */
export async function writeWorkloadTransaction(sql: Sql, workload: SqlWorkload, statements: readonly BoundStatement[]): Promise<void> {
  const located = (statement: BoundStatement) => (error: unknown) => {
    throw new OutboxBenchError('DATABASE', `${workload.file}:${statement.line}: ${serverMessage(error)}`, { cause: error });
  };
  if (statements.length === 1) {
    const statement = statements[0]!;
    await sql.unsafe(statement.text, statement.values, { prepare: true }).catch(located(statement));
    return;
  }
  await sql.begin((tx) => statements.map((statement) => tx.unsafe(statement.text, statement.values, { prepare: true }).catch(located(statement))));
}

/** The schema a dry run creates (and rolls back) to see the messages a script emits. */
const DRY_RUN_SCHEMA = 'outbox_bench_dry_run';

class RolledBack extends Error {}

/**
 * Runs one transaction of the script in a transaction that is rolled back,
 * and refuses the script unless it wrote an outbox event with `:event_id`
 * for the store the run's relay reads: an outbox row, or (table-less) a
 * transactional logical message with the outbox prefix. Messages cannot be
 * read back before they commit, so the dry run puts a recording
 * pg_logical_emit_message ahead of pg_catalog's on the search_path (created
 * in the transaction, gone with it): a script must call it unqualified,
 * directly or through a function such as outbox_frame's example. PostgreSQL's
 * own errors come back with the script's line.
 */
export async function dryRunWorkload(sql: Sql, workload: SqlWorkload, p: { store: 'table' | 'message'; schema: string }): Promise<void> {
  const eventId = randomUUID();
  const statements = statementsFor(workload, { eventId, intendedAt: Date.now(), clientId: 0 }, Math.random);
  let written = 0;
  try {
    await sql.begin(async (tx) => {
      if (p.store === 'message') {
        await tx.unsafe(`CREATE SCHEMA ${DRY_RUN_SCHEMA}`);
        await tx.unsafe(`CREATE TABLE ${DRY_RUN_SCHEMA}.emitted (transactional boolean, prefix text, content bytea)`);
        // The same signatures as pg_catalog's (they differ between versions), so the earlier schema wins.
        const signatures = await tx<{ args: string }[]>`
          SELECT pg_get_function_arguments(oid) AS args FROM pg_proc
          WHERE proname = 'pg_logical_emit_message' AND pronamespace = 'pg_catalog'::regnamespace`;
        for (const { args } of signatures) {
          const content = /\bbytea\b/.test(args) ? '$3' : "convert_to($3, 'UTF8')";
          await tx.unsafe(`CREATE FUNCTION ${DRY_RUN_SCHEMA}.pg_logical_emit_message(${args}) RETURNS pg_lsn LANGUAGE sql
            AS 'INSERT INTO ${DRY_RUN_SCHEMA}.emitted VALUES ($1, $2, ${content.replaceAll("'", "''")}) RETURNING ''0/0''::pg_lsn'`);
        }
        await tx.unsafe(`SET LOCAL search_path TO ${DRY_RUN_SCHEMA}, pg_catalog, ${quoteIdentifier(p.schema)}`);
      }
      for (const statement of statements) {
        try {
          await tx.unsafe(statement.text, statement.values);
        } catch (error) {
          throw new OutboxBenchError('WORKLOAD_INVALID', `${workload.file}:${statement.line}: a dry run (rolled back) failed: ${serverMessage(error)}`, { cause: error });
        }
      }
      const [row] =
        p.store === 'table'
          ? await tx<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox WHERE event_id = ${eventId}::uuid`
          : await tx<{ n: number }[]>`
              SELECT count(*)::int AS n FROM ${tx(DRY_RUN_SCHEMA)}.emitted
              WHERE transactional AND prefix = ${OUTBOX_MESSAGE_PREFIX} AND position(convert_to(${eventId}, 'UTF8') IN content) > 0`;
      written = row?.n ?? 0;
      throw new RolledBack();
    });
  } catch (error) {
    if (!(error instanceof RolledBack)) throw error;
  }
  if (written === 0) {
    const how =
      p.store === 'table'
        ? 'an INSERT INTO outbox whose event_id is :event_id'
        : `a transactional pg_logical_emit_message(true, '${OUTBOX_MESSAGE_PREFIX}', outbox_frame(:event_id, ...)), called unqualified`;
    throw new OutboxBenchError('WORKLOAD_INVALID', `${workload.file}: a dry run (rolled back) wrote no event for the ${p.store === 'table' ? 'outbox table' : 'table-less (message)'} store the relay reads; the script needs ${how}`, { details: { file: workload.file } });
  }
}
