/**
 * The crash-injection matrix, row by row: what each row writes, which relay
 * reads it, which faults it gets and what it must show. The naive dual write
 * must lose events; every outbox row must lose none, apply none twice and
 * (where the relay promises it) keep every aggregate in order.
 */
import { FAULTS } from './faults.js';
import type { RowSpec } from './row-spec.js';

export type { FaultKind, RowSpec } from './row-spec.js';

/** A row on the servers its faults need (faults.ts), so a row never names them itself. */
function onItsServers(row: Omit<RowSpec, 'kafka' | 'postgres'>): RowSpec {
  const needs = new Set(row.faults.map((kind) => FAULTS[kind].servers));
  if (needs.has('cluster') && needs.has('failover')) throw new Error(`row ${row.name}: its faults need both a Kafka cluster and a PostgreSQL standby; no servers have both`);
  return { ...row, ...(needs.has('cluster') ? { kafka: 'cluster' } : {}), ...(needs.has('failover') ? { postgres: 'failover' } : {}) };
}

/** The matrix, in order. `{seed}` in a CRASH_AT is replaced by the row's seed. */
export const MATRIX: readonly RowSpec[] = Object.freeze(([
  {
    name: 'naive-dual-write',
    description: 'commit, then publish; the writer crashes between the two (order.after-commit-before-publish, p=0.05)',
    writer: { store: 'dual-write', amendShare: 0, hotKeys: 0, crashAt: 'order.after-commit-before-publish:p=0.05:seed={seed}' },
    faults: [],
    expect: { lost: 'some' },
  },
  {
    name: 'outbox+polling',
    description: 'polling relay killed between publish and mark (failpoint every 7th pass) and by SIGKILL',
    writer: { store: 'table', amendShare: 0.3, hotKeys: 20 },
    relay: { mode: 'polling', replicas: 1, crashAt: 'relay.after-publish-before-mark:every=7' },
    faults: ['kill-relay'],
    expect: { lost: 'none', duplicates: 'some', reorderings: 'none' },
  },
  {
    name: 'outbox+skip-locked',
    description: '3 SKIP LOCKED replicas, each killed between publish and mark (every 7th pass) and by SIGKILL',
    writer: { store: 'table', amendShare: 0.3, hotKeys: 20 },
    relay: { mode: 'skip-locked', replicas: 3, crashAt: 'relay.after-publish-before-mark:every=7' },
    faults: ['kill-relay'],
    expect: { lost: 'none', duplicates: 'some', reorderings: 'none' },
  },
  {
    name: 'outbox+cdc',
    description: 'CDC relay killed between publish and ack (every 5th batch), by SIGKILL, and its walsender terminated',
    writer: { store: 'table', amendShare: 0.3, hotKeys: 20 },
    relay: { mode: 'cdc', replicas: 1, crashAt: 'cdc.after-publish-before-ack:every=5' },
    faults: ['kill-relay', 'terminate-walsender'],
    expect: { lost: 'none', duplicates: 'some', reorderings: 'none' },
  },
  {
    name: 'outbox+cdc-sharded',
    description: 'the outbox shared out over 2 slots, a CDC relay process each: killed between publish and ack (every 5th batch), by SIGKILL of one shard, walsenders terminated',
    writer: { store: 'table', amendShare: 0.3, hotKeys: 20 },
    relay: { mode: 'cdc-sharded', replicas: 2, crashAt: 'cdc.after-publish-before-ack:every=5' },
    faults: ['kill-relay', 'terminate-walsender'],
    expect: { lost: 'none', duplicates: 'some', reorderings: 'none' },
  },
  {
    name: 'logical-message+cdc',
    description: 'table-less events (pg_logical_emit_message), CDC relay killed as above',
    writer: { store: 'message', amendShare: 0, hotKeys: 0 },
    relay: { mode: 'cdc-message', replicas: 1, crashAt: 'cdc.after-publish-before-ack:every=5' },
    faults: ['kill-relay', 'terminate-walsender'],
    expect: { lost: 'none', duplicates: 'some', reorderings: 'none' },
  },
  {
    name: 'kafka-broker-kill',
    description: 'the Kafka broker is killed (kill -9) and restarted twice mid-run, CDC relay',
    writer: { store: 'table', amendShare: 0.3, hotKeys: 20 },
    relay: { mode: 'cdc', replicas: 1 },
    faults: ['kill-kafka'],
    expect: { lost: 'none', reorderings: 'none' },
  },
  {
    name: 'kafka-leader-kill',
    description: '3 brokers, replication factor 3: the leader of a partition of the topic killed (kill -9) and restarted, again and again, CDC relay',
    writer: { store: 'table', amendShare: 0.3, hotKeys: 20 },
    relay: { mode: 'cdc', replicas: 1 },
    faults: ['kill-leader'],
    expect: { lost: 'none', reorderings: 'none' },
  },
  {
    name: 'kafka-two-brokers-down',
    description: '3 brokers, min.insync.replicas 2: two killed at once (writes to Kafka must block, not succeed on one copy), then brought back one at a time, CDC relay',
    writer: { store: 'table', amendShare: 0.3, hotKeys: 20 },
    relay: { mode: 'cdc', replicas: 1 },
    faults: ['kill-two-brokers'],
    expect: { lost: 'none', reorderings: 'none' },
  },
  {
    name: 'postgres-failover',
    description: 'a primary and a streaming standby (synchronous commit, failover slots): the primary killed under load, the standby promoted; the CDC relay goes on from the slot the standby synced',
    writer: { store: 'table', amendShare: 0.3, hotKeys: 20 },
    relay: { mode: 'cdc', replicas: 1 },
    faults: ['failover-postgres'],
    expect: { lost: 'none', reorderings: 'none' },
  },
  {
    name: 'postgres-restart',
    description: 'PostgreSQL is stopped in immediate mode (a crash) and restarted twice mid-run, polling relay',
    writer: { store: 'table', amendShare: 0.3, hotKeys: 20 },
    relay: { mode: 'polling', replicas: 1 },
    faults: ['restart-postgres'],
    expect: { lost: 'none', reorderings: 'none' },
  },
  {
    name: 'consumer-crash',
    description: 'the consumer dies between applying a batch and committing its offset (every 4th batch)',
    writer: { store: 'table', amendShare: 0.3, hotKeys: 20 },
    relay: { mode: 'cdc', replicas: 1 },
    consumerCrashAt: 'consumer.after-apply-before-offset:every=4',
    faults: [],
    expect: { lost: 'none', duplicates: 'some', reorderings: 'none' },
  },
  {
    name: 'consumer-rebalances',
    description: '3 consumers in one group under load: one SIGKILLed (and restarted) or one more started and stopped, every few seconds, so the group keeps rebalancing',
    writer: { store: 'table', amendShare: 0.3, hotKeys: 20 },
    relay: { mode: 'cdc', replicas: 1 },
    consumers: 3,
    faults: ['kill-consumer', 'add-consumer'],
    expect: { lost: 'none', reorderings: 'none' },
  },
  {
    name: 'ordering-under-pauses',
    description: '3 SKIP LOCKED replicas on hot aggregates, one at a time SIGSTOPped longer than its lease, then resumed',
    writer: { store: 'table', amendShare: 0.8, hotKeys: 5 },
    relay: { mode: 'skip-locked', replicas: 3, leaseMs: 2_000 },
    faults: ['pause-relay'],
    expect: { lost: 'none', reorderings: 'none' },
  },
] satisfies Omit<RowSpec, 'kafka' | 'postgres'>[]).map(onItsServers));
