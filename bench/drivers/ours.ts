/**
 * Our relay, every mode of it: one driver over the relay registry
 * (src/relay/modes.ts). The run's `relayMode` chooses the mode; the run's
 * setup provisions what the mode needs (slots, publication, bucket rows)
 * before the first event is written, and the mode reads its own lag.
 */
import { spawnRelayProcess } from '../harness/processes.js';
import { relayOf } from '../harness/run-setup.js';
import type { DriverRun, RelayDriver, RunningRelay, StartOptions } from './types.js';

async function start(run: DriverRun, options: StartOptions = {}): Promise<RunningRelay> {
  const stages = run.stagesPrefix === undefined ? {} : { stagesFile: run.stagesPrefix };
  const { ready, ...spawned } = spawnRelayProcess(run.rawDir, run.env({ ...stages, ...options.settings }), {
    describe: run.parameters.relayMode,
    ...(options.args ? { args: options.args } : {}),
    ...(options.execArgv ? { execArgv: options.execArgv } : {}),
  });
  options.onSpawned?.(spawned);
  await ready;
  return spawned;
}

export const OURS: RelayDriver = {
  // Named by its mode and processes (relayLabel), which differ run by run.
  label: undefined,
  settings: "our relay, in the run's relay mode (src/relay/modes.ts)",
  backlog: { kind: 'run-store' },
  usesOurKafkaClient: true,
  runtime: 'node',
  windowEvidence: false,
  lagFromDelivery: false,
  provisioning: (p) => relayOf(p),
  prepare: async () => {},
  start,
  lag: (run) => run.modeLag(),
};
