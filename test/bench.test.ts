/**
 * The benchmark harness measures what it says it does:
 *  - latency runs from each order's intended send time to its application,
 *    so a consumer that stops for a while shows up in the tail;
 *  - every committed order is accounted for, across several load workers,
 *    and one that never arrives is lost;
 *  - a drain's clock starts when the relay process is spawned (or, warmed
 *    by a prewarm, continued after the backlog was written), and its rate
 *    and CPU come from the same 10%-90% part of the backlog;
 *  - a relay's memory is every one of its processes';
 *  - a relay is ready only when all of its replicas are;
 *  - the HTTP phase's CPU window holds exactly the orders it is divided by.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { startRelayProcess, stopChild } from '../bench/harness/processes.js';
import { loadPool, runLoad, runPipeline, type PipelineContext, type PipelineParameters } from '../bench/harness/pipeline.js';
import { openRun } from '../bench/harness/run-setup.js';
import { drain, type DrainRun } from '../bench/scenarios/drain.js';
import { http } from '../bench/scenarios/http.js';
import { quick, type QuickResult } from '../bench/scenarios/quick.js';
import { measureWrites } from '../bench/scenarios/write-cost.js';
import { hotKeyParameters } from '../bench/scenarios/sweeps.js';
import { planLoad } from '../bench/harness/load-worker.js';
import { newRunTag } from '../bench/harness/load-ids.js';
import { nowMs } from '../src/events.js';
import { buildReport } from '../bench/report.js';
import { f } from '../bench/report/kit.js';
import type { ScenarioContext } from '../bench/scenario.js';
import { resolveConfig, settingsEnv } from '../src/config.js';
import type { Infra } from '../src/infra/index.js';
import { TEST_ENVIRONMENT } from './fake-run.js';
import { log, scratchDir, testEnv, testServers, uniqueName, testParameters } from './helpers.js';

// A light load with a short poll interval: the healthy tail stays far below
// the stall, so the two runs cannot be confused on a busy 2-core machine.
const PARAMETERS: PipelineParameters = testParameters();

const STALL_MS = 2_500;



async function context(infra: Infra, name: string, extra: Partial<PipelineContext> = {}): Promise<PipelineContext> {
  return {
    infra,
    log,
    name: uniqueName(name),
    rawDir: await scratchDir(),
    quiet: true,
    ...extra,
  };
}

describe('benchmark harness', () => {
  it('shows a deliberately stalled consumer in the latency tail, and records every stage of a run without the stall', async (t) => {
    const infra = await testServers(t);
    const healthy = await runPipeline(await context(infra, 'harness_healthy'), PARAMETERS);
    const stalled = await runPipeline(await context(infra, 'harness_stalled'), { ...PARAMETERS, stallConsumerMs: STALL_MS });

    for (const run of [healthy, stalled]) {
      assert.equal(run.lost, 0, 'every committed event arrived');
      assert.equal(run.sent, run.delivered, 'and was counted');
      assert.equal(run.duplicates, 0, 'without a crash nothing is delivered twice');
      // The headline ends when the inbox transaction committed, after receipt.
      assert.equal(run.e2eMs.count, run.e2eReceiptMs.count);
      assert.ok(run.e2eMs.p50 >= run.e2eReceiptMs.p50 && run.e2eMs.max >= run.e2eReceiptMs.max, 'applied comes after receipt');
      // Rates and CPU come from the measured window only: it holds exactly the orders due in it.
      assert.equal(run.window.kind, 'load');
      assert.equal(run.window.to - run.window.from, PARAMETERS.durationS * 1_000);
      assert.equal(run.windowDelivery.intended, PARAMETERS.rate * PARAMETERS.durationS);
      assert.ok(run.eventsPerSec > 0, 'events were applied in the window');
    }
    // No bound on the healthy run's latency: how fast it is depends on the
    // host (1.1 s p99 has been seen on a busy one), and speed belongs in the
    // benchmarks. What the harness must do is below: show the injected stall.
    // The latency budget: every stage recorded, the relay's from its own file.
    for (const [stage, summary] of Object.entries(healthy.stages)) assert.ok(summary.ms.count > 0, `stage ${stage} recorded`);
    assert.equal(healthy.stages.commitToRelay.ms.count, healthy.sent, 'the relay recorded every event it published');
    // Events due during the stall wait for the rest of it: the worst waits
    // (almost) the whole stall, and with ~40% of the window stalled the p99
    // is deep inside it.
    assert.ok(stalled.e2eMs.max >= STALL_MS - 200, `the stalled run's max is ${stalled.e2eMs.max} ms`);
    assert.ok(stalled.e2eMs.p99 >= STALL_MS / 2, `the stalled run's p99 is ${stalled.e2eMs.p99} ms`);
  });

  it('reports a dropped event as lost with several workers, and times the drain from the relay spawn', async (t) => {
    const infra = await testServers(t);
    let dropped = '';
    const ctx = await context(infra, 'harness_lost', {
      // The relay never sees the last order of the last worker: it was committed, then deleted.
      beforeRelay: async (sql) => {
        // Load event ids carry the worker in their second group (bench/harness/load-ids.ts).
        const [row] = await sql<{ eventId: string }[]>`
          DELETE FROM outbox WHERE id = (SELECT id FROM outbox WHERE substr(event_id::text, 10, 4) = '0002' ORDER BY id DESC LIMIT 1)
          RETURNING event_id::text AS "eventId"`;
        dropped = row?.eventId ?? '';
      },
    });
    // 3 workers sharing 3,100 orders/s: each worker's share is not a whole number per second.
    const run = await runPipeline(ctx, { ...PARAMETERS, workers: 3, rate: 3_100, warmupS: 0, durationS: 2, relayAfterLoad: true, drainTimeoutS: 5 });
    assert.ok(dropped, 'an order was deleted before the relay started');
    assert.equal(run.sent, 6_198, 'each worker wrote its planned 2,066 orders');
    assert.equal(run.lost, 1, `the deleted order ${dropped} is lost`);
    assert.equal(run.delivered, run.sent - 1);
    assert.equal(run.unexpected, 0);

    const drain = run.drain!;
    assert.ok(drain.timeToFirstEventS > 0, 'the clock started before the relay could publish');
    assert.ok(drain.seconds >= drain.timeToFirstEventS);
    assert.equal(run.window.kind, 'drain');
    // The steady window holds 80% of the backlog, and the rate is taken over it.
    const inWindow = (drain.eventsPerSec * (run.window.to - run.window.from)) / 1_000;
    assert.ok(Math.abs(inWindow - 0.8 * run.delivered) <= 0.05 * run.delivered, `${Math.round(inWindow)} events in the 10%-90% window`);
  });

  it('drains with a relay warmed by a prewarm and paused while the backlog is written, and counts every process of the relay', async (t) => {
    const infra = await testServers(t);
    // Three SKIP LOCKED replicas under a supervisor: the pause must hold every one of them.
    const replicas = 3;
    const run = await runPipeline(await context(infra, 'harness_prewarm'), {
      ...PARAMETERS,
      relayMode: 'skip-locked',
      replicas,
      prewarm: { rate: 200, seconds: 3 },
      rate: 1_000,
      ordersPerTransaction: 10,
      warmupS: 0,
      durationS: 2,
      relayAfterLoad: true,
      drainTimeoutS: 10,
    });
    assert.equal(run.lost, 0);
    assert.equal(run.sent, 600 + 2_000, 'the prewarm and the backlog were written');
    assert.equal(run.delivered, run.sent);
    const drain = run.drain!;
    assert.equal(drain.backlog, 2_000, 'the prewarm is not part of the backlog');
    // Had a replica kept running, backlog events would have been applied while
    // it was written, before the drain's clock started.
    assert.ok(drain.timeToFirstEventS > 0, `the first backlog event was applied ${drain.timeToFirstEventS} s after the relay continued`);
    // A Node.js process holds 40 MiB or more: four of them are far above one.
    assert.ok((run.cost.relay.memoryMiB ?? 0) >= 120, `the relay's ${replicas} replicas and supervisor together: ${run.cost.relay.memoryMiB} MiB`);
  });

  it('fails a run that delivers an event its load plan never wrote, instead of counting it', async (t) => {
    const infra = await testServers(t);
    const ctx = await context(infra, 'harness_foreign', {
      // A later event of a committed order under a new id: delivered, applied, and no order of the plan.
      beforeRelay: async (sql) => {
        await sql`
          INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload, headers)
          SELECT gen_random_uuid(), aggregate_type, aggregate_id, aggregate_version + 1, event_type, payload, headers FROM outbox ORDER BY id DESC LIMIT 1`;
      },
    });
    await assert.rejects(
      runPipeline(ctx, { ...PARAMETERS, rate: 200, warmupS: 0, durationS: 1, relayAfterLoad: true, drainTimeoutS: 5 }),
      (error: Error & { code?: string }) => error.code === 'CHECK_FAILED' && /1 deliveries were not orders of this run's load plan/.test(error.message),
    );
  });

  it('gives a run\'s processes the run\'s settings only, not the shell\'s', async (t) => {
    const infra = await testServers(t);
    const shell = { OUTBOX_BENCH_BUCKETS: '7', OUTBOX_BENCH_BATCH_SIZE: '3', CRASH_AT: 'relay.after-publish-before-mark:every=1' };
    Object.assign(process.env, shell);
    t.after(() => {
      for (const name of Object.keys(shell)) delete process.env[name];
    });
    const run = await openRun({ infra, log, name: uniqueName('harness_env'), partitions: 3, relay: { relayMode: 'skip-locked', replicas: 3, batchSize: 500, pollIntervalMs: 100, publishers: 1 } });
    t.after(() => run.close());
    const env = run.env();
    assert.equal(env.OUTBOX_BENCH_BUCKETS, '64', 'the buckets the run provisioned, not the shell\'s 7');
    assert.equal(env.OUTBOX_BENCH_BATCH_SIZE, '500');
    assert.equal(env.OUTBOX_BENCH_SCHEMA, run.schema);
    assert.equal(env.OUTBOX_BENCH_SLOT, run.relay!.settings.slotName);
    assert.equal(env.CRASH_AT, undefined, 'no failpoint armed by the shell');
    assert.equal(env.OUTBOX_BENCH_METRICS_PORT, undefined);
  });

  it('runs several consumer processes in one group, each event applied by one of them', async (t) => {
    const infra = await testServers(t);
    const run = await runPipeline(await context(infra, 'harness_consumers'), { ...PARAMETERS, rate: 400, durationS: 4, consumers: 2 });
    assert.equal(run.lost, 0);
    assert.equal(run.delivered, run.sent);
    assert.equal(run.unexpected, 0);
  });

  it('reports a relay ready only once every SKIP LOCKED replica is running', async (t) => {
    const env = await testEnv(t);
    const infra = await testServers(t);
    const rawDir = await scratchDir();
    const [clock] = await env.sql<{ now: Date }[]>`SELECT clock_timestamp() AS now`;
    const settings = settingsEnv({
      databaseUrl: infra.databaseUrl,
      kafkaBrokers: infra.kafkaBrokers,
      schema: env.config.schema,
      topicPrefix: env.config.topicPrefix,
      topicPartitions: 3,
      relayMode: 'skip-locked',
      replicas: 3,
      batchSize: 100,
      pollIntervalMs: 100,
      logFormat: 'json',
    });
    const started = await startRelayProcess(rawDir, { ...process.env, ...settings }, { describe: 'skip-locked' });
    t.after(() => stopChild(started.child));
    const rows = await env.sql<{ name: string }[]>`
      SELECT DISTINCT application_name AS name FROM pg_stat_activity
      WHERE application_name LIKE 'outbox-bench-relay-skip-locked-%' AND backend_start >= ${clock!.now}`;
    assert.deepEqual(rows.map((r) => r.name).sort(), [0, 1, 2].map((i) => `outbox-bench-relay-skip-locked-${i}`), 'all three replicas had their sessions when ready was reported');
  });

  it('times a relay-only drain from the spawn even when the relay publishes before it reports ready', async (t) => {
    const infra = await testServers(t);
    const outDir = path.join(await scratchDir(), 'drain-origin');
    mkdirSync(outDir, { recursive: true });
    const options: Record<string, number> = { backlog: 20_000, profile: 0, 'consumer-drain': 0, resume: 0, 'sitting-minutes': 60 };
    const report = await drain.run({
      config: resolveConfig(),
      infra,
      log,
      parameters: { ...PARAMETERS, ...drain.defaults } as PipelineParameters,
      outDir,
      quiet: true,
      repeats: 1,
      option: (name) => options[name]!,
      // The polling relay starts its first pass before it says it is ready.
      list: (name, fallback) => (name === 'mode' ? ['polling'] : name === 'anchor' ? ['none'] : fallback),
    });
    const [run] = (report.extra as { runs: DrainRun[] }).runs;
    assert.equal(run?.relay.missing, 0);
    // The first reading after the start of the clock held no event: had the clock started after the relay
    // began publishing, that reading would already hold some, and the first event, interpolated between
    // the start and that reading, would lie within a fraction of a millisecond of the start: 0 s here.
    assert.ok(run!.relay.timeToFirstEventS > 0, `first event ${run!.relay.timeToFirstEventS} s after the spawn`);
  });

  it('drains a backlog through the relay alone, then through each consumer client alone, and profiles an extra run', async (t) => {
    const infra = await testServers(t);
    const outDir = path.join(await scratchDir(), 'drain');
    mkdirSync(outDir, { recursive: true });
    // Enough that the relay's 10%-90% window (about 80,000 events/s here) holds ten 50 ms readings.
    const options: Record<string, number> = { backlog: 150_000, profile: 1, 'consumer-drain': 1, resume: 0, 'sitting-minutes': 60 };
    const report = await drain.run({
      config: resolveConfig(),
      infra,
      log,
      parameters: { ...PARAMETERS, ...drain.defaults } as PipelineParameters,
      outDir,
      quiet: true,
      repeats: 1,
      option: (name) => options[name]!,
      list: (name, fallback) => (name === 'mode' ? ['cdc-message'] : name === 'consumer-clients' ? ['kafkajs', 'platformatic'] : name === 'anchor' ? ['none'] : fallback),
    });
    const extra = report.extra as { runs: DrainRun[]; profiled: DrainRun[]; failed: unknown[] };
    assert.deepEqual(extra.failed, []);
    const [run] = extra.runs;
    assert.ok(run && extra.runs.length === 1);
    assert.equal(run.relay.missing, 0, 'the relay published the whole backlog');
    assert.ok(run.relay.eventsPerSec !== null && run.relay.eventsPerSec > 0 && run.relay.timeToFirstEventS > 0, JSON.stringify(run.relay));
    const relayCpu = run.relay.cpuSecondsPerMillion.relay;
    assert.ok(relayCpu !== null && relayCpu !== undefined && relayCpu > 0, 'the relay\'s CPU was read');
    // CPU s per million events is µs per event: the JavaScript thread is a part of the process.
    assert.ok(run.relay.jsThreadUsPerEvent !== null && run.relay.jsThreadUsPerEvent > 0 && run.relay.jsThreadUsPerEvent <= relayCpu + 0.5, `JS thread ${run.relay.jsThreadUsPerEvent} µs of ${relayCpu}`);
    // Each consumer client applied the whole topic from an empty inbox.
    assert.deepEqual(run.consumers.map((c) => [c.client, c.figures.missing]), [['kafkajs', 0], ['platformatic', 0]]);
    for (const c of run.consumers) {
      // A window too short for ten readings reports nothing rather than an interpolated guess.
      const measured = c.figures.eventsPerSec !== null;
      if (!measured) assert.ok(c.figures.windowS !== null, `${c.client}: a window too short for ten readings: ${JSON.stringify(c.figures)}`);
      if (measured) assert.ok(c.figures.eventsPerSec! > 0 && (c.figures.cpuSecondsPerMillion.consumer ?? 0) > 0, `${c.client}: ${JSON.stringify(c.figures)}`);
      else assert.equal(c.figures.cpuSecondsPerMillion.consumer, null);
    }
    assert.equal(run.relayProfile, undefined, 'the measured run ran without the profiler');
    // The profiled run is extra, and its profiles were written (the consumer exits on SIGTERM so it can write its own).
    const [profiled] = extra.profiled;
    assert.ok(profiled?.relayProfile && profiled.relayProfile.top.length > 0, 'the relay\'s profile');
    assert.deepEqual(profiled.consumers.map((c) => [c.client, (c.profile?.top.length ?? 0) > 0]), [['kafkajs', true], ['platformatic', true]]);
  });

  it('gives a quick look: each relay once at a moderate rate plus a drain, one table, labelled, in its own folder', async (t) => {
    const infra = await testServers(t);
    const root = await scratchDir();
    const outDir = path.join(root, 'quick');
    mkdirSync(outDir, { recursive: true });
    const options: Record<string, number> = { backlog: 5_000 };
    const report = await quick.run({
      config: resolveConfig(),
      infra,
      log,
      parameters: { ...PARAMETERS, ...quick.defaults, rate: 500, warmupS: 1, durationS: 3 } as PipelineParameters,
      outDir,
      quiet: true,
      repeats: 1,
      option: (name) => options[name]!,
      list: (name, fallback) => (name === 'mode' ? ['polling', 'cdc-message'] : fallback),
    });
    const extra = report.extra as QuickResult;
    assert.deepEqual(report.runs.map((r) => [r.name, r.lost]), [['polling', 0], ['cdc-message', 0]]);
    assert.ok(report.runs.every((r) => r.eventsPerSec > 0 && r.e2eMs.p99 > 0));
    assert.deepEqual(extra.drains.map((d) => [d.name, d.backlog, d.lost]), [['polling', 5_000, 0], ['cdc-message', 5_000, 0]]);
    assert.ok(extra.drains.every((d) => d.eventsPerSec > 0 && d.timeToFirstEventS > 0));
    // One table, a row per relay, under the label that says what it is not.
    assert.match(report.lines[0]!, /^Quick look: one run per relay, short windows; not a published measurement/);
    assert.equal(report.lines.filter((line) => /^\| (polling|cdc-message) \|/.test(line)).length, 2);
    // Its own results folder gets its own report; the quick scenario is never part of `all`.
    writeFileSync(path.join(outDir, 'summary.json'), JSON.stringify({ scenario: 'quick', title: report.title, date: new Date().toISOString(), command: 'test', parameters: { ...PARAMETERS, rate: 500, durationS: 3 }, runs: report.runs, extra, environment: TEST_ENVIRONMENT }));
    const readme = buildReport(root);
    assert.match(readme, /## Quick look\n\n> \*\*Quick look: one run per relay/);
    // The host's probe, and where each folder's figures come from.
    assert.match(readme, /\| CPU speed probe \| 777 ns per operation, lower is faster \(the test probe; slowest trial \+4%\) \|/);
    const today = new Date().toISOString().slice(0, 10);
    assert.match(readme, new RegExp(`\\| quick \\| ${today} \\| test \\| x \\| 777 \\|`));
    // The header names the sitting of every folder below it, not one folder's.
    assert.ok(readme.includes(`The figures below come from 1 sitting;`), readme.slice(0, 600));
    assert.ok(readme.includes(`- ${today}, x (2 cores), commit test, CPU probe 777 ns per operation: quick\n`), readme.slice(0, 600));
    assert.equal(quick.standalone, true);
  });

  it('measures what an outbox row and a logical message add to the business write, with and without a relay reading them', async (t) => {
    const infra = await testServers(t);
    const pool = loadPool(1);
    t.after(() => pool.destroy());
    const context = { config: resolveConfig(), infra, log, parameters: PARAMETERS, outDir: await scratchDir(), quiet: true, repeats: 1, option: () => 0, list: (_: string, fallback: string[]) => fallback } satisfies ScenarioContext;
    const [alone, row, message, relayed, aloneAgain] = [
      await measureWrites(context, pool, { name: 'alone', store: 'none' }, 400, 1, 3),
      await measureWrites(context, pool, { name: 'row', store: 'table' }, 400, 1, 3),
      await measureWrites(context, pool, { name: 'message', store: 'message' }, 400, 1, 3),
      await measureWrites(context, pool, { name: 'message + relay', store: 'message', relay: 'cdc-message' }, 400, 1, 3),
      await measureWrites(context, pool, { name: 'alone', store: 'none' }, 400, 1, 3),
    ];
    for (const m of [alone, row, message, relayed, aloneAgain]) {
      assert.equal(m.failed, 0, `${m.way}: ${m.errors.join('; ')}`);
      // 3 s at 400/s: each of the 1,200 orders due in the window committed and was timed; the window's
      // figures are divided by the commits inside it.
      assert.equal(m.commitMs.count, 1_200, `${m.way}: ${JSON.stringify(m.commitMs)}`);
      assert.ok(m.ordersInWindow > 0 && m.commitMs.p50 > 0, `${m.way}: ${m.ordersInWindow} orders in the window`);
      // PostgreSQL's CPU is read from its process when this run owns it, and is null (never a made-up figure) when it is DATABASE_URL's.
      if (infra.postgres.pid() === undefined) assert.equal(m.cpuSecondsPerMillion.postgres, null, `${m.way}: an external server's CPU`);
      else assert.ok((m.cpuSecondsPerMillion.postgres ?? 0) > 0, `${m.way}: PostgreSQL CPU read`);
    }
    // The event is written beside the order: more WAL per order than the order alone, either way.
    // WAL is the server's: other work on it in a window (autovacuum of earlier tests' tables, a checkpoint's
    // full-page images) only adds to it, so the row alone is its lower reading of two runs (once 616 B against 270).
    const aloneWal = Math.min(alone.walBytesPerOrder, aloneAgain.walBytesPerOrder);
    assert.ok(row.walBytesPerOrder > aloneWal + 100, `row ${row.walBytesPerOrder} B vs alone ${aloneWal} B`);
    assert.ok(message.walBytesPerOrder > aloneWal + 100, `message ${message.walBytesPerOrder} B vs alone ${aloneWal} B`);
    assert.equal(alone.cpuSecondsPerMillion.relay, null);
    assert.ok((relayed.cpuSecondsPerMillion.relay ?? 0) > 0, 'the relay\'s CPU is read while it runs beside the writes');
    // The section shows each figure's median, its range over the runs, and what it adds to the row alone.
    const root = await scratchDir();
    mkdirSync(path.join(root, 'write-cost'), { recursive: true });
    const ways = [alone, row, message, relayed].map((m) => ({ way: m.way, store: m.store, relay: m.relay, runs: [m, { ...m, walBytesPerOrder: m.walBytesPerOrder + 10 }] }));
    const extra = { rate: 400, p99LimitMs: 100, repeats: 2, ways, maxRates: [] };
    writeFileSync(path.join(root, 'write-cost', 'summary.json'), JSON.stringify({ scenario: 'write-cost', title: 'test', date: new Date().toISOString(), command: 'test', parameters: PARAMETERS, runs: [], extra, environment: TEST_ENVIRONMENT }));
    const readme = buildReport(root);
    const walCell = `${f(row.walBytesPerOrder)} [${f(row.walBytesPerOrder)}–${f(row.walBytesPerOrder + 10)}] (+${f(row.walBytesPerOrder - alone.walBytesPerOrder)})`;
    assert.ok(readme.includes(walCell), `the row's WAL cell ${walCell} in:\n${readme.split('\n').filter((l) => l.startsWith('| row')).join('\n')}`);
  });

  it('puts the share of events a hot-key sweep point names on its 10 hot orders', async (t) => {
    const infra = await testServers(t);
    const pool = loadPool(1);
    t.after(() => pool.destroy());
    // The share of a run's events on its 10 most-written orders, at one point of the hot-key sweep.
    const topTenShare = async (share: number) => {
      const run = await openRun({ infra, log, name: uniqueName(`hot_${share * 100}`), partitions: 1 });
      try {
        const p = { ...PARAMETERS, ...hotKeyParameters(share, 1), rate: 1_000, warmupS: 0, durationS: 3, ordersPerTransaction: 10, keySpace: 1_000 };
        const startAt = nowMs() + 200;
        const results = await runLoad(pool, { databaseUrl: infra.databaseUrl, schema: run.schema, runTag: newRunTag(), plan: planLoad(p), startAt, measureFrom: startAt, measureTo: startAt + 3_000, p, store: 'table' });
        assert.equal(results.reduce((sum, r) => sum + r.failed, 0), 0);
        const [row] = await run.sql<{ total: string; top: string }[]>`
          WITH per_order AS (SELECT aggregate_id, count(*) AS n FROM outbox GROUP BY aggregate_id)
          SELECT (SELECT sum(n) FROM per_order)::text AS total, (SELECT sum(n) FROM (SELECT n FROM per_order ORDER BY n DESC LIMIT 10) t)::text AS top`;
        assert.equal(Number(row!.total), 3_000, 'every event of the plan written');
        return Number(row!.top) / Number(row!.total);
      } finally {
        await run.close();
      }
    };
    const [none, tenPercent, half] = [await topTenShare(0), await topTenShare(0.1), await topTenShare(0.5)];
    // Without skew the busiest orders are the first placed (they are amendable longest); the hot orders are those
    // same first ones, so at share h they get h of the events plus their part of the uniform rest, (1 - h/0.9) of
    // what they get without skew (0.9: the share of events that amend, at 10 events per order).
    assert.ok(none > 0 && none < 0.3, `no skew: ${none} of the events on the 10 busiest orders`);
    for (const [h, measured] of [[0.1, tenPercent], [0.5, half]] as const) {
      const expected = h + (1 - h / 0.9) * none;
      assert.ok(Math.abs(measured - expected) < 0.04, `${h * 100}% point: ${measured.toFixed(3)} of the events on the 10 hot orders, expected ${expected.toFixed(3)}`);
    }
  });

  it('divides the HTTP phase\'s CPU by exactly the orders its window holds', async (t) => {
    const infra = await testServers(t);
    const outDir = path.join(await scratchDir(), 'http');
    mkdirSync(outDir, { recursive: true });
    const options: Record<string, number> = { 'http-connections': 8, 'http-rate': 100, 'p99-limit-ms': 50, 'group-commit': 500, 'http-compare': 0, 'http-search': 0 };
    const scenarioContext: ScenarioContext = {
      config: resolveConfig(),
      infra,
      log,
      parameters: { ...PARAMETERS, ...http.defaults, relayMode: 'cdc', store: 'table', warmupS: 1, durationS: 3, drainTimeoutS: 30 } as PipelineParameters,
      outDir,
      quiet: true,
      repeats: 1,
      option: (name) => options[name]!,
      list: (_name, fallback) => fallback,
    };
    const report = await http.run(scenarioContext);
    const extra = report.extra as { modes: { closedLoop: { requestsPerSec: number } }[]; fixedRate: { ordersWritten: number; ordersWrittenTotal: number; appliedAtWindowStart: number; lost: number; requestToAppliedMs: { count: number } } };
    assert.ok(extra.modes[0]!.closedLoop.requestsPerSec > 0);
    const earlier = extra.fixedRate.ordersWrittenTotal - extra.fixedRate.ordersWritten;
    assert.ok(earlier > 0, 'the closed loop wrote orders before the fixed-rate phase');
    assert.equal(extra.fixedRate.appliedAtWindowStart, earlier, 'every earlier order was applied before the CPU window opened, none of its own');
    assert.equal(extra.fixedRate.ordersWritten, 300, '100/s for 3 s');
    assert.equal(extra.fixedRate.requestToAppliedMs.count, 300, 'every fixed-rate order measured from its schedule');
    assert.equal(extra.fixedRate.lost, 0);
  });
});
