/**
 * The polling relay at its classic 500 ms interval, end to end.
 */
import { outboxBacklog } from '../../src/queries.js';
import { describeResult } from '../harness/format.js';
import { runPipeline } from '../harness/pipeline.js';
import type { Scenario } from '../scenario.js';

export const polling: Scenario = {
  name: 'polling',
  description: 'polling relay (500 ms interval) on the outbox table',
  defaults: { relayMode: 'polling', store: 'table', pollIntervalMs: 500 },
  async run(context) {
    const result = await runPipeline(
      {
        infra: context.infra,
        log: context.log,
        name: 'polling',
        rawDir: `${context.outDir}/raw`,
        quiet: context.quiet,
        lag: async (sql) => ({ events: (await outboxBacklog(sql)).unpublished, bytes: null }),
      },
      context.parameters,
    );
    return {
      title: describeResult('polling', result)[0]!,
      variants: { polling: result },
      lines: describeResult('polling', result),
      histograms: { 'polling-e2e': result.histograms.e2e, 'polling-commit-to-receipt': result.histograms.commitToReceipt, 'polling-write': result.histograms.write },
    };
  },
};
