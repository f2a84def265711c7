/**
 * The table relays end to end: polling at its classic 500 ms interval, and
 * SKIP LOCKED replicas owning aggregate buckets. One shape, two scenarios.
 */
import { outboxBacklog } from '../../src/queries.js';
import { describeResult } from '../harness/format.js';
import { runPipeline, type PipelineParameters } from '../harness/pipeline.js';
import { summarizeRun } from '../harness/summary.js';
import type { Scenario } from '../scenario.js';

function tableRelayScenario(name: string, description: string, defaults: Partial<PipelineParameters>): Scenario {
  return {
    name,
    description,
    defaults,
    async run(context) {
      const result = await runPipeline(
        {
          infra: context.infra,
          log: context.log,
          name,
          rawDir: `${context.outDir}/raw`,
          quiet: context.quiet,
          lag: async (sql) => ({ events: (await outboxBacklog(sql)).unpublished, bytes: null }),
        },
        context.parameters,
      );
      const lines = describeResult(name, result);
      return { title: lines[0]!, runs: [summarizeRun(name, result)], lines };
    },
  };
}

export const polling = tableRelayScenario('polling', 'polling relay (500 ms interval) on the outbox table', {
  relayMode: 'polling',
  store: 'table',
  pollIntervalMs: 500,
});

export const skipLocked = tableRelayScenario('skip-locked', 'SKIP LOCKED relay replicas (3 by default) owning aggregate buckets', {
  relayMode: 'skip-locked',
  store: 'table',
  replicas: 3,
});
