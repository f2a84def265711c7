/**
 * Our relays and the established ones on the same machine, the same outbox
 * rows (Debezium reads our table; pg-transactional-outbox gets an equivalent
 * table of its own), the same load, the same consumer, clock and CPU
 * accounting. For each relay, in this order:
 *
 *  1. its own sustained maximum M: the saturation search, 30 s steps;
 *  2. Debezium only: the smallest heap of 256, 512 and 1,024 MiB that
 *     sustains M (a step at M with each, smallest first); the rest of its
 *     runs use that heap;
 *  3. `--repeats` times (default 3): the drain of a backlog of
 *     max(20,000, 120 s x M) events (at most 200,000), and latency at a
 *     common 1,000 events/s (not run when M is below it) and at 50% and 80%
 *     of M.
 *
 * Every run is preceded by a prewarm of at least 60 s at min(1,000, M/2)
 * events/s (a search step: half its own rate), in the same run, so that a
 * JVM's class loading and JIT are over before anything is measured: a
 * drain's relay is paused while the backlog is written and timed from its
 * continuation. A relay's results replace its earlier ones in the folder's
 * summary, so the comparison can be measured one relay at a time
 * (`--mode`); each keeps the commit and date it was measured at.
 */
import { OutboxBenchError } from '../../src/errors.js';
import { DEBEZIUM_VERSION } from '../drivers/debezium.js';
import { PTP_VERSION } from '../drivers/ptp.js';
import { dropRelaySlots } from '../drivers/slots.js';
import type { RunSummary } from '../harness/summary.js';
import type { Scenario } from '../scenario.js';
import { measureRelay, say } from './peers/measure.js';
import { selectRelays } from './peers/relays.js';
import { peersReport } from './peers/report.js';
import { mergePeers, previousResults, type PeerResult, type PeersResult } from './peers/results.js';
import { COMMON_RATE } from './peers/sizing.js';

export { PEER_RELAY_KEYS, selectRelays, type Relay } from './peers/relays.js';
export { hostNote } from './peers/report.js';
export { chartedMaximum, lowestFailed, mergePeers, type DrainRun, type PeerPoint, type PeerResult, type PeersResult, type PointRun } from './peers/results.js';
export { backlogFor, prewarmFor } from './peers/sizing.js';

// Rationale: 30 s steps hold 30 lag readings a second apart for the slope
// test even at a peer's lowest rates, and keep a search near 15 minutes.
const MIN_STEP_S = 30;

export const peers: Scenario = {
  name: 'peers',
  description: 'our relays vs Debezium (throughput and latency profiles) and pg-transactional-outbox (polling, replication), warm and repeated, on the same load',
  standalone: true,
  // Rationale: ten orders per transaction, as in the saturation search, so a
  // relay's maximum is measured rather than the write path's at one order per
  // commit; 30 s steps hold 30 lag readings a second apart for the slope test
  // even at a peer's lowest rates, and keep a search near 15 minutes.
  defaults: { ordersPerTransaction: 10, warmupS: 5, durationS: MIN_STEP_S, drainTimeoutS: 30 },
  flags: {
    'max-rate': { description: 'highest rate the sustained search tries, events/s', defaultValue: 100_000, min: 100, max: 1_000_000, formerly: ['peer-max-rate'] },
    mode: { kind: 'list', description: 'relays to measure: ours, the peers, or the families ours, debezium, ptp; they merge into results/peers/', defaultText: 'the default set', formerly: ['strategies'] },
  },
  async run(context) {
    if (context.parameters.durationS < MIN_STEP_S) {
      throw new OutboxBenchError('USAGE', `peers: every measured window is at least ${MIN_STEP_S} s (--duration-s ${context.parameters.durationS} given)`);
    }
    const relays = selectRelays(context.list('mode', []));
    const previous = previousResults(context.outDir);
    const fresh: PeerResult[] = [];
    const runs: RunSummary[] = [];
    const failed: string[] = [];
    const lines: string[] = [`peers: Debezium ${DEBEZIUM_VERSION}; pg-transactional-outbox ${PTP_VERSION}; ${context.repeats} repeats`];
    for (const relay of relays) {
      say(`peers: ${relay.name}`);
      const guide = previous.find((p) => p.name === relay.name)?.sustainedRate;
      try {
        const measured = await measureRelay(context, relay, guide, lines);
        fresh.push(measured.result);
        runs.push(...measured.runs);
      } catch (error) {
        // A sitting measures relays for hours: one that fails keeps its
        // earlier results, and the others' are still written.
        failed.push(`${relay.key}: ${(error as Error).message ?? String(error)}`);
        lines.push(`  ${relay.name.padEnd(38)} FAILED (its earlier results, if any, are kept): ${(error as Error).message ?? String(error)}`);
      }
    }
    await dropRelaySlots(context.infra.databaseUrl);
    return {
      title: 'Our relays and their peers on the same workload, warm and repeated',
      runs,
      extra: { version: 2, peers: mergePeers(previous, fresh), debezium: DEBEZIUM_VERSION, ptp: PTP_VERSION, commonRate: COMMON_RATE } satisfies PeersResult,
      lines,
      failed,
    };
  },
  report: peersReport,
};
