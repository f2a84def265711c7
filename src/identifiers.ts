/**
 * SQL identifiers that come from settings (schema, slot, publication names)
 * and go where no parameter can (DDL, replication commands): accepted only as
 * plain lower-case identifiers by the config resolver, and quoted where they
 * are used, so that no setting, however it got in, can become SQL.
 */
import { OutboxBenchError } from './errors.js';

/** Lower-case letters, digits and `_`, not starting with a digit, at most 63 bytes (PostgreSQL's limit). */
export const PLAIN_IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

/** `name` double-quoted for SQL; a CONFIG_INVALID error for anything but a plain identifier. */
export function quoteIdentifier(name: string): string {
  if (!PLAIN_IDENTIFIER.test(name)) {
    throw new OutboxBenchError('CONFIG_INVALID', `"${name}" is not a plain SQL identifier (lower-case letters, digits, _; at most 63 characters)`);
  }
  return `"${name}"`;
}
