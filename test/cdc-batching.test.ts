/**
 * The CDC relay's batching delay against the real server: held commits stay
 * unconfirmed while keepalives are answered, a full batch ends the hold, and
 * a SIGKILL during the hold replays every held event.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { stopChild } from '../bench/harness/processes.js';
import { OrderingChecker } from '../src/chaos/ordering.js';
import { HEADERS } from '../src/events.js';
import { placeOrders } from '../src/orders/write-path.js';
import { BatchingDelay } from '../src/relay/cdc/batching.js';
import { CommitQueue, type QueuedTransaction } from '../src/relay/cdc/commit-queue.js';
import { parseLsn } from '../src/relay/cdc/lsn.js';
import { MemoryEvents } from '../src/relay/cdc/spill.js';
import { cdcRelayFor, cdcRelayProcessEnv, currentLsn, eventually, headerOf, readTopic, slotState, testEnv, topicExists, topicMessageCount, withWalSenderTimeout, type TestEnv } from './helpers.js';

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli.js');

// Rationale: a 300-character note makes every event 400-500 bytes of key and JSON, whatever else the order holds.
const NOTE = 'x'.repeat(300);
const orders = (n: number, prefix: string) => Array.from({ length: n }, (_, i) => ({ customerId: `${prefix}-${i}`, amountCents: i, currency: 'EUR', note: NOTE }));

// Rationale: twice the walsender's timeout below, so a relay that went quiet
// while it holds would lose its connection during the hold; the timeout as
// test/cdc.test.ts's, which leaves a loaded host a second to answer.
const HOLD_MS = 4_000;
const WAL_SENDER_TIMEOUT_MS = 2_000;
// A delay no test waits out: a batch that arrives within a test's patience was released early.
const ENDLESS_MS = 600_000;

/**
 * Writes `n` orders in one transaction and returns where its commit record
 * starts at the earliest: a confirmed position past it would let a replay
 * skip the transaction.
 */
async function writeTransaction(env: TestEnv, n: number, prefix: string): Promise<bigint> {
  let commitNotBefore = 0n;
  await env.sql.begin(async (tx) => {
    await placeOrders(tx, orders(n, prefix));
    const [row] = await tx<{ lsn: string }[]>`SELECT pg_current_wal_insert_lsn()::text AS lsn`;
    commitNotBefore = parseLsn(row!.lsn);
  });
  return commitNotBefore;
}

/** Reads the slot's confirmed position every 100 ms, each reading with whether `holding()` still held after it. */
function sampleConfirmed(env: TestEnv, holding: () => boolean) {
  const samples: { confirmed: bigint; held: boolean }[] = [];
  let running = true;
  const done = (async () => {
    while (running) {
      const confirmed = parseLsn((await slotState(env))?.confirmedFlushLsn ?? '0/0');
      // Read after the query: a sample counts as "during the hold" only if the hold outlasted it.
      samples.push({ confirmed, held: holding() });
      await sleep(100);
    }
  })();
  return {
    samples,
    stop: async () => {
      running = false;
      await done;
    },
  };
}

/** A committed transaction of `n` events of 100 bytes each, queued `agoMs` ago. */
function transaction(n: number, agoMs = 0): QueuedTransaction {
  const events = Array.from({ length: n }, (_, i) => ({ topic: 't', key: `k${i}`, value: 'v', headers: {} }));
  return { endLsn: 1n, events: new MemoryEvents(events), published: 0, bytes: n * 100, queuedAt: performance.now() - agoMs };
}

describe('CDC batching delay: the queue it reads', () => {
  it('counts the bytes of unacknowledged events, a partly acknowledged transaction by its share, and forgets them on clear', () => {
    const queue = new CommitQueue();
    queue.push(transaction(4));
    queue.push(transaction(6));
    assert.deepEqual([queue.buffered, queue.bufferedBytes], [10, 1_000]);
    queue.nextBatch(5);
    queue.acknowledge(5);
    assert.deepEqual([queue.buffered, queue.bufferedBytes], [5, 500], 'the first whole, one of the second');
    queue.clear();
    assert.deepEqual([queue.buffered, queue.bufferedBytes], [0, 0]);
  });

  it('holds until the oldest unsent commit has waited the delay, and not at all once a batch is full by count or by bytes', () => {
    const delay = new BatchingDelay({ delayMs: 1_000, maxEvents: 10, maxBytes: 2_000 });
    const queue = new CommitQueue();
    assert.equal(delay.remainingMs(queue), 0, 'nothing queued: nothing to hold');
    queue.push(transaction(2, 400));
    queue.push(transaction(2));
    const remaining = delay.remainingMs(queue);
    assert.ok(remaining > 500 && remaining <= 600, `the oldest commit, queued 400 ms ago, decides: ${remaining} ms left`);
    queue.push(transaction(6));
    assert.equal(delay.remainingMs(queue), 0, 'ten events');
    const bytes = new CommitQueue();
    bytes.push({ ...transaction(1), bytes: 2_000 });
    assert.equal(delay.remainingMs(bytes), 0, '2,000 bytes');
    assert.equal(new BatchingDelay({ delayMs: 0, maxEvents: 10, maxBytes: 2_000 }).remainingMs(queue), 0, 'no delay: no hold');
  });
});

describe('CDC batching delay', () => {
  it('holds a commit for the delay without confirming past it, answering keepalives meanwhile', async (t) => {
    const env = await testEnv(t);
    // No heartbeats: a fence written between the insert and its COMMIT would rightly be confirmed past the line below.
    const relay = cdcRelayFor(env, { batchDelayMs: HOLD_MS, databaseUrl: withWalSenderTimeout(env, WAL_SENDER_TIMEOUT_MS), statusIntervalMs: 600_000, heartbeatIntervalMs: 600_000 });
    await relay.start();
    const walsender = await eventually('a walsender', async () => (await slotState(env))?.activePid);
    const committedAt = performance.now();
    const commitNotBefore = await writeTransaction(env, 10, 'held');
    const sampler = sampleConfirmed(env, () => relay.published === 0);
    await eventually('the held transaction published', () => relay.published === 10, 30_000);
    const heldMs = performance.now() - committedAt;
    await sampler.stop();

    // The hold starts when the relay queues the commit, after the commit returned here.
    assert.ok(heldMs >= HOLD_MS - 50, `published ${Math.round(heldMs)} ms after the commit, not held ${HOLD_MS} ms`);
    const during = sampler.samples.filter((s) => s.held);
    assert.ok(during.length >= 20, `${during.length} readings during the hold`);
    for (const { confirmed } of during) {
      assert.ok(confirmed <= commitNotBefore, `confirmed ${confirmed.toString(16)} passed the held commit (at or after ${commitNotBefore.toString(16)})`);
    }
    assert.equal((await slotState(env))?.activePid, walsender, `the walsender (timeout ${WAL_SENDER_TIMEOUT_MS} ms) kept the connection through a ${HOLD_MS} ms hold: keepalives were answered`);
    const afterCommit = await currentLsn(env);
    await eventually('the slot to confirm the published commit', async () => parseLsn((await slotState(env))!.confirmedFlushLsn!) >= afterCommit - 1_000_000n);
  });

  it('ends the hold as soon as a full batch of events is queued', async (t) => {
    const env = await testEnv(t);
    const relay = cdcRelayFor(env, { batchDelayMs: ENDLESS_MS, batchSize: 50 });
    await relay.start();
    await writeTransaction(env, 30, 'first');
    await sleep(1_000);
    assert.equal(relay.published, 0, '30 of 50 events: held');
    await writeTransaction(env, 30, 'second');
    await eventually('a full batch published', () => relay.published >= 50, 30_000);
  });

  it('ends the hold as soon as a batch\'s bytes are queued', async (t) => {
    const env = await testEnv(t);
    // Events of 400-500 bytes: five stay under 4 KiB, fifteen pass it.
    const relay = cdcRelayFor(env, { batchDelayMs: ENDLESS_MS, batchSize: 10_000, batchBytes: 4_096 });
    await relay.start();
    await writeTransaction(env, 5, 'small');
    await sleep(1_000);
    assert.equal(relay.published, 0, 'five events: held');
    await writeTransaction(env, 10, 'large');
    await eventually('the batch published once its bytes were queued', () => relay.published === 15, 30_000);
  });

  it('replays every held event after a SIGKILL during the hold', async (t) => {
    const env = await testEnv(t);
    const childEnv = await cdcRelayProcessEnv(env);
    let child: ChildProcess | undefined;
    env.defer(() => child && stopChild(child));
    // The flag's largest delay: the kill lands well inside it.
    child = spawn(process.execPath, [CLI, 'relay', '--mode', 'cdc', '--batch-delay-ms', '5000'], { env: childEnv, stdio: 'ignore' });
    const walsender = await eventually('the relay streaming', async () => (await slotState(env))?.activePid);
    let killed = false;
    const sampler = sampleConfirmed(env, () => !killed);
    const commitNotBefore = await writeTransaction(env, 10, 'held');
    const afterCommit = await currentLsn(env);
    await eventually('the walsender to send the commit to the relay', async () => {
      const [row] = await env.sql<{ sent: string | null }[]>`SELECT sent_lsn::text AS sent FROM pg_stat_replication WHERE pid = ${walsender}`;
      return row?.sent && parseLsn(row.sent) >= afterCommit;
    });
    await sleep(500);
    const victim = child;
    victim.kill('SIGKILL');
    await once(victim, 'exit');
    killed = true;
    await sampler.stop();

    const topic = env.topic();
    assert.equal((await topicExists(env.kafka, topic)) ? await topicMessageCount(env.kafka, topic) : 0, 0, 'nothing was published before the kill: the events were held');
    for (const { confirmed } of sampler.samples) assert.ok(confirmed <= commitNotBefore, `confirmed ${confirmed.toString(16)} passed the held commit`);
    await eventually('the walsender to let go of the slot', async () => (await slotState(env))?.active === false, 20_000);

    child = spawn(process.execPath, [CLI, 'relay', '--mode', 'cdc'], { env: childEnv, stdio: 'ignore' });
    const messages = await readTopic(env.kafka, topic, 10, 60_000);
    assert.equal(new Set(messages.map((m) => headerOf(m, HEADERS.eventId))).size, 10, 'every held event replayed');
    const checker = new OrderingChecker();
    for (const m of messages) checker.observe(m.key!.toString(), Number(headerOf(m, HEADERS.aggregateVersion)));
    assert.deepEqual(checker.violations, []);
  });
});
