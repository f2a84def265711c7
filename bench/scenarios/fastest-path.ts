/**
 * Toward 100K events/s: the fastest path (batched intake + CDC), each change
 * found by profiling measured against the baseline in the same run, on the
 * same backlog. The backlog drain isolates what the relay and the consumer
 * can move; the intake is measured separately (its rate is in the table).
 */
import { createSql } from '../../src/db.js';
import { silentLogger } from '../../src/log.js';
import { prepareSlot, slotLagBytes } from '../../src/relay/cdc.js';
import { runPipeline, type PipelineParameters } from '../harness/pipeline.js';
import { summarizeRun } from '../harness/summary.js';
import type { Scenario, ScenarioContext } from '../scenario.js';
import { dropIdleSlots } from '../../src/relay/slot.js';

const SLOT = 'bench_fastest_slot';
const PUBLICATION = 'bench_fastest_pub';

interface Variant {
  name: string;
  change: string;
  parameters: Partial<PipelineParameters>;
}

const VARIANTS: Variant[] = [
  {
    name: 'baseline',
    change: '10 orders per transaction; one idempotent producer; offsets committed after every batch; 1000 events per Kafka request',
    parameters: { ordersPerTransaction: 10, publishers: 1, consumerCommitIntervalMs: 100, batchSize: 1_000 },
  },
  { name: '+batched intake', change: '1000 orders per transaction (one statement, unnest)', parameters: { ordersPerTransaction: 1_000, publishers: 1, consumerCommitIntervalMs: 100, batchSize: 1_000 } },
  { name: '+4 producers', change: 'the relay publishes through 4 producers in parallel, each aggregate always on the same one', parameters: { ordersPerTransaction: 1_000, publishers: 4, consumerCommitIntervalMs: 100, batchSize: 1_000 } },
  { name: '+offsets every 250 ms', change: 'the consumer commits offsets at most every 250 ms (the inbox absorbs the larger replay)', parameters: { ordersPerTransaction: 1_000, publishers: 4, consumerCommitIntervalMs: 250, batchSize: 1_000 } },
  { name: '+5000 per request', change: 'the relay hands Kafka up to 5000 events per request', parameters: { ordersPerTransaction: 1_000, publishers: 4, consumerCommitIntervalMs: 250, batchSize: 5_000 } },
];

async function dropSlot(context: ScenarioContext): Promise<void> {
  const sql = createSql(context.infra.databaseUrl, 'public', { max: 1 });
  try {
    await dropIdleSlots(sql, { name: SLOT });
    await sql.unsafe(`DROP PUBLICATION IF EXISTS ${PUBLICATION}`);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

export const fastestPath: Scenario = {
  name: 'fastest-path',
  description: 'batched intake + CDC: each optimisation against the baseline, same backlog, same run',
  defaults: { relayMode: 'cdc', store: 'table', drainTimeoutS: 60 },
  flags: {
    'path-backlog': { description: 'events pre-loaded for each variant', defaultValue: 200_000, min: 1_000, max: 10_000_000 },
  },
  async run(context) {
    const backlog = context.option('path-backlog');
    const runs = [];
    const lines = ['fastest path: batched intake (1000 orders per transaction) + CDC relay, backlog drained by relay and consumer'];
    for (const variant of VARIANTS) {
      await dropSlot(context);
      const durationS = Math.max(1, Math.ceil(backlog / 50_000));
      const result = await runPipeline(
        {
          infra: context.infra,
          log: context.log,
          name: `fastest-${variant.name.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '').toLowerCase()}`,
          rawDir: `${context.outDir}/raw/${variant.name.replace(/[^a-z0-9]+/gi, '-')}`,
          quiet: context.quiet,
          lag: async (sql) => ({ events: null, bytes: await slotLagBytes(sql, SLOT) }),
          relayEnv: { OUTBOX_BENCH_SLOT: SLOT, OUTBOX_BENCH_PUBLICATION: PUBLICATION },
          beforeLoad: async (sql, schema) => prepareSlot({ sql, schema, slotName: SLOT, publicationName: PUBLICATION, recreateSlot: true }, silentLogger),
        },
        { ...context.parameters, ...variant.parameters, rate: backlog / durationS, warmupS: 0, durationS, relayAfterLoad: true },
      );
      const summary = summarizeRun(variant.name, result);
      runs.push({ ...summary, change: variant.change, intakeEventsPerSec: result.committedPerSec });
      lines.push(
        `  ${variant.name.padEnd(24)} intake ${String(result.committedPerSec).padStart(6)} events/s, drain ${String(result.drain?.eventsPerSec ?? 0).padStart(6)} events/s from 10% to 90% ` +
          `(first event after ${result.drain?.timeToFirstEventS ?? '?'} s, all ${result.drain?.backlog ?? 0} in ${result.drain?.seconds ?? '?'} s); ` +
          `drain CPU s per 1M (10%-90%): ${Object.entries(summary.cpuSecondsPerMillion).map(([k, v]) => `${k} ${v ?? 'n/a'}`).join(', ')}; lost ${result.lost}`,
      );
    }
    await dropSlot(context);
    return { title: 'Toward 100K events/s: the fastest path, change by change', runs, lines };
  },
};
