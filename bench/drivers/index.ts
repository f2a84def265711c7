/**
 * Every relay the benchmarks can measure, by name: a new one is a driver
 * file (see types.ts) and one line here.
 */
import { DEBEZIUM_DEFAULT, DEBEZIUM_LATENCY, DEBEZIUM_THROUGHPUT, debeziumDriver, debeziumLatencyPolling } from './debezium.js';
import { OURS } from './ours.js';
import { PTP_POLLING_SETTINGS } from './ptp-relay.js';
import { ptpDriver, ptpPolling } from './ptp.js';
import type { RelayDriver } from './types.js';

export type { RelayDriver } from './types.js';

export const DRIVERS = {
  ours: OURS,
  'debezium-throughput': debeziumDriver(DEBEZIUM_THROUGHPUT),
  'debezium-latency': debeziumDriver(DEBEZIUM_LATENCY),
  'debezium-default': debeziumDriver(DEBEZIUM_DEFAULT),
  // The latency profile's poll interval is chosen among 5, 10 and 20 ms by a
  // stated rule (debezium.ts): the other two are measured by name beside it.
  'debezium-latency-poll5': debeziumDriver(debeziumLatencyPolling(5)),
  'debezium-latency-poll20': debeziumDriver(debeziumLatencyPolling(20)),
  'ptp-polling': ptpDriver(ptpPolling(PTP_POLLING_SETTINGS)),
  // The batch of 50 (ptp-polling's) collides with the library's own concurrent poll
  // (a handler's NOWAIT row lock against the poll's), so smaller batches are
  // measured beside it, by name only, to find its best.
  'ptp-polling-batch10': ptpDriver(ptpPolling({ ...PTP_POLLING_SETTINGS, nextMessagesBatchSize: 10 })),
  'ptp-polling-batch5': ptpDriver(ptpPolling({ ...PTP_POLLING_SETTINGS, nextMessagesBatchSize: 5 })),
  'ptp-replication': ptpDriver({ mode: 'replication' }),
} as const satisfies Record<string, RelayDriver>;

export type DriverName = keyof typeof DRIVERS;
