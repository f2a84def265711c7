/**
 * The one shape every benchmark scenario has, and what it is given.
 */
import type { Config } from '../src/config.js';
import type { Infra } from '../src/infra/index.js';
import type { Logger } from '../src/log.js';
import type { PipelineParameters } from './harness/pipeline.js';

export interface ScenarioContext {
  config: Config;
  infra: Infra;
  log: Logger;
  /** Parameters after defaults and command-line overrides. */
  parameters: PipelineParameters;
  /** results/<scenario>/ */
  outDir: string;
  quiet: boolean;
}

/** What a scenario reports; written to results/<scenario>/summary.json. */
export interface ScenarioReport {
  /** One-line description of what was measured. */
  title: string;
  /** Named results (one per variant: "table", "message" ...). */
  variants: Record<string, unknown>;
  /** Human-readable lines printed after the run. */
  lines: string[];
  /** Raw histograms to write as <name>.hgrm. */
  histograms?: Record<string, string>;
}

export interface Scenario {
  name: string;
  description: string;
  /** Defaults that finish the scenario in about a minute on 2 cores. */
  defaults: Partial<PipelineParameters>;
  setup?(context: ScenarioContext): Promise<void>;
  run(context: ScenarioContext): Promise<ScenarioReport>;
  teardown?(context: ScenarioContext): Promise<void>;
}
