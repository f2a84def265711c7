/**
 * One transaction of a million events through the CDC relay. PostgreSQL
 * sends a transaction only once it committed, decoding past
 * logical_decoding_work_mem spills in the walsender; the relay cannot publish
 * any of it before the commit arrives and backpressure cannot act inside it,
 * so without a bound the relay holds the whole transaction in its heap. Run
 * with the relay's spill (a transaction past --spill-after waits on disk)
 * and without it (--spill-after 0): the relay's peak memory, the time from
 * COMMIT to the first event in Kafka and to the last, and PostgreSQL's own
 * spill (pg_stat_replication_slots).
 */
import type { Admin } from 'kafkajs';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULTS } from '../../src/config.js';
import { OutboxBenchError } from '../../src/errors.js';
import { nowMs } from '../../src/events.js';
import { endOffsets } from '../harness/drain-figures.js';
import { DRIVERS } from '../drivers/index.js';
import type { RunningRelay } from '../drivers/types.js';
import { driverRunOf, stopRelay } from '../harness/driver-run.js';
import { childPids, peakRssBytes } from '../harness/process-stats.js';
import { openRun } from '../harness/run-setup.js';
import { anySummary, f, type ReportContext } from '../report/kit.js';
import type { Scenario, ScenarioContext } from '../scenario.js';

export interface BigTransactionRun {
  /** The relay's --spill-after (0: the transaction stays in memory). */
  spillAfterEvents: number;
  events: number;
  /** The writer's COMMIT took this long, s (the transaction's INSERT included). */
  writeS: number;
  /** COMMIT returned -> the first event in Kafka, s. */
  firstEventS: number;
  /** COMMIT returned -> the last event in Kafka, s. */
  allEventsS: number;
  /** Peak resident memory of the relay's processes before the transaction and at the end, MiB. */
  relayPeakRssMiBBefore: number | null;
  relayPeakRssMiB: number | null;
  /** PostgreSQL's spill of the slot while decoding (pg_stat_replication_slots). */
  postgresSpill: { transactions: number; count: number; bytes: number } | null;
  missing: number;
}

export interface BigTransactionResult {
  runs: BigTransactionRun[];
}

// Rationale: end offsets read every 100 ms place the first and last event
// within a tenth of a second, and cost the broker next to nothing.
const SAMPLE_MS = 100;
// Rationale: a relay that moves nothing for a minute has stopped.
const STALL_MS = 60_000;

const mib = (bytes: number | undefined) => (bytes === undefined ? null : Math.round(bytes / 1024 ** 2));

/** Peak RSS of a process tree: the relay and any children it has. */
function treePeakRss(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  let total = 0;
  for (const one of [pid, ...childPids(pid)]) total += peakRssBytes(one) ?? 0;
  return total;
}

async function runOnce(context: ScenarioContext, events: number, spillAfterEvents: number): Promise<BigTransactionRun> {
  const { infra, log } = context;
  const p = { ...context.parameters, relayMode: 'cdc' as const };
  const name = `big-transaction-${spillAfterEvents}`;
  // Our relay: the spill threshold measured is its setting.
  const driver = DRIVERS.ours;
  const run = await openRun({ infra, log, name, partitions: p.partitions, relay: driver.provisioning(p) });
  const admin: Admin = run.kafka.admin();
  let relay: RunningRelay | undefined;
  try {
    await admin.connect();
    relay = await driver.start(driverRunOf({ infra, log, rawDir: `${context.outDir}/raw/${name}` }, run, p), { settings: { spillAfterEvents } });
    const before = treePeakRss(relay.child.pid);
    const started = nowMs();
    // One statement, one transaction, written on the server: the load generator would need the million rows in its own heap.
    await run.sql.begin((tx) => tx`
      INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload)
      SELECT gen_random_uuid(), 'order', gen_random_uuid()::text, 1, 'OrderPlaced',
             jsonb_build_object('orderId', n, 'customerId', 'big-' || (n % 1000), 'amountCents', n % 10000, 'currency', 'EUR', 'note', repeat('x', 150))
      FROM generate_series(1, ${events}) AS n`);
    const committedAt = nowMs();
    let first: number | undefined;
    let done = 0;
    let lastChange = performance.now();
    let lastPrinted = performance.now();
    while (done < events && performance.now() - lastChange < STALL_MS) {
      await sleep(SAMPLE_MS);
      const count = await endOffsets(admin, run.topic).catch(() => done);
      if (count > done) lastChange = performance.now();
      if (count > 0 && first === undefined) first = nowMs();
      done = count;
      if (!context.quiet && performance.now() - lastPrinted > 5_000) {
        process.stderr.write(`  ${name}: ${done}/${events} in Kafka\n`);
        lastPrinted = performance.now();
      }
    }
    const allAt = nowMs();
    const [spill] = await run.sql<{ transactions: number; count: number; bytes: number }[]>`
      SELECT spill_txns::int AS transactions, spill_count::int AS count, spill_bytes::float8 AS bytes FROM pg_stat_replication_slots WHERE slot_name = ${run.relay!.settings.slotName}`;
    return {
      spillAfterEvents,
      events,
      writeS: Math.round(committedAt - started) / 1_000,
      firstEventS: first === undefined ? Number.NaN : Math.round(first - committedAt) / 1_000,
      allEventsS: Math.round(allAt - committedAt) / 1_000,
      relayPeakRssMiBBefore: mib(before),
      relayPeakRssMiB: mib(treePeakRss(relay.child.pid)),
      postgresSpill: spill ?? null,
      missing: Math.max(0, events - done),
    };
  } finally {
    if (relay) await stopRelay(relay).catch(() => {});
    await admin.disconnect().catch(() => {});
    await run.close();
  }
}

function report(context: ReportContext, folder: string): string[] {
  const summary = anySummary<BigTransactionResult>(context, folder);
  const runs = summary?.extra?.runs;
  if (!summary || !runs || runs.length === 0) return [];
  return [
    '## One transaction of a million events',
    '',
    `One INSERT of ${runs[0]!.events.toLocaleString('en-US')} outbox rows in a single transaction, through the CDC relay, with the relay's spill ` +
      '(a transaction past `--spill-after` events waits on disk until its commit) and without it (`--spill-after 0`). PostgreSQL sends the ' +
      'transaction only after it committed and spills its own decoding past `logical_decoding_work_mem`; the relay cannot publish before ' +
      `the commit, so without a bound it holds the whole transaction. Command: \`${summary.command}\`.`,
    '',
    '| relay spill after | relay peak RSS before → after (MiB) | COMMIT → first event in Kafka (s) | COMMIT → all (s) | write (s) | PostgreSQL spill (transactions / times / MiB) | missing |',
    '|---:|---:|---:|---:|---:|---:|---:|',
    ...runs.map(
      (r) =>
        `| ${r.spillAfterEvents === 0 ? 'never (in memory)' : f(r.spillAfterEvents)} | ${f(r.relayPeakRssMiBBefore)} → ${f(r.relayPeakRssMiB)} | ${f(r.firstEventS, 2)} | ${f(r.allEventsS, 2)} | ` +
        `${f(r.writeS, 2)} | ${r.postgresSpill ? `${r.postgresSpill.transactions} / ${r.postgresSpill.count} / ${f(r.postgresSpill.bytes / 1024 ** 2)}` : 'n/a'} | ${r.missing} |`,
    ),
    '',
  ];
}

export const bigTransaction: Scenario = {
  name: 'big-transaction',
  description: 'one transaction of a million events through the CDC relay, with and without the relay spilling it to disk',
  defaults: { relayMode: 'cdc', store: 'table' },
  standalone: true,
  flags: {
    'big-events': { description: 'events in the one transaction', defaultValue: 1_000_000, min: 1_000, max: 50_000_000 },
  },
  async run(context) {
    const events = context.option('big-events');
    const runs: BigTransactionRun[] = [];
    for (const spill of [DEFAULTS.spillAfterEvents, 0]) runs.push(await runOnce(context, events, spill));
    const failed = runs.filter((r) => r.missing > 0);
    if (failed.length > 0) throw new OutboxBenchError('CHECK_FAILED', `events missing in Kafka: ${failed.map((r) => `${r.missing} with --spill-after ${r.spillAfterEvents}`).join(', ')}`);
    const lines = runs.map(
      (r) =>
        `big transaction of ${r.events}, spill after ${r.spillAfterEvents || 'never'}: relay peak RSS ${r.relayPeakRssMiBBefore} -> ${r.relayPeakRssMiB} MiB, ` +
        `first event ${r.firstEventS} s after COMMIT, all ${r.allEventsS} s; PostgreSQL spilled ${r.postgresSpill ? `${Math.round(r.postgresSpill.bytes / 1024 ** 2)} MiB` : 'n/a'}`,
    );
    return { title: 'One transaction of a million events through the CDC relay', runs: [], extra: { runs } satisfies BigTransactionResult, lines };
  },
  report,
};
