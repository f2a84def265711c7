/**
 * The one shape every benchmark scenario has, and what it is given.
 */
import type { Config } from '../src/config.js';
import type { Infra } from '../src/infra/index.js';
import type { Logger } from '../src/log.js';
import type { PipelineContext, PipelineParameters } from './harness/pipeline.js';
import type { RunSummary } from './harness/summary.js';
import type { ReportContext } from './report/kit.js';
import { DRIVERS, type RelayDriver } from './drivers/index.js';

export interface ScenarioContext {
  config: Config;
  infra: Infra;
  log: Logger;
  /** Parameters after defaults and command-line overrides. */
  parameters: PipelineParameters;
  /** results/<scenario>/ */
  outDir: string;
  quiet: boolean;
  /** How many times a scenario that supports it measures each configuration (`--repeats`). */
  repeats: number;
  /** A numeric flag this scenario declared (its value or default). */
  option(name: string): number;
  /** A comma-separated list flag, or the fallback. */
  list(name: string, fallback: string[]): string[];
}

export interface ScenarioFlag {
  description: string;
  defaultValue: number;
  min: number;
  max: number;
}

/** What a scenario reports; written to results/<scenario>/summary.json. */
export interface ScenarioReport {
  /** One-line description of what was measured. */
  title: string;
  /** The pipeline runs it measured (their histograms go to .hgrm files). */
  runs: RunSummary[];
  /** Scenario-specific results (saturation steps, micro-benchmarks, HTTP figures). */
  extra?: object;
  /** Human-readable lines printed after the run. */
  lines: string[];
  /**
   * Parts that failed while the rest was measured and written (a peers
   * sitting's relays): the command then exits non-zero, naming them.
   */
  failed?: string[];
}

export interface Scenario {
  name: string;
  description: string;
  /** Defaults that finish the scenario in about a minute on 2 cores. */
  defaults: Partial<PipelineParameters>;
  /** Numeric flags of its own, beyond the pipeline parameters. */
  flags?: Record<string, ScenarioFlag>;
  /** Left out of `all` (runs for a long time); run it by name. */
  standalone?: boolean;
  setup?(context: ScenarioContext): Promise<void>;
  run(context: ScenarioContext): Promise<ScenarioReport>;
  teardown?(context: ScenarioContext): Promise<void>;
  /**
   * Its section of results/README.md, from the summary in results/<folder>/
   * (the scenario's name, or another folder a run of it was written to);
   * empty when there is nothing current to show.
   */
  report?(context: ReportContext, folder: string): string[];
}

/**
 * A pipeline run named `name` inside a scenario: its servers and logger, raw
 * files under results/<scenario>/raw/<name>, and the relay it measures (our
 * relay, in the parameters' mode, unless given).
 */
export function pipelineContext(context: ScenarioContext, name: string, driver: RelayDriver = DRIVERS.ours): PipelineContext {
  return { infra: context.infra, log: context.log, name, rawDir: `${context.outDir}/raw/${name}`, quiet: context.quiet, config: context.config, driver };
}
