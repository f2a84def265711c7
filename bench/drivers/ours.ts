/**
 * Our relay, every mode of it: one driver over the relay registry
 * (src/relay/modes.ts). The run's `relayMode` chooses the mode; the run's
 * setup provisions what the mode needs (slots, publication, bucket rows)
 * before the first event is written, and the mode reads its own lag.
 */
import { startRelayProcess } from '../harness/processes.js';
import { relayOf } from '../harness/run-setup.js';
import type { RelayDriver } from './types.js';

export const OURS: RelayDriver = {
  // Named by its mode and processes (relayLabel), which differ run by run.
  label: undefined,
  settings: "our relay, in the run's relay mode (src/relay/modes.ts)",
  backlog: { kind: 'run-store' },
  usesOurKafkaClient: true,
  windowEvidence: false,
  lagFromDelivery: false,
  provisioning: (p) => relayOf(p),
  prepare: async () => {},
  start: (run) => startRelayProcess(run.rawDir, run.env({ stagesFile: run.stagesPrefix }), { describe: run.parameters.relayMode }),
  lag: (run) => run.modeLag(),
};
