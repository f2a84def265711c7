/**
 * Kafka down under load, scaled down (the published run keeps it down for a
 * minute and for ten; `npm run bench:outage`): the CDC relay's confirmed
 * position, sampled every 100 ms, is never ahead of what Kafka acknowledged
 * (checked against an independent record of every commit and every append),
 * nothing is lost, and the relay catches up without a restart.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { confirmationsAheadOfKafka, outageFailures, runOutage } from '../bench/scenarios/outage.js';
import type { ScenarioContext } from '../bench/scenario.js';
import type { PipelineParameters } from '../bench/harness/pipeline.js';
import { resolveConfig } from '../src/config.js';
import { acquireInfra, LocalKafka } from '../src/infra/index.js';
import { freePort, log, scratchDir, startRetryingBind, testParameters } from './helpers.js';

const PARAMETERS: PipelineParameters = testParameters({ relayMode: 'cdc', rate: 500, warmupS: 0, durationS: 10, ordersPerTransaction: 10, seed: 5 });

describe('Kafka outage under load', () => {
  it('judges a confirmed position by when it was read: ahead only if a transaction it covers reached Kafka after that', () => {
    // Two transactions ending at 0/100 and 0/200; the second one's last event was appended at 2,050 ms.
    const commits = [
      { endLsn: 0x100n, eventIds: ['a1', 'a2'] },
      { endLsn: 0x200n, eventIds: ['b1', 'b2'] },
    ];
    const appended = new Map([['a1', 1_000], ['a2', 1_010], ['b1', 2_000], ['b2', 2_050]]);
    const samples = [
      { confirmedLsn: null, readAt: 900 },
      { confirmedLsn: '0/100', readAt: 1_010 },
      // Confirms the second transaction, read after its last append: not ahead.
      { confirmedLsn: '0/200', readAt: 2_051 },
      // Confirms it too, but read 30 ms before its last event reached Kafka: ahead.
      { confirmedLsn: '0/200', readAt: 2_020 },
      // Between the two transactions: covers only the first.
      { confirmedLsn: '0/1FF', readAt: 1_500 },
    ];
    assert.deepEqual(confirmationsAheadOfKafka(commits, appended, samples), { confirmedSamples: 4, ahead: 1, aheadByMs: 30 });
    assert.deepEqual(confirmationsAheadOfKafka(commits, appended, samples.slice(0, 3)), { confirmedSamples: 2, ahead: 0, aheadByMs: null });
  });

  it('never confirms past what Kafka acknowledged, loses nothing, and catches up without a restart', async (t) => {
    const servers = await acquireInfra({ config: resolveConfig(), log });
    t.after(() => servers.release());
    // A broker of its own: this test kills it.
    const config = resolveConfig({ env: {}, overrides: { kafkaPort: await freePort(), kafkaControllerPort: await freePort(), dataDir: await scratchDir(), kafkaHeapMb: 256 } });
    const broker = new LocalKafka({ config, log });
    await startRetryingBind(() => broker.start());
    t.after(() => broker.stop('kill'));
    const context = {
      config,
      infra: { ...servers, kafkaBrokers: broker.brokers, kafka: broker },
      log,
      parameters: PARAMETERS,
      outDir: await scratchDir(),
      quiet: true,
      repeats: 1,
      option: () => 0,
      list: (_name: string, fallback: string[]) => fallback,
    } satisfies ScenarioContext;
    const result = await runOutage(context, 5, 400, 4);
    assert.deepEqual(outageFailures(result), []);
    assert.ok(result.confirmedSamples > 50, `${result.confirmedSamples} samples`);
    assert.equal(result.confirmedAheadOfKafka, 0);
    assert.equal(result.delivered, result.committed, 'every committed event reached Kafka');
    assert.ok((result.retainedWalMiB.atStart ?? 0) > (result.retainedWalMiB.atStop ?? 0), `the slot held the WAL written while Kafka was down: ${JSON.stringify(result.retainedWalMiB)}`);
    assert.ok(result.outboxRows.atStart > result.outboxRows.atStop, 'the writers went on committing');
    assert.ok(result.catchUpS !== null, 'it caught up');
  });
});
