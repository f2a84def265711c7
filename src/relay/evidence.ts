/**
 * Claim evidence of the table relays: every pass of every replica, as JSON
 * Lines (one file per replica), and the checker that proves no event was
 * claimed by two replicas in overlapping passes.
 */
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { PassEvidence } from './table-relay.js';

/** The evidence file of one replica inside an evidence folder (created if needed). */
export function evidencePath(dir: string, replicaIndex: number): string {
  mkdirSync(dir, { recursive: true });
  return path.join(dir, `replica-${replicaIndex}.jsonl`);
}

export function readEvidence(dir: string): PassEvidence[] {
  const lines: PassEvidence[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.jsonl')).sort()) {
    for (const line of readFileSync(path.join(dir, file), 'utf8').split('\n')) {
      // A replica killed mid-write leaves a torn last line; it claimed nothing we can prove.
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

export interface Pass {
  replica: string;
  pass: number;
  claimedAt: number;
  releasedAt: number | undefined;
  outcome: 'published' | 'failed' | 'unknown';
  eventIds: string[];
}

export interface ClaimOverlap {
  eventId: string;
  first: { replica: string; pass: number; claimedAt: number; releasedAt: number };
  second: { replica: string; pass: number; claimedAt: number; releasedAt: number };
}

export interface ClaimReport {
  replicas: string[];
  passes: number;
  /** Passes with a claim but no release: the replica died mid-pass. */
  unreleasedPasses: number;
  claimedEvents: number;
  /** Events claimed more than once (after a failed or interrupted pass): allowed. */
  reclaimedEvents: number;
  /** Events claimed by two replicas whose passes overlapped in time: must be empty. */
  overlaps: ClaimOverlap[];
  disjoint: boolean;
}

export function collectPasses(lines: readonly PassEvidence[]): Pass[] {
  const passes = new Map<string, Pass>();
  for (const line of lines) {
    const key = `${line.replica}#${line.pass}`;
    if (line.type === 'claim') {
      passes.set(key, { replica: line.replica, pass: line.pass, claimedAt: line.at, releasedAt: undefined, outcome: 'unknown', eventIds: line.eventIds });
    } else {
      const pass = passes.get(key);
      if (pass) {
        pass.releasedAt = line.at;
        pass.outcome = line.outcome;
      }
    }
  }
  return [...passes.values()];
}

/**
 * No event id may be claimed by two different replicas in passes that
 * overlap in time. A pass without a release (its replica was killed) is
 * counted but not compared: when it really ended is the server's business.
 */
export function checkClaims(lines: readonly PassEvidence[]): ClaimReport {
  const passes = collectPasses(lines);
  const byEvent = new Map<string, Pass[]>();
  for (const pass of passes) {
    for (const eventId of pass.eventIds) {
      let list = byEvent.get(eventId);
      if (!list) byEvent.set(eventId, (list = []));
      list.push(pass);
    }
  }
  const overlaps: ClaimOverlap[] = [];
  let reclaimed = 0;
  for (const [eventId, claims] of byEvent) {
    if (claims.length > 1) reclaimed += 1;
    const complete = claims.filter((c): c is Pass & { releasedAt: number } => c.releasedAt !== undefined);
    for (let i = 0; i < complete.length; i++) {
      for (let j = i + 1; j < complete.length; j++) {
        const a = complete[i]!;
        const b = complete[j]!;
        if (a.replica === b.replica) continue;
        if (a.claimedAt <= b.releasedAt && b.claimedAt <= a.releasedAt) {
          overlaps.push({
            eventId,
            first: { replica: a.replica, pass: a.pass, claimedAt: a.claimedAt, releasedAt: a.releasedAt },
            second: { replica: b.replica, pass: b.pass, claimedAt: b.claimedAt, releasedAt: b.releasedAt },
          });
        }
      }
    }
  }
  return {
    replicas: [...new Set(passes.map((p) => p.replica))].sort(),
    passes: passes.length,
    unreleasedPasses: passes.filter((p) => p.releasedAt === undefined).length,
    claimedEvents: byEvent.size,
    reclaimedEvents: reclaimed,
    overlaps,
    disjoint: overlaps.length === 0,
  };
}
