/**
 * The benchmark runner's flags, declared as data: each scenario lists the
 * flags it reads with their kind, default and checks, and the runner parses
 * the command line and writes `--help` from those declarations alone.
 *
 * Old spellings stay accepted as aliases: published summaries record the
 * commands they ran with, and each must still replay.
 */
import { parseWholeFlag } from '../src/config.js';
import { closestName } from '../src/command-kit.js';
import { OutboxBenchError } from '../src/errors.js';

/** A former spelling whose value means something else under the new name (chaos's `--tps` counted transactions of 5 events). */
export interface ConvertingAlias {
  name: string;
  convert(raw: string): string;
  /** How to say the same with the new name, for the notice. */
  note: string;
}

interface FlagCommon {
  description: string;
  /** Former names, still accepted; each use prints a one-line notice with the new name. */
  formerly?: readonly (string | ConvertingAlias)[];
}

export interface NumberFlag extends FlagCommon {
  kind?: 'number';
  defaultValue: number;
  min: number;
  max: number;
  /** The default as `--help` shows it, when it depends on other flags (see `defaultFrom`). */
  defaultText?: string;
  /** A default that depends on the other flags given (a soak runs longer and faster). */
  defaultFrom?(given: (name: string) => boolean): number;
}

export interface YesNoFlag extends FlagCommon {
  kind: 'yes-no';
  defaultValue: boolean;
}

export interface ListFlag extends FlagCommon {
  kind: 'list';
  /** Shown in `--help`; the scenario's code supplies the value it falls back to. */
  defaultText?: string;
  /** Rejects an item with the reason, or accepts it (undefined). */
  check?(item: string): string | undefined;
}

export interface TextFlag extends FlagCommon {
  kind: 'string';
  defaultText?: string;
  /** The accepted values, when there is a fixed set. */
  values?: () => readonly string[];
}

export type FlagSpec = NumberFlag | YesNoFlag | ListFlag | TextFlag;
export type FlagSpecs = Readonly<Record<string, FlagSpec>>;
export type FlagValue = number | boolean | string | readonly string[];

const YES = new Set(['yes', 'true', 'on', '1']);
const NO = new Set(['no', 'false', 'off', '0']);

export function kindOf(spec: FlagSpec): NonNullable<FlagSpec['kind']> {
  return spec.kind ?? 'number';
}

function usage(message: string): OutboxBenchError {
  return new OutboxBenchError('USAGE', message);
}

/** A list flag's items, checked one by one. */
export function listItems(flag: string, raw: string, spec: ListFlag): string[] {
  const items = raw.split(',').map((item) => item.trim()).filter(Boolean);
  if (items.length === 0) throw usage(`flag --${flag}: name at least one`);
  for (const item of items) {
    const problem = spec.check?.(item);
    if (problem) throw usage(`flag --${flag}: "${item}" ${problem}`);
  }
  return items;
}

/** The value of a flag given on the command line, by its spec; a USAGE error names the flag. */
export function flagValue(flag: string, raw: string | true, spec: FlagSpec): FlagValue {
  if (spec.kind === 'yes-no') {
    if (raw === true) return true;
    const word = raw.trim().toLowerCase();
    if (YES.has(word)) return true;
    if (NO.has(word)) return false;
    throw usage(`flag --${flag}: "${raw}" is not yes or no`);
  }
  if (raw === true) throw usage(`flag --${flag} needs a value`);
  switch (spec.kind) {
    case 'list':
      return listItems(flag, raw, spec);
    case 'string': {
      const value = raw.trim();
      const values = spec.values?.();
      if (values && !values.includes(value)) throw usage(`flag --${flag}: "${raw}" is not one of ${values.join(', ')}`);
      if (value === '') throw usage(`flag --${flag} needs a value`);
      return value;
    }
    default:
      return parseWholeFlag(flag, raw, spec.min, spec.max);
  }
}

/** What a command line holds, flags under their current names. */
export interface ParsedArgs {
  positionals: string[];
  /** Raw values by current flag name; `true` for a yes/no flag given bare. */
  given: Map<string, string | true>;
  /** One line per former name used: what it is called now. */
  notices: string[];
}

export interface FlagTable {
  /** Kinds by current name: a yes/no flag may stand without a value. */
  kinds: ReadonlyMap<string, NonNullable<FlagSpec['kind']>>;
  /** Former name -> current name and how its value converts. */
  aliases: ReadonlyMap<string, { name: string; convert?: ConvertingAlias }>;
}

/** Every flag name (and former name) the specs declare; one name must keep one kind everywhere. */
export function flagTable(specSets: readonly FlagSpecs[]): FlagTable {
  const kinds = new Map<string, NonNullable<FlagSpec['kind']>>();
  const aliases = new Map<string, { name: string; convert?: ConvertingAlias }>();
  for (const specs of specSets) {
    for (const [name, spec] of Object.entries(specs)) {
      const seen = kinds.get(name);
      if (seen && seen !== kindOf(spec)) throw new Error(`flag --${name} is declared both as ${seen} and as ${kindOf(spec)}`);
      kinds.set(name, kindOf(spec));
      for (const former of spec.formerly ?? []) {
        const formerName = typeof former === 'string' ? former : former.name;
        const taken = aliases.get(formerName);
        if (taken && taken.name !== name) throw new Error(`former flag --${formerName} is claimed by both --${taken.name} and --${name}`);
        aliases.set(formerName, typeof former === 'string' ? { name } : { name, convert: former });
      }
    }
  }
  return { kinds, aliases };
}

/**
 * Splits a command line into positionals and flags: `--name value`,
 * `--name=value`, a yes/no flag bare (`--profile`, `--no-profile`) or with
 * yes/no/1/0 after it. Former names become current ones, with a notice.
 */
export function parseArgv(argv: readonly string[], table: FlagTable): ParsedArgs {
  const parsed: ParsedArgs = { positionals: [], given: new Map(), notices: [] };
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (token === '-h') {
      parsed.given.set('help', true);
      continue;
    }
    if (!token.startsWith('--')) {
      parsed.positionals.push(token);
      continue;
    }
    const eq = token.indexOf('=');
    let name = eq < 0 ? token.slice(2) : token.slice(2, eq);
    let raw: string | true | undefined = eq < 0 ? undefined : token.slice(eq + 1);
    if (!table.kinds.has(name) && !table.aliases.has(name) && name.startsWith('no-') && table.kinds.get(name.slice(3)) === 'yes-no' && raw === undefined) {
      name = name.slice(3);
      raw = 'no';
    }
    const alias = table.aliases.get(name);
    const current = alias?.name ?? name;
    const kind = table.kinds.get(current);
    if (!kind) {
      // A former name is matched too, and the flag it became is suggested.
      const near = closestName(name, [...table.kinds.keys(), ...table.aliases.keys()]);
      const suggested = near === undefined ? undefined : (table.aliases.get(near)?.name ?? near);
      throw usage(`unknown flag --${name}${suggested ? `; did you mean --${suggested}?` : ''}`);
    }
    if (raw === undefined) {
      const next = argv[i + 1];
      const takesNext = next !== undefined && !next.startsWith('--') && (kind !== 'yes-no' || YES.has(next.toLowerCase()) || NO.has(next.toLowerCase()));
      if (takesNext) raw = argv[++i]!;
      else if (kind === 'yes-no') raw = true;
      else throw usage(`flag --${name} needs a value`);
    }
    if (alias) {
      if (alias.convert && raw !== true) raw = alias.convert.convert(raw);
      parsed.notices.push(`--${name} is now --${current}${alias.convert ? ` (${alias.convert.note})` : ''}`);
    }
    parsed.given.set(current, raw);
  }
  return parsed;
}

/** One `--help` line. */
export function helpLine(name: string, spec: FlagSpec, owners?: string): string {
  const kind = kindOf(spec);
  const shape = kind === 'yes-no' ? ' [yes|no]' : kind === 'list' ? ' <a,b>' : kind === 'string' ? ' <name>' : ' <n>';
  let shown: string | undefined;
  if (spec.kind === 'yes-no') shown = spec.defaultValue ? 'yes' : 'no';
  else if (spec.kind === 'list' || spec.kind === 'string') shown = spec.defaultText;
  else shown = spec.defaultText ?? String(spec.defaultValue);
  const formerly = (spec.formerly ?? []).map((f) => `--${typeof f === 'string' ? f : f.name}`);
  const values = spec.kind === 'string' && spec.values ? ` (${spec.values().join(', ')})` : '';
  return [
    `  --${`${name}${shape}`.padEnd(28)} ${owners ? `${owners}: ` : ''}${spec.description}${values}`,
    shown === undefined ? '' : ` (default ${shown})`,
    formerly.length > 0 ? `; formerly ${formerly.join(', ')}` : '',
  ].join('');
}
