/**
 * Every scenario, by name, in the order `all` runs them and results/README.md
 * shows them; then the crash matrix's rows, which run on servers of their own.
 * A new scenario is its file, its name here and one line in the record.
 */
import type { AnyScenario, Scenario } from './scenario.js';
import { bigTransaction } from './scenarios/big-transaction.js';
import { cdc } from './scenarios/cdc.js';
import { CHAOS_ROWS } from './scenarios/chaos.js';
import { cleanup } from './scenarios/cleanup.js';
import { drain } from './scenarios/drain.js';
import { fastestPath } from './scenarios/fastest-path.js';
import { frontier } from './scenarios/frontier.js';
import { http } from './scenarios/http.js';
import { loadCost } from './scenarios/load-cost.js';
import { micro } from './scenarios/micro.js';
import { outage } from './scenarios/outage.js';
import { peers } from './scenarios/peers.js';
import { saturation } from './scenarios/saturation.js';
import { quick } from './scenarios/quick.js';
import { sweep } from './scenarios/sweeps.js';
import { writeCost } from './scenarios/write-cost.js';
import { polling, skipLocked } from './scenarios/table-relays.js';

export const SCENARIO_NAMES = [
  'polling',
  'skip-locked',
  'cdc',
  'write-cost',
  'load-cost',
  'saturation',
  'fastest-path',
  'drain',
  'http',
  'micro',
  'cleanup',
  'peers',
  'frontier',
  'big-transaction',
  'outage',
  'quick',
  'sweep-payload',
  'sweep-tx-size',
  'sweep-hot-keys',
  'sweep-partitions',
] as const;
export type ScenarioName = (typeof SCENARIO_NAMES)[number];

export const SCENARIO_REGISTRY = {
  polling,
  'skip-locked': skipLocked,
  cdc,
  'write-cost': writeCost,
  'load-cost': loadCost,
  saturation,
  'fastest-path': fastestPath,
  drain,
  http,
  micro,
  cleanup,
  peers,
  frontier,
  'big-transaction': bigTransaction,
  outage,
  quick,
  'sweep-payload': sweep('payload'),
  'sweep-tx-size': sweep('tx-size'),
  'sweep-hot-keys': sweep('hot-keys'),
  'sweep-partitions': sweep('partitions'),
} as const satisfies Record<ScenarioName, Scenario>;

/** The scenarios in their order. */
export const SCENARIOS: readonly Scenario[] = Object.freeze(SCENARIO_NAMES.map((name) => SCENARIO_REGISTRY[name]));

/** What the runner can run by name. */
export const RUNNER_SCENARIOS: readonly AnyScenario[] = Object.freeze([...SCENARIOS, ...CHAOS_ROWS]);
