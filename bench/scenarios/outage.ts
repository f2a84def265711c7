/**
 * Kafka unavailable under load, then back. The writers keep committing
 * (1,000 events/s by default) while the broker is down for `--outage-s`; the
 * CDC relay must hold its memory (it stops reading the WAL once its buffer is
 * full), never confirm a position Kafka has not acknowledged, and catch up
 * by itself when the broker returns. Sampled every 100 ms: the slot's
 * confirmed position, the WAL it retains, the relay's resident memory; every
 * second the outbox's size.
 *
 * The confirmation check is independent of the relay: a second slot on the
 * same publication, created before the load and never read, gives every
 * transaction's commit end LSN (peeked afterwards and decoded); the topic
 * gives every event's append time (the topic stamps LogAppendTime). A sample
 * of the relay's confirmed position C at time t is safe when every
 * transaction that ends at or before C had all its events in Kafka by t.
 */
import type { Admin, Kafka } from 'kafkajs';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { OutboxBenchError } from '../../src/errors.js';
import { HEADERS, nowMs } from '../../src/events.js';
import { parseLsn } from '../../src/relay/cdc/lsn.js';
import { PgoutputDecoder } from '../../src/relay/cdc/pgoutput.js';
import type { Sql } from '../../src/db.js';
import { endOffsets } from '../harness/drain-figures.js';
import { newRunTag } from '../harness/load-ids.js';
import { planLoad } from '../harness/load-worker.js';
import { DRIVERS } from '../drivers/index.js';
import type { RunningRelay } from '../drivers/types.js';
import { driverRunOf, stopRelay } from '../harness/driver-run.js';
import { loadPool, runLoad, type PipelineParameters } from '../harness/pipeline.js';
import { childPids } from '../harness/process-stats.js';
import { openRun } from '../harness/run-setup.js';
import { anySummary, f, type ReportContext } from '../report/kit.js';
import type { Scenario, ScenarioContext } from '../scenario.js';

export interface OutageSample {
  /** s since the load started */
  t: number;
  confirmedLsn: string | null;
  retainedWalBytes: number | null;
  relayRssBytes: number | null;
}

export interface OutageRun {
  outageS: number;
  rate: number;
  committed: number;
  /** In Kafka at the end (distinct events). */
  delivered: number;
  /** Confirmed-position samples, and those that were ahead of Kafka's acknowledgements (must be 0). */
  confirmedSamples: number;
  confirmedAheadOfKafka: number;
  /** How far the worst of those was ahead: the last of its transactions' append time past the sample, ms. */
  confirmedAheadByMs?: number;
  /** Resident memory of the relay before the outage, its peak during it, and after the catch-up, MiB. */
  relayRssMiB: { before: number | null; peak: number | null; after: number | null };
  /** Retained WAL and outbox rows when Kafka went down and when it was started again; growth per minute of outage. */
  retainedWalMiB: { atStop: number | null; atStart: number | null; perMinute: number | null };
  outboxRows: { atStop: number; atStart: number; perMinute: number };
  /** Kafka started again -> every committed event in Kafka, s (the broker's own start included). */
  catchUpS: number | null;
  /** How long the broker took to start again, s. */
  brokerStartS: number;
  /** The relay process ran through it: same pid, never restarted. */
  relayRestarted: boolean;
  samples: OutageSample[];
}

export interface OutageResult {
  runs: OutageRun[];
}

// Rationale: a tenth of a second: a confirmation ahead of Kafka for even a
// fraction of a second would be a window in which a crash loses events.
const SAMPLE_MS = 100;
// Rationale: the load runs steadily this long before and after the outage,
// so the before and after figures are of a relay at work.
const STEADY_S = 20;

function rssBytes(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  let total = 0;
  for (const one of [pid, ...childPids(pid)]) {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${one}/status`, 'utf8'));
    total += match ? Number(match[1]) * 1_024 : 0;
  }
  return total;
}

/** Every transaction's commit end LSN with the event ids it holds, from a slot that was never read. */
async function commitsOf(sql: Sql, schema: string, slot: string, publication: string): Promise<{ endLsn: bigint; eventIds: string[] }[]> {
  const decoder = new PgoutputDecoder(schema);
  const rows = await sql<{ data: Buffer }[]>`SELECT data FROM pg_logical_slot_peek_binary_changes(${slot}, NULL, NULL, 'proto_version', '1', 'publication_names', ${publication})`;
  const commits: { endLsn: bigint; eventIds: string[] }[] = [];
  let open: string[] = [];
  for (const { data } of rows) {
    const message = decoder.decode(data);
    if (message.tag === 'begin') open = [];
    else if (message.tag === 'insert') open.push(message.row.eventId.toString('utf8'));
    else if (message.tag === 'commit') commits.push({ endLsn: message.endLsn, eventIds: open });
  }
  return commits;
}

/** The index of the last entry (sorted by endLsn) ending at or before `lsn`; -1 if none. */
function lastAtOrBefore(sorted: readonly { endLsn: bigint }[], lsn: bigint): number {
  let low = 0;
  let high = sorted.length - 1;
  let found = -1;
  while (low <= high) {
    const mid = (low + high) >> 1;
    if (sorted[mid]!.endLsn <= lsn) {
      found = mid;
      low = mid + 1;
    } else high = mid - 1;
  }
  return found;
}

/** When each event reached Kafka (the broker's append time), read from the beginning of the topic. */
async function appendTimes(kafka: Kafka, topic: string, expected: number): Promise<Map<string, number>> {
  const times = new Map<string, number>();
  const consumer = kafka.consumer({ groupId: `outage-reader-${Date.now()}`, maxWaitTimeInMs: 500 });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        const id = message.headers?.[HEADERS.eventId]?.toString();
        if (id && !times.has(id)) times.set(id, Number(message.timestamp));
      },
    });
    const deadline = performance.now() + 120_000;
    while (times.size < expected && performance.now() < deadline) await sleep(200);
    return times;
  } finally {
    await consumer.disconnect();
  }
}

/**
 * `at` on the run's clock; `readAt` the wall clock once the slot's row was
 * read, the time the check compares with Kafka's append times (the broker's
 * wall clock): a position seen by then was confirmed by then, and the run's
 * clock is anchored to the wall clock only at its start.
 */
type TimedSample = OutageSample & { at: number; readAt: number };

/** Reads the slot, the relay's memory and (each second) the outbox's size until stopped. */
function startSampler(sql: Sql, slotName: string, relayPid: number | undefined, startAt: number) {
  const samples: TimedSample[] = [];
  const outbox: { at: number; rows: number }[] = [];
  let sampling = true;
  const loop = (async () => {
    let lastOutbox = 0;
    while (sampling) {
      const at = nowMs();
      const [slot] = await sql<{ confirmed: string | null; retained: number | null }[]>`
        SELECT confirmed_flush_lsn::text AS confirmed, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float8 AS retained FROM pg_replication_slots WHERE slot_name = ${slotName}`.catch(() => []);
      const readAt = Date.now();
      samples.push({ at, readAt, t: Math.round(at - startAt) / 1_000, confirmedLsn: slot?.confirmed ?? null, retainedWalBytes: slot?.retained ?? null, relayRssBytes: rssBytes(relayPid) });
      if (at - lastOutbox >= 1_000) {
        lastOutbox = at;
        const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox`.catch(() => []);
        if (row) outbox.push({ at, rows: row.n });
      }
      await sleep(Math.max(0, SAMPLE_MS - (nowMs() - at)));
    }
  })();
  return {
    samples,
    outbox,
    stop: async () => {
      sampling = false;
      await loop;
    },
  };
}

/** When Kafka held every committed event, or undefined if it did not in time. */
async function caughtUp(admin: Admin, topic: string, committed: number, outageS: number): Promise<number | undefined> {
  let inKafka = 0;
  // Rationale: catching up takes a fraction of the outage here (the relay
  // publishes far faster than the writers commit); twice the outage, and at
  // least a minute, tells a stuck relay from a slow one.
  const deadline = performance.now() + Math.max(60, 2 * outageS) * 1_000;
  while (inKafka < committed && performance.now() < deadline) {
    inKafka = await endOffsets(admin, topic).catch(() => inKafka);
    if (inKafka < committed) await sleep(200);
  }
  return inKafka >= committed ? nowMs() : undefined;
}

/**
 * The independent check: every transaction that ends at or before a sampled
 * confirmed position must have been in Kafka by the time of the sample.
 */
export function confirmationsAheadOfKafka(
  commits: readonly { endLsn: bigint; eventIds: readonly string[] }[],
  appended: ReadonlyMap<string, number>,
  samples: readonly Pick<TimedSample, 'confirmedLsn' | 'readAt'>[],
): { confirmedSamples: number; ahead: number; aheadByMs: number | null } {
  // Per transaction, in commit order: when its last event was in Kafka; then the latest of those up to each.
  const ordered = commits
    .map((c) => ({ endLsn: c.endLsn, at: c.eventIds.reduce((latest, id) => Math.max(latest, appended.get(id) ?? Number.POSITIVE_INFINITY), Number.NEGATIVE_INFINITY) }))
    .sort((a, b) => (a.endLsn < b.endLsn ? -1 : a.endLsn > b.endLsn ? 1 : 0));
  const allInBy: number[] = [];
  for (const [i, c] of ordered.entries()) allInBy.push(Math.max(c.at, allInBy[i - 1] ?? Number.NEGATIVE_INFINITY));
  let ahead = 0;
  let confirmedSamples = 0;
  let aheadByMs: number | null = null;
  for (const sample of samples) {
    if (!sample.confirmedLsn) continue;
    confirmedSamples += 1;
    const last = lastAtOrBefore(ordered, parseLsn(sample.confirmedLsn));
    if (last >= 0 && allInBy[last]! > sample.readAt) {
      ahead += 1;
      aheadByMs = Math.max(aheadByMs ?? 0, allInBy[last]! - sample.readAt);
    }
  }
  return { confirmedSamples, ahead, aheadByMs };
}

export async function runOutage(context: ScenarioContext, outageS: number, rate: number, steadyS = STEADY_S): Promise<OutageRun> {
  const { infra, log } = context;
  if (infra.kafka.external) throw new OutboxBenchError('USAGE', 'the outage scenario stops the Kafka broker: it needs the local one (unset KAFKA_BROKERS)');
  const p: PipelineParameters = { ...context.parameters, relayMode: 'cdc', store: 'table', rate, warmupS: 0, durationS: 2 * steadyS + outageS, ordersPerTransaction: 10 };
  // Our CDC relay: what it confirms to its slot while Kafka is down is what this run checks.
  const driver = DRIVERS.ours;
  const run = await openRun({ infra, log, name: `outage-${outageS}`, partitions: p.partitions, topicConfig: { 'message.timestamp.type': 'LogAppendTime' }, relay: driver.provisioning(p) });
  const settings = run.relay!.settings;
  const shadow = `${settings.slotName}_shadow`;
  const admin: Admin = run.kafka.admin();
  const pool = loadPool(p.workers);
  let relay: RunningRelay | undefined;
  try {
    // A run killed before its clean-up leaves its shadow slot behind.
    await run.sql`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = ${shadow} AND NOT active`;
    await run.sql`SELECT pg_create_logical_replication_slot(${shadow}, 'pgoutput')`;
    relay = await driver.start(driverRunOf({ infra, log, rawDir: `${context.outDir}/raw/outage-${outageS}` }, run, p));
    const relayPid = relay.child.pid;
    const plan = planLoad(p);
    const startAt = Math.ceil(nowMs()) + 1_000;
    const load = runLoad(pool, { databaseUrl: infra.databaseUrl, schema: run.schema, runTag: newRunTag(), plan, startAt, measureFrom: startAt, measureTo: startAt + p.durationS * 1_000, p });
    const sampler = startSampler(run.sql, settings.slotName, relayPid, startAt);
    const { samples, outbox } = sampler;
    await sleep(Math.max(0, startAt + steadyS * 1_000 - nowMs()));
    const stoppedAt = nowMs();
    process.stderr.write(`  outage: Kafka stopped for ${outageS} s\n`);
    await infra.kafka.stop('kill');
    await sleep(outageS * 1_000);
    // Kafka is down until here for sure; the broker's own start (a JVM on a
    // loaded machine, seconds) comes after, and is timed apart.
    const startedAt = nowMs();
    await infra.kafka.start();
    const brokerStartS = Math.round(nowMs() - startedAt) / 1_000;
    process.stderr.write('  outage: Kafka is back\n');
    const loads = await load;
    const committed = loads.reduce((sum, r) => sum + r.committed, 0);
    await admin.connect();
    const caughtUpAt = await caughtUp(admin, run.topic, committed, outageS);
    await sleep(2_000);
    await sampler.stop();

    // The independent check, now that everything is in.
    const commits = await commitsOf(run.sql, run.schema, shadow, settings.publicationName);
    const appended = await appendTimes(run.kafka, run.topic, committed);
    const { confirmedSamples, ahead, aheadByMs } = confirmationsAheadOfKafka(commits, appended, samples);
    const at = (when: number) => samples.reduce((best, s) => (Math.abs(s.at - when) < Math.abs(best.at - when) ? s : best), samples[0]!);
    const rowsAt = (when: number) => outbox.reduce((best, o) => (Math.abs(o.at - when) < Math.abs(best.at - when) ? o : best), outbox[0] ?? { at: when, rows: 0 });
    const during = samples.filter((s) => s.at >= stoppedAt && s.at <= (caughtUpAt ?? nowMs()));
    const minutes = outageS / 60;
    const walStop = at(stoppedAt).retainedWalBytes;
    const walStart = at(startedAt).retainedWalBytes;
    const toMiB = (bytes: number | null | undefined) => (bytes === null || bytes === undefined ? null : Math.round((bytes / 1024 ** 2) * 10) / 10);
    return {
      outageS,
      rate,
      committed,
      delivered: appended.size,
      confirmedSamples,
      confirmedAheadOfKafka: ahead,
      ...(aheadByMs === null ? {} : { confirmedAheadByMs: Math.round(aheadByMs) }),
      relayRssMiB: {
        before: toMiB(at(stoppedAt - 1_000).relayRssBytes),
        peak: toMiB(Math.max(...during.map((s) => s.relayRssBytes ?? 0))),
        after: toMiB(samples.at(-1)?.relayRssBytes),
      },
      retainedWalMiB: { atStop: toMiB(walStop), atStart: toMiB(walStart), perMinute: walStop === null || walStart === null ? null : toMiB((walStart - walStop) / minutes) },
      outboxRows: { atStop: rowsAt(stoppedAt).rows, atStart: rowsAt(startedAt).rows, perMinute: Math.round((rowsAt(startedAt).rows - rowsAt(stoppedAt).rows) / minutes) },
      catchUpS: caughtUpAt === undefined ? null : Math.round(caughtUpAt - startedAt) / 1_000,
      brokerStartS,
      relayRestarted: relay.child.exitCode !== null || relay.child.pid !== relayPid,
      samples: samples.filter((_, i) => i % 10 === 0).map(({ at: _at, readAt: _readAt, ...rest }) => rest),
    };
  } finally {
    await pool.destroy().catch(() => {});
    if (relay) await stopRelay(relay).catch(() => {});
    await admin.disconnect().catch(() => {});
    await run.sql`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = ${shadow} AND NOT active`.catch(() => {});
    await run.close();
  }
}

/** What makes an outage run fail: a confirmation ahead of Kafka, an event that never arrived, a relay that needed a restart. */
export function outageFailures(result: OutageRun): string[] {
  return [
    ...(result.confirmedAheadOfKafka > 0 ? [`${result.confirmedAheadOfKafka} confirmed positions were ahead of Kafka (by up to ${result.confirmedAheadByMs ?? '?'} ms)`] : []),
    ...(result.delivered < result.committed ? [`${result.committed - result.delivered} committed events never reached Kafka`] : []),
    ...(result.relayRestarted ? ['the relay had to be restarted'] : []),
    ...(result.confirmedSamples === 0 ? ['no confirmed position was sampled'] : []),
  ];
}

function report(context: ReportContext, folder: string): string[] {
  const summary = anySummary<OutageResult>(context, folder);
  const runs = summary?.extra?.runs;
  if (!summary || !runs || runs.length === 0) return [];
  return [
    '## Kafka down under load',
    '',
    'The CDC relay while the Kafka broker is killed and kept down, the writers committing throughout. Its confirmed position is checked ' +
      'against an independent record: a second slot, never read, gives every transaction\'s commit position, and the topic every event\'s ' +
      `append time; a sample is *ahead* when a transaction it confirms was not all in Kafka yet. Command: \`${summary.command}\`.`,
    '',
    '| Kafka down (s) | offered events/s | committed | in Kafka at the end | confirmed samples (ahead of Kafka) | relay RSS before / peak / after (MiB) | retained WAL when down → started again (MiB, per minute) | outbox rows per minute of outage | broker start (s) | every event in Kafka after the start began (s) | relay restarted |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
    ...runs.map(
      (r) =>
        `| ${r.outageS} | ${f(r.rate)} | ${f(r.committed)} | ${f(r.delivered)} | ${f(r.confirmedSamples)} (**${r.confirmedAheadOfKafka}**) | ` +
        `${f(r.relayRssMiB.before)} / ${f(r.relayRssMiB.peak)} / ${f(r.relayRssMiB.after)} | ${f(r.retainedWalMiB.atStop)} → ${f(r.retainedWalMiB.atStart)} (${f(r.retainedWalMiB.perMinute)}) | ` +
        `${f(r.outboxRows.perMinute)} | ${f(r.brokerStartS, 1)} | ${f(r.catchUpS, 1)} | ${r.relayRestarted ? 'yes' : 'no'} |`,
    ),
    '',
  ];
}

export const outage: Scenario = {
  name: 'outage',
  description: 'Kafka killed under load and kept down, then back: the CDC relay\'s memory, its confirmations against Kafka\'s, the WAL and outbox growth',
  defaults: { relayMode: 'cdc', store: 'table' },
  standalone: true,
  flags: {
    'outage-s': { description: 'seconds Kafka stays down in the first run', defaultValue: 60, min: 1, max: 3_600 },
    'long-outage-s': { description: 'seconds Kafka stays down in the second run (0: no second run)', defaultValue: 600, min: 0, max: 7_200 },
    'outage-rate': { description: 'events per second the writers offer throughout', defaultValue: 1_000, min: 10, max: 100_000 },
  },
  async run(context) {
    const rate = context.option('outage-rate');
    const lengths = [context.option('outage-s'), context.option('long-outage-s')].filter((s) => s > 0);
    const runs: OutageRun[] = [];
    const lines: string[] = [];
    for (const outageS of lengths) {
      const result = await runOutage(context, outageS, rate);
      const failures = outageFailures(result);
      const line =
        `outage of ${result.outageS} s at ${result.rate}/s: ${result.confirmedSamples} confirmed samples, ${result.confirmedAheadOfKafka} ahead of Kafka; relay RSS ${result.relayRssMiB.before} -> peak ${result.relayRssMiB.peak} MiB; ` +
        `retained WAL ${result.retainedWalMiB.perMinute} MiB and outbox ${result.outboxRows.perMinute} rows per minute down; caught up ${result.catchUpS} s after Kafka came back`;
      if (failures.length > 0) throw new OutboxBenchError('CHECK_FAILED', `${line}: ${failures.join('; ')}`);
      runs.push(result);
      lines.push(line);
    }
    return { title: 'Kafka down under load', runs: [], extra: { runs } satisfies OutageResult, lines };
  },
  report,
};
