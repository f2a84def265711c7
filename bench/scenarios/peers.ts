/**
 * Our relays and the established ones on the same machine, the same outbox
 * rows (Debezium reads our table; pg-transactional-outbox gets an equivalent
 * table of its own), the same load and the same consumer, in one run: drain
 * rate of a pre-loaded backlog, sustained throughput, latency at a common
 * rate, CPU per million events, peak memory. Every run is checked for loss.
 */
import { fork } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSql, type Sql } from '../../src/db.js';
import { nowMs } from '../../src/events.js';
import { waitForReady } from '../../src/readiness.js';
import { describeResult } from '../harness/format.js';
import { runPipeline, type LagReading, type PipelineContext, type PipelineParameters } from '../harness/pipeline.js';
import { MIN_STEP_S, runDrain, searchSustained } from '../harness/saturation.js';
import { summarizeRun, type RunSummary } from '../harness/summary.js';
import { DEBEZIUM_DEFAULT, DEBEZIUM_TUNED, DEBEZIUM_VERSION, preparePublication, startDebezium, waitForDebezium, type DebeziumSettings } from '../peers/debezium.js';
import { PTP_TABLE, setupPtp, type PtpMode, type PtpRelayTask } from '../peers/ptp.js';
import type { DrainFigures } from '../harness/accounting.js';
import { decodeHistogram } from '../../src/latency.js';
import { bars, latencyByPercentile } from '../harness/charts.js';
import { anySummary, f, legacyNote, save, type ReportContext } from '../report/kit.js';
import type { Scenario, ScenarioContext } from '../scenario.js';
import { dropIdleSlots, slotLagBytes } from '../../src/relay/slot.js';

const PTP_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'peers', 'ptp.js');

interface Relay {
  name: string;
  /** Who built it and how it was configured, for the report. */
  settings: string;
  parameters: Partial<PipelineParameters>;
  debezium?: DebeziumSettings;
  ptp?: PtpMode;
}

const RELAYS: Relay[] = [
  { name: 'ours: polling', settings: 'polling relay, 500 ms interval, 1000 per pass', parameters: { relayMode: 'polling', store: 'table' } },
  { name: 'ours: skip-locked', settings: '3 SKIP LOCKED replicas, 64 buckets', parameters: { relayMode: 'skip-locked', store: 'table', replicas: 3 } },
  { name: 'ours: cdc', settings: 'CDC relay (pgoutput), outbox table', parameters: { relayMode: 'cdc', store: 'table' } },
  { name: 'ours: cdc-message', settings: 'CDC relay, table-less pg_logical_emit_message events', parameters: { relayMode: 'cdc-message', store: 'message' } },
  { name: 'debezium-default', settings: DEBEZIUM_DEFAULT.rationale, parameters: { store: 'table' }, debezium: DEBEZIUM_DEFAULT },
  { name: 'debezium-tuned', settings: DEBEZIUM_TUNED.rationale, parameters: { store: 'table' }, debezium: DEBEZIUM_TUNED },
  {
    name: 'pg-transactional-outbox polling',
    settings: 'library defaults: 5 messages per poll, 500 ms interval, one message per handler call (one Kafka send each), segment = aggregate id',
    parameters: { store: 'ptp' },
    ptp: 'polling',
  },
  {
    name: 'pg-transactional-outbox replication',
    settings: 'library defaults: logical replication (pgoutput), mutex concurrency (one message at a time), one Kafka send per message',
    parameters: { store: 'ptp' },
    ptp: 'replication',
  },
];

const slug = (name: string) => name.replace(/[^a-z0-9]+/gi, '_').replace(/^_|_$/g, '').toLowerCase();

function contextFor(context: ScenarioContext, relay: Relay, name: string): PipelineContext {
  const slot = `peer_${slug(relay.name)}_slot`;
  const publication = `peer_${slug(relay.name)}_pub`;
  const base = { infra: context.infra, log: context.log, name, rawDir: path.join(context.outDir, 'raw', name), quiet: context.quiet };
  const slotLag = async (sql: Sql): Promise<LagReading> => ({ events: null, bytes: await slotLagBytes(sql, slot) });
  if (relay.debezium) {
    const settings = relay.debezium;
    return {
      ...base,
      peer: {
        lag: slotLag,
        beforeLoad: async (sql, schema) => {
          await dropIdleSlots(sql, { name: slot });
          await preparePublication(sql, schema, publication);
          // Created before any load, so a drain run's backlog is in the slot's WAL.
          await sql`SELECT pg_create_logical_replication_slot(${slot}, 'pgoutput')`;
        },
        start: async (sql, schema, topicPrefix) => {
          const workDir = path.join(base.rawDir, 'connect');
          const started = await startDebezium({
            config: context.config,
            log: context.log,
            databaseUrl: context.infra.databaseUrl,
            kafkaBrokers: context.infra.kafkaBrokers,
            schema,
            topicPrefix,
            slot,
            publication,
            workDir,
            settings,
          });
          await waitForDebezium(sql, slot, started.child, path.join(workDir, 'connect.log'));
          return started;
        },
      },
    };
  }
  if (relay.ptp) {
    const mode = relay.ptp;
    return {
      ...base,
      peer: {
        lag:
          mode === 'replication'
            ? slotLag
            : async (sql) => {
                const [row] = await sql.unsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM ${PTP_TABLE} WHERE processed_at IS NULL`);
                return { events: row?.n ?? null, bytes: null };
              },
        beforeLoad: (sql, schema) => setupPtp(sql, schema, mode, slot, publication),
        start: async (_sql, schema, topicPrefix) => {
          mkdirSync(base.rawDir, { recursive: true });
          const task: PtpRelayTask = {
            mode,
            databaseUrl: context.infra.databaseUrl,
            kafkaBrokers: [...context.infra.kafkaBrokers],
            schema,
            topicPrefix,
            partitions: context.parameters.partitions,
            slot,
            publication,
          };
          const logFile = path.join(base.rawDir, 'ptp-relay.log');
          const spawnedAt = nowMs();
          const child = fork(PTP_SCRIPT, [JSON.stringify(task)], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
          child.stderr!.pipe(createWriteStream(logFile));
          await waitForReady(child, { timeoutMs: 60_000, describe: `the pg-transactional-outbox relay (log: ${logFile})` });
          return { child, spawnedAt };
        },
      },
    };
  }
  // Ours: the run provisions and measures our relay by its mode.
  return base;
}

async function dropPeerSlots(context: ScenarioContext): Promise<void> {
  const sql = createSql(context.infra.databaseUrl, 'public', { max: 1 });
  try {
    await dropIdleSlots(sql, { prefix: 'peer_' });
  } finally {
    await sql.end({ timeout: 5 });
  }
}

export interface PeerResult {
  name: string;
  settings: string;
  commonRate: RunSummary;
  drain: (DrainFigures & { lost: number }) | null;
  /** Offered rate of the highest step that passed twice. */
  sustainedRate: number;
  sustainedSteps: { rate: number; passed: boolean; reasons: string[] }[];
  peakRelayMemoryMiB: number | null;
}

/** What the peers scenario writes into its summary's `extra`. */
interface PeersResult {
  peers: PeerResult[];
  debezium: string;
  ptp: string;
}

/** A peer's sustained rate; summaries written before the confirmation rule carried a delivered count instead. */
function sustainedOf(p: PeerResult): number {
  return p.sustainedRate ?? (p as PeerResult & { sustainedEventsPerSec?: number }).sustainedEventsPerSec ?? 0;
}

function report(context: ReportContext, folder: string): string[] {
  const summary = anySummary<PeersResult>(context, folder);
  const extra = summary?.extra;
  if (!summary || !extra) return [];
  const { charts } = context;
  const rate = extra.peers[0]?.commonRate.parameters.rate;
  const lines = [
    '## Peers side by side: Debezium and pg-transactional-outbox',
    '',
    ...legacyNote(summary),
    `Same machine, same run, same load generator and the same idempotent consumer. Debezium ${extra.debezium} (Kafka Connect standalone, ` +
      `Outbox Event Router) reads our outbox table; pg-transactional-outbox ${extra.ptp} gets an equivalent table of its own, created with ` +
      'its DatabaseSetup, and publishes through the same kafkajs producer settings. *Drain*: a pre-loaded backlog, relay started afterwards. ' +
      `*Sustained*: the step-up search of the saturation scenario. Latency and CPU: at a common ${rate} events/s. ` +
      '*Lost* counts events of the common-rate and drain runs that had not reached the consumer when nothing had arrived for the drain timeout ' +
      `(${extra.peers[0]?.commonRate.parameters.drainTimeoutS ?? 30} s); the checker is the same for every row.`,
    '',
    '| relay | drain events/s | sustained events/s | e2e p50 | p99 | p99.9 (ms) | relay CPU s / 1M | total CPU s / 1M | relay peak memory (MiB) | lost | duplicates |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...extra.peers.map((p) => {
      const r = p.commonRate;
      const sustained = sustainedOf(p);
      return (
        `| ${p.name} | ${f(p.drain?.eventsPerSec)} | ${sustained > 0 ? f(sustained) : `below ${f(p.sustainedSteps[0]?.rate ?? null)}`} | ${f(r.e2eMs.p50)} | ${f(r.e2eMs.p99)} | ${f(r.e2eMs.p999)} | ` +
        `${f(r.cpuSecondsPerMillion.relay)} | ${f(r.cpuSecondsPerMillion.total)} | ${f(p.peakRelayMemoryMiB)} | ${r.lost + (p.drain?.lost ?? 0)} | ${r.duplicates} |`
      );
    }),
    '',
    '<details><summary>How each relay was configured</summary>',
    '',
    ...extra.peers.map((p) => `- **${p.name}**: ${p.settings}`),
    '',
    '</details>',
    '',
  ];
  // Short names keep the legend on one line and the bar labels apart.
  const chartName = (name: string) => name.replace('ours: ', '').replace('debezium-', 'dbz ').replace('pg-transactional-outbox', 'ptp');
  const legend = `dbz = Debezium ${extra.debezium}, ptp = pg-transactional-outbox ${extra.ptp}, the rest are ours`;
  const names = extra.peers.map((p) => chartName(p.name));
  const throughput = bars(
    names,
    [
      { name: 'backlog drain (events/s)', values: extra.peers.map((p) => p.drain?.eventsPerSec ?? null) },
      { name: 'sustained (events/s)', values: extra.peers.map(sustainedOf) },
    ],
    'Throughput: our relays and their peers',
    'events per second',
    `same machine, same run, same consumer; ${legend}`,
  );
  lines.push(`![Peers throughput](${save(charts, 'peers-throughput', throughput)})`, '');
  const latency = latencyByPercentile(
    extra.peers.map((p) => ({ name: chartName(p.name), histogram: decodeHistogram(p.commonRate.histograms.e2e) })),
    'End-to-end latency by percentile: our relays and their peers',
    `${rate} events/s offered to each; ${legend}`,
  );
  lines.push(`![Peers latency](${save(charts, 'peers-latency', latency)})`, '');
  return lines;
}

export const peers: Scenario = {
  name: 'peers',
  description: 'our relays vs Debezium (default, tuned) and pg-transactional-outbox (polling, replication) on the same load',
  standalone: true,
  // Rationale: the common rate has to be one every relay sustains, and
  // pg-transactional-outbox's polling mode drains ~130 events/s here.
  defaults: { rate: 100, ordersPerTransaction: 1, warmupS: 5, durationS: 20, drainTimeoutS: 30 },
  flags: {
    'peer-backlog': { description: 'events pre-loaded for each drain measurement', defaultValue: 10_000, min: 1_000, max: 10_000_000 },
    'peer-max-rate': { description: 'highest rate the sustained search tries', defaultValue: 20_000, min: 100, max: 1_000_000 },
  },
  async run(context) {
    const only = context.list('strategies', RELAYS.map((r) => r.name));
    const results: PeerResult[] = [];
    const lines: string[] = [`peers: common rate ${context.parameters.rate} events/s; Debezium ${DEBEZIUM_VERSION}; pg-transactional-outbox 0.5.7`];
    for (const relay of RELAYS.filter((r) => only.some((o) => r.name.includes(o)))) {
      await dropPeerSlots(context);
      const base: PipelineParameters = { ...context.parameters, ...relay.parameters };
      // 1. The common rate: latency, CPU, memory.
      const common = await runPipeline(contextFor(context, relay, `peer-${slug(relay.name)}`), base);
      const summary = summarizeRun(relay.name, common);
      const label = relay.debezium || relay.ptp ? relay.name : undefined;
      for (const line of describeResult(relay.name, common, label)) process.stderr.write(`${line}\n`);
      // 2. The drain of a pre-loaded backlog.
      await dropPeerSlots(context);
      const drained = await runDrain(contextFor(context, relay, `peer-${slug(relay.name)}-drain`), base, context.option('peer-backlog'), 120);
      // 3. The sustained rate.
      await dropPeerSlots(context);
      const search = await searchSustained(
        contextFor(context, relay, `peer-${slug(relay.name)}-search`),
        { ...base, ordersPerTransaction: 10, warmupS: 5, durationS: MIN_STEP_S },
        { startRate: 100, maxRate: context.option('peer-max-rate'), growth: 2.5, bisections: 2, p99LimitMs: 2_000 },
        (step) => process.stderr.write(`  ${relay.name} @ ${step.rate}/s: ${step.passed ? 'sustained' : step.reasons.join('; ')}\n`),
      );
      const result: PeerResult = {
        name: relay.name,
        settings: relay.settings,
        commonRate: summary,
        drain: drained.drain ? { ...drained.drain, lost: drained.lost } : null,
        sustainedRate: search.sustainedRate,
        sustainedSteps: search.steps.map((s) => ({ rate: s.rate, passed: s.passed, reasons: s.reasons })),
        peakRelayMemoryMiB: summary.memoryMiB.relay,
      };
      results.push(result);
      lines.push(
        `  ${relay.name.padEnd(38)} drain ${String(result.drain?.eventsPerSec ?? 'n/a').padStart(6)}/s  sustained ${String(result.sustainedRate).padStart(6)}/s  ` +
          `e2e p50 ${summary.e2eMs.p50} p99 ${summary.e2eMs.p99} ms  relay CPU s/1M ${summary.cpuSecondsPerMillion.relay ?? 'n/a'}  lost ${summary.lost + (result.drain?.lost ?? 0)}`,
      );
    }
    await dropPeerSlots(context);
    return { title: 'Our relays and their peers on the same workload', runs: results.map((r) => r.commonRate), extra: { peers: results, debezium: DEBEZIUM_VERSION, ptp: '0.5.7' } satisfies PeersResult, lines };
  },
  report,
};
