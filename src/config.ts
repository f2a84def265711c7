/**
 * The one configuration resolver: frozen defaults, then environment variables,
 * then command-line flags. Every value is coerced and checked here, with a
 * message that names the option the user has to fix, so the rest of the code
 * can trust a `Config` blindly.
 *
 * @length-exception file: the option table (each option's flag, env variable,
 * range and the rationale of its default) is the point of this file, and it
 * reads best whole, beside the resolver that applies it.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { OutboxBenchError } from './errors.js';
import { PLAIN_IDENTIFIER } from './identifiers.js';

/** The repository root (dist/src/config.js -> ../..), so `.data/` does not depend on the cwd. */
export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * The relay modes by name, in the order --help lists them. What each one is
 * and does is the registry's (relay/modes.ts, checked by the compiler to
 * cover every name here); config only knows the names, so it imports nothing
 * above it.
 */
export const RELAY_MODES = ['polling', 'skip-locked', 'naive-skip-locked', 'cdc', 'cdc-message', 'cdc-sharded'] as const;
export type RelayMode = (typeof RELAY_MODES)[number];

/**
 * Kafka clients a relay or consumer can run on. `kafkajs` and `kafkajs-imul`
 * (the same with a Math.imul murmur2 partitioner) are pure JavaScript;
 * `confluent-kafkajs` is Confluent's librdkafka binding through its
 * KafkaJS-style API and `confluent` the same binding's native produce with
 * delivery reports (both need the native build, `outbox-bench infra
 * build-kafka-client`); `platformatic` is @platformatic/kafka.
 */
export const KAFKA_CLIENTS = ['kafkajs', 'kafkajs-imul', 'confluent-kafkajs', 'confluent', 'platformatic'] as const;
export type KafkaClientName = (typeof KAFKA_CLIENTS)[number];

/**
 * The consumer's Kafka clients: kafkajs, or @platformatic/kafka's consumer
 * through an adapter (kafka/consumers.ts). Confluent's consumer is not
 * offered: in the consumer-only drain it cost about four times kafkajs' CPU
 * and twice stopped fetching for good.
 */
export const CONSUMER_KAFKA_CLIENTS = ['kafkajs', 'platformatic'] as const;
export type ConsumerKafkaClientName = (typeof CONSUMER_KAFKA_CLIENTS)[number];

/** Which Kafka headers a relay writes (see relay/wire.ts). */
export const HEADER_SETS = ['minimal', 'all'] as const;
export type HeaderSet = (typeof HEADER_SETS)[number];

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** `pretty`: one readable line per entry; `json`: raw pino lines for log shippers (and benchmark logs). */
export const LOG_FORMATS = ['pretty', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];
/** How the local broker's JVM compiles: `full` (both JIT tiers, as Kafka ships) or `quick-start` (the client compiler only). */
export const KAFKA_JIT_MODES = ['full', 'quick-start'] as const;
export type KafkaJitMode = (typeof KAFKA_JIT_MODES)[number];

export interface Config {
  /** Use this PostgreSQL server and start none (env DATABASE_URL). */
  readonly databaseUrl: string | undefined;
  /** Port of the local embedded PostgreSQL. */
  readonly pgPort: number;
  /** Use these Kafka brokers and start none (env KAFKA_BROKERS, comma separated). */
  readonly kafkaBrokers: readonly string[] | undefined;
  /** Client port of the local Kafka broker. */
  readonly kafkaPort: number;
  /** KRaft controller port of the local Kafka broker. */
  readonly kafkaControllerPort: number;
  /** Apache Kafka version fetched from Maven Central (org.apache.kafka:kafka_2.13). */
  readonly kafkaVersion: string;
  /** Heap of the local Kafka broker, in MiB. */
  readonly kafkaHeapMb: number;
  /**
   * `quick-start` starts the local broker's JVM with the client compiler only:
   * about half the CPU to start, a slower broker once up. For tests, which
   * start brokers dozens of times; benchmarks refuse it.
   */
  readonly kafkaJit: KafkaJitMode;
  /** Lowest port of the crash matrix's own servers (bench/chaos). */
  readonly chaosPortBase: number;
  /** Brokers of the local Kafka: 1, or a cluster with a dedicated controller (replication factor 3 from 3 brokers on). */
  readonly kafkaNodes: number;
  /** Where local servers keep their data and logs. */
  readonly dataDir: string;
  /** Where fetched Kafka jars are cached. */
  readonly cacheDir: string;
  /** PostgreSQL schema holding every table of the pipeline. */
  readonly schema: string;
  /** Width of one outbox partition, e.g. "1 day" or "5 minutes". */
  readonly partitionWidth: string;
  /** Outbox partitions kept created ahead of the current one. */
  readonly partitionsAhead: number;
  /** Delivered outbox history older than this is removed by cleanup. */
  readonly retention: string;
  /** Processed event ids older than this leave the inbox (undefined: kept forever). */
  readonly inboxRetention: string | undefined;
  /** Kafka topic prefix; the topic of an event is prefix + aggregate type. */
  readonly topicPrefix: string;
  /** Partitions of each topic the project creates. */
  readonly topicPartitions: number;
  /** Which relay strategy runs. */
  readonly relayMode: RelayMode;
  /** Pause between polls when the previous batch was not full, in ms. */
  readonly pollIntervalMs: number;
  /** Most outbox rows claimed and published in one relay pass (CDC: most events per Kafka batch). */
  readonly batchSize: number;
  /** CDC relays: how long a commit may wait for more before they publish it, ms (0: at once). */
  readonly batchDelayMs: number;
  /** CDC relays: queued bytes (keys and values) that end the batching delay early. */
  readonly batchBytes: number;
  /** Consumer: how long the broker may hold a fetch while it has less than fetchMinBytes, ms. */
  readonly fetchMaxWaitMs: number;
  /** Consumer: bytes the broker gathers before it answers a fetch (up to fetchMaxWaitMs). */
  readonly fetchMinBytes: number;
  /** Kafka producers a relay publishes through in parallel (aggregates stay on one each). */
  readonly publishers: number;
  /** CDC: a transaction with more events than this waits on disk until its commit (0: always in memory). */
  readonly spillAfterEvents: number;
  /** The Kafka client relays and consumers run on. */
  readonly kafkaClient: KafkaClientName;
  readonly consumerKafkaClient: ConsumerKafkaClientName;
  /** Headers on each event: `minimal` (event id, aggregate version) or `all`. */
  readonly kafkaHeaders: HeaderSet;
  /** Stored event headers forwarded to Kafka besides the set (trace context, ...). */
  readonly forwardHeaders: readonly string[];
  /** Relay processes of a mode that runs several (SKIP LOCKED replicas, CDC shards). */
  readonly replicas: number;
  /** Aggregate-hash buckets the skip-locked replicas share out (ordered mode). */
  readonly buckets: number;
  /** How long a replica may hold its claim before PostgreSQL fences it off, in ms. */
  readonly leaseMs: number;
  /** Logical replication slot of the CDC relay. */
  readonly slotName: string;
  /** Publication of the CDC relay. */
  readonly publicationName: string;
  /** Kafka consumer group of the idempotent consumer. */
  readonly consumerGroup: string;
  /** Address the HTTP order service binds to. */
  readonly httpHost: string;
  /** Port of the HTTP order service. */
  readonly httpPort: number;
  /** Largest accepted request body, in bytes. */
  readonly httpBodyLimitBytes: number;
  /** Group commit: most orders per statement at the HTTP edge (0 = one transaction per order). */
  readonly groupCommitMax: number;
  /** Port of the Prometheus /metrics endpoint; undefined disables it. */
  readonly metricsPort: number | undefined;
  /** Benchmarks: relays write per-stage latency histograms to `<this>.<pid>.json` when they stop. */
  readonly stagesFile: string | undefined;
  /** pino log level. */
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
}

type Kind = 'string' | 'port' | 'int' | 'enum' | 'list' | 'names' | 'identifier' | 'topic-prefix' | 'url' | 'interval';

interface OptionSpec {
  readonly key: keyof Config;
  readonly flag: string;
  readonly env: string;
  readonly kind: Kind;
  readonly description: string;
  readonly min?: number;
  readonly max?: number;
  /** The accepted values of an `enum`. */
  readonly values?: readonly string[];
}

/*
 * Defaults. The ports are deliberately not 5432/9092 so a developer's own
 * PostgreSQL or Kafka never collides with ours; docker-compose.yml uses the same.
 */
export const DEFAULTS: Config = Object.freeze({
  databaseUrl: undefined,
  pgPort: 55432,
  kafkaBrokers: undefined,
  kafkaPort: 19092,
  kafkaControllerPort: 19093,
  kafkaVersion: '4.1.1',
  // Rationale: a single-node broker in benchmarks peaks well below 512 MiB of
  // heap; 1 GiB leaves headroom for page-cache-friendly batches on 24 GiB hosts.
  kafkaHeapMb: 1024,
  kafkaJit: 'full',
  // The crash matrix's servers use the 3,600 ports from here (a standby pair,
  // the single servers, the 3-broker cluster, 1,000 apart, and the cluster's
  // brokers), clear of the defaults above; each port is checked free before
  // it is taken, since Linux may hand any of them out as an ephemeral one. A
  // second sitting on the same machine takes a base 4,000 away, so neither
  // takes a port the other's killed server has just let go.
  chaosPortBase: 46_432,
  // One broker by default: the benchmarks measure the relays, and a single
  // broker on loopback is the cheapest honest Kafka. `--kafka-nodes 3` starts
  // the replicated cluster the failover tests need.
  kafkaNodes: 1,
  dataDir: path.join(PROJECT_ROOT, '.data'),
  cacheDir: path.join(PROJECT_ROOT, '.cache'),
  schema: 'outbox_bench',
  // A day per partition in production; benchmarks pass minutes.
  partitionWidth: '1 day',
  // Rationale: two spare partitions survive a weekend-long outage of the
  // maintenance loop at a day width without any insert failing.
  partitionsAhead: 2,
  // Rationale: a day of delivered events is enough to investigate an incident
  // and replay from the outbox; older partitions are dropped whole.
  retention: '1 day',
  inboxRetention: undefined,
  topicPrefix: 'outbox.event.',
  // Rationale: 6 partitions lets per-aggregate ordering be exercised across
  // partitions while staying cheap for a single 2-core broker.
  topicPartitions: 6,
  relayMode: 'polling',
  // The classic outbox polling interval; the relay drains a backlog without waiting.
  pollIntervalMs: 500,
  // Rationale: measured on 2 cores, claim+mark throughput flattens above ~1-2K
  // rows per pass while the pass (and its lock hold time) keeps growing.
  batchSize: 1000,
  // Rationale: each commit leaves as it arrives, the lowest latency; what a
  // delay saves in CPU per event, and costs in p99, is bench:frontier's table.
  batchDelayMs: 0,
  // Rationale: Kafka's default largest producer request (max.request.size,
  // 1 MiB): a batch that size gains nothing from waiting longer.
  batchBytes: 1024 * 1024,
  // Rationale: with fetchMinBytes 1 a fetch returns as soon as one record is
  // there, so the wait bounds only idle polls, one a second per broker; and
  // kafkajs' disconnect waits for the fetch in flight, so its 5 s default made
  // every consumer stop take 5 s.
  fetchMaxWaitMs: 1_000,
  // Rationale: the consumer adds no wait of its own; a larger value trades
  // latency (up to fetchMaxWaitMs) for fewer, fuller batches.
  fetchMinBytes: 1,
  // Rationale: one idempotent producer has one request in flight; with the
  // default Kafka client four in parallel drained within a few percent of one
  // on 2 cores (results/fastest-path, single runs), so one stays, the
  // textbook shape.
  publishers: 1,
  // Rationale: the CDC relay's buffer bound (50K events of ~0.5 KiB, ~25 MiB);
  // a transaction larger than what the relay would buffer anyway goes to disk.
  spillAfterEvents: 50_000,
  // Rationale: chosen by `npm run bench:drain` (results/README.md): in the
  // relay-only drain @platformatic/kafka carried the most events per second at
  // the lowest CPU per event of the five clients, and it is pure JavaScript,
  // so it installs wherever npm does.
  kafkaClient: 'platformatic',
  // Rationale: in the consumer-only drain kafkajs' batch consumer cost less CPU
  // per event than @platformatic/kafka's message stream (results/README.md).
  consumerKafkaClient: 'kafkajs',
  // Rationale: every header costs a Kafka client about as much as a record;
  // the inbox needs the event id and the ordering checks the version.
  kafkaHeaders: 'minimal',
  forwardHeaders: Object.freeze([]),
  replicas: 3,
  // Rationale: 64 buckets spread hot aggregates across 3-8 replicas while a
  // pass still scans few buckets; must stay fixed while any replica runs.
  buckets: 64,
  // Rationale: a pass publishes within kafkajs' 30 s request timeout; 30 s of
  // idle-in-transaction before PostgreSQL terminates (fences) a stalled replica.
  leaseMs: 30_000,
  slotName: 'outbox_bench_slot',
  publicationName: 'outbox_bench_pub',
  consumerGroup: 'outbox-bench-consumer',
  httpHost: '127.0.0.1',
  httpPort: 3000,
  // Rationale: an order is a few hundred bytes; 64 KiB rejects abuse early.
  httpBodyLimitBytes: 64 * 1024,
  // Rationale: one statement of 500 orders commits in a few ms here; larger
  // batches only make each request wait for more rows to be written.
  groupCommitMax: 500,
  metricsPort: undefined,
  stagesFile: undefined,
  logLevel: 'info',
  logFormat: 'pretty',
});

export const OPTION_SPECS: readonly OptionSpec[] = Object.freeze([
  { key: 'databaseUrl', flag: 'database-url', env: 'DATABASE_URL', kind: 'url', description: 'use this PostgreSQL server (postgres://...) and start none' },
  { key: 'pgPort', flag: 'pg-port', env: 'OUTBOX_BENCH_PG_PORT', kind: 'port', description: 'port of the local embedded PostgreSQL' },
  { key: 'kafkaBrokers', flag: 'kafka-brokers', env: 'KAFKA_BROKERS', kind: 'list', description: 'use these Kafka brokers (host:port,...) and start none' },
  { key: 'kafkaPort', flag: 'kafka-port', env: 'OUTBOX_BENCH_KAFKA_PORT', kind: 'port', description: 'client port of the local Kafka broker' },
  { key: 'kafkaControllerPort', flag: 'kafka-controller-port', env: 'OUTBOX_BENCH_KAFKA_CONTROLLER_PORT', kind: 'port', description: 'KRaft controller port of the local Kafka broker' },
  { key: 'kafkaVersion', flag: 'kafka-version', env: 'OUTBOX_BENCH_KAFKA_VERSION', kind: 'string', description: 'Apache Kafka version fetched from Maven Central' },
  { key: 'kafkaNodes', flag: 'kafka-nodes', env: 'OUTBOX_BENCH_KAFKA_NODES', kind: 'int', min: 1, max: 5, description: 'brokers of the local Kafka (3: a cluster with a dedicated controller, replication factor 3, min.insync.replicas 2)' },
  { key: 'kafkaHeapMb', flag: 'kafka-heap-mb', env: 'OUTBOX_BENCH_KAFKA_HEAP_MB', kind: 'int', min: 128, max: 65_536, description: 'heap of the local Kafka broker, MiB' },
  { key: 'kafkaJit', flag: 'kafka-jit', env: 'OUTBOX_BENCH_KAFKA_JIT', kind: 'enum', values: KAFKA_JIT_MODES, description: 'JIT of the local Kafka broker: full, or quick-start (client compiler only: half the CPU to start, a slower broker; tests use it, benchmarks refuse it)' },
  { key: 'chaosPortBase', flag: 'chaos-port-base', env: 'OUTBOX_BENCH_CHAOS_PORT_BASE', kind: 'port', description: 'lowest of the 3,600 ports the crash matrix\'s own servers use (two sittings side by side: bases 4,000 apart)' },
  { key: 'dataDir', flag: 'data-dir', env: 'OUTBOX_BENCH_DATA_DIR', kind: 'string', description: 'folder for local server data and logs' },
  { key: 'cacheDir', flag: 'cache-dir', env: 'OUTBOX_BENCH_CACHE_DIR', kind: 'string', description: 'folder for the fetched Kafka jars' },
  { key: 'schema', flag: 'schema', env: 'OUTBOX_BENCH_SCHEMA', kind: 'identifier', description: 'PostgreSQL schema of the pipeline tables' },
  { key: 'partitionWidth', flag: 'partition-width', env: 'OUTBOX_BENCH_PARTITION_WIDTH', kind: 'interval', description: 'width of one outbox partition ("1 day", "5 minutes")' },
  { key: 'partitionsAhead', flag: 'partitions-ahead', env: 'OUTBOX_BENCH_PARTITIONS_AHEAD', kind: 'int', min: 1, max: 10_000, description: 'outbox partitions created ahead of time' },
  { key: 'retention', flag: 'retention', env: 'OUTBOX_BENCH_RETENTION', kind: 'interval', description: 'keep delivered outbox history this long ("1 day")' },
  { key: 'inboxRetention', flag: 'inbox-retention', env: 'OUTBOX_BENCH_INBOX_RETENTION', kind: 'interval', description: 'forget processed event ids after this long (docs/outbox.md: choosing it)' },
  { key: 'topicPrefix', flag: 'topic-prefix', env: 'OUTBOX_BENCH_TOPIC_PREFIX', kind: 'topic-prefix', description: 'topic = prefix + aggregate type' },
  { key: 'topicPartitions', flag: 'partitions', env: 'OUTBOX_BENCH_PARTITIONS', kind: 'int', min: 1, max: 1_000, description: 'partitions per topic' },
  { key: 'relayMode', flag: 'mode', env: 'OUTBOX_BENCH_RELAY_MODE', kind: 'enum', values: RELAY_MODES, description: 'relay strategy' },
  { key: 'pollIntervalMs', flag: 'interval-ms', env: 'OUTBOX_BENCH_POLL_INTERVAL_MS', kind: 'int', min: 1, max: 3_600_000, description: 'poll interval when idle, ms' },
  { key: 'batchSize', flag: 'batch-size', env: 'OUTBOX_BENCH_BATCH_SIZE', kind: 'int', min: 1, max: 100_000, description: 'rows claimed per relay pass' },
  // Rationale for the delay's bound: a twelfth of wal_sender_timeout's 60 s
  // default, so a hold stays well below it; a budget of seconds is served by a
  // polling relay at a fraction of the cost.
  { key: 'batchDelayMs', flag: 'batch-delay-ms', env: 'OUTBOX_BENCH_BATCH_DELAY_MS', kind: 'int', min: 0, max: 5_000, description: 'CDC relays: a commit waits this long for more before it is published, ms (0: at once)' },
  { key: 'batchBytes', flag: 'batch-bytes', env: 'OUTBOX_BENCH_BATCH_BYTES', kind: 'int', min: 1_024, max: 64 * 1024 * 1024, description: 'CDC relays: queued bytes that end the batching delay early' },
  { key: 'fetchMaxWaitMs', flag: 'fetch-max-wait-ms', env: 'OUTBOX_BENCH_FETCH_MAX_WAIT_MS', kind: 'int', min: 1, max: 60_000, description: "consumer: longest the broker holds a fetch that has less than --fetch-min-bytes, ms" },
  { key: 'fetchMinBytes', flag: 'fetch-min-bytes', env: 'OUTBOX_BENCH_FETCH_MIN_BYTES', kind: 'int', min: 1, max: 16 * 1024 * 1024, description: 'consumer: bytes the broker gathers before it answers a fetch' },
  { key: 'publishers', flag: 'publishers', env: 'OUTBOX_BENCH_PUBLISHERS', kind: 'int', min: 1, max: 64, description: 'Kafka producers per relay, in parallel (per-aggregate order kept)' },
  { key: 'spillAfterEvents', flag: 'spill-after', env: 'OUTBOX_BENCH_SPILL_AFTER', kind: 'int', min: 0, max: 100_000_000, description: 'CDC: transactions with more events wait on disk for their commit (0: in memory)' },
  { key: 'kafkaClient', flag: 'kafka-client', env: 'OUTBOX_BENCH_KAFKA_CLIENT', kind: 'enum', values: KAFKA_CLIENTS, description: 'Kafka client of the relays (producers)' },
  { key: 'consumerKafkaClient', flag: 'consumer-kafka-client', env: 'OUTBOX_BENCH_CONSUMER_KAFKA_CLIENT', kind: 'enum', values: CONSUMER_KAFKA_CLIENTS, description: 'Kafka client of the consumer' },
  { key: 'kafkaHeaders', flag: 'kafka-headers', env: 'OUTBOX_BENCH_KAFKA_HEADERS', kind: 'enum', values: HEADER_SETS, description: 'headers per event: minimal (id, aggregateVersion) or all' },
  { key: 'forwardHeaders', flag: 'forward-headers', env: 'OUTBOX_BENCH_FORWARD_HEADERS', kind: 'names', description: 'stored event headers to forward as Kafka headers (name,name)' },
  { key: 'replicas', flag: 'replicas', env: 'OUTBOX_BENCH_REPLICAS', kind: 'int', min: 1, max: 64, description: 'relay processes of a mode that runs several (SKIP LOCKED replicas, CDC shards)' },
  { key: 'buckets', flag: 'buckets', env: 'OUTBOX_BENCH_BUCKETS', kind: 'int', min: 1, max: 4_096, description: 'aggregate-hash buckets shared by replicas' },
  { key: 'leaseMs', flag: 'lease-ms', env: 'OUTBOX_BENCH_LEASE_MS', kind: 'int', min: 1_000, max: 3_600_000, description: 'claim lease before a stalled replica is fenced, ms' },
  { key: 'slotName', flag: 'slot', env: 'OUTBOX_BENCH_SLOT', kind: 'identifier', description: 'logical replication slot (CDC relay)' },
  { key: 'publicationName', flag: 'publication', env: 'OUTBOX_BENCH_PUBLICATION', kind: 'identifier', description: 'publication (CDC relay)' },
  { key: 'consumerGroup', flag: 'group', env: 'OUTBOX_BENCH_CONSUMER_GROUP', kind: 'string', description: 'Kafka consumer group' },
  { key: 'httpHost', flag: 'host', env: 'OUTBOX_BENCH_HTTP_HOST', kind: 'string', description: 'HTTP bind address' },
  { key: 'httpPort', flag: 'port', env: 'OUTBOX_BENCH_HTTP_PORT', kind: 'port', description: 'HTTP port (0 picks a free one)' },
  { key: 'httpBodyLimitBytes', flag: 'body-limit', env: 'OUTBOX_BENCH_HTTP_BODY_LIMIT', kind: 'int', min: 256, max: 16 * 1024 * 1024, description: 'largest request body, bytes' },
  { key: 'groupCommitMax', flag: 'group-commit', env: 'OUTBOX_BENCH_GROUP_COMMIT', kind: 'int', min: 0, max: 10_000, description: 'most orders per statement when requests overlap (0 = a transaction per order)' },
  { key: 'metricsPort', flag: 'metrics-port', env: 'OUTBOX_BENCH_METRICS_PORT', kind: 'port', description: 'serve Prometheus metrics on this port' },
  { key: 'stagesFile', flag: 'stages-file', env: 'OUTBOX_BENCH_STAGES_FILE', kind: 'string', description: 'benchmarks: write per-stage latency histograms (commit -> relay -> Kafka ack) to <this>.<pid>.json on stop' },
  { key: 'logLevel', flag: 'log-level', env: 'OUTBOX_BENCH_LOG_LEVEL', kind: 'enum', values: LOG_LEVELS, description: 'log level' },
  { key: 'logFormat', flag: 'log-format', env: 'OUTBOX_BENCH_LOG_FORMAT', kind: 'enum', values: LOG_FORMATS, description: 'log lines: pretty or json (raw pino)' },
] satisfies OptionSpec[]);

export function specOf(key: keyof Config): OptionSpec {
  const spec = OPTION_SPECS.find((s) => s.key === key);
  if (!spec) throw new Error(`no option spec for ${key}`);
  return spec;
}

/** Raw values as given on the command line, keyed by config key. */
export type ConfigFlags = Partial<Record<keyof Config, string | undefined>>;

export interface ResolveConfigInput {
  env?: NodeJS.ProcessEnv;
  flags?: ConfigFlags;
  /** Values set by code (tests, benchmarks); they win over env and flags. */
  overrides?: Partial<Config>;
}

export function resolveConfig(input: ResolveConfigInput = {}): Config {
  const env = input.env ?? process.env;
  const flags = input.flags ?? {};
  const resolved: Record<string, unknown> = { ...DEFAULTS };
  for (const spec of OPTION_SPECS) {
    const fromEnv = env[spec.env];
    if (fromEnv !== undefined && fromEnv !== '') resolved[spec.key] = coerce(spec, fromEnv, `environment variable ${spec.env}`);
    const fromFlag = flags[spec.key];
    if (fromFlag !== undefined) resolved[spec.key] = coerce(spec, fromFlag, `flag --${spec.flag}`);
  }
  Object.assign(resolved, input.overrides ?? {});
  const config = resolved as unknown as Config;
  checkCrossField(config);
  return Object.freeze({ ...config, kafkaBrokers: config.kafkaBrokers && Object.freeze([...config.kafkaBrokers]), forwardHeaders: Object.freeze([...config.forwardHeaders]) });
}

function invalid(source: string, message: string): OutboxBenchError {
  return new OutboxBenchError('CONFIG_INVALID', `${source}: ${message}`, { details: { source } });
}

function coerce(spec: OptionSpec, raw: string, source: string): unknown {
  const value = raw.trim();
  switch (spec.kind) {
    case 'string':
      if (value === '') throw invalid(source, 'must not be empty');
      return value;
    case 'identifier':
      // Identifiers are interpolated into DDL and replication commands, so only
      // plain lower-case SQL identifiers are allowed: no quoting games.
      if (!PLAIN_IDENTIFIER.test(value)) {
        throw invalid(source, `"${raw}" is not a plain identifier (lower-case letters, digits, _; at most 63 characters)`);
      }
      return value;
    case 'topic-prefix':
      // Kafka allows these characters in topic names and nothing else; the
      // aggregate type is appended, within Kafka's 249-character limit.
      if (!/^[a-zA-Z0-9._-]{1,200}$/.test(value)) throw invalid(source, `"${raw}" may hold only letters, digits, '.', '_' and '-' (at most 200): Kafka's topic name characters`);
      return value;
    case 'url': {
      let url: URL;
      try {
        url = new URL(value);
      } catch {
        throw invalid(source, `"${raw}" is not a URL (expected postgres://user:password@host:port/database)`);
      }
      if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
        throw invalid(source, `"${raw}" must start with postgres:// or postgresql://`);
      }
      return value;
    }
    case 'port':
    case 'int': {
      if (!/^-?\d+$/.test(value)) throw invalid(source, `"${raw}" is not an integer`);
      const n = Number(value);
      const min = spec.kind === 'port' ? 0 : (spec.min ?? Number.MIN_SAFE_INTEGER);
      const max = spec.kind === 'port' ? 65_535 : (spec.max ?? Number.MAX_SAFE_INTEGER);
      if (n < min || n > max) throw invalid(source, `${n} is out of range [${min}, ${max}]`);
      return n;
    }
    case 'interval': {
      const match = /^(\d+)\s*(second|seconds|minute|minutes|hour|hours|day|days)$/.exec(value);
      if (!match || Number(match[1]) < 1) throw invalid(source, `"${raw}" is not a duration like "1 day", "6 hours" or "5 minutes"`);
      return `${Number(match[1])} ${match[2]}`;
    }
    case 'enum': {
      const values = spec.values ?? [];
      if (!values.includes(value)) throw invalid(source, `"${raw}" is not one of ${values.join(', ')}`);
      return value;
    }
    case 'names': {
      const items = value.split(',').map((s) => s.trim()).filter(Boolean);
      for (const item of items) {
        if (!/^[\x21-\x7e]{1,128}$/.test(item)) throw invalid(source, `"${item}" is not a header name (printable ASCII, no spaces)`);
      }
      return Object.freeze(items);
    }
    case 'list': {
      const items = value.split(',').map((s) => s.trim()).filter(Boolean);
      if (items.length === 0) throw invalid(source, 'must list at least one host:port');
      for (const item of items) {
        if (!/^[^\s:]+:\d{1,5}$/.test(item)) throw invalid(source, `"${item}" is not host:port`);
      }
      return items;
    }
  }
}

function checkCrossField(config: Config): void {
  if (/second/.test(config.partitionWidth)) {
    throw invalid('flag --partition-width', `${config.partitionWidth} is too narrow; a partition is at least "1 minute" wide`);
  }
  // A cluster's brokers listen on --kafka-port and every tenth port above it (infra/kafka-cluster.ts).
  for (let index = 0; index < config.kafkaNodes; index++) {
    if (config.kafkaPort + 10 * index === config.kafkaControllerPort) {
      throw invalid('flag --kafka-controller-port', `must differ from the brokers' ports (--kafka-port ${config.kafkaPort}${config.kafkaNodes > 1 ? ' and every tenth above it' : ''})`);
    }
  }
  // Overrides are not coerced; a mode that is not in the registry fails here, not at start.
  if (!(RELAY_MODES as readonly string[]).includes(config.relayMode)) throw invalid('flag --mode', `"${config.relayMode}" is not one of ${RELAY_MODES.join(', ')}`);
}

/**
 * The environment variables that give a child process exactly these
 * settings: the one way settings travel to the processes a command starts
 * (relay replicas and shards, benchmark relays, the crash matrix's processes).
 * A key whose value is undefined is sent empty, which the child's resolver
 * reads as unset, so a value the parent did not mean never leaks through.
 */
export function settingsEnv(values: Partial<Config>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(values) as [keyof Config, Config[keyof Config]][]) {
    env[specOf(key).env] = value === undefined ? '' : Array.isArray(value) ? value.join(',') : String(value);
  }
  return env;
}

/**
 * `env` without any setting's variable: the base of a child's environment
 * when only the settings given explicitly may reach it (a benchmark's
 * processes must not pick up the shell's OUTBOX_BENCH_* variables).
 */
export function withoutSettings(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const rest = { ...env };
  for (const spec of OPTION_SPECS) delete rest[spec.env];
  return rest;
}

/** One line per option, for `--help` texts. */
export function describeOptions(keys: readonly (keyof Config)[]): string {
  return keys
    .map((key) => {
      const spec = specOf(key);
      const def = DEFAULTS[key];
      const shown = def === undefined || (Array.isArray(def) && def.length === 0) ? '' : ` (default ${Array.isArray(def) ? def.join(',') : String(def)})`;
      const values = spec.values ? ` [${spec.values.join('|')}]` : '';
      return `  --${spec.flag.padEnd(22)} ${spec.description}${values}${shown}; env ${spec.env}`;
    })
    .join('\n');
}

/**
 * A whole-number flag of a command line (the CLI's, the benchmarks', the
 * chaos matrix's), or a USAGE error that names the flag and its range.
 */
export function parseWholeFlag(flag: string, raw: string, min: number, max: number): number {
  const value = raw.trim();
  if (!/^\d+$/.test(value)) throw new OutboxBenchError('USAGE', `flag --${flag}: "${raw}" is not a whole number`);
  const n = Number(value);
  if (n < min || n > max) throw new OutboxBenchError('USAGE', `flag --${flag}: ${n} is out of range [${min}, ${max}]`);
  return n;
}
