/**
 * What bench:frontier measures: each relay at three values of the knob that
 * trades its latency for its CPU, at the shapes users run (events per
 * transaction, events per second).
 */
import type { RelayMode } from '../../../src/relay/modes.js';
import { debeziumDriver, type DebeziumSettings } from '../../drivers/debezium.js';
import { DRIVERS, type RelayDriver } from '../../drivers/index.js';
import type { PipelineParameters } from '../../harness/pipeline.js';

/** A load shape: how many events each transaction writes, and how many per second. */
export interface Shape {
  eventsPerTransaction: number;
  rate: number;
}

/**
 * The shapes, in the order a sitting's rounds take them. Rationale: one
 * event per transaction is the common service; ten is a batch-writing one;
 * 1,000 and 2,000 events/s are rates these 2 cores sustain for every relay
 * at one event per transaction, with the whole pipeline on the box; 5,000/s
 * only at ten per transaction, where the write path still keeps up.
 */
export const SHAPES: readonly Shape[] = [
  { eventsPerTransaction: 1, rate: 1_000 },
  { eventsPerTransaction: 1, rate: 2_000 },
  { eventsPerTransaction: 10, rate: 1_000 },
  { eventsPerTransaction: 10, rate: 2_000 },
  { eventsPerTransaction: 10, rate: 5_000 },
];

export const shapeKey = (s: Shape) => `${s.eventsPerTransaction}x${s.rate}`;
export const shapeLabel = (s: Shape) => `${s.eventsPerTransaction} event${s.eventsPerTransaction === 1 ? '' : 's'} per transaction, ${s.rate.toLocaleString('en-US')} events/s`;

/** One relay at one value of its knob. */
export interface Subject {
  /** Unique: relay and knob value, e.g. `cdc, delay 5 ms`. */
  key: string;
  /** The relay a user picks (one colour and one frontier in the chart). */
  relay: string;
  /** The knob and its value, as the decision table says them (`--batch-delay-ms 5`). */
  setting: string;
  /** Our relay's default value of its knob (Debezium's own default, poll 500 ms and linger 5 ms, is not among its values). */
  isDefault: boolean;
  driver: RelayDriver;
  parameters: Partial<PipelineParameters>;
  /** What a user runs besides the relay itself. */
  operations: string;
}

const CDC_OPERATIONS = 'a replication slot to watch (it holds WAL while the relay is down)';

function ours(mode: RelayMode, setting: string, isDefault: boolean, parameters: Partial<PipelineParameters>, operations: string): Subject {
  const relay = mode;
  return { key: `${relay}, ${setting}`, relay, setting, isDefault, driver: DRIVERS.ours, parameters: { relayMode: mode, store: mode === 'cdc-message' ? 'message' : 'table', ...parameters }, operations };
}

/**
 * Debezium's two knobs together: poll.interval.ms (how long a partial batch
 * waits in its queue) and the producer's linger.ms (how long a Kafka request
 * waits for more records); everything else is its latency profile's, Connect's
 * stock JVM flags included.
 */
function debezium(pollMs: number, lingerMs: number, isDefault: boolean): Subject {
  const settings: DebeziumSettings = {
    name: `debezium-poll${pollMs}-linger${lingerMs}`,
    connector: { 'poll.interval.ms': String(pollMs), 'producer.override.linger.ms': String(lingerMs) },
    worker: {},
    // Rationale: the latency profile sustained its maximum, about 10,000
    // events/s, on 256 MiB (results/peers); twice that leaves room for the
    // fuller queues of the longer waits at these lower rates.
    heapMb: 512,
    rationale: `poll.interval.ms ${pollMs} and producer linger.ms ${lingerMs}; the rest Debezium's and Connect's defaults`,
  };
  const setting = `poll.interval.ms ${pollMs}, linger.ms ${lingerMs}`;
  return { key: `debezium, ${setting}`, relay: 'debezium', setting, isDefault, driver: debeziumDriver(settings), parameters: { store: 'table' }, operations: `${CDC_OPERATIONS}; a Kafka Connect JVM` };
}

/**
 * Rationale for the values: the CDC delay spans "each commit as it arrives"
 * (0), a wait below a typical service's own latency (5 ms) and one that
 * fills a batch at these rates (20 ms); the table relays' interval spans
 * the polling relay's default 500 ms, a fifth of it, and 20 ms, where the poll itself
 * becomes the cost; Debezium's, the latency profile's poll (10 ms, linger 0)
 * against a shorter poll and a longer one with a producer linger. Sharded
 * CDC is left out: it splits a slot that one relay does not fill at these rates.
 */
export const SUBJECTS: readonly Subject[] = [
  ours('cdc', 'delay 0 ms', true, { batchDelayMs: 0 }, CDC_OPERATIONS),
  ours('cdc', 'delay 5 ms', false, { batchDelayMs: 5 }, CDC_OPERATIONS),
  ours('cdc', 'delay 20 ms', false, { batchDelayMs: 20 }, CDC_OPERATIONS),
  ours('cdc-message', 'delay 0 ms', true, { batchDelayMs: 0 }, `${CDC_OPERATIONS}; no outbox table to clean up`),
  ours('cdc-message', 'delay 5 ms', false, { batchDelayMs: 5 }, `${CDC_OPERATIONS}; no outbox table to clean up`),
  ours('cdc-message', 'delay 20 ms', false, { batchDelayMs: 20 }, `${CDC_OPERATIONS}; no outbox table to clean up`),
  ours('polling', 'interval 500 ms', true, { pollIntervalMs: 500 }, 'an outbox table to clean up'),
  ours('polling', 'interval 100 ms', false, { pollIntervalMs: 100 }, 'an outbox table to clean up'),
  ours('polling', 'interval 20 ms', false, { pollIntervalMs: 20 }, 'an outbox table to clean up'),
  ours('skip-locked', 'interval 500 ms', true, { pollIntervalMs: 500, replicas: 3 }, '3 relay processes; an outbox table to clean up'),
  ours('skip-locked', 'interval 100 ms', false, { pollIntervalMs: 100, replicas: 3 }, '3 relay processes; an outbox table to clean up'),
  ours('skip-locked', 'interval 20 ms', false, { pollIntervalMs: 20, replicas: 3 }, '3 relay processes; an outbox table to clean up'),
  debezium(5, 0, false),
  debezium(10, 0, false),
  debezium(100, 20, false),
];

/** The anchor of every round: our CDC relay at its default. */
export const ANCHOR = SUBJECTS[0]!;

/** The subjects of the relays named (all when none). */
export function selectSubjects(relays: readonly string[]): Subject[] {
  const picked = relays.length === 0 ? SUBJECTS : SUBJECTS.filter((s) => relays.includes(s.relay));
  // The anchor runs in every round, whatever else is measured.
  return [ANCHOR, ...picked.filter((s) => s !== ANCHOR)];
}

export const FRONTIER_RELAYS: readonly string[] = [...new Set(SUBJECTS.map((s) => s.relay))];
