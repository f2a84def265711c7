/**
 * Named crash points in the code paths whose crash safety we claim. Disarmed
 * they cost one Map lookup. Armed (by code, or by the CRASH_AT env var of a
 * supervised child process) they either kill the process on the spot, as a
 * power cut would, or throw, which lets an in-process test "crash" a component
 * and restart it.
 *
 *   CRASH_AT=relay.after-publish-before-mark:every=50
 *   CRASH_AT=order.after-commit-before-publish:p=0.01:seed=7,consumer.after-apply-before-offset:every=3:action=throw
 */
import { OutboxBenchError } from '../errors.js';

export const FAILPOINTS = [
  'order.after-commit-before-publish',
  'relay.after-publish-before-mark',
  'cdc.after-publish-before-ack',
  'consumer.after-apply-before-offset',
] as const;
export type FailpointName = (typeof FAILPOINTS)[number];

export type FailpointAction = 'kill' | 'throw';

export interface FailpointTrigger {
  action: FailpointAction;
  /** Fire on every Nth hit (1 = every hit). */
  every?: number;
  /** Fire with this probability per hit (seeded, replayable). */
  probability?: number;
  seed?: number;
  /** Fire at most this many times (default unlimited). */
  times?: number;
}

/** Thrown by a failpoint armed with action 'throw'. */
export class FailpointCrash extends OutboxBenchError {
  constructor(readonly failpoint: FailpointName) {
    super('SHUTTING_DOWN', `failpoint ${failpoint} fired`, { details: { failpoint } });
  }
}

interface Armed extends FailpointTrigger {
  hits: number;
  fired: number;
  random: () => number;
}

const armed = new Map<FailpointName, Armed>();

/** mulberry32: a tiny seeded PRNG, so a probabilistic schedule replays exactly. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

export function armFailpoint(name: FailpointName, trigger: FailpointTrigger): void {
  armed.set(name, { ...trigger, hits: 0, fired: 0, random: seededRandom(trigger.seed ?? 1) });
}

export function disarmFailpoint(name?: FailpointName): void {
  if (name) armed.delete(name);
  else armed.clear();
}

/** Marks a crash point. Does nothing unless armed. */
export function failpoint(name: FailpointName): void {
  const point = armed.get(name);
  if (!point) return;
  point.hits += 1;
  if (point.times !== undefined && point.fired >= point.times) return;
  const fire =
    (point.every !== undefined && point.hits % point.every === 0) ||
    (point.probability !== undefined && point.random() < point.probability);
  if (!fire) return;
  point.fired += 1;
  if (point.action === 'kill') {
    // No cleanup, no flush, no goodbye: exactly what a crash looks like.
    process.kill(process.pid, 'SIGKILL');
  }
  throw new FailpointCrash(name);
}

/** Parses CRASH_AT (see the module comment); throws CONFIG_INVALID on nonsense. */
export function parseCrashAt(spec: string): Map<FailpointName, FailpointTrigger> {
  const result = new Map<FailpointName, FailpointTrigger>();
  for (const part of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [name, ...options] = part.split(':');
    if (!FAILPOINTS.includes(name as FailpointName)) {
      throw new OutboxBenchError('CONFIG_INVALID', `CRASH_AT: unknown failpoint "${name}"; known: ${FAILPOINTS.join(', ')}`);
    }
    const trigger: FailpointTrigger = { action: 'kill' };
    for (const option of options) {
      const [key, value = ''] = option.split('=');
      const number = Number(value);
      if (key === 'every' && Number.isInteger(number) && number >= 1) trigger.every = number;
      else if (key === 'p' && number > 0 && number <= 1) trigger.probability = number;
      else if (key === 'seed' && Number.isInteger(number)) trigger.seed = number;
      else if (key === 'times' && Number.isInteger(number) && number >= 1) trigger.times = number;
      else if (key === 'action' && (value === 'kill' || value === 'throw')) trigger.action = value;
      else throw new OutboxBenchError('CONFIG_INVALID', `CRASH_AT: cannot understand "${option}" in "${part}" (every=N, p=0..1, seed=N, times=N, action=kill|throw)`);
    }
    if (trigger.every === undefined && trigger.probability === undefined) trigger.every = 1;
    result.set(name as FailpointName, trigger);
  }
  return result;
}

/** Arms the failpoints named in CRASH_AT, if set. */
export function armFromEnv(env: NodeJS.ProcessEnv = process.env): void {
  const spec = env.CRASH_AT;
  if (!spec) return;
  for (const [name, trigger] of parseCrashAt(spec)) armFailpoint(name, trigger);
}
