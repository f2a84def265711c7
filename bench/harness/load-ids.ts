/**
 * The event ids of a benchmark's load say which order they are: a run tag,
 * the load worker and its sequence number, laid out as a UUID. The consumer
 * reads them back from the `id` header every relay sends anyway, so the
 * accounting needs no header of its own, and the intended send time follows
 * from the sequence number and the load plan.
 *
 *   tttttttt-wwww-4000-8000-ssssssssssss   (tag, worker, sequence; hex)
 */
import { randomBytes } from 'node:crypto';

/** A fresh run tag: 8 hex digits. */
export function newRunTag(): string {
  return randomBytes(4).toString('hex');
}

export function loadEventId(tag: string, worker: number, seq: number): string {
  return `${tag}-${worker.toString(16).padStart(4, '0')}-4000-8000-${seq.toString(16).padStart(12, '0')}`;
}

/** The worker and sequence of an id of this run; undefined for any other id. */
export function parseLoadEventId(tag: string, id: string): { worker: number; seq: number } | undefined {
  if (id.length !== 36 || !id.startsWith(tag) || id.charCodeAt(8) !== 0x2d) return undefined;
  const worker = Number.parseInt(id.slice(9, 13), 16);
  const seq = Number.parseInt(id.slice(24), 16);
  return Number.isNaN(worker) || Number.isNaN(seq) ? undefined : { worker, seq };
}
