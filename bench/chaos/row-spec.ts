/**
 * What a row of the crash matrix is (rows.ts lists them) and the kinds of
 * fault a row can list (faults.ts says what each does): types only, so the
 * rows and the fault table can both read them without importing each other.
 */
import type { RelayMode } from '../../src/config.js';
import type { WriterTask } from './child.js';

export type FaultKind =
  | 'kill-relay'
  | 'pause-relay'
  | 'kill-kafka'
  | 'kill-leader'
  | 'kill-two-brokers'
  | 'restart-postgres'
  | 'failover-postgres'
  | 'terminate-walsender'
  | 'kill-consumer'
  | 'add-consumer';

export interface RowSpec {
  name: string;
  description: string;
  writer: { store: WriterTask['store']; amendShare: number; hotKeys: number; crashAt?: string };
  relay?: { mode: RelayMode; replicas: number; crashAt?: string; leaseMs?: number };
  /** `cluster`: the row runs on three brokers with a dedicated controller (replication factor 3, min.insync.replicas 2). Set from its faults' needs. */
  kafka?: 'cluster';
  /** `failover`: PostgreSQL is a primary with a physical standby and failover slots, behind a proxy clients follow. Set from its faults' needs. */
  postgres?: 'failover';
  /** Consumer processes in the group (default 1). */
  consumers?: number;
  consumerCrashAt?: string;
  faults: FaultKind[];
  expect: { lost: 'some' | 'none'; duplicates?: 'some'; reorderings?: 'none' };
}
