/**
 * A local Kafka cluster as users run it: a dedicated KRaft controller (so
 * losing brokers never loses the quorum) and `--kafka-nodes` brokers, every
 * topic with replication factor 3 and min.insync.replicas 2 (brokerProperties).
 * Small heaps, so three brokers fit beside the rest of the pipeline on two
 * cores. Its nodes can be killed and started one by one (the crash matrix
 * kills a partition leader, or two brokers at once).
 */
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { brokerAnswers, LocalKafka, newClusterId, type KafkaServer } from './kafka.js';
import { waitUntil } from './processes.js';

/** The controller's node id: apart from the brokers' 1..N. */
const CONTROLLER_ID = 100;
// Rationale: a broker of this cluster holds a few topics of a benchmark; 384
// MiB each keeps three brokers and the controller near 1.4 GiB, next to the
// single broker's 1 GiB default.
const BROKER_HEAP_MB = 384;
// Rationale: the controller only keeps the metadata log of a handful of topics.
const CONTROLLER_HEAP_MB = 192;

export interface LocalKafkaClusterOptions {
  config: Config;
  log: Logger;
  detached?: boolean;
  /** Where the cluster keeps its nodes (default `<dataDir>/kafka-cluster`). */
  dataDir?: string;
}

/** Broker i's client port: the configured port, then every tenth port above it (the controller keeps its own). */
export function clusterBrokerPort(config: Config, index: number): number {
  return config.kafkaPort + 10 * index;
}

export class LocalKafkaCluster implements KafkaServer {
  readonly external = false;
  readonly brokers: readonly string[];
  readonly home: string;
  readonly controller: LocalKafka;
  /** The broker nodes, broker i (node id i + 1) at index i. */
  readonly nodes: readonly LocalKafka[];
  readonly #log: Logger;

  constructor(options: LocalKafkaClusterOptions) {
    const { config } = options;
    this.#log = options.log.child({ component: 'kafka-cluster' });
    this.home = options.dataDir ?? path.join(config.dataDir, 'kafka-cluster');
    const clusterId = readClusterId(this.home);
    const voters = `${CONTROLLER_ID}@127.0.0.1:${config.kafkaControllerPort}`;
    const common = { config, log: options.log, detached: options.detached ?? false, clusterId };
    this.controller = new LocalKafka({
      ...common,
      dataDir: path.join(this.home, 'controller'),
      heapMb: CONTROLLER_HEAP_MB,
      node: { id: CONTROLLER_ID, roles: 'controller', controllerPort: config.kafkaControllerPort, voters, brokers: config.kafkaNodes },
    });
    this.nodes = Object.freeze(
      Array.from(
        { length: config.kafkaNodes },
        (_, index) =>
          new LocalKafka({
            ...common,
            dataDir: path.join(this.home, `broker-${index + 1}`),
            heapMb: BROKER_HEAP_MB,
            node: { id: index + 1, roles: 'broker', port: clusterBrokerPort(config, index), voters, brokers: config.kafkaNodes },
          }),
      ),
    );
    this.brokers = Object.freeze(this.nodes.flatMap((node) => node.brokers));
  }

  /** The controller's pid (the cluster counts as running while it does). */
  pid(): number | undefined {
    return this.controller.pid();
  }

  /** Every node's pid, for CPU and memory accounting. */
  pids(): number[] {
    return [this.controller, ...this.nodes].flatMap((node) => node.pid() ?? []);
  }

  /** The node whose id is `nodeId` (1-based, as Kafka reports leaders). */
  broker(nodeId: number): LocalKafka {
    const node = this.nodes[nodeId - 1];
    if (!node) throw new Error(`no broker ${nodeId} in a cluster of ${this.nodes.length}`);
    return node;
  }

  async start(): Promise<void> {
    await fs.mkdir(this.home, { recursive: true });
    await fs.writeFile(path.join(this.home, 'cluster-id'), `${readClusterId(this.home)}\n`);
    await this.controller.start();
    await Promise.all(this.nodes.map((node) => (node.pid() === undefined ? node.start() : Promise.resolve())));
    await waitUntil(() => brokerAnswers(this.brokers, this.#log, this.nodes.length), { what: `${this.nodes.length} Kafka brokers registered`, timeoutMs: 90_000, intervalMs: 250 });
    this.#log.info({ brokers: this.brokers }, 'Kafka cluster is ready');
  }

  async stop(mode: 'graceful' | 'kill' = 'graceful'): Promise<void> {
    // Brokers first: a broker's controlled shutdown needs the controller.
    await Promise.all(this.nodes.map((node) => node.stop(mode)));
    await this.controller.stop(mode);
  }
}

/**
 * The cluster id its nodes were formatted with, or a new one: every node of
 * a cluster must share it, across restarts too.
 */
function readClusterId(home: string): string {
  const file = path.join(home, 'cluster-id');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  return (clusterIds[home] ??= newClusterId());
}

/** Ids drawn in this process before they were written (the nodes are built before start). */
const clusterIds: Record<string, string> = {};
