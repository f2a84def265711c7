/**
 * Every relay is a driver that runPipeline runs the same way:
 *  - the registry's peers hand their backlog to the run as the peers
 *    scenario's parameters say (our outbox table, or a table of their own);
 *  - pg-transactional-outbox, in both modes, runs end to end through
 *    runPipeline: the load workers write into its table through the module
 *    its driver names, nothing is lost but what the library itself logged
 *    as skipped, and its evidence comes back;
 *  - a run whose store the driver does not read is refused before anything
 *    starts;
 *  - a scenario's own start (its settings and flags, a spawn-time hook) reaches
 *    our relay's process, and every other relay refuses our settings before
 *    it starts anything;
 *  - the relay-only drain takes another relay by its driver name, its backlog
 *    written through its own write path, timed by Kafka's end offsets as ours,
 *    interleaved with the anchor round by round, each drain between settled
 *    probes; a sitting out of time stops between rounds and resumes in a new one.
 * Debezium's driver needs Kafka Connect's jars from Maven Central: it is
 * measured by `npm run bench:peers`, not here.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DRIVERS } from '../bench/drivers/index.js';
import type { DriverRun } from '../bench/drivers/types.js';
import { dropRelaySlots } from '../bench/drivers/slots.js';
import { driverRunOf, stopRelay } from '../bench/harness/driver-run.js';
import { runPipeline, type PipelineContext } from '../bench/harness/pipeline.js';
import type { StartedRelay } from '../bench/harness/processes.js';
import { openRun } from '../bench/harness/run-setup.js';
import { drain, parseStrategy, type DrainResult } from '../bench/scenarios/drain.js';
import { sittingReport } from '../bench/scenarios/drain/rounds.js';
import type { PipelineParameters } from '../bench/harness/pipeline.js';
import { BASE_PARAMETERS } from '../bench/runner/parameters.js';
import { selectRelays } from '../bench/scenarios/peers.js';
import { resolveConfig } from '../src/config.js';
import { acquireInfra, type Infra } from '../src/infra/index.js';
import { eventually, log, scratchDir, testParameters, uniqueName } from './helpers.js';

async function context(infra: Infra, name: string, driver: PipelineContext['driver']): Promise<PipelineContext> {
  return { infra, log, name: uniqueName(name), rawDir: await scratchDir(), quiet: true, config: resolveConfig(), driver };
}

describe('relay drivers', () => {
  // One acquisition for the file: the servers are the test run's, shared by every test here.
  let infra: Infra;
  before(async () => {
    infra = await acquireInfra({ config: resolveConfig(), log });
  });
  after(() => infra.release());

  it('gives every relay of the peers scenario the store its driver reads', () => {
    for (const relay of selectRelays(['ours', 'debezium', 'ptp', 'debezium-default', 'ptp-polling-batch5', 'ptp-polling-batch10'])) {
      const { backlog } = relay.driver;
      if (backlog.kind !== 'run-store') assert.equal(relay.parameters.store, backlog.store, relay.key);
    }
    assert.equal(DRIVERS['ptp-replication'].backlog.kind, 'own');
    assert.deepEqual(DRIVERS['debezium-latency'].backlog, { kind: 'store', store: 'table' });
  });

  it('refuses a run whose store the driver does not read, before anything starts', async () => {
    await assert.rejects(
      runPipeline(await context(infra, 'driver_store', DRIVERS['ptp-polling']), testParameters({ store: 'table' })),
      (error: Error & { code?: string }) => error.code === 'USAGE' && /reads its events from the ptp store only/.test(error.message),
    );
  });

  it("starts our relay with a scenario's settings and flags, telling the scenario at its spawn, before it is ready", async (t) => {
    const p = testParameters({ relayMode: 'polling' });
    const driver = DRIVERS.ours;
    const run = await openRun({ infra, log, name: uniqueName('driver_start'), partitions: p.partitions, relay: driver.provisioning(p) });
    t.after(() => run.close());
    const rawDir = await scratchDir();
    let spawned: StartedRelay | undefined;
    let readyWhenSpawned: boolean | undefined;
    let ready = false;
    const starting = driver
      .start(driverRunOf({ infra, log, rawDir }, run, p), {
        settings: { logLevel: 'debug' },
        args: ['--cleanup', 'batched-delete', '--cleanup-interval-ms', '200'],
        onSpawned: (relay) => {
          spawned = relay;
          readyWhenSpawned = ready;
        },
      })
      .then((relay) => ((ready = true), relay));
    const relay = await starting;
    t.after(() => stopRelay(relay));
    assert.equal(readyWhenSpawned, false, 'told at the spawn, before the relay was ready');
    assert.equal(spawned?.child.pid, relay.child.pid);
    assert.equal(spawned?.spawnedAt, relay.spawnedAt);
    // The flag starts a cleanup loop beside the relay; the setting lets its quiet rounds (debug) reach the log.
    await eventually('a cleanup round in the relay log', () => readFileSync(path.join(rawDir, 'relay.log'), 'utf8').includes('cleanup round'), 20_000);
  });

  it('has every relay but ours refuse our settings and flags before starting anything', async () => {
    // Refused before the run is read: a run of nothing but a folder is enough.
    const run = { rawDir: await scratchDir() } as DriverRun;
    for (const [name, driver] of Object.entries(DRIVERS)) {
      if (name === 'ours') continue;
      for (const options of [{ settings: { spillAfterEvents: 10 } }, { args: ['--cleanup', 'drop-partition'] }]) {
        await assert.rejects(driver.start(run, options), (error: Error & { code?: string }) => error.code === 'USAGE' && /is not our relay and takes none of our relay's settings|is not our relay and takes none of our relay command's flags/.test(error.message), `${name} ${JSON.stringify(options)}`);
      }
    }
  });

  it("drains another relay by its driver name, through its own write path, timed by Kafka's end offsets, interleaved with the anchor and resumed in a new sitting", async () => {
    const outDir = await scratchDir();
    // A budget no round fits: the first round always runs, the second waits for a resume. 3,000 events:
    // pg-transactional-outbox drained 1,000 in a 0.7 s window once, too short for ten readings.
    const options: Record<string, number> = { backlog: 3_000, profile: 0, 'consumer-drain': 0, resume: 0, 'sitting-minutes': 1e-6 };
    const context = {
      config: resolveConfig(),
      infra,
      log,
      parameters: { ...BASE_PARAMETERS, ...drain.defaults } as PipelineParameters,
      outDir,
      quiet: true,
      repeats: 2,
      option: (name: string) => options[name]!,
      // The anchor drains enough for its 10%-90% window to hold ten readings at its speed.
      list: (name: string, fallback: string[]) => (name === 'mode' ? ['ptp-polling'] : name === 'backlog-for' ? ['cdc=100000'] : fallback),
    };
    const first = (await drain.run(context)).extra as DrainResult;
    assert.match(first.incomplete ?? '', /budget before round 2 of 2: run the same command with --resume/);
    assert.ok(existsSync(path.join(outDir, 'sitting-journal.json')), 'the completed round is kept for the resume');
    // The anchor first, though --mode left it out.
    assert.deepEqual(first.runs.map((r) => [r.strategy, r.window?.sitting, r.window?.round]), [['cdc', 1, 1], ['ptp-polling', 1, 1]]);
    // Another comparison in the folder is refused rather than merged into it.
    options.resume = 1;
    await assert.rejects(drain.run({ ...context, list: (name, fallback) => (name === 'mode' ? ['ptp-replication'] : name === 'backlog-for' ? ['cdc=100000'] : fallback) }), /--resume: the sitting stopped in .* measured .*ptp-polling/);
    options['sitting-minutes'] = 60;
    const resumedReport = await drain.run(context);
    const resumed = resumedReport.extra as DrainResult;
    assert.equal(resumed.incomplete, undefined);
    assert.ok(existsSync(path.join(outDir, 'sitting-journal.json')), 'kept until the results are written');
    resumedReport.afterWrite?.();
    assert.ok(!existsSync(path.join(outDir, 'sitting-journal.json')), 'a complete comparison, once written, leaves nothing to resume');
    assert.deepEqual(resumed.runs.map((r) => [r.strategy, r.window?.sitting, r.window?.round]), [['cdc', 1, 1], ['ptp-polling', 1, 1], ['cdc', 2, 2], ['ptp-polling', 2, 2]]);
    assert.deepEqual(resumed.sittings?.map((s) => s.sitting), [1, 2]);
    assert.deepEqual(resumed.runs.map((r) => [r.relay.events, r.relay.missing]), [[100_000, 0], [3_000, 0], [100_000, 0], [3_000, 0]]);
    for (const run of resumed.runs) {
      assert.ok(run.relay.timeToFirstEventS > 0 && (run.relay.cpuSecondsPerMillion.relay ?? 0) > 0, JSON.stringify(run.relay));
      assert.ok((run.relayPeakRssMiB ?? 0) > 10, `${run.strategy}: its process tree's memory was read (${run.relayPeakRssMiB} MiB)`);
      // Probes around every drain, read until two quiet readings agreed (or twenty were read).
      for (const probe of [run.window!.probeBefore, run.window!.probeAfter]) assert.ok(probe.nsPerOp > 0 && probe.readings.length >= 2 && probe.readings.length <= 20, JSON.stringify(probe));
    }
    // Each relay's ratio has its anchor in its own round: the printed lines say so, one ratio per round.
    const report = sittingReport(resumed).join('\n');
    // Far below the anchor's rate: two significant digits, as the report prints a ratio under a tenth.
    assert.match(report, /\| ptp-polling \| [\w-]+ \| 2 \| 0\.0\d+ \[0\.0\d+–0\.0\d+\] \| \d+\.\d\d \[/);
    assert.throws(() => parseStrategy('nonesuch'), /"nonesuch" is none of our relay modes \(polling, .*\) and no other relay \(debezium-throughput, /);
    assert.deepEqual([parseStrategy('ptp-replication').store, parseStrategy('debezium-latency').store, parseStrategy('cdc-message').store], ['ptp', 'table', 'message']);
  });

  for (const name of ['ptp-polling', 'ptp-replication'] as const) {
    it(`runs ${name} end to end through its own write path, losing only what the library skipped, with its evidence`, async (t) => {
      // Its slot outlives the run (the scenario drops such slots between runs): dropped here, or it would hold WAL.
      t.after(() => dropRelaySlots(infra.databaseUrl));
      // A message the library skipped never arrives: the drain gives up on it after 8 s without progress.
      const run = await runPipeline(await context(infra, `driver_${name}`, DRIVERS[name]), testParameters({ store: 'ptp', rate: 100, warmupS: 1, durationS: 3, drainTimeoutS: 8 }));
      assert.ok(run.sent > 0);
      const notFound = (run.evidence as { messageNotFound?: unknown } | undefined)?.messageNotFound;
      assert.equal(typeof notFound, 'number', 'the library log was read');
      // The library's own defect (0.5.7): a message it skipped as MESSAGE_NOT_FOUND is lost, and only such a message.
      assert.ok(run.lost <= (notFound as number), `${run.lost} of ${run.sent} lost, ${String(notFound)} skipped by the library`);
      assert.equal(run.unexpected, 0);
      assert.equal(run.parameters.store, 'ptp');
      assert.equal(run.stages.commitToRelay.ms.count, 0, 'the library records no stage timings of ours');
    });
  }
});
