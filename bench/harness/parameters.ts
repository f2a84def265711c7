/**
 * The parameters of one pipeline run, as its result and the published
 * summaries carry them.
 */
import type { Config } from '../../src/config.js';
import type { LoadStore } from '../drivers/write-path.js';
import type { PrewarmParameters } from './load-worker.js';
import type { SqlWorkload } from './sql-workload.js';

/**
 * A run's parameters: the relay's settings are the Config's own (same names,
 * same ranges), the rest describes the load.
 */
export interface PipelineParameters
  extends Pick<Config, 'relayMode' | 'batchSize' | 'pollIntervalMs' | 'replicas' | 'publishers'>,
    Partial<Pick<Config, 'kafkaClient' | 'consumerKafkaClient' | 'batchDelayMs' | 'fetchMaxWaitMs' | 'fetchMinBytes'>> {
  /** Where the load writes events: our outbox (table rows or logical messages), or a relay's own table (its driver's backlog). */
  store: LoadStore;
  /** Orders (= events) per second offered, all workers together. */
  rate: number;
  warmupS: number;
  durationS: number;
  workers: number;
  connectionsPerWorker: number;
  ordersPerTransaction: number;
  payloadBytes: number;
  /** Events per aggregate (1 = only new orders). */
  eventsPerAggregate: number;
  /** Recent orders per worker that amendments choose from. */
  keySpace: number;
  /** Share of amendments aimed at the `hotKeys` hottest orders. */
  hotKeyShare: number;
  hotKeys: number;
  /** Partitions of the run's topic. */
  partitions: number;
  /** Consumer processes in the group (100K/s needs more than one). */
  consumers?: number;
  /** The consumer commits offsets at most this often (0 = every batch). */
  consumerCommitIntervalMs: number;
  /** Give up waiting for stragglers after this long, s. */
  drainTimeoutS: number;
  /**
   * End the drain this long after the load, s, even while orders still
   * arrive: those not applied by then are counted `undrained` (late or lost,
   * not told apart), never lost; with drainTimeoutS above it a stalled drain
   * is cut too, and says so the same way. Unset: the drain goes on while
   * anything moves.
   */
  drainLimitS?: number;
  /** Seed of the load's random choices. */
  seed: number;
  /** The user's own transaction (`--workload sql:<file>`) in place of the built-in orders. */
  workload?: SqlWorkload;
  /**
   * Drain mode: write the whole load with no relay running, then start the
   * relay and time how fast it clears the backlog. With a prewarm, the relay
   * runs through the prewarm, is paused (SIGSTOP, its whole process tree)
   * while the backlog is written and continued afterwards: the drain is
   * timed from that moment, by a relay already warm.
   */
  relayAfterLoad?: boolean;
  /**
   * A phase before the warm-up, at a rate of its own (a JVM's relay: at
   * least 60 s, so that class loading and JIT are over before anything is
   * measured).
   */
  prewarm?: PrewarmParameters;
  /**
   * Pause the consumer (SIGSTOP, then SIGCONT) for this long in the middle of
   * the measured window, ms. The harness's own check: a stall must show in the
   * latency tail, because latency runs from the intended send time.
   */
  stallConsumerMs?: number;
  /**
   * An order intended inside the measured window counts as delivered in it
   * when it was applied by the window's end plus this, ms (default 2,000).
   */
  deliveryGraceMs?: number;
}
