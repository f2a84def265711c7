/**
 * The one shape every benchmark scenario has, and what it is given. Most
 * run on servers the runner starts once for the sitting; the crash matrix's
 * rows kill theirs, so they say they need servers of their own.
 */
import type { Config } from '../src/config.js';
import type { Infra } from '../src/infra/index.js';
import type { Logger } from '../src/log.js';
import type { PipelineContext, PipelineParameters } from './harness/pipeline.js';
import type { RunSummary } from './harness/summary.js';
import type { FlagSpec, FlagSpecs } from './flags.js';
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
  /** A number flag this scenario declared (its value or default); a yes/no flag reads 1 or 0 (see `yes`). */
  option(name: string): number;
  /** A list flag, or the fallback when it was not given. */
  list(name: string, fallback: string[]): string[];
}

/** A yes/no flag the scenario declared. */
export function yes(context: Pick<ScenarioContext, 'option'>, name: string): boolean {
  return context.option(name) === 1;
}

/** A flag a scenario reads: a number, a list, yes/no or a name (bench/flags.ts). */
export type ScenarioFlag = FlagSpec;

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
  /**
   * Called once the summary is written (a comparison's journal of completed
   * rounds is deleted then, not before: until the results are on disk a
   * stopped run can still resume).
   */
  afterWrite?(): void;
}

export interface Scenario {
  name: string;
  description: string;
  /** Defaults that finish the scenario in about a minute on 2 cores. */
  defaults: Partial<PipelineParameters>;
  /** Runs on the sitting's shared servers (the default). */
  servers?: 'shared';
  /** Flags of its own, beyond the pipeline parameters. */
  flags?: FlagSpecs;
  /** Left out of `all` (runs for a long time); run it by name. */
  standalone?: boolean;
  /** Its load can be the user's own transaction (`--workload sql:<file>`); the runner refuses the flag for the others. */
  takesWorkload?: boolean;
  /**
   * Refuses, before any server starts, flag values that each pass their own
   * check but not together (an anchor among the relays drained, say); the
   * runner calls it with the flags and parameters as the run will read them.
   */
  checkFlags?(flags: FlagReader, parameters: PipelineParameters): void;
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

/** A scenario's flags, read as its run reads them. */
export interface FlagReader {
  option(name: string): number;
  list(name: string, fallback: string[]): string[];
}

/** What a scenario on servers of its own is given: no servers, and where results go. */
export interface OwnServersContext {
  config: Config;
  log: Logger;
  /** The results folder (results/); the group picks its own folder inside. */
  outRoot: string;
  option(name: string): number;
  list(name: string, fallback: string[]): string[];
  /** Whether the flag was given (a soak changes other flags' defaults). */
  given(name: string): boolean;
  /** Runs at the end of the sitting, also on Ctrl-C, newest first. */
  atExit(name: string, stop: () => Promise<void>): void;
}

/**
 * Scenarios on servers of their own that are published together: the crash
 * matrix's rows share servers of each kind within a sitting and one summary.
 */
export interface ScenarioGroup {
  name: string;
  description: string;
  /** Every member reads these. */
  flags: FlagSpecs;
  /** The members the group's name alone selects, given the flags (a soak takes only the rows it can repeat). */
  members(context: Pick<OwnServersContext, 'given'>): readonly OwnServersScenario[];
  /** Refuses a selection the flags make impossible, before anything starts. */
  check?(members: readonly OwnServersScenario[], context: Pick<OwnServersContext, 'given'>): void;
  open(context: OwnServersContext): Promise<GroupSitting>;
}

/** One sitting of a group: its members run one by one, then one summary. */
export interface GroupSitting {
  run(member: OwnServersScenario): Promise<void>;
  /** Writes the group's summary; the members that failed. */
  publish(): Promise<string[]>;
}

export interface OwnServersScenario {
  name: string;
  description: string;
  /** It starts, kills and stops servers of its own; the runner starts none for it. */
  servers: 'own';
  group: ScenarioGroup;
  /** Left out of `all`. */
  standalone: true;
}

/** Every entry of the runner's registry. */
export type AnyScenario = Scenario | OwnServersScenario;
