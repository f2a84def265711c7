/**
 * The crash matrix's own servers: a PostgreSQL and a Kafka that its faults
 * kill, so they cannot be anyone else's. Each kind (single, a 3-broker
 * cluster, a primary with a standby) takes a port range of its own.
 */
import path from 'node:path';
import type { Config } from '../../src/config.js';
import { resolveConfig } from '../../src/config.js';
import { LocalKafka } from '../../src/infra/kafka.js';
import { LocalKafkaCluster } from '../../src/infra/kafka-cluster.js';
import { LocalPostgres } from '../../src/infra/postgres.js';
import { isPortFree } from '../../src/infra/processes.js';
import type { Logger } from '../../src/log.js';
import { PostgresFailover } from './failover.js';

export interface ChaosServers {
  /** The PostgreSQL faults restart (with a standby: the primary it started as). */
  postgres: LocalPostgres;
  /** What clients connect to: the server, or with a standby the proxy in front of whichever is primary. */
  databaseUrl: string;
  /** A primary with a physical standby and failover slots (rows that fail over). */
  failover?: PostgresFailover;
  /** One broker, or a cluster (rows that kill brokers of it). */
  kafka: LocalKafka | LocalKafkaCluster;
  config: Config;
  stop(): Promise<void>;
}

async function freePorts(count: number, from: number): Promise<number[]> {
  const ports: number[] = [];
  for (let port = from; ports.length < count && port < from + 500; port++) if (await isPortFree(port)) ports.push(port);
  if (ports.length < count) throw new Error(`no ${count} free ports from ${from}`);
  return ports;
}

/** A base port with the nine above it and the ports 10 and 20 above it free: a cluster's three brokers (clusterBrokerPort). */
async function freeClusterBase(from: number): Promise<number> {
  for (let port = from; port < from + 1_000; port += 30) {
    if ((await isPortFree(port)) && (await isPortFree(port + 10)) && (await isPortFree(port + 20))) return port;
  }
  throw new Error(`no free ports for a Kafka cluster from ${from}`);
}

/**
 * A PostgreSQL and a Kafka of the run's own: they get killed, so they cannot
 * be anyone else's. `kafkaNodes` 3 makes the Kafka a cluster with a
 * dedicated controller (replication factor 3, min.insync.replicas 2).
 */
export async function startChaosServers(workDir: string, log: Logger, options: { kafkaNodes?: number; standby?: boolean; portBase?: number } = {}): Promise<ChaosServers> {
  const kafkaNodes = options.kafkaNodes ?? 1;
  const standby = options.standby ?? false;
  const { chaosPortBase, kafkaJit } = resolveConfig();
  const base = options.portBase ?? chaosPortBase;
  // Each kind of servers in a port range and a folder of its own: several kinds run side by side.
  const kind = kafkaNodes > 1 ? 'cluster' : standby ? 'failover' : undefined;
  const [pgPort, controllerPort, standbyPort, proxyPort] = await freePorts(4, base + (kafkaNodes > 1 ? 2_000 : standby ? 0 : 1_000));
  const kafkaPort = kafkaNodes > 1 ? await freeClusterBase(base + 2_568) : (await freePorts(1, proxyPort! + 1))[0]!;
  const dataDir = kind ? path.join(workDir, kind) : workDir;
  const config = resolveConfig({
    env: {},
    overrides: { pgPort: pgPort!, kafkaPort, kafkaControllerPort: controllerPort!, kafkaNodes, dataDir, topicPartitions: 3, kafkaHeapMb: 512, kafkaJit },
  });
  const failover = standby ? await PostgresFailover.start(config, path.join(dataDir, 'pg'), { primary: pgPort!, standby: standbyPort!, proxy: proxyPort! }, log) : undefined;
  const postgres = failover?.primary ?? new LocalPostgres({ config, log });
  const kafka = kafkaNodes > 1 ? new LocalKafkaCluster({ config, log }) : new LocalKafka({ config, log });
  const stopPostgres = async () => (failover ? failover.stop() : postgres.stop('fast'));
  try {
    if (!failover) await postgres.start();
    await kafka.start();
  } catch (error) {
    await stopPostgres();
    throw error;
  }
  return {
    postgres,
    databaseUrl: failover?.url ?? postgres.url,
    ...(failover ? { failover } : {}),
    kafka,
    config,
    async stop() {
      await kafka.stop('graceful').catch(() => {});
      await stopPostgres().catch(() => {});
    },
  };
}
