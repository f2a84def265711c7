/**
 * The CDC relay end to end, twice on the same load: events as outbox table
 * rows, and table-less as logical decoding messages in the WAL.
 */
import { createSql } from '../../src/db.js';
import { slotLagBytes } from '../../src/relay/cdc.js';
import { runPipeline } from '../harness/pipeline.js';
import { repeatRun, type RepeatedRun } from '../harness/repeat.js';
import type { Scenario, ScenarioContext } from '../scenario.js';
import { dropIdleSlots } from '../../src/relay/slot.js';

const SLOT = 'bench_cdc_slot';
const PUBLICATION = 'bench_cdc_pub';

/** Each run starts a fresh slot: one left from an earlier run would replay its WAL. */
async function dropSlot(context: ScenarioContext): Promise<void> {
  const sql = createSql(context.infra.databaseUrl, 'public', { max: 1 });
  try {
    await dropIdleSlots(sql, { name: SLOT });
    await sql.unsafe(`DROP PUBLICATION IF EXISTS ${PUBLICATION}`);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

export const cdc: Scenario = {
  name: 'cdc',
  description: 'CDC relay (logical replication, pgoutput): outbox table and table-less WAL messages',
  defaults: { relayMode: 'cdc' },
  async run(context) {
    const results: RepeatedRun[] = [];
    for (const store of ['table', 'message'] as const) {
      const name = store === 'table' ? 'cdc' : 'cdc-message';
      results.push(
        await repeatRun(name, context.repeats, async (attempt) => {
          await dropSlot(context);
          return runPipeline(
            {
              infra: context.infra,
              log: context.log,
              name,
              rawDir: `${context.outDir}/raw/${name}/run-${attempt + 1}`,
              quiet: context.quiet,
              lag: async (sql) => ({ events: null, bytes: await slotLagBytes(sql, SLOT) }),
              relayEnv: { OUTBOX_BENCH_SLOT: SLOT, OUTBOX_BENCH_PUBLICATION: PUBLICATION },
            },
            { ...context.parameters, relayMode: store === 'table' ? 'cdc' : 'cdc-message', store },
          );
        }),
      );
    }
    await dropSlot(context);
    return {
      title: 'CDC relay: outbox table vs table-less WAL messages',
      runs: results.map((r) => r.summary),
      lines: results.flatMap((r) => r.lines),
    };
  },
};
