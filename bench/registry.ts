/**
 * Every scenario, in the order `all` runs them.
 */
import type { Scenario } from './scenario.js';
import { cdc } from './scenarios/cdc.js';
import { polling, skipLocked } from './scenarios/table-relays.js';

export const SCENARIOS: readonly Scenario[] = Object.freeze([polling, skipLocked, cdc]);
