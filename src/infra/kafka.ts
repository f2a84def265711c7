/**
 * Apache Kafka, single node in KRaft mode, from the official jars on Maven
 * Central. `mvn` fetches them once into the cache folder; the broker runs as
 * `java -cp 'libs/*' kafka.Kafka server.properties`.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config.js';
import { PROJECT_ROOT } from '../config.js';
import { OutboxBenchError } from '../errors.js';
import { createKafkaClient } from '../kafka-client.js';
import type { Logger } from '../log.js';
import { fetchJars } from './maven.js';
import {
  assertPortFree,
  commandExists,
  isPortFree,
  isProcessAlive,
  lastLines,
  registerOwnedProcess,
  runCommand,
  signalProcess,
  unregisterOwnedProcess,
  waitForExit,
  waitUntil,
} from './processes.js';

/** The jars of one Kafka version, ready to put on a classpath. */
export interface KafkaJars {
  version: string;
  libDir: string;
}

/**
 * Fetches the broker jars with Maven into `<cacheDir>/kafka-<version>/libs`
 * unless they are there already.
 */
export async function ensureKafkaJars(config: Config, log: Logger): Promise<KafkaJars> {
  const libDir = await fetchJars({
    pom: path.join(PROJECT_ROOT, 'kafka', 'pom.xml'),
    properties: { 'kafka.version': config.kafkaVersion },
    home: path.join(config.cacheDir, `kafka-${config.kafkaVersion}`),
    what: `Apache Kafka ${config.kafkaVersion} (org.apache.kafka:kafka_2.13:${config.kafkaVersion})`,
    alternative: 'set KAFKA_BROKERS=host:port to use a Kafka cluster you already run',
    log,
  });
  return { version: config.kafkaVersion, libDir };
}

export async function assertJavaAvailable(): Promise<void> {
  if (!(await commandExists('java', ['-version']))) {
    throw new OutboxBenchError(
      'JAVA_MISSING',
      'Java 17 or newer is needed to run the local Kafka broker, and `java` is not on PATH. ' +
        'Install it (Debian/Ubuntu: apt-get install openjdk-17-jre-headless; macOS: brew install openjdk@17), ' +
        'or set KAFKA_BROKERS=host:port to use a Kafka cluster you already run.',
    );
  }
}

/**
 * One node of a local KRaft cluster: a single node is broker and controller
 * at once; a cluster has a dedicated controller (so losing brokers never
 * loses the quorum) and broker-only nodes.
 */
export interface KafkaNode {
  id: number;
  roles: 'broker,controller' | 'broker' | 'controller';
  /** Client port (broker roles). */
  port?: number;
  /** Controller port (controller roles). */
  controllerPort?: number;
  /** `controller.quorum.voters`: id@host:port of the controllers. */
  voters: string;
  /** Brokers in the cluster: replication of internal topics and the topic defaults follow it. */
  brokers: number;
}

/** The single node every command starts by default, from the configured ports. */
export function singleNode(config: Config): KafkaNode {
  return { id: 1, roles: 'broker,controller', port: config.kafkaPort, controllerPort: config.kafkaControllerPort, voters: `1@127.0.0.1:${config.kafkaControllerPort}`, brokers: 1 };
}

/**
 * Node settings. A single node cannot replicate, so every topic gets
 * replication factor 1; durability comes from the OS page cache and the log
 * flush defaults, as in any Kafka deployment without replicas. With three
 * brokers or more, topics get replication factor 3 and min.insync.replicas 2,
 * as users run Kafka: an acks=all write survives one broker, and blocks (never
 * silently succeeds on one copy) while two are down.
 */
export function brokerProperties(config: Config, logDir: string, node: KafkaNode = singleNode(config)): string {
  const replication = Math.min(3, node.brokers);
  const minInSync = replication >= 3 ? 2 : 1;
  const broker = node.roles !== 'controller';
  const listeners = [broker ? `PLAINTEXT://127.0.0.1:${node.port}` : '', node.roles !== 'broker' ? `CONTROLLER://127.0.0.1:${node.controllerPort}` : ''].filter(Boolean);
  const settings: Record<string, string | number> = {
    'process.roles': node.roles,
    'node.id': node.id,
    'controller.quorum.voters': node.voters,
    listeners: listeners.join(','),
    ...(broker ? { 'advertised.listeners': `PLAINTEXT://127.0.0.1:${node.port}`, 'inter.broker.listener.name': 'PLAINTEXT' } : {}),
    'controller.listener.names': 'CONTROLLER',
    'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'log.dirs': logDir,
    'num.partitions': config.topicPartitions,
    'default.replication.factor': replication,
    'min.insync.replicas': minInSync,
    // Topics are created explicitly with the configured partition count; an
    // auto-created topic with the wrong count would silently break ordering tests.
    'auto.create.topics.enable': 'false',
    'offsets.topic.replication.factor': replication,
    // Rationale: 50 offset partitions (the default) make the group coordinator
    // take seconds to load on a fresh 2-core broker; 8 is plenty here.
    'offsets.topic.num.partitions': 8,
    'transaction.state.log.replication.factor': replication,
    'transaction.state.log.min.isr': minInSync,
    'transaction.state.log.num.partitions': 8,
    'share.coordinator.state.topic.replication.factor': replication,
    'share.coordinator.state.topic.min.isr': minInSync,
    // Consumers join immediately instead of waiting 3 s for more members.
    'group.initial.rebalance.delay.ms': 0,
    'delete.topic.enable': 'true',
  };
  return `${Object.entries(settings)
    .map(([key, value]) => `${key}=${value}`)
    .join('\n')}\n`;
}

function log4jProperties(logFile: string): string {
  return [
    'status = warn',
    'appender.file.type = File',
    'appender.file.name = file',
    `appender.file.fileName = ${logFile}`,
    'appender.file.layout.type = PatternLayout',
    'appender.file.layout.pattern = [%d] %p %m (%c)%n',
    'rootLogger.level = info',
    'rootLogger.appenderRef.file.ref = file',
    // The request logger is chatty at INFO; warnings still show.
    'logger.request.name = kafka.request.logger',
    'logger.request.level = warn',
    '',
  ].join('\n');
}

export interface KafkaServer {
  readonly brokers: readonly string[];
  readonly external: boolean;
  /** Graceful stop (SIGTERM, controlled shutdown); `kill` is SIGKILL. */
  stop(mode?: 'graceful' | 'kill'): Promise<void>;
  /** Starts it again after stop(); used by crash tests. */
  start(): Promise<void>;
  pid(): number | undefined;
  /** Every process of it (a cluster has several), for CPU and memory accounting; default [pid()]. */
  pids?(): number[];
}

export interface LocalKafkaOptions {
  config: Config;
  log: Logger;
  /** Leave the broker running when this process exits (`infra up`). */
  detached?: boolean;
  /** Where this broker keeps its data (default `<dataDir>/kafka`). */
  dataDir?: string;
  /** This node of a cluster (default: the single broker-and-controller of the configured ports). */
  node?: KafkaNode;
  /** The cluster id its storage is formatted with (default: a new one); every node of a cluster shares it. */
  clusterId?: string;
  /** Heap, MiB (default --kafka-heap-mb). */
  heapMb?: number;
}

export class LocalKafka implements KafkaServer {
  readonly external = false;
  readonly brokers: readonly string[];
  readonly home: string;
  readonly logFile: string;
  readonly node: KafkaNode;
  readonly #config: Config;
  readonly #log: Logger;
  readonly #detached: boolean;
  readonly #clusterId: string | undefined;
  readonly #heapMb: number;
  #pid: number | undefined;

  constructor(options: LocalKafkaOptions) {
    this.#config = options.config;
    this.node = options.node ?? singleNode(options.config);
    this.#log = options.log.child({ component: 'kafka', node: this.node.id });
    this.#detached = options.detached ?? false;
    this.#clusterId = options.clusterId;
    this.#heapMb = options.heapMb ?? options.config.kafkaHeapMb;
    this.home = options.dataDir ?? path.join(options.config.dataDir, 'kafka');
    this.logFile = path.join(this.home, 'logs', 'server.log');
    this.brokers = Object.freeze(this.node.port === undefined ? [] : [`127.0.0.1:${this.node.port}`]);
  }

  get pidFile(): string {
    return path.join(this.home, 'broker.pid');
  }

  pid(): number | undefined {
    if (this.#pid !== undefined && isProcessAlive(this.#pid)) return this.#pid;
    try {
      const pid = Number(readFileSync(this.pidFile, 'utf8').trim());
      return Number.isInteger(pid) && pid > 0 && isProcessAlive(pid) && isKafkaProcess(pid) ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  async start(): Promise<void> {
    await assertJavaAvailable();
    const fix = 'Stop whatever listens there, pick other ports with --kafka-port / --kafka-controller-port, or set KAFKA_BROKERS to use an existing cluster.';
    if (this.node.port !== undefined) await assertPortFree(this.node.port, 'Kafka', fix);
    if (this.node.controllerPort !== undefined) await assertPortFree(this.node.controllerPort, 'Kafka controller', fix);
    const jars = await ensureKafkaJars(this.#config, this.#log);

    const dataDir = path.join(this.home, 'data');
    const propertiesFile = path.join(this.home, 'server.properties');
    const log4jFile = path.join(this.home, 'log4j2.properties');
    await fs.mkdir(path.dirname(this.logFile), { recursive: true });
    await fs.writeFile(propertiesFile, brokerProperties(this.#config, dataDir, this.node));
    await fs.writeFile(log4jFile, log4jProperties(this.logFile));
    const classpath = `${jars.libDir}/*`;
    const jvmLogging = [`-Dlog4j2.configurationFile=${log4jFile}`, `-Dkafka.logs.dir=${path.dirname(this.logFile)}`];

    await this.#formatStorage(dataDir, [...jvmLogging, '-cp', classpath], propertiesFile);

    const out = openSync(path.join(path.dirname(this.logFile), 'stdout.log'), 'a');
    const child = spawn(
      'java',
      this.#jvmArguments([...jvmLogging, '-cp', classpath, 'kafka.Kafka', propertiesFile]),
      // Own process group: a terminal Ctrl-C reaches us, and we stop the broker
      // in order (after the relays that still publish to it).
      { detached: true, stdio: ['ignore', out, out] },
    );
    closeSync(out);
    if (child.pid === undefined) throw new OutboxBenchError('KAFKA_START_FAILED', 'could not spawn java for the Kafka broker');
    const pid = child.pid;
    this.#pid = pid;
    let exited: string | undefined;
    child.once('exit', (code, signal) => {
      exited = `the broker exited (code ${code}, signal ${signal})`;
    });
    if (this.#detached) child.unref();
    else registerOwnedProcess(pid, 'kafka', 'SIGKILL');
    await fs.writeFile(this.pidFile, `${pid}\n`);

    try {
      await waitUntil(
        // A controller-only node has no client port: up once it listens.
        async () => (this.node.port === undefined ? !(await isPortFree(this.node.controllerPort!)) : brokerAnswers(this.brokers, this.#log)),
        {
          what: `Kafka node ${this.node.id} on port ${this.node.port ?? this.node.controllerPort}`,
          timeoutMs: 90_000,
          intervalMs: 250,
          abortIf: () => (exited ? `${exited}; see ${this.logFile}` : undefined),
        },
      );
    } catch (error) {
      const serverLog = await fs.readFile(this.logFile, 'utf8').catch(() => '');
      await this.stop('kill');
      throw new OutboxBenchError('KAFKA_START_FAILED', `the Kafka node did not come up: ${(error as Error).message}\n${lastLines(serverLog)}`, { cause: error });
    }
    this.#log.info({ port: this.node.port ?? this.node.controllerPort, serverPid: pid }, 'Kafka is ready');
  }

  /** Formats the node's storage on its first start (KRaft needs a cluster id written before the broker runs). */
  async #formatStorage(dataDir: string, java: string[], propertiesFile: string): Promise<void> {
    if (existsSync(path.join(dataDir, 'meta.properties'))) return;
    const clusterId = this.#clusterId ?? newClusterId();
    this.#log.info({ dataDir }, 'formatting Kafka storage (first run only)');
    // `--cluster-id=<id>` in one argument: a base64url id may start with '-',
    // which the tool's argument parser would take for an option.
    const format = await runCommand('java', [...java, 'kafka.tools.StorageTool', 'format', `--cluster-id=${clusterId}`, '-c', propertiesFile]);
    if (format.code !== 0) {
      throw new OutboxBenchError('KAFKA_START_FAILED', `formatting the Kafka storage failed (exit ${format.code}):\n${lastLines(format.stdout + format.stderr)}`);
    }
  }

  /** The broker JVM's arguments, followed by `main` (logging, classpath, main class and its arguments). */
  #jvmArguments(main: string[]): string[] {
    const heap = `${this.#heapMb}m`;
    return [
      `-Xms${heap}`,
      `-Xmx${heap}`,
      '-XX:+UseG1GC',
      // Rationale: Kafka's own default (kafka-run-class.sh); short pauses keep
      // the end-to-end latency tail honest rather than GC-dominated.
      '-XX:MaxGCPauseMillis=20',
      '-Djava.awt.headless=true',
      // Rationale: the client compiler alone halves the CPU of a start (10 against 19
      // CPU-s to a ready broker here) and stops the JIT competing with the rest of
      // a test for the 2 cores; the broker it gives is slower, so only tests use it.
      ...(this.#config.kafkaJit === 'quick-start' ? ['-XX:TieredStopAtLevel=1'] : []),
      ...main,
    ];
  }

  async stop(mode: 'graceful' | 'kill' = 'graceful'): Promise<void> {
    const pid = this.pid();
    if (pid === undefined) return;
    if (mode === 'kill') {
      signalProcess(pid, 'SIGKILL');
      await waitForExit(pid, 10_000);
    } else {
      signalProcess(pid, 'SIGTERM');
      // Rationale: a single-node controlled shutdown takes a few seconds; past
      // 30 s something is stuck and a kill is safer than hanging the user.
      if (!(await waitForExit(pid, 30_000))) {
        this.#log.warn({ pid }, 'Kafka did not stop within 30 s; killing it');
        signalProcess(pid, 'SIGKILL');
        await waitForExit(pid, 10_000);
      }
    }
    unregisterOwnedProcess(pid);
    await fs.rm(this.pidFile, { force: true });
    this.#pid = undefined;
    this.#log.info({ mode }, 'Kafka stopped');
  }
}

/** A KRaft cluster id: 16 random bytes in URL-safe base64 without padding. */
export function newClusterId(): string {
  return randomBytes(16).toString('base64url');
}

/** Whether a broker at `brokers` answers a metadata request. */
export async function brokerAnswers(brokers: readonly string[], log: Logger, expectBrokers = 1): Promise<boolean> {
  const kafka = createKafkaClient({ brokers: [...brokers], log, clientId: 'outbox-bench-probe', quiet: true });
  const admin = kafka.admin();
  try {
    await admin.connect();
    const cluster = await admin.describeCluster();
    return cluster.brokers.length >= expectBrokers;
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

/** Guards against killing an unrelated process that reused a stale pid. */
function isKafkaProcess(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('kafka.Kafka');
  } catch {
    // No /proc (macOS): trust the pid file.
    return true;
  }
}

/** A cluster given through KAFKA_BROKERS: used as is, never started or stopped. */
export class ExternalKafka implements KafkaServer {
  readonly external = true;
  constructor(readonly brokers: readonly string[]) {}
  async stop(): Promise<void> {}
  async start(): Promise<void> {}
  pid(): number | undefined {
    return undefined;
  }
}
