/**
 * What a relay other than ours does with a scenario's start options: our
 * relay's settings and flags mean nothing to it, so asking for them is a
 * usage error (a run without them would measure something else).
 */
import { OutboxBenchError } from '../../src/errors.js';
import type { RelayDriver, StartOptions } from './types.js';

export function refuseOurSettings(label: string, options: StartOptions | undefined, runtime: RelayDriver['runtime']): void {
  const asked = [
    Object.keys(options?.settings ?? {}).length > 0 ? "our relay's settings" : undefined,
    (options?.args ?? []).length > 0 ? "our relay command's flags" : undefined,
    runtime !== 'node' && (options?.execArgv ?? []).length > 0 ? "Node's flags" : undefined,
  ].filter((what) => what !== undefined);
  if (asked.length > 0) throw new OutboxBenchError('USAGE', `${label} is not our relay and takes none of ${asked.join(' or ')}; this scenario measures our relay only`);
}
