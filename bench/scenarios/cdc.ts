/**
 * The CDC relay end to end, twice on the same load: events as outbox table
 * rows, and table-less as logical decoding messages in the WAL.
 */
import { relayModeInfo } from '../../src/relay/modes.js';
import { runPipeline } from '../harness/pipeline.js';
import { repeatRun, type RepeatedRun } from '../harness/repeat.js';
import type { Scenario } from '../scenario.js';
import { DRIVERS } from '../drivers/index.js';
import { relaysForWorkload } from '../harness/sql-workload.js';

/** The modes compared, each with the store its writers use. */
const MODES = ['cdc', 'cdc-message'] as const;

export const cdc: Scenario = {
  name: 'cdc',
  takesWorkload: true,
  description: 'CDC relay (logical replication, pgoutput): outbox table and table-less WAL messages',
  defaults: { relayMode: 'cdc' },
  async run(context) {
    const results: RepeatedRun[] = [];
    for (const mode of relaysForWorkload(MODES, context.parameters.workload)) {
      results.push(
        await repeatRun(mode, context.repeats, (attempt) =>
          runPipeline(
            { infra: context.infra, log: context.log, name: mode, rawDir: `${context.outDir}/raw/${mode}/run-${attempt + 1}`, quiet: context.quiet, driver: DRIVERS.ours },
            { ...context.parameters, relayMode: mode, store: relayModeInfo(mode).store },
          ),
        ),
      );
    }
    return {
      title: 'CDC relay: outbox table vs table-less WAL messages',
      runs: results.map((r) => r.summary),
      lines: results.flatMap((r) => r.lines),
    };
  },
};
