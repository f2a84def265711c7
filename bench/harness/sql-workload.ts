/**
 * `--workload sql:<file>`: the user's own transaction, in a subset of
 * pgbench's script syntax, as the load instead of the built-in orders.
 *
 * The subset:
 *   - SQL commands, ended by a semicolon (they may span lines; the last one
 *     may omit it), `-- comments`;
 *   - `\set name expression`, where an expression is made of integers,
 *     variables, `+ - * / %`, parentheses and the functions `random(lo, hi)`
 *     (uniform, both ends included), `abs`, `least` and `greatest`;
 *   - `:name` in a command or an expression: a `\set` variable, or one the
 *     harness binds for every event: `:event_id` (the event's id, a UUID the
 *     consumer's accounting reads back), `:intended_at` (when the event was
 *     due on the load's timetable, ISO 8601: carry it in a header to see it
 *     in Kafka) and `:client_id` (the load worker). `::` stays a cast.
 * Anything else (another meta-command, BEGIN or COMMIT, an unknown variable)
 * is refused with the file and line. The harness makes the transaction: one
 * run of the script is one event, `--per-transaction N` runs it N times in
 * one transaction. A single command is sent alone (one round trip, its own
 * transaction); several are pipelined between BEGIN and COMMIT. Variables
 * are sent as parameters of unspecified type, as pgbench's extended
 * protocol does: where PostgreSQL cannot infer one, cast (`:n::bigint`).
 */
import { readFileSync } from 'node:fs';
import { OutboxBenchError } from '../../src/errors.js';
import { relayModeInfo } from '../../src/relay/modes.js';

/** Variables the harness binds for every event. */
export const BOUND_VARIABLES = ['event_id', 'intended_at', 'client_id'] as const;

const FUNCTIONS: Readonly<Record<string, { min: number; max: number }>> = {
  random: { min: 2, max: 2 },
  abs: { min: 1, max: 1 },
  least: { min: 1, max: 64 },
  greatest: { min: 1, max: 64 },
};

/** A `\set` expression, as plain data: it crosses to the load workers. */
export type Expression =
  | { kind: 'number'; value: number }
  | { kind: 'variable'; name: string }
  | { kind: 'negate'; operand: Expression }
  | { kind: 'binary'; operator: '+' | '-' | '*' | '/' | '%'; left: Expression; right: Expression }
  | { kind: 'call'; name: string; args: Expression[] };

export type WorkloadCommand =
  | { kind: 'set'; line: number; name: string; expression: Expression }
  /** `text` has `$1..$n` where the file had variables; `parameters` names them in that order. */
  | { kind: 'sql'; line: number; text: string; parameters: string[] };

export interface SqlWorkload {
  /** The file as given. */
  file: string;
  commands: WorkloadCommand[];
  /**
   * Where its events go: logical messages when it calls
   * pg_logical_emit_message, the outbox table otherwise. Scenarios run the
   * relays that read this store; the dry run checks it.
   */
  store: 'table' | 'message';
}

/** `orders` (the built-in load) or `sql:<file>`; undefined for `orders`. */
export function workloadFromFlag(value: string): SqlWorkload | undefined {
  if (value === 'orders') return undefined;
  if (!value.startsWith('sql:') || value.length === 4) throw new OutboxBenchError('USAGE', `--workload takes "orders" or "sql:<file>", not "${value}"`);
  const file = value.slice(4);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new OutboxBenchError('WORKLOAD_INVALID', `cannot read the workload file ${file}: ${(error as Error).message}`);
  }
  return parseWorkload(file, text);
}

class LineError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(message);
  }
}

const TRANSACTION_CONTROL = /^(begin|start|commit|end|rollback|abort|prepare\s+transaction)\b/i;
const NAME = /^[A-Za-z_][A-Za-z0-9_]*/;

/** Parses a script; every mistake is an error that names `file:line`. */
export function parseWorkload(file: string, text: string): SqlWorkload {
  const known = new Set<string>(BOUND_VARIABLES);
  const commands: WorkloadCommand[] = [];
  try {
    for (const piece of splitScript(text)) {
      if (piece.kind === 'meta') {
        const set = /^\\set\s+([A-Za-z_][A-Za-z0-9_]*)\s+(\S.*)$/.exec(piece.text);
        if (!set) {
          const name = /^\\\S*/.exec(piece.text)?.[0] ?? piece.text;
          throw new LineError(piece.line, name === '\\set' ? '\\set takes a variable name and an expression' : `${name} is not supported (only \\set is)`);
        }
        const name = set[1]!;
        if ((BOUND_VARIABLES as readonly string[]).includes(name)) throw new LineError(piece.line, `:${name} is bound by the harness and cannot be \\set`);
        commands.push({ kind: 'set', line: piece.line, name, expression: parseExpression(set[2]!, piece.line, known) });
        known.add(name);
      } else {
        if (TRANSACTION_CONTROL.test(piece.text)) {
          throw new LineError(piece.line, `"${piece.text.split(/\s/)[0]}" is refused: the harness makes the transaction (--per-transaction runs of the script in each)`);
        }
        commands.push({ kind: 'sql', line: piece.line, ...bindVariables(piece.text, piece.line, known) });
      }
    }
  } catch (error) {
    if (error instanceof LineError) throw new OutboxBenchError('WORKLOAD_INVALID', `${file}:${error.line}: ${error.message}`, { details: { file, line: error.line } });
    throw error;
  }
  if (!commands.some((c) => c.kind === 'sql')) throw new OutboxBenchError('WORKLOAD_INVALID', `${file}: holds no SQL command`, { details: { file } });
  const store = commands.some((c) => c.kind === 'sql' && /\bpg_logical_emit_message\s*\(/i.test(c.text)) ? 'message' : 'table';
  return { file, commands, store };
}

/** What a store holds, as the refusals name it. */
export const storeEvents = (store: SqlWorkload['store']) => (store === 'table' ? 'outbox rows' : 'logical messages');

/** A scenario's relays that read the store a script writes (all of them for the built-in load). */
export function relaysForWorkload<T extends string>(relays: readonly T[], workload: SqlWorkload | undefined): T[] {
  if (!workload) return [...relays];
  const kept = relays.filter((relay) => relayModeInfo(relay).store === workload.store);
  if (kept.length === 0) {
    throw new OutboxBenchError('USAGE', `--workload sql:${workload.file} writes ${storeEvents(workload.store)}, which none of ${relays.join(', ')} reads`);
  }
  return kept;
}

/** The script's commands and meta-commands, each with the line it starts on, comments dropped. */
function splitScript(text: string): { kind: 'sql' | 'meta'; text: string; line: number }[] {
  const pieces: { kind: 'sql' | 'meta'; text: string; line: number }[] = [];
  let sql = '';
  let sqlLine = 0;
  let quote: string | undefined;
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, index) => {
    const line = index + 1;
    if (quote === undefined && raw.trimStart().startsWith('\\')) {
      // pgbench would end the command here; one that just lacks its semicolon is more likely a mistake.
      if (sql.trim() !== '') throw new LineError(line, `a meta-command inside the SQL command of line ${sqlLine}: end that command with ";"`);
      pieces.push({ kind: 'meta', text: raw.trim(), line });
      return;
    }
    for (let i = 0; i < raw.length; i++) {
      const c = raw[i]!;
      if (quote !== undefined) {
        if (c === quote) quote = undefined;
      } else if (c === "'" || c === '"') {
        quote = c;
      } else if (c === '-' && raw[i + 1] === '-') {
        break;
      } else if (c === ';') {
        if (sql.trim() !== '') pieces.push({ kind: 'sql', text: sql.trim(), line: sqlLine });
        sql = '';
        continue;
      } else if (c === '$' && /^\$[A-Za-z_]*\$/.test(raw.slice(i))) {
        throw new LineError(line, 'dollar quoting is not supported: use single quotes');
      } else if (c === '$' && /^\$\d/.test(raw.slice(i))) {
        throw new LineError(line, 'positional parameters ($1, ...) are the harness\'s: name a variable (:name)');
      } else if (c === '/' && raw[i + 1] === '*') {
        throw new LineError(line, 'block comments are not supported: use --');
      } else if ((c === 'E' || c === 'e') && raw[i + 1] === "'" && !/[A-Za-z0-9_]/.test(raw[i - 1] ?? '')) {
        throw new LineError(line, "E'...' strings (backslash escapes) are not supported: use standard strings");
      }
      if (sql.trim() === '' && c.trim() !== '') sqlLine = line;
      sql += c;
    }
    sql += '\n';
  });
  if (quote !== undefined) throw new LineError(sqlLine, `unterminated ${quote === "'" ? 'string' : 'quoted identifier'}`);
  if (sql.trim() !== '') pieces.push({ kind: 'sql', text: sql.trim(), line: sqlLine });
  return pieces;
}

/** `:name` -> `$n` outside quotes (`::` is a cast). */
function bindVariables(text: string, line: number, known: ReadonlySet<string>): { text: string; parameters: string[] } {
  const parameters: string[] = [];
  let out = '';
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote !== undefined) {
      if (c === quote) quote = undefined;
    } else if (c === "'" || c === '"') {
      quote = c;
    } else if (c === ':' && text[i + 1] === ':') {
      out += '::';
      i += 1;
      continue;
    } else if (c === ':') {
      const name = NAME.exec(text.slice(i + 1))?.[0];
      if (name !== undefined) {
        if (!known.has(name)) throw new LineError(line + (text.slice(0, i).match(/\n/g)?.length ?? 0), `:${name} is not defined (bound: ${BOUND_VARIABLES.map((v) => `:${v}`).join(', ')}; or \\set it above)`);
        let index = parameters.indexOf(name);
        if (index < 0) index = parameters.push(name) - 1;
        out += `$${index + 1}`;
        i += name.length;
        continue;
      }
    }
    out += c;
  }
  return { text: out, parameters };
}

/** Recursive descent over `+ -` < `* / %` < unary minus < atoms. */
function parseExpression(source: string, line: number, known: ReadonlySet<string>): Expression {
  const tokens = source.match(/\s*(\d+|:[A-Za-z_][A-Za-z0-9_]*|[A-Za-z_][A-Za-z0-9_]*|[-+*/%(),]|\S)/g)?.map((t) => t.trim()) ?? [];
  let at = 0;
  const fail = (why: string): never => {
    throw new LineError(line, `in "${source}": ${why}`);
  };
  const peek = () => tokens[at];
  const take = (expected?: string) => {
    const token = tokens[at++];
    if (token === undefined) return fail(expected ? `expected "${expected}" at the end` : 'unexpected end');
    if (expected !== undefined && token !== expected) fail(`expected "${expected}", found "${token}"`);
    return token;
  };
  const sum = (): Expression => {
    let left = product();
    while (peek() === '+' || peek() === '-') left = { kind: 'binary', operator: take() as '+' | '-', left, right: product() };
    return left;
  };
  const product = (): Expression => {
    let left = unary();
    while (peek() === '*' || peek() === '/' || peek() === '%') left = { kind: 'binary', operator: take() as '*' | '/' | '%', left, right: unary() };
    return left;
  };
  const unary = (): Expression => (peek() === '-' ? (take(), { kind: 'negate', operand: unary() }) : atom());
  const atom = (): Expression => {
    const token = take();
    if (/^\d+$/.test(token)) {
      const value = Number(token);
      return Number.isSafeInteger(value) ? { kind: 'number', value } : fail(`${token} is too large`);
    }
    if (token === '(') {
      const inner = sum();
      take(')');
      return inner;
    }
    if (token.startsWith(':')) {
      const name = token.slice(1);
      if (name === 'event_id' || name === 'intended_at') fail(`:${name} is not a number`);
      return known.has(name) ? { kind: 'variable', name } : fail(`:${name} is not defined`);
    }
    if (NAME.test(token)) {
      const arity = FUNCTIONS[token.toLowerCase()] ?? fail(`unknown function ${token} (known: ${Object.keys(FUNCTIONS).join(', ')})`);
      take('(');
      const args = [sum()];
      while (peek() === ',') {
        take();
        args.push(sum());
      }
      take(')');
      if (args.length < arity.min || args.length > arity.max) fail(`${token} takes ${arity.min === arity.max ? arity.min : `${arity.min} to ${arity.max}`} arguments`);
      return { kind: 'call', name: token.toLowerCase(), args };
    }
    return fail(`unexpected "${token}"`);
  };
  const expression = sum();
  if (at < tokens.length) fail(`unexpected "${tokens[at]}"`);
  return expression;
}

/** Integer arithmetic, as pgbench's: division truncates; by zero it is an error. */
export function evaluate(expression: Expression, variables: ReadonlyMap<string, number | string>, random: () => number): number {
  switch (expression.kind) {
    case 'number':
      return expression.value;
    case 'variable':
      return Number(variables.get(expression.name));
    case 'negate':
      return -evaluate(expression.operand, variables, random);
    case 'binary': {
      const left = evaluate(expression.left, variables, random);
      const right = evaluate(expression.right, variables, random);
      if ((expression.operator === '/' || expression.operator === '%') && right === 0) throw new OutboxBenchError('WORKLOAD_INVALID', 'division by zero in a \\set expression');
      if (expression.operator === '+') return left + right;
      if (expression.operator === '-') return left - right;
      if (expression.operator === '*') return left * right;
      return expression.operator === '/' ? Math.trunc(left / right) : left % right;
    }
    case 'call': {
      const args = expression.args.map((arg) => evaluate(arg, variables, random));
      if (expression.name === 'abs') return Math.abs(args[0]!);
      if (expression.name === 'least') return Math.min(...args);
      if (expression.name === 'greatest') return Math.max(...args);
      const [lo, hi] = args as [number, number];
      if (hi < lo) throw new OutboxBenchError('WORKLOAD_INVALID', `random(${lo}, ${hi}): the upper bound is below the lower`);
      return lo + Math.floor(random() * (hi - lo + 1));
    }
  }
}

/** A `\\set` of the script evaluated; its errors name the file and line. */
function evaluateAt(workload: SqlWorkload, command: { line: number; expression: Expression }, variables: ReadonlyMap<string, number | string>, random: () => number): number {
  try {
    return evaluate(command.expression, variables, random);
  } catch (error) {
    throw new OutboxBenchError('WORKLOAD_INVALID', `${workload.file}:${command.line}: ${(error as Error).message}`, { cause: error });
  }
}

/** A command of one run of the script, its variables bound. */
export interface BoundStatement {
  text: string;
  values: (string | number)[];
  line: number;
}

/** The harness's variables of one event. */
export interface BoundVariables {
  eventId: string;
  intendedAt: number;
  clientId: number;
}

/** One run of the script's SQL for one event: each command's text and its parameter values. */
export function statementsFor(workload: SqlWorkload, bound: BoundVariables, random: () => number): BoundStatement[] {
  const variables = new Map<string, number | string>([
    ['event_id', bound.eventId],
    ['intended_at', new Date(bound.intendedAt).toISOString()],
    ['client_id', bound.clientId],
  ]);
  const statements: BoundStatement[] = [];
  for (const command of workload.commands) {
    if (command.kind === 'set') variables.set(command.name, evaluateAt(workload, command, variables, random));
    else statements.push({ text: command.text, values: command.parameters.map((name) => variables.get(name)!), line: command.line });
  }
  return statements;
}
