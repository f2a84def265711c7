/**
 * Every scenario, in the order `all` runs them and results/README.md shows them.
 */
import type { Scenario } from './scenario.js';
import { bigTransaction } from './scenarios/big-transaction.js';
import { cdc } from './scenarios/cdc.js';
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
