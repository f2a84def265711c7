/**
 * Debezium's streaming queue, read over JMX with Kafka's own JmxTool (the
 * class bin/kafka-jmx.sh runs): the queue between the thread that reads the
 * WAL and Connect's loop that hands records to the producer. Full means the
 * producing side limits the connector; empty means reading does.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { PROJECT_ROOT, type Config } from '../../src/config.js';
import { fetchJars } from '../../src/infra/maven.js';
import type { Logger } from '../../src/log.js';
import { median } from '../harness/stats.js';

/** Attributes of Debezium's streaming metrics MBean that the run reads. */
export const QUEUE_ATTRIBUTES = ['QueueTotalCapacity', 'QueueRemainingCapacity', 'MilliSecondsBehindSource', 'TotalNumberOfEventsSeen'] as const;

// Rationale: a reading a second gives a 30 s window 30 points, and costs the
// connector one RMI call a second.
const JMX_INTERVAL_MS = 1_000;
// Rationale: the queue counts as full (or empty) below (above) a tenth of
// its capacity free; in between, neither side waits on the other for long.
const QUEUE_EDGE_SHARE = 0.1;

/** The streaming metrics MBean of a Debezium PostgreSQL connector with this topic prefix. */
export function streamingMBean(topicPrefix: string): string {
  return `debezium.postgres:type=connector-metrics,context=streaming,server=${topicPrefix}`;
}

/** JVM flags that open a local JMX port without authentication (the benchmark's own machine only). */
export function jmxServerFlags(port: number): string[] {
  return [
    '-Dcom.sun.management.jmxremote',
    `-Dcom.sun.management.jmxremote.port=${port}`,
    // The RMI port equal to the registry's keeps the connection to one known port.
    `-Dcom.sun.management.jmxremote.rmi.port=${port}`,
    '-Dcom.sun.management.jmxremote.authenticate=false',
    '-Dcom.sun.management.jmxremote.ssl=false',
    '-Djava.rmi.server.hostname=127.0.0.1',
  ];
}

/** A TCP port free right now on the loopback interface. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no TCP port could be reserved');
  return address.port;
}

export interface JmxReading {
  at: number;
  values: Record<string, number>;
}

/**
 * JmxTool's default output: a header of quoted keys ("time", then
 * "<object name>:<attribute>" sorted), then one line of values per reading.
 * Keys are returned by attribute name alone; non-numeric values are skipped.
 */
export function parseJmxToolOutput(text: string): JmxReading[] {
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  const headerIndex = lines.findIndex((line) => line.startsWith('"time"'));
  if (headerIndex < 0) return [];
  // Keys are quoted because object names hold commas (type=...,context=...); values are bare numbers.
  const keys = [...lines[headerIndex]!.matchAll(/"([^"]*)"/g)].map((match) => match[1]!.split(':').at(-1)!);
  const readings: JmxReading[] = [];
  for (const line of lines.slice(headerIndex + 1)) {
    const fields = line.split(',');
    if (fields.length !== keys.length) continue;
    const at = Number(fields[0]);
    if (!Number.isFinite(at)) continue;
    const values: Record<string, number> = {};
    keys.forEach((key, i) => {
      const value = Number(fields[i]);
      if (i > 0 && fields[i] !== '' && Number.isFinite(value)) values[key] = value;
    });
    readings.push({ at, values });
  }
  return readings;
}

export interface QueueFigures {
  readings: number;
  capacity: number | null;
  /** Free slots of the queue over the window: lowest, median, highest. */
  remainingMin: number | null;
  remainingMedian: number | null;
  remainingMax: number | null;
  /** Share of the readings with less than a tenth of the queue free. */
  fullShare: number;
  /** Share of the readings with more than nine tenths free. */
  emptyShare: number;
  /** Debezium's own lag behind the database (includes clock skew; same host here), median ms. */
  behindSourceMedianMs: number | null;
  /** What the readings say limits the connector. */
  verdict: string;
}

/** The queue's figures over a window of readings. */
export function queueFigures(readings: readonly JmxReading[], from: number, to: number): QueueFigures {
  const inWindow = readings.filter((r) => r.at >= from && r.at <= to && r.values.QueueRemainingCapacity !== undefined);
  const remaining = inWindow.map((r) => r.values.QueueRemainingCapacity!).sort((a, b) => a - b);
  const capacity = inWindow.find((r) => r.values.QueueTotalCapacity !== undefined)?.values.QueueTotalCapacity ?? null;
  const behind = inWindow.flatMap((r) => (r.values.MilliSecondsBehindSource === undefined || r.values.MilliSecondsBehindSource < 0 ? [] : [r.values.MilliSecondsBehindSource])).sort((a, b) => a - b);
  const share = (test: (free: number) => boolean) => (remaining.length === 0 ? 0 : Math.round((remaining.filter(test).length / remaining.length) * 100) / 100);
  const fullShare = capacity === null ? 0 : share((free) => free < capacity * QUEUE_EDGE_SHARE);
  const emptyShare = capacity === null ? 0 : share((free) => free > capacity * (1 - QUEUE_EDGE_SHARE));
  let verdict = 'not read';
  if (remaining.length > 0 && capacity !== null) {
    if (fullShare >= 0.5) verdict = 'queue mostly full: handing records to Kafka limits it, not reading the WAL';
    else if (emptyShare >= 0.5) verdict = 'queue mostly empty: reading the WAL (or the batch wait) limits it, not producing';
    else verdict = 'queue partly filled: neither side waits on the other for long';
  }
  return {
    readings: remaining.length,
    capacity,
    remainingMin: remaining[0] ?? null,
    remainingMedian: median(remaining) ?? null,
    remainingMax: remaining.at(-1) ?? null,
    fullShare,
    emptyShare,
    behindSourceMedianMs: median(behind) ?? null,
    verdict,
  };
}

export interface JmxSampler {
  child: ChildProcess;
  /** Everything read so far. */
  readings(): JmxReading[];
}

/** Kafka's JmxTool and what it needs, fetched from Maven Central on first use; its folder of jars. */
export function jmxToolLibDir(config: Config, log: Logger): Promise<string> {
  return fetchJars({
    pom: path.join(PROJECT_ROOT, 'kafka', 'jmx-tool', 'pom.xml'),
    properties: { 'kafka.version': config.kafkaVersion },
    home: path.join(config.cacheDir, `kafka-tools-${config.kafkaVersion}`),
    what: `Kafka's JmxTool ${config.kafkaVersion}`,
    alternative: 'leave Debezium out with --mode',
    log,
  });
}

/** Starts JmxTool (from `libDir`) against a JVM's JMX port, reading the MBean's attributes once a second into `file`. */
export function startJmxSampler(options: { libDir: string; port: number; mbean: string; file: string }): JmxSampler {
  const out = createWriteStream(options.file);
  const child = spawn(
    'java',
    [
      // Rationale: it holds one RMI connection and a few strings; the default
      // heap (a quarter of the machine) would reserve gigabytes for nothing.
      '-Xmx64m',
      '-cp',
      `${options.libDir}/*`,
      'org.apache.kafka.tools.JmxTool',
      '--jmx-url',
      `service:jmx:rmi:///jndi/rmi://127.0.0.1:${options.port}/jmxrmi`,
      '--object-name',
      options.mbean,
      '--attributes',
      QUEUE_ATTRIBUTES.join(','),
      '--reporting-interval',
      String(JMX_INTERVAL_MS),
      '--wait',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout!.pipe(out);
  child.stderr!.pipe(createWriteStream(`${options.file}.log`));
  return {
    child,
    readings: () => {
      try {
        return parseJmxToolOutput(readFileSync(options.file, 'utf8'));
      } catch {
        return [];
      }
    },
  };
}
