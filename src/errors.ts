/**
 * The one error type of outbox-bench. Callers match on `code`, never on the
 * message text or the class: errors that cross worker threads and processes
 * lose their class.
 */

export const ErrorCodes = [
  /** A configuration value (flag or env var) is malformed or out of range. */
  'CONFIG_INVALID',
  /** A command line was not understood (unknown command, flag or argument). */
  'USAGE',
  /** `java` is not on PATH and no external Kafka was configured. */
  'JAVA_MISSING',
  /** `mvn` is not on PATH and the Kafka jars are not cached yet. */
  'MAVEN_MISSING',
  /** `mvn` ran but could not fetch the Kafka jars. */
  'MAVEN_FETCH_FAILED',
  /** A TCP port the project wants to listen on is already taken. */
  'PORT_IN_USE',
  /** The local PostgreSQL could not be initialised or started. */
  'POSTGRES_START_FAILED',
  /** The local Kafka broker could not be formatted or started. */
  'KAFKA_START_FAILED',
  /** A server did not answer within its readiness deadline. */
  'NOT_READY',
  /** The PostgreSQL server does not run with wal_level=logical. */
  'WAL_LEVEL_NOT_LOGICAL',
  /** The replication slot the CDC relay needs does not exist. */
  'SLOT_MISSING',
  /** The replication slot was invalidated (wal_status = 'lost'). */
  'SLOT_LOST',
  /** A recovery of the replication slot (`relay --recover-slot`) was started and has not finished. */
  'SLOT_RECOVERING',
  /** Kafka did not acknowledge a publish. */
  'PUBLISH_FAILED',
  /** A request body or function argument failed validation. */
  'INVALID_INPUT',
  /** A database statement failed. */
  'DATABASE',
  /** The operation was aborted because the component is shutting down. */
  'SHUTTING_DOWN',
  /** A benchmark or checker found a broken guarantee. */
  'CHECK_FAILED',
  /** A `--workload sql:<file>` script could not be read or parsed, or its dry run wrote no event. */
  'WORKLOAD_INVALID',
  /** A commit could not be checked out, installed or built (bench:ab), or its run failed. */
  'BUILD_FAILED',
] as const;

export type ErrorCode = (typeof ErrorCodes)[number];

export interface OutboxBenchErrorOptions {
  cause?: unknown;
  /** True when retrying the same operation later may succeed. */
  retriable?: boolean;
  /** Structured context for logs (slot name, port, flag name ...). */
  details?: Readonly<Record<string, unknown>>;
}

export class OutboxBenchError extends Error {
  override readonly name = 'OutboxBenchError';
  readonly code: ErrorCode;
  readonly retriable: boolean;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message: string, options: OutboxBenchErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retriable = options.retriable ?? false;
    this.details = options.details;
  }
}

/**
 * Exit codes of the CLI. A supervisor restarts a relay process that exited
 * with FAILED (a crash, a lost connection it gave up on) but not one that
 * exited with USAGE or FATAL: the same start would fail the same way, and
 * someone has to act (the message says what to do).
 */
export const EXIT = Object.freeze({ OK: 0, FAILED: 1, USAGE: 2, FATAL: 3 });

/** Errors that no restart can fix: the slot is gone or lost, the server cannot do logical decoding. */
const FATAL_CODES: ReadonlySet<ErrorCode> = new Set(['SLOT_LOST', 'SLOT_MISSING', 'SLOT_RECOVERING', 'WAL_LEVEL_NOT_LOGICAL']);

/** The exit code for a command that ended with `error`. */
export function exitCodeFor(error: unknown): number {
  if (isOutboxBenchError(error, 'USAGE') || isOutboxBenchError(error, 'CONFIG_INVALID') || isOutboxBenchError(error, 'WORKLOAD_INVALID')) return EXIT.USAGE;
  return error instanceof OutboxBenchError && FATAL_CODES.has(error.code) ? EXIT.FATAL : EXIT.FAILED;
}

export function isOutboxBenchError(error: unknown, code?: ErrorCode): error is OutboxBenchError {
  return error instanceof OutboxBenchError && (code === undefined || error.code === code);
}

/** The message of anything thrown, for logs and CLI output. */
/**
 * The errors an aggregate error holds in `errors` (kafkajs'
 * KafkaJSAggregateError, AggregateError, @platformatic/kafka's
 * MultipleErrors, which nests them twice: the send, then each response),
 * the innermost first: they say what the broker refused. `leaf`: it holds
 * none itself.
 */
export function nestedErrors(error: unknown): { error: unknown; leaf: boolean }[] {
  const found: { error: unknown; leaf: boolean }[] = [];
  const collect = (e: unknown, depth: number) => {
    const nested = (e as { errors?: unknown } | undefined)?.errors;
    const deeper = depth < 3 && Array.isArray(nested) && nested.length > 0;
    if (deeper) for (const inner of nested) collect(inner, depth + 1);
    if (depth > 0) found.push({ error: e, leaf: !deeper });
  };
  collect(error, 0);
  return found;
}

export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  let text = error.message;
  const reasons = new Set(nestedErrors(error).map(({ error: e }) => (e instanceof Error ? e.message : String(e))));
  if (reasons.size > 0) text += `: ${[...reasons].slice(0, 3).join('; ')}`;
  // Client libraries (kafkajs) nest causes that repeat the same words; show
  // each distinct message of the chain once.
  for (let cause = error.cause; cause !== undefined; cause = cause instanceof Error ? cause.cause : undefined) {
    const message = cause instanceof Error ? cause.message : String(cause);
    if (!text.includes(message)) text += ` (cause: ${message})`;
    if (!(cause instanceof Error)) break;
  }
  return text;
}
