/**
 * SKIP LOCKED relay replicas (bucketed, per-aggregate order kept), end to end.
 */
import { outboxBacklog } from '../../src/queries.js';
import { describeResult } from '../harness/format.js';
import { runPipeline } from '../harness/pipeline.js';
import type { Scenario } from '../scenario.js';

export const skipLocked: Scenario = {
  name: 'skip-locked',
  description: 'SKIP LOCKED relay replicas (3 by default) owning aggregate buckets',
  defaults: { relayMode: 'skip-locked', store: 'table', replicas: 3 },
  async run(context) {
    const result = await runPipeline(
      {
        infra: context.infra,
        log: context.log,
        name: 'skip-locked',
        rawDir: `${context.outDir}/raw`,
        quiet: context.quiet,
        lag: async (sql) => ({ events: (await outboxBacklog(sql)).unpublished, bytes: null }),
      },
      context.parameters,
    );
    return {
      title: describeResult('skip-locked', result)[0]!,
      variants: { 'skip-locked': result },
      lines: describeResult('skip-locked', result),
      histograms: { 'skip-locked-e2e': result.histograms.e2e, 'skip-locked-commit-to-receipt': result.histograms.commitToReceipt, 'skip-locked-write': result.histograms.write },
    };
  },
};
