/**
 * Reading a V8 CPU profile (`node --cpu-prof`): self time per function, the
 * frames a profile's reader looks at first.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileFrame {
  /** `function (file:line)`; `(garbage collector)`, `(program)` and `(idle)` as V8 names them. */
  frame: string;
  selfMs: number;
  /** Share of the busy (non-idle) time. */
  selfShare: number;
}

export interface ProfileSummary {
  file: string;
  busyMs: number;
  top: ProfileFrame[];
}

/** The newest .cpuprofile in `dir`, summarised; undefined when there is none. */
export function summarizeProfileDir(dir: string, topN = 15): ProfileSummary | undefined {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).sort();
  } catch {
    return undefined;
  }
  const file = files.at(-1);
  return file ? summarizeProfile(path.join(dir, file), topN) : undefined;
}

export function summarizeProfile(file: string, topN = 15): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  // Self time: the time deltas of the samples that landed in each node.
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) selfUs.set(samples[i]!, (selfUs.get(samples[i]!) ?? 0) + (deltas[i] ?? 0));
  const byFrame = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const frame = frameName(byId.get(id));
    byFrame.set(frame, (byFrame.get(frame) ?? 0) + us);
  }
  const idle = byFrame.get('(idle)') ?? 0;
  const total = [...byFrame.values()].reduce((a, b) => a + b, 0);
  const busy = Math.max(1, total - idle);
  const top = [...byFrame]
    .filter(([frame]) => frame !== '(idle)')
    .sort((a, b) => b[1] - a[1])
    .slice(0, topN)
    .map(([frame, us]) => ({ frame, selfMs: Math.round(us / 100) / 10, selfShare: Math.round((us / busy) * 1_000) / 1_000 }));
  return { file: path.basename(file), busyMs: Math.round(busy / 1_000), top };
}

function frameName(node: ProfileNode | undefined): string {
  if (!node) return '(unknown)';
  const { functionName, url, lineNumber } = node.callFrame;
  if (!url) return functionName || '(anonymous)';
  // node_modules/<package>/... or the project's dist/... : short enough to read.
  const short = url.replace(/^file:\/\//, '').replace(/^.*node_modules\//, '').replace(/^.*\/dist\//, '');
  return `${functionName || '(anonymous)'} (${short}:${lineNumber + 1})`;
}

/** A profile's top frames as a collapsed Markdown table, for the report. */
export function profileTable(title: string, profile: ProfileSummary, format: (n: number) => string): string[] {
  return [
    `<details><summary>${title} (an extra run under the profiler): top frames by self time (${format(profile.busyMs)} ms busy)</summary>`,
    '',
    '| frame | self (ms) | share |',
    '|---|---:|---:|',
    ...profile.top.map((frame) => `| \`${frame.frame.replace(/\|/g, '\\|')}\` | ${format(frame.selfMs)} | ${(frame.selfShare * 100).toFixed(1)}% |`),
    '',
    '</details>',
    '',
  ];
}

