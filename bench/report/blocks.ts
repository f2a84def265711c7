/**
 * Passages a scenario's report generates that README.md and docs/ place
 * whole (a table, not one figure): each written from its folder's summary by
 * the same code that writes the results page, so there is one generator and
 * the pages cannot differ from it.
 */
import { decisionGrid, decisionTable, headToHeadTable, incompleteNote, type FrontierResult } from '../scenarios/frontier/report.js';
import type { Summary } from './kit.js';

type BlockGenerator = (summary: Summary) => string[];

/** A table of the frontier's summary, under the note an incomplete frontier carries. */
function frontierBlock(table: (extra: FrontierResult) => string[]): BlockGenerator {
  return (summary) => {
    const extra = summary.extra as FrontierResult | undefined;
    if (!extra?.runs) throw new Error('the summary holds no frontier runs');
    return [...incompleteNote(extra), ...table(extra)];
  };
}

const BLOCKS: Record<string, Record<string, BlockGenerator>> = {
  frontier: {
    // The decision table folded: a row per budget, a column per load.
    'decision-grid': frontierBlock(decisionGrid),
    // For a p99 budget at a load, the cheapest relay setting that held it.
    decisions: frontierBlock(decisionTable),
    // Our CDC relay within 50 ms against polling at its default and against Debezium, round by round.
    'head-to-head': frontierBlock(headToHeadTable),
  },
};

/** The Markdown a block marker names, as the report writes it (without its markers). */
export function blockText(folder: string, name: string, summary: Summary): string {
  const generate = BLOCKS[folder]?.[name];
  if (!generate) throw new Error(`no block "${name}" of results/${folder}: ${Object.entries(BLOCKS).flatMap(([f, names]) => Object.keys(names).map((n) => `${f} ${n}`)).join(', ')}`);
  return generate(summary).join('\n').trim();
}
