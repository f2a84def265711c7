/**
 * CPU time and peak memory of processes, read from /proc (Linux), for the
 * benchmarks' cost-per-event figures. Elsewhere every reading is undefined
 * and the report says "not measured" rather than inventing a number.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

interface Stat {
  ppid: number;
  /** utime + stime of the process itself, clock ticks (whole numbers, so sums are exact). */
  own: number;
  /** cutime + cstime: CPU of children it has waited for, clock ticks. */
  reapedChildren: number;
}

function readStat(pid: number): Stat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const num = (index: number) => Number(fields[index - 3]);
  return { ppid: num(4), own: num(14) + num(15), reapedChildren: num(16) + num(17) };
}

/** Every process now, with its stat; one that exits during the scan is left out. */
function* liveProcesses(): Generator<{ pid: number; stat: Stat }> {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const stat = readStat(pid);
    if (stat) yield { pid, stat };
  }
}

const STATUS_FIELDS = { VmHWM: /VmHWM:\s+(\d+) kB/, VmRSS: /VmRSS:\s+(\d+) kB/ } as const;

/** A `kB` field of /proc/<pid>/status (peak or current resident memory), bytes; undefined if the process is gone. */
function statusBytes(pid: number, field: keyof typeof STATUS_FIELDS): number | undefined {
  try {
    const match = STATUS_FIELDS[field].exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1_024 : undefined;
  } catch {
    return undefined;
  }
}

/** CPU seconds used so far by one process (all its threads). */
export function processCpuSeconds(pid: number): number | undefined {
  const stat = readStat(pid);
  return stat && stat.own / clockTicks();
}

// Rationale: a reap lands inside a scan (a few ms) only while connections are
// closing; five scans in a row each crossing one means a storm of exits, and
// the reading is then taken as it stands rather than waiting it out.
const MAX_SCANS = 5;

/**
 * CPU seconds of a process tree that forks short-lived children (PostgreSQL's
 * postmaster and its backends): the root, its live children, and the children
 * it has already reaped. A child reaped while /proc is scanned would be in
 * neither sum (gone from the scan, not yet in the root's reaped total when
 * that was read), and a backend that closes as a window ends can carry
 * seconds of CPU; so the scan repeats until the root's reaped total is the
 * same before and after it.
 */
export function processTreeCpuSeconds(rootPid: number): number | undefined {
  for (let attempt = 0; ; attempt++) {
    const before = readStat(rootPid);
    if (!before) return undefined;
    let children = 0;
    for (const { stat } of liveProcesses()) if (stat.ppid === rootPid) children += stat.own;
    const after = readStat(rootPid);
    if (!after) return undefined;
    if (after.reapedChildren === before.reapedChildren || attempt + 1 >= MAX_SCANS) return (after.own + after.reapedChildren + children) / clockTicks();
  }
}

/** Peak resident memory (VmHWM) of a process, bytes. */
export function peakRssBytes(pid: number): number | undefined {
  return statusBytes(pid, 'VmHWM');
}

/** A process and all its descendants (replicas, shards), parents before children; empty if it is gone. */
export function processTreePids(rootPid: number): number[] {
  const children = new Map<number, number[]>();
  for (const { pid, stat } of liveProcesses()) {
    const siblings = children.get(stat.ppid);
    if (siblings) siblings.push(pid);
    else children.set(stat.ppid, [pid]);
  }
  if (!readStat(rootPid)) return [];
  const tree = [rootPid];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]!) ?? []));
  return tree;
}

/** Resident memory (VmRSS) of a process tree right now, bytes, summed over its processes. */
export function processTreeRssBytes(rootPid: number): number | undefined {
  const pids = processTreePids(rootPid);
  if (pids.length === 0) return undefined;
  let total = 0;
  // One that exited between the scan and the read holds no memory now.
  for (const pid of pids) total += statusBytes(pid, 'VmRSS') ?? 0;
  return total;
}

/**
 * Proportional memory (PSS) of a process and its live children right now,
 * bytes. For PostgreSQL this is the honest figure: every backend maps the
 * shared buffers, so summing their RSS would count them once per backend.
 */
export function processTreePssBytes(rootPid: number): number | undefined {
  const pss = (pid: number) => {
    try {
      const match = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
      return match ? Number(match[1]) * 1_024 : undefined;
    } catch {
      return undefined;
    }
  };
  let total = pss(rootPid);
  if (total === undefined) return undefined;
  for (const { pid, stat } of liveProcesses()) if (stat.ppid === rootPid) total += pss(pid) ?? 0;
  return total;
}

/**
 * A process's CPU seconds split by thread: its main thread (where Node runs
 * JavaScript, so one process's ceiling) and every other thread (libuv's
 * pool, V8's GC and compiler helpers, a native client's own threads).
 */
export function threadCpuSeconds(pid: number): { main: number; other: number } | undefined {
  const main = readTaskSeconds(pid, pid);
  if (main === undefined) return undefined;
  let other = 0;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      if (Number(tid) !== pid) other += readTaskSeconds(pid, Number(tid)) ?? 0;
    }
  } catch {
    return undefined;
  }
  return { main, other };
}

/**
 * A thread's group: its name with a pool's numbering made `N` (after `#`,
 * `-` or `(`, or at the end: "GC Thread#1" and "GC Thread#0" are one group,
 * "pool-3-thread-1" is "pool-N-thread-N"), so a pool's threads add up while
 * "C2 CompilerThre" and "G1 Conc#0"'s "G1" keep their names.
 */
export function threadGroupOf(name: string): string {
  return name.trim().replace(/(?<=[#(-])\d+|\d+$/g, 'N');
}

/**
 * A process's CPU seconds so far by thread group (the thread's name as the
 * kernel keeps it, at most 15 characters, numbers made `N`); threads that
 * exit take their CPU with them, so read it over windows where few do.
 */
export function threadGroupCpuSeconds(pid: number): Map<string, number> | undefined {
  const groups = new Map<string, number>();
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const task = readTask(pid, Number(tid));
      if (!task) continue;
      const name = threadGroupOf(task.name);
      groups.set(name, (groups.get(name) ?? 0) + task.seconds);
    }
  } catch {
    return undefined;
  }
  return groups;
}

function readTaskSeconds(pid: number, tid: number): number | undefined {
  return readTask(pid, tid)?.seconds;
}

/** A thread's name and CPU seconds so far, from its stat; undefined once it has exited. */
function readTask(pid: number, tid: number): { name: string; seconds: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The name is field 2, in parentheses (it may hold spaces and parentheses itself): the fields follow the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { name: text.slice(text.indexOf('(') + 1, text.lastIndexOf(')')), seconds: (Number(fields[11]) + Number(fields[12])) / clockTicks() };
}

/** Pids of a process's live children. */
export function childPids(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    if (readStat(Number(entry))?.ppid === pid) children.push(Number(entry));
  }
  return children;
}
