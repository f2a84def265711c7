/**
 * The one benchmark runner: reads the command line from the scenarios'
 * specs, starts the shared servers once if any named scenario runs on them,
 * runs each scenario (and each group of scenarios on servers of their own),
 * writes results/<scenario>/summary.json plus raw histograms (.hgrm), and
 * refreshes results/README.md (not when every scenario failed: then results/
 * stays as it was).
 */
import { existsSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT, resolveConfig, type Config } from '../../src/config.js';
import { versionText } from '../../src/command-kit.js';
import { createSql } from '../../src/db.js';
import { describeError, EXIT, exitCodeFor, isOutboxBenchError, OutboxBenchError } from '../../src/errors.js';
import { acquireInfra, type Infra } from '../../src/infra/index.js';
import { shownPath } from '../harness/environment.js';
import { decodeHistogram, percentileDistribution } from '../../src/latency.js';
import { ShutdownStack, installSignalHandlers } from '../../src/lifecycle.js';
import { createLogger, type Logger } from '../../src/log.js';
import type { FlagValue } from '../flags.js';
import { assertCleanTree, assertFullKafkaJit, captureEnvironment, measureCpu, runningKafkaJit, type Environment } from '../harness/environment.js';
import { stopRunsInProgress } from '../harness/pipeline.js';
import { buildReport } from '../report.js';
import { SCENARIOS } from '../registry.js';
import type { OwnServersContext, Scenario, ScenarioContext, ScenarioReport } from '../scenario.js';
import { parseCommand, type Command, type ResolvedFlags } from './command.js';
import { help } from './help.js';
import { pipelineParameters } from './parameters.js';

/** What a sitting shares: its settings, logger, shutdown and results folder. */
interface Sitting {
  argv: readonly string[];
  command: Command;
  config: Config;
  log: Logger;
  shutdown: ShutdownStack;
  outRoot: string;
}

/** Reads the flags a scenario declared, by their current names (the parser has already mapped former ones). */
function flagReader(flags: ResolvedFlags, owner: string) {
  const current = (name: string): string => {
    if (!(name in flags.specs)) throw new Error(`${owner} reads --${name}, which it does not declare`);
    return name;
  };
  const value = (name: string): FlagValue | undefined => flags.values.get(current(name));
  return {
    // Scenarios read a yes/no flag as 1 or 0 through the same call (scenario.ts: yes()).
    option: (name: string) => {
      const read = value(name);
      return typeof read === 'boolean' ? Number(read) : (read as number);
    },
    list: (name: string, fallback: string[]) => (value(name) as string[] | undefined) ?? fallback,
    given: (name: string) => flags.given.has(current(name)),
  };
}

function writeSummary(sitting: Sitting, scenario: Scenario, context: ScenarioContext, report: ScenarioReport, environment: Environment): void {
  const rest = sitting.argv.filter((a) => !sitting.command.names.includes(a) && a !== 'all');
  const summary = {
    scenario: scenario.name,
    title: report.title,
    date: new Date().toISOString(),
    command: `node dist/bench/run.js ${scenario.name}${rest.map((a) => ` ${a}`).join('')}`,
    parameters: context.parameters,
    runs: report.runs,
    ...(report.extra ? { extra: report.extra } : {}),
    environment,
  };
  writeFileSync(path.join(context.outDir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  for (const run of report.runs) {
    for (const key of Object.keys(run.hgrm) as (keyof typeof run.hgrm)[]) {
      writeFileSync(path.join(context.outDir, run.hgrm[key]), percentileDistribution(decodeHistogram(run.histograms[key])));
    }
  }
}

async function sharedServers(sitting: Sitting): Promise<{ infra: Infra; environment: Environment }> {
  // Read before the servers start: a broker's JVM compiles for a while after its start.
  const cpuProbe = measureCpu();
  process.stderr.write('bench: starting PostgreSQL and Kafka (or using the configured ones)...\n');
  const infra = await acquireInfra({ config: sitting.config, log: sitting.log });
  sitting.shutdown.add('servers', () => infra.release());
  if (runningKafkaJit(infra) === 'quick-start') {
    throw new OutboxBenchError('USAGE', 'the local broker left running (infra up) runs with the quick-start JIT, for tests: stop it (npm run infra:down) and benchmark a broker with its full JIT');
  }
  // Newest first: a run's processes stop before the servers they use.
  sitting.shutdown.add('benchmark runs', stopRunsInProgress);
  const probe = createSql(infra.databaseUrl, 'public', { max: 1 });
  const environment = await captureEnvironment(probe, sitting.config, infra, cpuProbe);
  await probe.end({ timeout: 5 });
  return { infra, environment };
}

/** Removes a folder if it is empty; one with anything in it stays. */
function rmEmptyDir(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // Not empty (or gone): left as it is.
  }
}

/** What a sitting's scenarios did: how many failed, and how many wrote a summary. */
interface Outcome {
  failures: number;
  written: number;
}

/** The scenarios on the shared servers, one by one. */
async function runShared(sitting: Sitting): Promise<Outcome> {
  const { infra, environment } = await sharedServers(sitting);
  let failures = 0;
  let written = 0;
  for (const { scenario, flags } of sitting.command.shared) {
    const outDir = path.join(sitting.outRoot, scenario.name);
    const existed = existsSync(outDir);
    mkdirSync(outDir, { recursive: true });
    const { option, list } = flagReader(flags, scenario.name);
    const context: ScenarioContext = {
      config: sitting.config,
      infra,
      log: sitting.log,
      parameters: pipelineParameters(scenario, flags.values, flags.given),
      outDir,
      quiet: process.env.CI === 'true',
      repeats: option('repeats'),
      option,
      list,
    };
    process.stderr.write(`bench: ${scenario.name}: ${scenario.description}\n`);
    try {
      await scenario.setup?.(context);
      const report = await scenario.run(context);
      await scenario.teardown?.(context);
      writeSummary(sitting, scenario, context, report, environment);
      written += 1;
      report.afterWrite?.();
      process.stdout.write(`${report.lines.join('\n')}\n  results: ${shownPath(outDir)}\n\n`);
      if (report.failed && report.failed.length > 0) {
        failures += 1;
        process.stderr.write(`bench: ${scenario.name}: written without ${report.failed.length} part(s) that failed:\n${report.failed.map((f) => `  ${f}`).join('\n')}\n`);
      }
    } catch (error) {
      // A workload script its dry run refused would fail every scenario after it the same way.
      if (isOutboxBenchError(error, 'WORKLOAD_INVALID')) throw error;
      failures += 1;
      process.stderr.write(`bench: ${scenario.name} failed: ${describeError(error)}\n`);
      // Its folder, made for it just now, goes again if the scenario wrote nothing into it.
      if (!existed) rmEmptyDir(outDir);
    }
  }
  return { failures, written };
}

/** Each group on servers of its own: its members one by one, then its one summary (rows not as expected are failures, and published). */
async function runGroups(sitting: Sitting): Promise<Outcome> {
  let failures = 0;
  for (const { group, members, flags } of sitting.command.groups) {
    const context: OwnServersContext = {
      config: sitting.config,
      log: sitting.log,
      outRoot: sitting.outRoot,
      ...flagReader(flags, group.name),
      atExit: (name, stop) => sitting.shutdown.add(name, stop),
    };
    const groupSitting = await group.open(context);
    for (const member of members) await groupSitting.run(member);
    const failed = await groupSitting.publish();
    if (failed.length > 0) process.stderr.write(`bench: ${group.name}: ${failed.length} row(s) not as expected: ${failed.join(', ')}\n`);
    failures += failed.length;
  }
  return { failures, written: sitting.command.groups.length };
}

/** The checks that refuse a sitting before anything starts. */
function refuse(command: Command): void {
  const config = resolveConfig();
  // Scenarios on servers of their own always start brokers of their own, whatever KAFKA_BROKERS says.
  if (command.shared.length > 0) assertFullKafkaJit(config);
  if (command.groups.length > 0) assertFullKafkaJit({ kafkaJit: config.kafkaJit, kafkaBrokers: undefined });
  assertCleanTree(command.runner.values.get('allow-dirty') === true);
  // Reads and parses a --workload script: one that cannot be is refused before any server starts, as is
  // one given to a scenario whose load it cannot replace.
  for (const { scenario, flags } of command.shared) {
    const parameters = pipelineParameters(scenario, flags.values, flags.given);
    scenario.checkFlags?.(flagReader(flags, scenario.name), parameters);
    const { workload } = parameters;
    if (workload && !scenario.takesWorkload) {
      throw new OutboxBenchError('USAGE', `${scenario.name} does not take --workload: its load is not one a script can replace (the scenarios that do: ${SCENARIOS.filter((s) => s.takesWorkload).map((s) => s.name).join(', ')})`);
    }
  }
}

/** `node dist/bench/run.js <argv>`: the exit code (0 done, 1 a scenario failed, 2 a usage error). */
export async function runBench(argv: readonly string[]): Promise<number> {
  if (argv.length === 1 && argv[0] === '--version') {
    process.stdout.write(`${versionText('outbox-bench bench')}\n`);
    return 0;
  }
  let command: Command;
  try {
    command = parseCommand(argv);
  } catch (error) {
    process.stderr.write(`bench: ${describeError(error)} (node dist/bench/run.js --help lists the scenarios and their flags)\n`);
    return 2;
  }
  for (const notice of command.notices) process.stderr.write(`bench: ${notice}\n`);
  if (command.help) {
    process.stdout.write(`${help()}\n`);
    return 0;
  }
  try {
    refuse(command);
  } catch (error) {
    process.stderr.write(`bench: ${describeError(error)}\n`);
    return EXIT.USAGE;
  }
  const config = resolveConfig();
  const log = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel, 'bench', config.logFormat);
  const shutdown = new ShutdownStack(log);
  installSignalHandlers(shutdown, log);
  const out = command.runner.values.get('out');
  const sitting: Sitting = { argv, command, config, log, shutdown, outRoot: path.resolve(typeof out === 'string' ? out : path.join(PROJECT_ROOT, 'results')) };
  try {
    const shared = command.shared.length > 0 ? await runShared(sitting) : { failures: 0, written: 0 };
    const groups = await runGroups(sitting);
    const failures = shared.failures + groups.failures;
    // A sitting whose every scenario failed wrote no summary: the results page and its charts stay as they were.
    if (shared.written + groups.written === 0) {
      process.stderr.write(`bench: nothing was measured; ${sitting.outRoot} is left as it was\n`);
      return 1;
    }
    buildReport(sitting.outRoot);
    process.stdout.write(`report: ${shownPath(path.join(sitting.outRoot, 'README.md'))}\n`);
    return failures === 0 ? 0 : 1;
  } catch (error) {
    process.stderr.write(`bench: ${describeError(error)}\n`);
    return exitCodeFor(error);
  } finally {
    await shutdown.run();
  }
}
