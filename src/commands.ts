/**
 * The commands of the CLI. Each declares the settings it accepts as flags
 * (validated by resolveConfig) and its own flags, and gets a shutdown stack
 * on which everything it opens is closed again.
 * It is the CLI's table of commands, each a short declaration plus a `run`
 * of a few lines that calls into the modules doing the work, kept in one file
 * so that `--help` and the commands it describes cannot drift apart; what
 * they share is in command-kit.ts.
 */
import { armFromEnv } from './chaos/failpoints.js';
import { intValue, open, SCHEMA_KEYS, serveMetrics, SERVER_KEYS, storeValue, stringValue, TOPIC_KEYS, type Command, type CommandContext } from './command-kit.js';
import { IdempotentConsumer } from './consumer/consumer.js';
import { OutboxBenchError } from './errors.js';
import { ensureKafkaJars, localInfraStatus, redactUrl, stopLocalInfra } from './infra/index.js';
import { Metrics } from './metrics.js';
import { createOrderService } from './orders/http.js';
import { ORDER_AGGREGATE, placeOrders } from './orders/write-path.js';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { buildConfluentClient, describeBuildFailure } from './infra/kafka-client-build.js';
import { CONFLUENT_CLIENT_DIR } from './kafka/confluent.js';
import { consumersFor } from './kafka/consumers.js';
import { signalReady } from './readiness.js';
import { checkClaims, readEvidence } from './relay/table/evidence.js';
import { startRelay } from './relay/index.js';
import { RELAY_MODES, relayModeInfo } from './relay/modes.js';
import { CleanupLoop, deleteDeliveredBatched, dropDeliveredPartitions, sweepInbox, type CleanupStrategy } from './cleanup/retention.js';
import type { Runtime } from './runtime.js';

export type { Command, CommandContext, CommandOption } from './command-kit.js';

// Rationale: once a minute keeps minute-wide benchmark partitions in check;
// daily partitions would need it hourly at most, and a round costs a few queries.
const CLEANUP_INTERVAL_MS = 60_000;

const infra: Command = {
  name: 'infra',
  summary: 'start (up), stop (down) or show (status) the local PostgreSQL and Kafka',
  usage: 'infra up|down|status|fetch-kafka|build-kafka-client [flags]',
  description:
    '`infra up` starts the local servers and leaves them running for interactive use; every other command then uses them\n' +
    'instead of starting its own. `infra down` stops them. `infra status` shows what runs. `infra fetch-kafka` only\n' +
    'downloads the Kafka jars from Maven Central into the cache (done on first use anyway). `infra build-kafka-client`\n' +
    'builds the Confluent librdkafka client into kafka/confluent-client (npm install runs it with --if-possible).',
  configKeys: [...SERVER_KEYS, ...SCHEMA_KEYS],
  options: {
    'if-possible': { type: 'boolean', description: 'build-kafka-client: on failure, warn and exit 0 (the install step)' },
  },
  async run(context) {
    const action = context.positionals[0];
    if (action === 'up') {
      const runtime = await open(context, { postgres: true, kafka: true }, true);
      const lines = [
        `PostgreSQL  ${redactUrl(runtime.infra.databaseUrl)}${runtime.infra.postgres.external ? '  (external)' : ''}`,
        `Kafka       ${runtime.infra.kafkaBrokers.join(',')}${runtime.infra.kafka.external ? '  (external)' : ''}`,
        `Schema      ${context.config.schema}`,
        'Stop them with: npm run infra:down',
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
      return 0;
    }
    if (action === 'down') {
      const stopped = await stopLocalInfra(context.config, context.log);
      process.stdout.write(
        `PostgreSQL: ${stopped.postgres ? 'stopped' : 'was not running'}\nKafka: ${stopped.kafka ? 'stopped' : 'was not running'}\n`,
      );
      return 0;
    }
    if (action === 'fetch-kafka') {
      const jars = await ensureKafkaJars(context.config, context.log);
      process.stdout.write(`Apache Kafka ${jars.version} jars are in ${jars.libDir}\n`);
      return 0;
    }
    if (action === 'build-kafka-client') {
      const result = await buildConfluentClient(context.log, { force: !context.values['if-possible'] });
      const failure = describeBuildFailure(result);
      if (!failure) {
        process.stdout.write(`the Confluent Kafka client is built in ${CONFLUENT_CLIENT_DIR}\n`);
        return 0;
      }
      if (!context.values['if-possible']) throw failure;
      process.stderr.write(`outbox-bench: ${failure.message}\n`);
      return 0;
    }
    if (action === 'status') {
      const status = localInfraStatus(context.config, context.log);
      const show = (s: typeof status.postgres) =>
        s.running ? `running (pid ${s.pid}, port ${s.port}${s.detached ? ', started by infra up' : ''})` : 'not running';
      process.stdout.write(`PostgreSQL: ${show(status.postgres)}\nKafka: ${show(status.kafka)}\n`);
      return 0;
    }
    throw new OutboxBenchError('USAGE', `infra needs one of up, down, status, fetch-kafka, build-kafka-client${action ? `, not "${action}"` : ''}`);
  },
};

const migrateCommand: Command = {
  name: 'migrate',
  summary: 'apply the sql/ migrations to the schema and create outbox partitions',
  usage: 'migrate [flags]',
  description: 'Applies the numbered files of sql/ that the schema has not seen, then creates outbox partitions ahead of time.',
  configKeys: [...SERVER_KEYS, ...SCHEMA_KEYS],
  async run(context) {
    await open(context, { postgres: true, kafka: false });
    process.stdout.write(`schema ${context.config.schema} is up to date\n`);
  },
};

const serve: Command = {
  name: 'serve',
  summary: 'run the HTTP order service (POST /orders, GET /health)',
  usage: 'serve [--store table|message] [flags]',
  description:
    'POST /orders {customerId, amountCents, currency[, orderId]} places an order and writes its OrderPlaced event in one\n' +
    'transaction. POST /orders/<id>/amendments {deltaCents} appends an OrderAmended event. Bad input gets a 4xx JSON error.',
  configKeys: [...SERVER_KEYS, ...SCHEMA_KEYS, 'httpHost', 'httpPort', 'httpBodyLimitBytes', 'groupCommitMax'],
  options: { store: { type: 'string', description: 'where events go: table (outbox rows) or message (WAL messages); default table' } },
  async run(context) {
    const store = storeValue(context);
    const runtime = await open(context, { postgres: true, kafka: false });
    const app = createOrderService({
      sql: runtime.sql({ max: 16, applicationName: 'outbox-bench-http' }),
      log: context.log,
      bodyLimit: context.config.httpBodyLimitBytes,
      store,
      groupCommitMax: context.config.groupCommitMax,
    });
    context.shutdown.add('http server', () => app.close());
    const address = await app.listen({ host: context.config.httpHost, port: context.config.httpPort });
    signalReady('service');
    process.stdout.write(`order service listening on ${address} (events to the ${store === 'table' ? 'outbox table' : 'WAL as logical messages'})\n`);
    await context.signal;
  },
};

const relay: Command = {
  name: 'relay',
  summary: `run a relay: ${RELAY_MODES.join(', ')}`,
  usage: `relay --mode ${RELAY_MODES.join('|')} [flags]`,
  description: [
    'Publishes committed outbox events to Kafka (topic <prefix><aggregateType>, key = aggregate id) until Ctrl-C.',
    ...RELAY_MODES.map((mode) => `${mode}: ${relayModeInfo(mode).summary}.`),
  ].join('\n'),
  configKeys: [
    ...SERVER_KEYS,
    ...SCHEMA_KEYS,
    ...TOPIC_KEYS,
    'relayMode',
    'pollIntervalMs',
    'batchSize',
    'batchDelayMs',
    'batchBytes',
    'publishers',
    'spillAfterEvents',
    'replicas',
    'buckets',
    'leaseMs',
    'slotName',
    'publicationName',
    'metricsPort',
    'stagesFile',
    'kafkaClient',
    'kafkaHeaders',
    'forwardHeaders',
    'retention',
    'inboxRetention',
  ],
  options: {
    evidence: { type: 'string', description: 'record each pass (replica, session, claimed buckets and event ids, server-side claim/release times) in this folder, one JSON Lines file per replica' },
    'replica-index': { type: 'string', description: '(internal) run as process N of the mode\'s --replicas (a replica, a shard)' },
    'recreate-slot': { type: 'boolean', description: 'cdc-message: create the slot again after it was lost or dropped (read the error first: events may need reconciling; the table store uses --recover-slot)' },
    'recover-slot': {
      type: 'string',
      description:
        'cdc, cdc-sharded: recover this lost or dropped slot, then run: mark what its published horizon proves Kafka has, create a new slot, re-publish every other unpublished row it will not read, start CDC on it',
    },
    cleanup: { type: 'string', description: 'remove delivered history beside the relay: drop-partition, batched-delete or none (default none; partitions are kept created ahead either way)' },
    'cleanup-interval-ms': { type: 'string', description: `time between cleanup and partition rounds (default ${CLEANUP_INTERVAL_MS})` },
  },
  async run(context) {
    armFromEnv();
    const recoverSlot = stringValue(context, 'recover-slot');
    if (recoverSlot !== undefined && relayModeInfo(context.config.relayMode).deliveryProof !== 'replication-slots') {
      throw new OutboxBenchError('USAGE', `--recover-slot is for the CDC modes; ${context.config.relayMode} reads no replication slot`);
    }
    const runtime = await open(context, { postgres: true, kafka: true });
    // Process metrics (event loop lag, GC, heap) only where someone scrapes them.
    const metrics = new Metrics({ defaultMetrics: context.config.metricsPort !== undefined });
    await serveMetrics(context, metrics);
    const replicaIndexRaw = stringValue(context, 'replica-index');
    const handle = await startRelay(runtime, {
      metrics,
      evidenceFile: stringValue(context, 'evidence'),
      processIndex: replicaIndexRaw === undefined ? undefined : intValue(context, 'replica-index', 0, 0, 1_000),
      recreateSlot: context.values['recreate-slot'] === true,
      recoverSlot,
    });
    context.shutdown.add('relay', () => handle.stop());
    // Beside every relay: partitions kept created ahead (inserts must never
    // miss one) and, if asked, delivered history removed. Replica children
    // leave it to their supervisor.
    if (replicaIndexRaw === undefined) {
      const strategy = cleanupStrategyValue(context, 'cleanup', 'none');
      const loop = cleanupLoop(context, runtime, strategy, intValue(context, 'cleanup-interval-ms', CLEANUP_INTERVAL_MS, 100, 86_400_000));
      loop.start();
      context.shutdown.add('cleanup loop', () => loop.stop());
    }
    process.stdout.write(`relay ${context.config.relayMode} running; Ctrl-C to stop\n`);
    signalReady('relay');
    const outcome = await Promise.race([context.signal.then(() => 'signal' as const), handle.done.then(() => 'ended' as const)]);
    if (outcome === 'ended') return 1;
  },
};

const consume: Command = {
  name: 'consume',
  summary: 'run the idempotent consumer (inbox + side effect, offsets after commit)',
  usage: 'consume [flags]',
  description: 'Consumes the order topic in a consumer group; applies each event once (inbox keyed by event id) and counts duplicates.',
  configKeys: [...SERVER_KEYS, ...SCHEMA_KEYS, ...TOPIC_KEYS, 'consumerGroup', 'metricsPort', 'consumerKafkaClient', 'fetchMaxWaitMs', 'fetchMinBytes'],
  async run(context) {
    armFromEnv();
    const runtime = await open(context, { postgres: true, kafka: true });
    const metrics = new Metrics({ defaultMetrics: context.config.metricsPort !== undefined });
    await serveMetrics(context, metrics);
    const topic = runtime.topic(ORDER_AGGREGATE);
    // The topic may not exist before the first relay publishes to it.
    await runtime.ensureTopic(topic);
    const consumer = new IdempotentConsumer({
      source: await consumersFor(context.config.consumerKafkaClient, {
        brokers: runtime.infra.kafkaBrokers,
        clientId: 'outbox-bench-consumer',
        log: context.log,
        fetch: { maxWaitMs: context.config.fetchMaxWaitMs, minBytes: context.config.fetchMinBytes },
      }),
      sql: runtime.sql({ max: 4, applicationName: 'outbox-bench-consumer' }),
      groupId: context.config.consumerGroup,
      topics: [topic],
      log: context.log,
      metrics,
    });
    context.shutdown.add('consumer', () => consumer.stop());
    await consumer.start();
    signalReady('consumer');
    process.stdout.write(`consuming ${topic} as group ${context.config.consumerGroup}; Ctrl-C to stop\n`);
    const timer = setInterval(() => context.log.info(consumer.stats, 'consumer progress'), 10_000);
    context.shutdown.add('progress timer', () => clearInterval(timer));
    await context.signal;
  },
};

const place: Command = {
  name: 'place',
  summary: 'place orders directly (no HTTP), for trying the pipeline by hand',
  usage: 'place [--count N] [--per-transaction N] [--store table|message] [flags]',
  description: 'Places --count random orders, --per-transaction of them per transaction, and prints how long it took.',
  configKeys: [...SERVER_KEYS, ...SCHEMA_KEYS],
  options: {
    count: { type: 'string', description: 'orders to place (default 1000)' },
    'per-transaction': { type: 'string', description: 'orders per transaction (default 100)' },
    store: { type: 'string', description: 'table (outbox rows) or message (WAL messages); default table' },
  },
  async run(context) {
    const count = intValue(context, 'count', 1_000, 1, 100_000_000);
    const perTransaction = intValue(context, 'per-transaction', 100, 1, 100_000);
    const store = storeValue(context);
    const runtime = await open(context, { postgres: true, kafka: false });
    const sql = runtime.sql({ max: 2, applicationName: 'outbox-bench-place' });
    const started = performance.now();
    for (let placed = 0; placed < count; placed += perTransaction) {
      const n = Math.min(perTransaction, count - placed);
      const orders = Array.from({ length: n }, (_, i) => ({
        customerId: `customer-${(placed + i) % 1_000}`,
        amountCents: 100 + ((placed + i) % 10_000),
        currency: 'EUR',
      }));
      await placeOrders(sql, orders, store);
    }
    const seconds = (performance.now() - started) / 1_000;
    process.stdout.write(`placed ${count} orders in ${seconds.toFixed(2)} s (${Math.round(count / seconds)} orders/s)\n`);
  },
};

function cleanupStrategyValue(context: CommandContext, flag: string, fallback: CleanupStrategy): CleanupStrategy {
  const raw = stringValue(context, flag) ?? fallback;
  if (raw !== 'drop-partition' && raw !== 'batched-delete' && raw !== 'none') {
    throw new OutboxBenchError('USAGE', `flag --${flag}: "${raw}" is not one of drop-partition, batched-delete, none`);
  }
  return raw;
}

function cleanupLoop(context: CommandContext, runtime: Runtime, strategy: CleanupStrategy, intervalMs: number): CleanupLoop {
  const { config, log } = context;
  return new CleanupLoop({
    sql: runtime.sql({ max: 1, applicationName: 'outbox-bench-cleanup' }),
    retention: config.retention,
    proof: relayModeInfo(config.relayMode).deliveryProof,
    log,
    strategy,
    partitionWidth: config.partitionWidth,
    partitionsAhead: config.partitionsAhead,
    intervalMs,
    batchSize: 5_000,
    inboxRetention: config.inboxRetention,
    onRun: (result) => (result.dropped + result.deleted + result.swept > 0 ? log.info(result, 'cleanup round') : log.debug(result, 'cleanup round')),
  });
}

const cleanup: Command = {
  name: 'cleanup',
  summary: 'remove delivered outbox history (drop partitions or batched delete) and sweep the inbox',
  usage: 'cleanup --strategy drop-partition|batched-delete|none [--loop] [flags]',
  description:
    'Removes outbox history older than --retention, only where every row was delivered: marked published for the table\n' +
    'relays, or confirmed by every replication slot of a CDC mode (--mode). drop-partition detaches and drops whole\n' +
    'partitions; batched-delete deletes rows in short batches. With --inbox-retention, also forgets old processed event ids.\n' +
    'Runs once and prints what it did, or keeps running with --loop (also: relay --cleanup <strategy>).',
  configKeys: [...SERVER_KEYS, ...SCHEMA_KEYS, 'relayMode', 'retention', 'inboxRetention'],
  options: {
    strategy: { type: 'string', description: 'drop-partition, batched-delete or none (default drop-partition)' },
    loop: { type: 'boolean', description: 'keep running, a round every --interval-ms' },
    'interval-ms': { type: 'string', description: `with --loop: time between rounds (default ${CLEANUP_INTERVAL_MS})` },
  },
  async run(context) {
    const strategy = cleanupStrategyValue(context, 'strategy', 'drop-partition');
    const intervalMs = intValue(context, 'interval-ms', CLEANUP_INTERVAL_MS, 100, 86_400_000);
    const runtime = await open(context, { postgres: true, kafka: false });
    const loop = cleanupLoop(context, runtime, strategy, intervalMs);
    if (context.values.loop === true) {
      loop.start();
      context.shutdown.add('cleanup loop', () => loop.stop());
      process.stdout.write(`cleanup (${strategy}) running every ${intervalMs} ms; Ctrl-C to stop\n`);
      await context.signal;
      return;
    }
    const sql = runtime.sql({ max: 1, applicationName: 'outbox-bench-cleanup' });
    const options = { sql, retention: context.config.retention, proof: relayModeInfo(context.config.relayMode).deliveryProof, log: context.log };
    if (strategy === 'drop-partition') {
      for (const d of await dropDeliveredPartitions(options)) {
        process.stdout.write(`${d.partition} (until ${d.rangeEnd.toISOString()}): ${d.dropped ? 'dropped' : `kept: ${d.reason}`}\n`);
      }
    } else if (strategy === 'batched-delete') {
      const result = await deleteDeliveredBatched({ ...options, batchSize: 5_000, pauseMs: 10 });
      process.stdout.write(`deleted ${result.deleted} delivered rows in ${result.batches} batches${result.reason ? ` (stopped: ${result.reason})` : ''}\n`);
    }
    if (context.config.inboxRetention) {
      process.stdout.write(`inbox: forgot ${await sweepInbox(sql, context.config.inboxRetention)} processed event ids older than ${context.config.inboxRetention}\n`);
    }
  },
};

const checkClaimsCommand: Command = {
  name: 'check-claims',
  summary: 'check the claim evidence of table relays: nothing held by two replicas at once',
  usage: 'check-claims <evidence-folder>',
  description:
    'Reads the JSON Lines files `relay --evidence <folder>` wrote (one per replica, server-side times), checks that no bucket\n' +
    '(or, without buckets, no event id) was held by two replicas at overlapping times, a killed replica counting until its\n' +
    'session ended and a replica cut off by its lease excepted; prints the result and writes <folder>/claims-report.json.\n' +
    'Exit 1 on overlap.',
  configKeys: ['logLevel'],
  async run(context) {
    const dir = context.positionals[0];
    if (!dir) throw new OutboxBenchError('USAGE', 'check-claims needs the evidence folder');
    const report = checkClaims(readEvidence(dir));
    writeFileSync(path.join(dir, 'claims-report.json'), `${JSON.stringify(report, null, 2)}\n`);
    process.stdout.write(
      `${report.replicas.length} replicas, ${report.passes} passes (${report.unreleasedPasses} interrupted, ${report.boundedBySessionEnd} of them checked until their session ended; ` +
        `${report.leaseCut} cut off by the lease), ${report.claimedEvents} events claimed, ${report.reclaimedEvents} claimed again after a failed pass, ` +
        `${report.overlaps.length} held by two replicas at once -> ${report.disjoint ? 'claims are disjoint' : 'CLAIMS OVERLAP'}\nreport: ${path.join(dir, 'claims-report.json')}\n`,
    );
    return report.disjoint ? 0 : 1;
  },
};

export const COMMANDS: readonly Command[] = Object.freeze([infra, migrateCommand, serve, relay, consume, place, cleanup, checkClaimsCommand]);
