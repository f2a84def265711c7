/**
 * Structured logging (pino) to stderr, so stdout stays free for results that
 * users pipe into files. Human-readable lines by default (pino-pretty, in the
 * same thread so nothing is lost on exit); `--log-format json` gives raw JSON
 * lines for log shippers.
 */
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';
import type { LogFormat, LogLevel } from './config.js';

export type { Logger } from 'pino';

export function createLogger(level: LogLevel, name = 'outbox-bench', format: LogFormat = 'pretty'): Logger {
  const options = { name, level, base: { pid: process.pid } };
  if (format === 'json') return pino(options, pino.destination({ fd: 2, sync: true }));
  return pino(
    options,
    pretty({
      destination: 2,
      sync: true,
      colorize: process.stderr.isTTY === true,
      ignore: 'pid,hostname,name',
      translateTime: 'HH:MM:ss.l',
      singleLine: true,
    }),
  );
}

/** A logger that drops everything, for library users who bring none. */
export const silentLogger: Logger = pino({ level: 'silent' });
