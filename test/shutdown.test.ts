/**
 * A benchmark told to stop (SIGINT, SIGTERM) stops its runs' processes
 * before the servers: a peer still connected for logical replication would
 * keep PostgreSQL's fast shutdown waiting, and a JVM would outlive the
 * command. Its own file: once stopping, the process starts no more runs.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { runPipeline, stopRunsInProgress } from '../bench/harness/pipeline.js';
import { rethrowIfStopping } from '../bench/harness/running.js';
import { resolveConfig } from '../src/config.js';
import type { Sql } from '../src/db.js';
import { acquireInfra } from '../src/infra/index.js';
import { eventually, log, scratchDir, testParameters, uniqueName } from './helpers.js';

/** This process's children, by pid and command line. */
function children(): { pid: number; command: string }[] {
  const out = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)], { encoding: 'utf8' }).trim();
  return out === '' ? [] : out.split('\n').map((line) => {
    const [pid, ...command] = line.trim().split(/\s+/);
    return { pid: Number(pid), command: command.join(' ') };
  });
}

const isRunProcess = (c: { command: string }) => /cli\.js relay|consumer-process\.js/.test(c.command);

describe('stopping a benchmark', () => {
  it('stops the runs in progress, relay and consumers, and starts no run after', async (t) => {
    const config = resolveConfig();
    assert.ok(config.databaseUrl && config.kafkaBrokers, 'npm test provides the servers');
    const infra = await acquireInfra({ config, log });
    t.after(() => infra.release());
    const context = async (name: string) => ({ infra, log, name: uniqueName(name), rawDir: await scratchDir(), quiet: true });

    /** How a run ended: 'resolved', or its error's code. */
    const outcome = (run: Promise<unknown>) =>
      run.then(
        () => 'resolved',
        (error: Error & { code?: string }) => error.code ?? error.message,
      );

    // A run far longer than the test: only the stop can end it this soon.
    const settled = outcome(runPipeline(await context('shutdown_run'), { ...testParameters(), rate: 200, warmupS: 0, durationS: 600 }));
    await eventually('the relay and the consumer running', () => children().filter(isRunProcess).length >= 2, 60_000);

    // A second run stopped in its drain, which would otherwise wait for an
    // order that never comes: deleted before its relay starts.
    let drainSql: Sql | undefined;
    const drainSettled = outcome(
      runPipeline(
        {
          ...(await context('shutdown_drain')),
          beforeRelay: async (sql) => {
            await sql`DELETE FROM outbox WHERE id = (SELECT max(id) FROM outbox)`;
            drainSql = sql;
          },
        },
        { ...testParameters(), rate: 200, warmupS: 0, durationS: 2, relayAfterLoad: true, drainTimeoutS: 600 },
      ),
    );
    // Every row left published: the draining run's relay is up and its run waits for the deleted order.
    const drained = async () => {
      if (!drainSql) return false;
      const [row] = await drainSql<{ unsent: number }[]>`SELECT count(*)::int AS unsent FROM outbox WHERE published_at IS NULL`;
      return row?.unsent === 0;
    };
    await eventually('the second run waiting in its drain', drained, 60_000);

    assert.doesNotThrow(() => rethrowIfStopping(new Error('a run that failed on its own')), 'before the stop a failure is a measurement');
    await stopRunsInProgress();
    assert.deepEqual(children().filter(isRunProcess), [], 'no relay or consumer process left once the stop returned');
    assert.equal(await drainSettled, 'SHUTTING_DOWN', 'the draining run ends at the stop, not when its drain times out');
    await settled;

    await assert.rejects(runPipeline(await context('shutdown_after'), testParameters()), (error: Error & { code?: string }) => error.code === 'SHUTTING_DOWN');
    // A comparison's step that failed because of the stop is the stop, not a measured failure: rethrown, never recorded.
    assert.throws(() => rethrowIfStopping(new Error('connect ECONNREFUSED')), /ECONNREFUSED/);
  });
});
