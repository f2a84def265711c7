/**
 * Per strategy: the highest sustained rate (stepping up, bisecting, then
 * confirming; the rule is in harness/saturation.ts) and the drain of a
 * pre-loaded backlog. Writes are batched (100 orders per transaction by
 * default) so the intake is not what saturates first.
 */
import { createSql } from '../../src/db.js';
import { outboxBacklog } from '../../src/queries.js';
import { prepareSlot, slotLagBytes } from '../../src/relay/cdc.js';
import { silentLogger } from '../../src/log.js';
import type { PipelineContext, PipelineParameters } from '../harness/pipeline.js';
import type { DrainFigures } from '../harness/accounting.js';
import { runDrain, searchSustained, type SearchResult } from '../harness/saturation.js';
import type { Scenario, ScenarioContext } from '../scenario.js';
import { dropIdleSlots } from '../../src/relay/slot.js';

const SLOT = 'bench_saturation_slot';
const PUBLICATION = 'bench_saturation_pub';

interface Strategy {
  name: string;
  parameters: Partial<PipelineParameters>;
  cdc: boolean;
}

const STRATEGIES: Strategy[] = [
  { name: 'polling', parameters: { relayMode: 'polling', store: 'table' }, cdc: false },
  { name: 'skip-locked', parameters: { relayMode: 'skip-locked', store: 'table', replicas: 3 }, cdc: false },
  { name: 'cdc', parameters: { relayMode: 'cdc', store: 'table' }, cdc: true },
  { name: 'cdc-message', parameters: { relayMode: 'cdc-message', store: 'message' }, cdc: true },
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

function pipelineContext(context: ScenarioContext, strategy: Strategy, name: string): PipelineContext {
  return {
    infra: context.infra,
    log: context.log,
    name,
    rawDir: `${context.outDir}/raw/${name}`,
    quiet: context.quiet,
    lag: strategy.cdc
      ? async (sql) => ({ events: null, bytes: await slotLagBytes(sql, SLOT) })
      : async (sql) => ({ events: (await outboxBacklog(sql)).unpublished, bytes: null }),
    ...(strategy.cdc
      ? {
          relayEnv: { OUTBOX_BENCH_SLOT: SLOT, OUTBOX_BENCH_PUBLICATION: PUBLICATION },
          // Drain mode: the slot must exist before the backlog is written, or it would start after it.
          beforeLoad: async (sql, schema) => prepareSlot({ sql, schema, slotName: SLOT, publicationName: PUBLICATION, recreateSlot: true }, silentLogger),
        }
      : {}),
  };
}

export interface StrategySaturation {
  name: string;
  search: SearchResult;
  drain: (DrainFigures & { lost: number; cpuSecondsPerMillion: Record<string, number | null> }) | null;
}

export const saturation: Scenario = {
  name: 'saturation',
  description: 'sustained throughput (step up, then bisect) and backlog drain rate of every strategy',
  defaults: { ordersPerTransaction: 100, warmupS: 5, durationS: 20, drainTimeoutS: 20 },
  flags: {
    'p99-limit-ms': { description: 'a step fails when end-to-end p99 exceeds this', defaultValue: 2_000, min: 1, max: 600_000 },
    'start-rate': { description: 'first rate of the search, events/s', defaultValue: 2_000, min: 100, max: 1_000_000 },
    'max-rate': { description: 'highest rate tried, events/s', defaultValue: 100_000, min: 100, max: 1_000_000 },
    backlog: { description: 'events pre-loaded for the drain measurement', defaultValue: 100_000, min: 1_000, max: 10_000_000 },
  },
  async run(context) {
    const strategies = context.list('strategies', STRATEGIES.map((s) => s.name));
    const unknown = strategies.filter((name) => !STRATEGIES.some((s) => s.name === name));
    if (unknown.length > 0) throw new Error(`--strategies: unknown ${unknown.join(', ')}; known: ${STRATEGIES.map((s) => s.name).join(', ')}`);
    const results: StrategySaturation[] = [];
    const lines: string[] = [];
    for (const strategy of STRATEGIES.filter((s) => strategies.includes(s.name))) {
      const base: PipelineParameters = { ...context.parameters, ...strategy.parameters };
      if (strategy.cdc) await dropSlot(context);
      const search = await searchSustained(
        pipelineContext(context, strategy, strategy.name),
        base,
        { startRate: context.option('start-rate'), maxRate: context.option('max-rate'), growth: 1.6, bisections: 2, p99LimitMs: context.option('p99-limit-ms') },
        (step, stepLines) => {
          const verdict = step.passed ? 'passes' : `fails: ${step.reasons.join('; ')}`;
          process.stderr.write(`${stepLines.slice(0, 4).join('\n')}\n  -> ${verdict}\n`);
        },
      );
      // The drain: the whole backlog is written at full speed first, then the relay is spawned.
      if (strategy.cdc) await dropSlot(context);
      const drained = await runDrain(pipelineContext(context, strategy, `${strategy.name}-drain`), base, context.option('backlog'), 60);
      if (strategy.cdc) await dropSlot(context);
      const drain = drained.drain
        ? { ...drained.drain, lost: drained.lost, cpuSecondsPerMillion: Object.fromEntries(Object.entries(drained.cost).map(([c, v]) => [c, v.cpuSecondsPerMillionEvents])) }
        : null;
      results.push({ name: strategy.name, search, drain });
      lines.push(
        `${strategy.name}: sustained ${search.sustainedRate > 0 ? `${search.sustainedRate} events/s offered (passed twice)` : 'no rate passed twice'}; ` +
          `drain of ${drain?.backlog ?? 0}: first event after ${drain?.timeToFirstEventS ?? '?'} s, ${drain?.eventsPerSec ?? 0} events/s from 10% to 90% ` +
          `(${drained.lost === 0 ? 'nothing lost' : `${drained.lost} LOST`})`,
      );
    }
    return { title: 'Sustained throughput and drain rate per strategy', runs: [], extra: { strategies: results }, lines };
  },
};
