/**
 * The crash matrix's sections of results/README.md: the short matrix
 * (results/chaos) and the soak (results/chaos-soak), both written by the
 * runner's chaos group (bench/scenarios/chaos.ts).
 */
import { anySummary, legacyNote, whole as ms, type ReportContext, type Summary } from '../report/kit.js';
import type { RowResult } from './matrix.js';

/** `kind hit/injected, ...`; legacy results recorded a bare count of injected faults. */
export function formatFaults(faults: RowResult['faults'] | Record<string, number>): string {
  const text = Object.entries(faults)
    .map(([kind, n]) => (typeof n === 'number' ? `${kind} ${n}` : `${kind} ${n.hit}/${n.scheduled}`))
    .join(', ');
  return text || 'none';
}

export function chaosReport(context: ReportContext): string[] {
  const summary = anySummary<{ rows?: RowResult[] }>(context, 'chaos') as (Summary<{ rows?: RowResult[] }> & { seed: number; windowS: number }) | undefined;
  const rows = summary?.extra?.rows;
  if (!summary || !rows) return [];
  return [
    '## Crash-injection matrix',
    '',
    ...legacyNote(summary),
    `Every row runs the writer, the relay(s) and the consumer as supervised processes on a PostgreSQL and a Kafka of its own, ` +
      `injects faults for ${summary.windowS} s on a schedule drawn from seed ${summary.seed}, then stops the faults, drains and checks the ` +
      'history: *lost* = committed but never delivered, *unexpected* = delivered but never committed, *duplicate deliveries* = ' +
      'deliveries beyond the first (discarded by the inbox), *applied twice* = ledger rows per event above one, *reorderings* = an ' +
      'aggregate version first delivered after a later one. Why each row behaves as it does: [docs/outbox.md](../docs/outbox.md). ' +
      `Replay: \`${summary.command}\`.`,
    '',
    '| row | what is done to it | faults (hit a process at work / injected) | committed | delivered | lost | duplicate deliveries | applied twice | reorderings | verdict |',
    '|---|---|---|---:|---:|---:|---:|---:|---:|---|',
    ...rows.map(
      (r) =>
        `| ${r.name} | ${r.description} | ${formatFaults(r.faults)} | ${r.report.committed} | ${r.report.delivered} | ` +
        `**${r.report.lost}** | ${r.report.duplicateDeliveries} | **${r.report.appliedTwice}** | ${r.report.reorderings} | ${r.passed ? 'as expected' : `FAILED: ${r.failures.join('; ')}`} |`,
    ),
    '',
    ...faultLatencyTable(rows),
  ];
}

/** Per row and fault kind: what the server and group faults did to commit-to-receipt latency. */
export function faultLatencyTable(rows: readonly RowResult[]): string[] {
  const lines: string[] = [];
  const median = (values: number[]) => values[Math.floor((values.length - 1) / 2)] ?? null;
  for (const row of rows) {
    // Results from before the latency was recorded have none.
    const faults = row.latency?.faults ?? [];
    for (const kind of [...new Set(faults.map((f) => f.kind))]) {
      const ofKind = faults.filter((f) => f.kind === kind);
      const maxima = ofKind.map((f) => f.maxMs ?? 0).sort((a, b) => a - b);
      const p99s = ofKind.map((f) => f.p99Ms ?? 0).sort((a, b) => a - b);
      const gaps = ofKind.map((f) => f.commitGapMs ?? 0).sort((a, b) => a - b);
      const { baseline } = row.latency;
      lines.push(
        `| ${row.name} | ${kind} | ${ofKind.length} | ${ms(baseline.p50Ms)} / ${ms(baseline.p99Ms)} | ${ms(median(p99s))} | ${ms(median(maxima))} | ${ms(maxima.at(-1))} | ` +
          `${ms(baseline.commitGapMs)} | ${ms(gaps.at(-1))} |`,
      );
    }
  }
  if (lines.length === 0) return [];
  return [
    "What the server and group faults cost in latency: commit acknowledgement to the consumer's first receipt (one clock, this " +
      "machine's) of the events committed between the row's start-up (its first 2 s left out) and its first fault, and of those " +
      "committed in the 10 s from each fault's start; and the writer's longest wait between two acknowledged commits (how long " +
      'a fault stopped the writes).',
    '',
    '| row | fault | hits | before any fault p50 / p99 (ms) | after a fault: p99, median of faults (ms) | max, median of faults (ms) | max, worst fault (ms) | longest commit gap before faults (ms) | longest commit gap after a fault, worst (ms) |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|',
    ...lines,
    '',
  ];
}

/** The soak: every row run until its faults hit at least `targetHits` times, at 1,000 events/s. */
export function chaosSoakReport(context: ReportContext): string[] {
  type SoakRow = RowResult & { run?: { command: string; date: string; gitCommit: string } };
  const summary = anySummary<{ rows?: SoakRow[] }>(context, 'chaos-soak') as (Summary<{ rows?: SoakRow[] }> & { targetHits?: number }) | undefined;
  const rows = summary?.extra?.rows;
  if (!summary || !rows || rows.length === 0) return [];
  const hits = (r: RowResult) => Object.values(r.faults).reduce((sum, f) => sum + f.hit, 0);
  return [
    '## Crash-injection soak',
    '',
    `Every row of the matrix, run until at least ${summary.targetHits ?? 'the asked number of'} faults of its kinds (failpoint crashes included) hit a process ` +
      'at work, with the writer offering 1,000 events/s; the servers are killed again every 10-15 s. Same checks as the matrix above. ' +
      'Rows can run in separate sittings; each carries the command and commit it ran with.',
    '',
    '| row | faults (hit / injected) | hits | faults for (s) | committed events/s | committed | delivered | lost | duplicate deliveries | applied twice | reorderings | verdict | run |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.name} | ${formatFaults(r.faults)} | ${hits(r)} | ${r.faultWindowS ?? ''} | ${r.committedPerSec ?? ''} | ${r.report.committed} | ${r.report.delivered} | **${r.report.lost}** | ` +
        `${r.report.duplicateDeliveries} | **${r.report.appliedTwice}** | ${r.report.reorderings} | ${r.passed ? 'as expected' : `FAILED: ${r.failures.join('; ')}`} | ` +
        `${r.run ? `\`${r.run.command}\` at ${r.run.gitCommit.slice(0, 7)}` : ''} |`,
    ),
    '',
    ...faultLatencyTable(rows),
  ];
}

