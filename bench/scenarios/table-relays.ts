/**
 * The table relays end to end: polling at its classic 500 ms interval, and
 * SKIP LOCKED replicas owning aggregate buckets. One shape, two scenarios.
 */
import { runPipeline, type PipelineParameters } from '../harness/pipeline.js';
import { repeatRun } from '../harness/repeat.js';
import type { Scenario } from '../scenario.js';
import { DRIVERS } from '../drivers/index.js';

function tableRelayScenario(name: string, description: string, defaults: Partial<PipelineParameters>): Scenario {
  return {
    name,
    description,
    defaults,
    takesWorkload: true,
    async run(context) {
      const { summary, lines } = await repeatRun(name, context.repeats, (attempt) =>
        runPipeline(
          {
            infra: context.infra,
            log: context.log,
            name,
            rawDir: `${context.outDir}/raw/run-${attempt + 1}`,
            quiet: context.quiet,
            driver: DRIVERS.ours,
          },
          context.parameters,
        ),
      );
      return { title: lines[0]!.replace(/ \[run 1\/\d+\]$/, ''), runs: [summary], lines };
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
