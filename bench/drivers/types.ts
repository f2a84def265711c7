/**
 * What every relay the benchmarks measure implements, ours and the others
 * alike, so that a run (bench/harness/pipeline.ts) and every scenario treat
 * them one way: the run sets up its schema and topic, hands the driver the
 * run, and measures whatever process tree the driver started.
 */
import type { Config } from '../../src/config.js';
import type { Sql } from '../../src/db.js';
import type { Infra } from '../../src/infra/index.js';
import type { Logger } from '../../src/log.js';
import type { OutboxStore } from '../../src/orders/write-path.js';
import type { LagReading } from '../../src/relay/modes.js';
import type { MeasuredWindow } from '../harness/accounting.js';
import type { StartedRelay } from '../harness/processes.js';
import type { RunRelay } from '../harness/run-setup.js';
import type { LoadStore, OwnStore } from './write-path.js';

export type { LoadStore, OwnStore, OwnWritePath } from './write-path.js';

/** The settings of a run that a driver reads (a subset of the pipeline's parameters, which carry them). */
export interface DriverParameters extends Pick<Config, 'relayMode' | 'batchSize' | 'pollIntervalMs' | 'replicas' | 'publishers'>, Partial<Pick<Config, 'kafkaClient' | 'batchDelayMs'>> {
  store: LoadStore;
  partitions: number;
}

/** One run, as a driver sees it: its servers, schema, topic and files. */
export interface DriverRun {
  infra: Pick<Infra, 'databaseUrl' | 'kafkaBrokers'>;
  log: Logger;
  /** A pool on the run's schema. */
  sql: Sql;
  schema: string;
  /** Every topic of the run starts with it (the order topic is `<prefix>order`). */
  topicPrefix: string;
  /** Where the relay's own logs and files go. */
  rawDir: string;
  /** The configuration (where downloaded jars are kept, the Kafka version, the default Kafka client). */
  config: Config;
  parameters: DriverParameters;
  /**
   * Where a relay that records its stage timings writes them (files
   * `<prefix>.*.json`, see src/relay/stages.ts); unset when the run reads none.
   */
  stagesPrefix?: string;
  /** The environment of one of our relay processes in this run: servers, schema, topic and the mode's settings. */
  env(extra?: Partial<Config>): NodeJS.ProcessEnv;
  /** The lag of the relay mode the run provisioned (see provisioning), as that mode reads it. */
  modeLag(): Promise<LagReading>;
}

/**
 * A started relay. `child` is the root of its process tree: the tree's CPU
 * and memory are the relay's, a drain pauses and continues the whole tree,
 * and the run stops it (SIGTERM, then SIGKILL to the tree if it lingers).
 * `helpers` (a JMX reader) are stopped with it; their CPU is counted with
 * the relay's (they run only because it is measured), their memory is not.
 */
export interface RunningRelay extends StartedRelay {
  /**
   * What the relay itself says about the run (its queue, its warnings),
   * over the measured window; read once the run has drained. Published as
   * the run's `peer` readings.
   */
  evidence?(window: MeasuredWindow): Evidence;
  /**
   * A JVM's heap as its collections left it so far, from its own GC log:
   * what it keeps live, where its resident memory says what it reserved.
   */
  heapAfterGc?(): HeapAfterGc | undefined;
}

/** The heap each collection left behind, over a relay's run. */
export interface HeapAfterGc {
  collections: number;
  /** The most any collection left, MiB. */
  maxMiB: number;
  /** What the last collection left, MiB. */
  lastMiB: number;
}

/**
 * What a scenario may ask of a relay's start beyond the run. Settings and
 * flags are our relay's (a spill threshold, a cleanup loop): a relay that has
 * none refuses them rather than run without them.
 */
export interface StartOptions {
  /** Our relay's settings beyond the run's. */
  settings?: Partial<Config>;
  /** Our relay command's flags beyond its settings (`--cleanup drop-partition`). */
  args?: string[];
  /** Node's flags for the relay's processes (a CPU profile); a relay that is not Node refuses them. */
  execArgv?: string[];
  /** Told the moment the root process is spawned, before it is ready: a drain is timed from there. */
  onSpawned?(relay: StartedRelay): void;
  /**
   * Whether to start the processes that watch the relay for its evidence
   * (Debezium's JMX reader; default yes). A run that reads no evidence (a
   * drain) starts none, so no second process shares its window.
   */
  watchers?: boolean;
}

/** A relay's own readings of a run, for the report. */
export type Evidence = Record<string, unknown>;

/**
 * How a backlog is handed to a relay: our outbox as the run's `store` says
 * (our relay modes read table rows or logical messages); our outbox table
 * only (a connector that reads the table); or a write path of its own, a
 * module whose `placeOrders` export the load workers import by URL (so the
 * load generator knows no relay by name).
 */
export type Backlog = { kind: 'run-store' } | { kind: 'store'; store: OutboxStore } | { kind: 'own'; store: OwnStore; module: string };

export interface RelayDriver {
  /** Its name in the report ("debezium-throughput"), or undefined for our relay, named by its mode. */
  readonly label: string | undefined;
  /** How it was configured, and exactly what differs from its defaults, for the report. */
  readonly settings: string;
  readonly backlog: Backlog;
  /** Publishes with our Kafka client (the run's `kafkaClient`), so the report names the client. */
  readonly usesOurKafkaClient: boolean;
  /**
   * What its processes run on: a Node relay's main thread is where its
   * JavaScript runs (one process's ceiling, and Node's flags apply); a JVM's
   * main thread is not where its work is.
   */
  readonly runtime: 'node' | 'jvm';
  /**
   * Its own evidence is readings over the measured window (kept at its
   * maximum too), rather than what it logged over the whole run.
   */
  readonly windowEvidence: boolean;
  /**
   * Its lag reading trails its publishing by design (a position confirmed
   * now and then): the saturation rule takes the lag slope from delivery.
   */
  readonly lagFromDelivery: boolean;
  /** Where a rate search starts when no earlier result guides it, if not the scenario's own start. */
  readonly searchStart?: number;
  /** A heap of its own (a JVM's), which a scenario may try smaller: its size, and the same relay with another. */
  readonly heap?: { readonly mb: number; resized(mb: number): RelayDriver };
  /** The settings of our relay mode for the run's setup to provision (slots, publication, buckets); undefined: it provisions itself. */
  provisioning(p: DriverParameters): RunRelay | undefined;
  /** Runs on the fresh schema before any load (slots or tables of its own: a drain's backlog must reach them). */
  prepare(run: DriverRun): Promise<void>;
  /** Starts its process tree; resolves once it is ready to publish, or stops what it started and throws. */
  start(run: DriverRun, options?: StartOptions): Promise<RunningRelay>;
  /** Its lag now; called about ten times a second. */
  lag(run: DriverRun): Promise<LagReading>;
  /**
   * Which of a run's losses the relay reported itself (a library's own
   * "skipped" warnings), read from its evidence, in words; undefined when
   * it reported none. A loss is a loss either way: this says whose.
   */
  readonly explainLoss?: (evidence: Evidence) => string | undefined;
}
