/**
 * The benchmark harness measures what it says it does. Latency runs from
 * each order's intended send time to the consumer, so a consumer that stops
 * for a while must show up in the tail, and the same run without the stall
 * must not; both runs account for every event.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runPipeline, type PipelineParameters } from '../bench/harness/pipeline.js';
import { resolveConfig } from '../src/config.js';
import { acquireInfra } from '../src/infra/index.js';
import { outboxBacklog } from '../src/queries.js';
import { log, scratchDir, uniqueName } from './helpers.js';

// A light load with a short poll interval: the healthy tail stays far below
// the stall, so the two runs cannot be confused on a busy 2-core machine.
const PARAMETERS: PipelineParameters = {
  relayMode: 'polling',
  store: 'table',
  rate: 200,
  warmupS: 1,
  durationS: 6,
  workers: 1,
  connectionsPerWorker: 4,
  ordersPerTransaction: 1,
  payloadBytes: 128,
  eventsPerAggregate: 1,
  keySpace: 100,
  hotKeyShare: 0,
  hotKeys: 1,
  partitions: 3,
  batchSize: 500,
  pollIntervalMs: 100,
  replicas: 1,
  publishers: 1,
  consumerCommitIntervalMs: 0,
  drainTimeoutS: 30,
  seed: 7,
};

const STALL_MS = 2_500;

describe('benchmark harness', () => {
  it('shows a deliberately stalled consumer in the latency tail, and nothing in a run without the stall', async (t) => {
    const config = resolveConfig();
    assert.ok(config.databaseUrl && config.kafkaBrokers, 'npm test provides the servers');
    const infra = await acquireInfra({ config, log });
    t.after(() => infra.release());
    const context = async (name: string) => ({
      infra,
      log,
      name: uniqueName(name),
      rawDir: await scratchDir(t),
      quiet: true,
      lag: async (sql: Parameters<typeof outboxBacklog>[0]) => ({ events: (await outboxBacklog(sql)).unpublished, bytes: null }),
    });

    const healthy = await runPipeline(await context('harness_healthy'), PARAMETERS);
    const stalled = await runPipeline(await context('harness_stalled'), { ...PARAMETERS, stallConsumerMs: STALL_MS });

    for (const run of [healthy, stalled]) {
      assert.equal(run.lost, 0, 'every committed event arrived');
      assert.equal(run.sent, run.delivered, 'and was counted');
      assert.equal(run.duplicates, 0, 'without a crash nothing is delivered twice');
    }
    assert.ok(healthy.e2eMs.p99 < 1_000, `the healthy run's p99 is ${healthy.e2eMs.p99} ms`);
    // Events due during the stall wait for the rest of it: the worst waits
    // (almost) the whole stall, and with ~40% of the window stalled the p99
    // is deep inside it.
    assert.ok(stalled.e2eMs.max >= STALL_MS - 200, `the stalled run's max is ${stalled.e2eMs.max} ms`);
    assert.ok(stalled.e2eMs.p99 >= STALL_MS / 2, `the stalled run's p99 is ${stalled.e2eMs.p99} ms`);
  });
});
