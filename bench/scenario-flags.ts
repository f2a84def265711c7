/**
 * Flags several scenarios read, under one name each: a scenario gives its
 * own default and wording of what is measured, the name and kind stay the
 * same everywhere.
 */
import { RELAY_MODES } from '../src/relay/modes.js';
import type { ListFlag, NumberFlag } from './flags.js';

/** Which relays a scenario measures (`--mode cdc,polling`); the CLI's `--mode` names one. */
export function modeFlag(description: string, defaultText: string, check?: ListFlag['check']): ListFlag {
  return { kind: 'list', description, defaultText, formerly: ['strategies'], ...(check ? { check } : {}) };
}

/** A list flag's check that accepts these names. */
export function oneOf(known: readonly string[]): NonNullable<ListFlag['check']> {
  return (item) => (known.includes(item) ? undefined : `is not one of ${known.join(', ')}`);
}

/** Accepts the relay modes of the registry. */
export const relayMode = oneOf(RELAY_MODES);

/** A list flag's check that refuses what `parse` throws on, with its message. */
export function parsedBy(parse: (item: string) => unknown): NonNullable<ListFlag['check']> {
  return (item) => {
    try {
      parse(item);
      return undefined;
    } catch (error) {
      return `is refused: ${(error as Error).message}`;
    }
  };
}

/** The p99 a step of a rate search must keep; `what` says which p99. */
export function p99LimitFlag(what: string, defaultValue: number, max: number, formerly?: string): NumberFlag {
  return { description: `a step of the rate search fails when ${what} p99 exceeds this, ms`, defaultValue, min: 1, max, ...(formerly ? { formerly: [formerly] } : {}) };
}

/** The first and the highest rate of a rate search. */
export function searchRateFlags(unit: string, defaults: { start?: number; max: number }, formerly?: string): Record<string, NumberFlag> {
  return {
    ...(defaults.start === undefined
      ? {}
      : { 'start-rate': { description: `first rate of the search, ${unit}`, defaultValue: defaults.start, min: 100, max: 1_000_000, ...(formerly ? { formerly: [`${formerly}-start-rate`] } : {}) } }),
    'max-rate': { description: `highest rate the search tries, ${unit}`, defaultValue: defaults.max, min: 100, max: 1_000_000, ...(formerly ? { formerly: [`${formerly}-max-rate`] } : {}) },
  };
}
