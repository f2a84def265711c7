/**
 * kafkajs client construction in one place, with its logs routed into pino.
 */
import { Kafka, logLevel as KafkaLogLevel, type LogEntry, type logCreator } from 'kafkajs';
import type { Logger } from './log.js';

export interface KafkaClientOptions {
  brokers: readonly string[];
  log: Logger;
  clientId: string;
  /** Drop kafkajs' own logs entirely (readiness probes expect failures). */
  quiet?: boolean;
  /** kafkajs connection retries before an operation fails. */
  retries?: number;
}

/*
 * kafkajs logs retriable conditions it recovers from by itself (a coordinator
 * still loading, a leader election) at ERROR. Our code surfaces the failures
 * that matter as thrown errors, so kafkajs' levels are shifted down one step:
 * its ERROR is our warn, its INFO our debug.
 */
const LEVEL_MAP: Record<number, 'warn' | 'info' | 'debug' | 'trace'> = {
  [KafkaLogLevel.ERROR]: 'warn',
  [KafkaLogLevel.WARN]: 'info',
  [KafkaLogLevel.INFO]: 'debug',
  [KafkaLogLevel.DEBUG]: 'trace',
};

function pinoLogCreator(log: Logger): logCreator {
  return () =>
    ({ level, log: entry }: LogEntry) => {
      const { message, ...rest } = entry;
      const method = LEVEL_MAP[level] ?? 'debug';
      log[method]({ kafkajs: rest }, message);
    };
}

export function createKafkaClient(options: KafkaClientOptions): Kafka {
  return new Kafka({
    clientId: options.clientId,
    brokers: [...options.brokers],
    logLevel: options.quiet ? KafkaLogLevel.NOTHING : KafkaLogLevel.INFO,
    logCreator: pinoLogCreator(options.log.child({ component: 'kafkajs' })),
    // Rationale: loopback connects take microseconds, but a broker restarting
    // on a loaded 2-core host can take seconds to accept; retries (up to ~5 s
    // apart) then cover a broker restart without surfacing an error.
    connectionTimeout: 3_000,
    retry: { retries: options.retries ?? 8, initialRetryTime: 100, maxRetryTime: 5_000 },
  });
}
