/**
 * Claim evidence of the table relays, and the checker that proves no two
 * replicas ever held the same thing at once.
 *
 * Every pass of every replica is recorded as JSON Lines (one file per
 * replica) with server-side times, chosen so that the recorded hold is
 * *inside* the true one: `claimedAt` is read after the claim statement
 * returned (the locks were already held), `releasedAt` just before COMMIT
 * (they were still held). Two recorded holds that overlap therefore prove a
 * real overlap; the checker never reports one that did not happen.
 *
 * What is held: the buckets of the ordered strategy, or the event ids of the
 * strategies without buckets. A replica killed mid-pass never writes its
 * release; its hold lasts until its database session ended, which the
 * replica's supervisor records as a `session-end` line (the last moment the
 * server still showed the session). A holder whose pass failed after holding
 * longer than its lease was cut off by the lease (PostgreSQL terminated its
 * idle transaction): it is the one allowed exception, and is counted.
 */
import { appendFileSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Sql, TransactionSql } from '../../db.js';

/** One line of an evidence file. */
export type PassEvidence =
  | {
      type: 'claim';
      replica: string;
      /** The relay process: a restarted replica counts its passes from 1 again. */
      pid: number;
      pass: number;
      /** Server time (epoch ms) read after the claim returned. */
      claimedAt: number;
      /** The replica's database session. */
      backendPid: number;
      /** The lease the session ran with (idle_in_transaction_session_timeout), ms; absent when none. */
      leaseMs?: number;
      eventIds: string[];
      buckets?: number[];
    }
  | {
      type: 'release';
      replica: string;
      pid: number;
      pass: number;
      outcome: 'published' | 'failed';
      /** Server time (epoch ms) read just before COMMIT; published passes only. */
      releasedAt?: number;
      /** Client time of a failure (the session may be gone, so no server time can be read). */
      failedAt?: number;
      error?: string;
    }
  | {
      type: 'session-end';
      replica: string;
      backendPid: number;
      /** Server time of the last moment the session was still there. */
      lastSeenAt: number;
    };

/** The evidence file of one replica inside an evidence folder (created if needed). */
export function evidencePath(dir: string, replicaIndex: number): string {
  mkdirSync(dir, { recursive: true });
  return path.join(dir, `replica-${replicaIndex}.jsonl`);
}

/** Where supervisors record the end of killed replicas' sessions. */
function sessionsPath(dir: string): string {
  mkdirSync(dir, { recursive: true });
  return path.join(dir, 'sessions.jsonl');
}

export function readEvidence(dir: string): PassEvidence[] {
  const lines: PassEvidence[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.jsonl')).sort()) {
    for (const line of readFileSync(path.join(dir, file), 'utf8').split('\n')) {
      // A replica killed mid-write leaves a torn last line; it proves nothing.
      if (!line.trim()) continue;
      try {
        lines.push(JSON.parse(line) as PassEvidence);
      } catch {
        // torn line
      }
    }
  }
  return lines;
}

/** The server's clock (epoch ms) and this session's backend pid, read inside a pass. */
export async function serverClock(db: Sql | TransactionSql): Promise<{ at: number; backendPid: number }> {
  const [row] = await db<{ at: number; backendPid: number }[]>`
    SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS at, pg_backend_pid() AS backend_pid`;
  return row!;
}

// Rationale: a killed client's backend notices the closed socket at once;
// polling every 20 ms bounds how much of the hold goes unrecorded, and 30 s
// covers a backend stuck in a long statement.
const SESSION_POLL_MS = 20;
const SESSION_WAIT_MS = 30_000;

/**
 * After a replica died without releasing: waits until its last session is
 * gone from the server and records the last moment it was seen. A killed
 * client's session usually ends before anyone looks; whoever kills a replica
 * on purpose can record a better bound with `appendSessionEnd` just before.
 */
export async function recordSessionEnd(sql: Sql, dir: string, replicaIndex: number): Promise<void> {
  let last: Extract<PassEvidence, { type: 'claim' }> | undefined;
  try {
    for (const line of readFileSync(evidencePath(dir, replicaIndex), 'utf8').split('\n')) {
      try {
        const parsed = JSON.parse(line) as PassEvidence;
        if (parsed.type === 'claim') last = parsed;
      } catch {
        // torn or empty line
      }
    }
  } catch {
    return;
  }
  if (!last) return;
  let lastSeenAt: number | undefined;
  const deadline = Date.now() + SESSION_WAIT_MS;
  while (Date.now() < deadline) {
    const [row] = await sql<{ at: number; alive: boolean }[]>`
      SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS at,
             EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = ${last.backendPid}) AS alive`;
    if (!row?.alive) break;
    lastSeenAt = row.at;
    await sleep(SESSION_POLL_MS);
  }
  if (lastSeenAt !== undefined) appendSessionEnd(dir, { replica: last.replica, backendPid: last.backendPid, lastSeenAt });
}

/** Records that a replica's session was still there at `lastSeenAt` (server time) and ended after it. */
export function appendSessionEnd(dir: string, end: Omit<Extract<PassEvidence, { type: 'session-end' }>, 'type'>): void {
  appendFileSync(sessionsPath(dir), `${JSON.stringify({ type: 'session-end', ...end } satisfies PassEvidence)}\n`);
}

/** One hold of one thing (a bucket, or an event id) by one replica, in server time. */
export interface Hold {
  replica: string;
  pass: number;
  from: number;
  to: number;
  /** How its end is known. */
  end: 'released' | 'session-ended' | 'lease-cut' | 'unknown';
}

export interface ClaimOverlap {
  /** `bucket 7` or `event <uuid>`. */
  held: string;
  first: Hold;
  second: Hold;
}

export interface ClaimReport {
  replicas: string[];
  passes: number;
  /** Passes with a claim but no release: the replica died mid-pass. */
  unreleasedPasses: number;
  /** Of those, passes whose session end was recorded, so they are checked until then. */
  boundedBySessionEnd: number;
  /** Holders cut off by their lease (failed after holding longer than it): the allowed exception. */
  leaseCut: number;
  claimedEvents: number;
  /** Events claimed more than once (after a failed or interrupted pass): allowed. */
  reclaimedEvents: number;
  /** Buckets or events held by two replicas at overlapping server times: must be empty. */
  overlaps: ClaimOverlap[];
  disjoint: boolean;
}

/**
 * No bucket (or, for strategies without buckets, no event id) may be held by
 * two different replicas at overlapping server times. Holds end at their
 * release, or for a killed replica at its session's end; a holder the lease
 * cut off is the exception and counts only at its claim.
 */
export function checkClaims(lines: readonly PassEvidence[]): ClaimReport {
  const claims = lines.filter((l): l is Extract<PassEvidence, { type: 'claim' }> => l.type === 'claim');
  const releases = new Map<string, Extract<PassEvidence, { type: 'release' }>>();
  const passKey = (line: { replica: string; pid: number; pass: number }) => `${line.replica}#${line.pid}#${line.pass}`;
  for (const line of lines) if (line.type === 'release') releases.set(passKey(line), line);
  const sessionEnds = new Map<number, number>();
  for (const line of lines) if (line.type === 'session-end') sessionEnds.set(line.backendPid, line.lastSeenAt);

  const holdsOf = new Map<string, Hold[]>();
  const claimCounts = new Map<string, number>();
  let unreleased = 0;
  let bounded = 0;
  let leaseCut = 0;
  for (const claim of claims) {
    const release = releases.get(passKey(claim));
    let hold: Hold;
    if (release?.outcome === 'published' && release.releasedAt !== undefined) {
      hold = { replica: claim.replica, pass: claim.pass, from: claim.claimedAt, to: release.releasedAt, end: 'released' };
    } else if (release?.outcome === 'failed' && claim.leaseMs !== undefined && (release.failedAt ?? 0) - claim.claimedAt >= claim.leaseMs) {
      leaseCut += 1;
      hold = { replica: claim.replica, pass: claim.pass, from: claim.claimedAt, to: claim.claimedAt, end: 'lease-cut' };
    } else if (!release && sessionEnds.has(claim.backendPid)) {
      unreleased += 1;
      bounded += 1;
      hold = { replica: claim.replica, pass: claim.pass, from: claim.claimedAt, to: Math.max(claim.claimedAt, sessionEnds.get(claim.backendPid)!), end: 'session-ended' };
    } else {
      // A failed pass rolled back before any server time could be read, or a
      // killed pass whose session end was not recorded: only its claim is known.
      if (!release) unreleased += 1;
      hold = { replica: claim.replica, pass: claim.pass, from: claim.claimedAt, to: claim.claimedAt, end: 'unknown' };
    }
    for (const eventId of claim.eventIds) claimCounts.set(eventId, (claimCounts.get(eventId) ?? 0) + 1);
    const held = claim.buckets ? claim.buckets.map((b) => `bucket ${b}`) : claim.eventIds.map((id) => `event ${id}`);
    for (const key of held) {
      let list = holdsOf.get(key);
      if (!list) holdsOf.set(key, (list = []));
      list.push(hold);
    }
  }

  const overlaps: ClaimOverlap[] = [];
  for (const [held, holds] of holdsOf) {
    holds.sort((a, b) => a.from - b.from);
    // Sorted by start: a hold can only overlap later-starting holds that begin before it ends.
    for (let i = 0; i < holds.length; i++) {
      const a = holds[i]!;
      for (let j = i + 1; j < holds.length && holds[j]!.from <= a.to; j++) {
        const b = holds[j]!;
        if (a.replica !== b.replica && b.from < a.to) overlaps.push({ held, first: a, second: b });
      }
    }
  }
  return {
    replicas: [...new Set(claims.map((c) => c.replica))].sort(),
    passes: claims.length,
    unreleasedPasses: unreleased,
    boundedBySessionEnd: bounded,
    leaseCut,
    claimedEvents: claimCounts.size,
    reclaimedEvents: [...claimCounts.values()].filter((n) => n > 1).length,
    overlaps,
    disjoint: overlaps.length === 0,
  };
}
