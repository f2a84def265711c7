/**
 * Builds Confluent's librdkafka binding for `--kafka-client confluent`.
 *
 * Its prebuilt binary is downloaded from outside the package registries,
 * and its default source build fetches OpenSSL, zlib and zstd from the
 * internet; neither works where only the registries are reachable. Built
 * with CKJS_LINKING=dynamic it compiles the librdkafka bundled in the npm
 * package against the system's OpenSSL and zlib instead (libssl-dev,
 * zlib1g-dev, gcc, make): about 2 minutes on 2 cores. A package.json cannot
 * set that variable for a dependency's own install script, so the binding
 * lives in a package of its own (kafka/confluent-client, with its own lock
 * file) that this step installs with the variable set. When the build
 * fails, everything else still works on kafkajs, and the failure says why.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { OutboxBenchError } from '../errors.js';
import { CONFLUENT_CLIENT_DIR, confluentAvailable } from '../kafka/confluent.js';
import type { Logger } from '../log.js';
import { lastLines, runCommand } from './processes.js';

export interface BuildResult {
  built: boolean;
  /** Why not, when not. */
  reason?: string;
}

/** Installs and compiles the binding into kafka/confluent-client (skipped when it already loads). */
export async function buildConfluentClient(log: Logger, options: { force?: boolean } = {}): Promise<BuildResult> {
  if (!options.force && confluentAvailable()) return { built: true };
  if (!existsSync(path.join(CONFLUENT_CLIENT_DIR, 'package-lock.json'))) {
    return { built: false, reason: `${CONFLUENT_CLIENT_DIR} has no package-lock.json` };
  }
  log.info({ into: CONFLUENT_CLIENT_DIR }, 'building the Confluent Kafka client (librdkafka, about 2 minutes)');
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const result = await runCommand(npm, ['ci', '--no-audit', '--no-fund', '--foreground-scripts'], {
    cwd: CONFLUENT_CLIENT_DIR,
    env: {
      ...process.env,
      CKJS_LINKING: 'dynamic',
      npm_config_build_from_source: 'true',
      // The root install's own settings must not leak into this one.
      npm_config_global: 'false',
      npm_config_prefix: CONFLUENT_CLIENT_DIR,
    },
  }).catch((error: unknown) => ({ code: 1, signal: null, stdout: '', stderr: String(error) }));
  if (result.code !== 0) {
    return { built: false, reason: `npm ci in ${CONFLUENT_CLIENT_DIR} failed (exit ${result.code}):\n${lastLines(`${result.stdout}\n${result.stderr}`, 20)}` };
  }
  // A fresh process loads it: this one cached the failure of the first attempt.
  const probe = await runCommand(process.execPath, ['-e', "require('@confluentinc/kafka-javascript')"], { cwd: CONFLUENT_CLIENT_DIR });
  if (probe.code !== 0) return { built: false, reason: `the built binding does not load:\n${lastLines(probe.stderr, 10)}` };
  return { built: true };
}

/** For the CLI: a clear failure, or nothing. */
export function describeBuildFailure(result: BuildResult): OutboxBenchError | undefined {
  if (result.built) return undefined;
  return new OutboxBenchError(
    'CONFIG_INVALID',
    `the Confluent Kafka client could not be built: ${result.reason}\n` +
      'Everything else works with --kafka-client kafkajs. To build it: install gcc, make, libssl-dev and zlib1g-dev, then run `npx outbox-bench infra build-kafka-client`.',
  );
}
