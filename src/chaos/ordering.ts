/**
 * The consumer-side ordering check. Per aggregate, versions must arrive
 * strictly increasing and gap-free: a re-delivery of a version already seen
 * is a harmless duplicate, but a version arriving before one lower than it
 * (a gap, filled later) is a reordering.
 */

export type OrderingViolation =
  | { kind: 'gap'; aggregateId: string; expected: number; got: number }
  | { kind: 'late'; aggregateId: string; version: number; afterVersion: number };

interface AggregateState {
  highest: number;
  /** Versions below `highest` not seen yet (only after a gap). */
  holes?: Set<number>;
}

export class OrderingChecker {
  readonly #aggregates = new Map<string, AggregateState>();
  readonly violations: OrderingViolation[] = [];
  deliveries = 0;
  duplicates = 0;

  /**
   * Feeds one delivery, in the order the consumer saw it for that aggregate.
   * `firstVersion` is the version an aggregate's history starts at (1).
   */
  observe(aggregateId: string, version: number, firstVersion = 1): 'next' | 'duplicate' | 'violation' {
    this.deliveries += 1;
    let state = this.#aggregates.get(aggregateId);
    if (!state) this.#aggregates.set(aggregateId, (state = { highest: firstVersion - 1 }));
    if (version === state.highest + 1) {
      state.highest = version;
      return 'next';
    }
    if (version > state.highest + 1) {
      this.violations.push({ kind: 'gap', aggregateId, expected: state.highest + 1, got: version });
      state.holes ??= new Set();
      for (let v = state.highest + 1; v < version; v++) state.holes.add(v);
      state.highest = version;
      return 'violation';
    }
    if (state.holes?.delete(version)) {
      this.violations.push({ kind: 'late', aggregateId, version, afterVersion: state.highest });
      return 'violation';
    }
    this.duplicates += 1;
    return 'duplicate';
  }

  get aggregates(): number {
    return this.#aggregates.size;
  }

  get ordered(): boolean {
    return this.violations.length === 0;
  }
}
