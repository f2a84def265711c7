/**
 * The ports of a test run. Every server a test starts listens on a port from
 * a fixed range below Linux's ephemeral range (32768-60999), so no outgoing
 * socket can take the port of a server killed and about to restart. test/run.js
 * lays the range out; each test file's process gets a slice of its own.
 */
import { isPortFree } from '../src/infra/processes.js';

/** What test/run.js hands each test file: its first port and the one past its last. */
export const PORT_SLICE_ENV = 'OUTBOX_TEST_PORTS';

// Rationale: the lowest ephemeral port on Linux's default range; nothing a
// test listens on may be at or above it.
const EPHEMERAL_FLOOR = 32_768;

// Rationale: a run's footprint is 8,000 ports: its own PostgreSQL and Kafka,
// a 50-port slice for each of up to 78 test files (a file asks for a dozen
// at most; 100-port slices allowed 39 files, and the 40th stopped a CI run),
// and the crash matrix's 3,600. Two runs on one machine take bases
// 8,000 apart (OUTBOX_TEST_PORT_BASE); 10,000 and 20,000 both fit below the floor.
export const RUN_PORTS = 8_000;
export const DEFAULT_PORT_BASE = 10_000;
const SLICES_FROM = 100;
export const SLICE_PORTS = 50;
const CHAOS_FROM = 4_000;

export interface RunPorts {
  postgres: number;
  kafka: number;
  kafkaController: number;
  chaosBase: number;
  /** [from, to) of the `index`th test file. */
  slice(index: number): [number, number];
}

export function runPorts(base: number): RunPorts {
  if (!Number.isInteger(base) || base < 1_024 || base + RUN_PORTS > EPHEMERAL_FLOOR) {
    throw new Error(`OUTBOX_TEST_PORT_BASE ${base}: a run takes ${RUN_PORTS} ports from its base, which must lie between 1024 and ${EPHEMERAL_FLOOR - RUN_PORTS}`);
  }
  return {
    postgres: base,
    kafka: base + 1,
    kafkaController: base + 2,
    chaosBase: base + CHAOS_FROM,
    slice(index) {
      const from = base + SLICES_FROM + index * SLICE_PORTS;
      if (from + SLICE_PORTS > base + CHAOS_FROM) throw new Error(`test file #${index + 1}: more test files than port slices; raise RUN_PORTS or lower SLICE_PORTS in test/ports.ts`);
      return [from, from + SLICE_PORTS];
    },
  };
}

let next: number | undefined;

/** A port of this test file's slice that nothing listens on; never the same one twice in a process. */
export async function slicePort(): Promise<number> {
  const raw = process.env[PORT_SLICE_ENV];
  const match = raw ? /^(\d+)-(\d+)$/.exec(raw) : null;
  if (!match) throw new Error(`${PORT_SLICE_ENV} is not set: run the tests with \`npm test\` (test/run.js hands each file its ports)`);
  const [from, to] = [Number(match[1]), Number(match[2])];
  for (next ??= from; next < to; ) {
    const port = next++;
    if (await isPortFree(port)) return port;
  }
  throw new Error(`no free port left in this test file's slice ${from}-${to - 1}`);
}

// Rationale: a killed server's process (a JVM, a postmaster's children) can
// hold its listening socket for a moment after the kill returns; 20 tries a
// second apart outlast that, and a port someone else keeps fails with its error.
const BIND_RETRIES = 20;
const BIND_RETRY_MS = 1_000;

function portInUse(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'PORT_IN_USE' || code === 'EADDRINUSE' || /EADDRINUSE|Address already in use|BindException/.test(String((error as Error | null)?.message ?? error));
}

/** Runs a server start again while its port is still taken. */
export async function startRetryingBind<T>(start: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (error) {
      if (!portInUse(error) || attempt >= BIND_RETRIES) throw error;
      await new Promise((resolve) => setTimeout(resolve, BIND_RETRY_MS));
    }
  }
}
