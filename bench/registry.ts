/**
 * Every scenario, in the order `all` runs them.
 */
import type { Scenario } from './scenario.js';
import { polling } from './scenarios/polling.js';

export const SCENARIOS: readonly Scenario[] = Object.freeze([polling]);
