/**
 * The crash matrix's section of results/README.md (results/chaos, written by
 * bench/chaos.ts).
 */
import { anySummary, legacyNote, type ReportContext, type Summary } from '../report/kit.js';
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
  ];
}

