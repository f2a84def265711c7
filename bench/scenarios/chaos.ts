/**
 * The crash-injection matrix as scenarios of the runner: each row is a
 * scenario on servers of its own (they get killed), and `chaos` names them
 * all. A sitting starts each kind of servers once, runs the rows on the same
 * seeded schedule, prints the matrix and writes results/chaos/summary.json.
 *
 * With `--soak N` every row that can take faults again and again runs until
 * at least N faults hit a process at work, at 1,000 events/s, and merges into
 * results/chaos-soak/ (a row run again replaces its earlier result), so rows
 * can run in separate sittings.
 */
import { randomInt } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createSql } from '../../src/db.js';
import { OutboxBenchError } from '../../src/errors.js';
import { MATRIX, runRow, startChaosServers, type ChaosServers, type RowResult, type RowSpec } from '../chaos/matrix.js';
import { formatFaults } from '../chaos/report.js';
import { captureEnvironment, shownPath } from '../harness/environment.js';
import type { FlagSpecs } from '../flags.js';
import type { GroupSitting, OwnServersContext, OwnServersScenario, ScenarioGroup } from '../scenario.js';

// Five events per transaction is the matrix's shape: the writer offers the
// rate as transactions of this many.
const EVENTS_PER_TRANSACTION = 5;
// Rationale: at 1,000 events/s a relay is inside a pass most of the time, so
// faults hit.
const SOAK_RATE = 1_000;
// Rationale: the slowest row (a Kafka kill every 10-15 s) reaches 100 hits in
// about 25 minutes; an hour leaves room before a row is called short.
const SOAK_MAX_DURATION_S = 3_600;

const soaking = (given: (name: string) => boolean) => given('soak');

const FLAGS: FlagSpecs = {
  seed: { description: 'seed of the fault schedules and failpoints', defaultValue: 0, defaultText: 'random, printed', defaultFrom: () => randomInt(1, 2 ** 31 - 1), min: 0, max: 2 ** 31 },
  'duration-s': {
    description: 'seconds of faults per row (with --soak, the most a row may take)',
    defaultValue: 20,
    defaultText: `20; ${SOAK_MAX_DURATION_S} with --soak`,
    defaultFrom: (given) => (soaking(given) ? SOAK_MAX_DURATION_S : 20),
    min: 3,
    max: 86_400,
    formerly: ['window-s'],
  },
  'drain-timeout-s': { description: 'give up draining after this many seconds without progress', defaultValue: 60, min: 5, max: 3_600, formerly: ['drain-s'] },
  rate: {
    description: `events per second the writer offers, in transactions of ${EVENTS_PER_TRANSACTION}`,
    defaultValue: 200,
    defaultText: `200; ${SOAK_RATE.toLocaleString('en-US')} with --soak`,
    defaultFrom: (given) => (soaking(given) ? SOAK_RATE : 200),
    min: EVENTS_PER_TRANSACTION,
    max: 1_000 * EVENTS_PER_TRANSACTION,
    formerly: [
      {
        name: 'tps',
        convert: (raw) => (/^\s*\d+\s*$/.test(raw) ? String(Number(raw) * EVENTS_PER_TRANSACTION) : raw),
        note: `events/s: --tps N counted transactions of ${EVENTS_PER_TRANSACTION} events, so --tps 40 is --rate 200`,
      },
    ],
  },
  soak: {
    description:
      'run each outbox row (not postgres-failover: it fails over once) until at least n faults hit a process at work (all its kinds, failpoints included); rows merge into results/chaos-soak/, a row run again replaces its result',
    defaultValue: 0,
    defaultText: 'no soak',
    min: 1,
    max: 100_000,
  },
};

/** A soak runs the outbox rows that can take faults again and again: a failover leaves no standby to fail over to a second time. */
const soakable = (row: RowSpec) => row.expect.lost === 'none' && row.postgres !== 'failover';

export function formatMatrix(results: readonly RowResult[]): string[] {
  const header = ['row', 'faults (hit/injected)', 'committed', 'delivered', 'lost', 'unexpected', 'dup. deliveries', 'applied twice', 'reorderings', 'verdict'];
  const rows = results.map((r) => [
    r.name,
    formatFaults(r.faults),
    String(r.report.committed),
    String(r.report.delivered),
    String(r.report.lost),
    String(r.report.unexpected),
    String(r.report.duplicateDeliveries),
    String(r.report.appliedTwice),
    String(r.report.reorderings),
    r.passed ? 'as expected' : `FAILED: ${r.failures.join('; ')}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 || i === 1 || i === cells.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), ...rows.map(line)];
}

/** A soak row with the run it came from, so rows of several sittings can be told apart. */
type SoakRow = RowResult & { run: { command: string; date: string; gitCommit: string } };

/** The soak rows already published, with this sitting's replacing any of the same name, in matrix order. */
function mergeSoakRows(file: string, results: readonly RowResult[], run: SoakRow['run']): SoakRow[] {
  const earlier = existsSync(file) ? ((JSON.parse(readFileSync(file, 'utf8')) as { extra?: { rows?: SoakRow[] } }).extra?.rows ?? []) : [];
  const byName = new Map(earlier.map((row) => [row.name, row]));
  for (const result of results) byName.set(result.name, { ...result, run });
  return MATRIX.flatMap((spec) => byName.get(spec.name) ?? []);
}

function printRow(result: RowResult): void {
  process.stderr.write(`  ${result.passed ? 'as expected' : `FAILED: ${result.failures.join('; ')}`} (committed ${result.report.committed}, lost ${result.report.lost}, duplicate deliveries ${result.report.duplicateDeliveries}, applied twice ${result.report.appliedTwice}, reorderings ${result.report.reorderings})\n`);
  const { baseline, faults } = result.latency;
  if (faults.length === 0) return;
  const worst = Math.round(Math.max(...faults.map((f) => f.maxMs ?? 0)));
  const gap = Math.round(Math.max(...faults.map((f) => f.commitGapMs ?? 0)));
  const kinds = [...new Set(faults.map((f) => f.kind))].join('/');
  process.stderr.write(`  latency: commit -> receipt p99 ${Math.round(baseline.p99Ms ?? 0)} ms before faults; worst ${worst} ms in the 10 s after a ${kinds}; writes stopped up to ${gap} ms\n`);
}

/** The sitting's settings, read once: the seed's default is drawn here, so every row shares it. */
function settings(context: OwnServersContext) {
  const targetHits = context.given('soak') ? context.option('soak') : undefined;
  return { seed: context.option('seed'), windowS: context.option('duration-s'), drainS: context.option('drain-timeout-s'), rate: context.option('rate'), targetHits };
}

async function open(context: OwnServersContext): Promise<GroupSitting> {
  const { config, log } = context;
  const { seed, windowS, drainS, rate, targetHits } = settings(context);
  const workDir = path.join(config.dataDir, 'chaos');
  rmSync(workDir, { recursive: true, force: true });
  mkdirSync(workDir, { recursive: true });
  process.stderr.write(`chaos: seed ${seed} (replay with --seed ${seed}); starting a PostgreSQL and a Kafka of its own (a 3-broker cluster for the cluster rows) in ${workDir}\n`);
  // Each kind of servers once, when the first row that needs it comes.
  const started = new Map<string, Promise<ChaosServers>>();
  const serversFor = (spec: RowSpec): Promise<ChaosServers> => {
    const kind = spec.kafka ?? spec.postgres ?? 'single';
    let servers = started.get(kind);
    if (!servers) {
      servers = startChaosServers(workDir, log, { kafkaNodes: kind === 'cluster' ? 3 : 1, standby: kind === 'failover', portBase: config.chaosPortBase });
      started.set(kind, servers);
      context.atExit(`chaos servers (${kind})`, async () => (await servers!.catch(() => undefined))?.stop());
    }
    return servers;
  };
  let environment: Awaited<ReturnType<typeof captureEnvironment>> | undefined;
  const results: RowResult[] = [];
  return {
    async run(member) {
      const spec = MATRIX.find((row) => row.name === member.name)!;
      const servers = await serversFor(spec);
      if (!environment) {
        const probe = createSql(servers.databaseUrl, 'public', { max: 1 });
        environment = await captureEnvironment(probe, servers.config, { postgres: servers.postgres, kafka: servers.kafka, kafkaBrokers: servers.kafka.brokers });
        await probe.end({ timeout: 5 });
      }
      process.stderr.write(`chaos: ${spec.name}: ${spec.description}\n`);
      const transactionsPerSecond = rate / EVENTS_PER_TRANSACTION;
      const result = await runRow(spec, { servers, workDir, seed, faultWindowS: windowS, targetHits, drainTimeoutS: drainS, transactionsPerSecond, log });
      results.push(result);
      printRow(result);
    },
    async publish() {
      process.stdout.write(`${formatMatrix(results).join('\n')}\n`);
      const soak = targetHits !== undefined;
      const dir = path.join(context.outRoot, soak ? 'chaos-soak' : 'chaos');
      mkdirSync(dir, { recursive: true });
      const command = `node dist/bench/run.js chaos ${soak ? `--soak ${targetHits} ` : ''}--seed ${seed} --duration-s ${windowS} --rate ${rate}`;
      const rows = soak ? mergeSoakRows(path.join(dir, 'summary.json'), results, { command, date: new Date().toISOString(), gitCommit: environment!.gitCommit }) : results;
      const summary = {
        scenario: soak ? 'chaos-soak' : 'chaos',
        title: soak ? 'Crash-injection soak' : 'Crash-injection matrix',
        date: new Date().toISOString(),
        command,
        seed,
        windowS,
        transactionsPerSecond: rate / EVENTS_PER_TRANSACTION,
        targetHits,
        runs: [],
        extra: { rows },
        environment,
      };
      writeFileSync(path.join(dir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
      process.stdout.write(`results: ${shownPath(path.join(dir, 'summary.json'))}\n`);
      return results.filter((r) => !r.passed).map((r) => r.name);
    },
  };
}

export const CHAOS: ScenarioGroup = {
  name: 'chaos',
  description: `the crash-injection matrix, every row below (with --soak, every outbox row that can take faults again and again); its servers take ports from OUTBOX_BENCH_CHAOS_PORT_BASE up (3,600 of them; two sittings side by side: bases 4,000 apart)`,
  flags: FLAGS,
  members: (context) => CHAOS_ROWS.filter((row) => !soaking(context.given) || soakable(MATRIX.find((spec) => spec.name === row.name)!)),
  check(members, context) {
    if (!soaking(context.given)) return;
    const once = members.filter((row) => !soakable(MATRIX.find((spec) => spec.name === row.name)!)).map((row) => row.name);
    if (once.length > 0) throw new OutboxBenchError('USAGE', `--soak: ${once.join(', ')} cannot take faults again and again (a failover happens once; the naive dual write is not an outbox); leave it out`);
  },
  open,
};

/** Every row of the matrix, a scenario each. */
export const CHAOS_ROWS: readonly OwnServersScenario[] = MATRIX.map((row) => ({ name: row.name, description: row.description, servers: 'own', group: CHAOS, standalone: true }));
