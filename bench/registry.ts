/**
 * Every scenario, in the order `all` runs them and results/README.md shows
 * them; then the crash matrix's rows, which run on servers of their own.
 */
import type { AnyScenario, Scenario } from './scenario.js';
import { bigTransaction } from './scenarios/big-transaction.js';
import { cdc } from './scenarios/cdc.js';
import { CHAOS_ROWS } from './scenarios/chaos.js';
import { cleanup } from './scenarios/cleanup.js';
import { drain } from './scenarios/drain.js';
import { fastestPath } from './scenarios/fastest-path.js';
import { http } from './scenarios/http.js';
import { micro } from './scenarios/micro.js';
import { outage } from './scenarios/outage.js';
import { peers } from './scenarios/peers.js';
import { saturation } from './scenarios/saturation.js';
import { quick } from './scenarios/quick.js';
import { SWEEPS } from './scenarios/sweeps.js';
import { writeCost } from './scenarios/write-cost.js';
import { polling, skipLocked } from './scenarios/table-relays.js';

export const SCENARIOS: readonly Scenario[] = Object.freeze([polling, skipLocked, cdc, writeCost, saturation, fastestPath, drain, http, micro, cleanup, peers, bigTransaction, outage, quick, ...SWEEPS]);

/** What the runner can run by name. */
export const RUNNER_SCENARIOS: readonly AnyScenario[] = Object.freeze([...SCENARIOS, ...CHAOS_ROWS]);
