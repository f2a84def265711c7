/**
 * The CLI as a user meets it: --help everywhere, flags checked with messages
 * naming them, and servers started on demand that are gone (process and
 * port) when the command ends, whether it ends well, fails or is interrupted.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { COMMANDS } from '../src/commands.js';
import { isPortFree, isProcessAlive } from '../src/infra/processes.js';
import { eventually, freePort, scratchDir } from './helpers.js';

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function start(args: string[], env: NodeJS.ProcessEnv = process.env): { child: ChildProcess; output: () => Run; exited: Promise<Run> } {
  const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const output = () => ({ code: child.exitCode, stdout, stderr });
  const exited = once(child, 'exit').then(([code]) => ({ code: code as number | null, stdout, stderr }));
  return { child, output, exited };
}

const run = (args: string[], env?: NodeJS.ProcessEnv) => start(args, env).exited;

// Rationale: a command stops its servers in seconds; a minute is that many
// times over on a loaded machine, and a hung stop then fails the test (exit
// code null) instead of hanging the run.
const STOP_GRACE_MS = 60_000;

/** Sends `signal` to a running command, and SIGKILL if it has not exited STOP_GRACE_MS later. */
function signalCommand(command: ReturnType<typeof start>, signal: NodeJS.Signals): Promise<Run> {
  command.child.kill(signal);
  const timer = setTimeout(() => command.child.kill('SIGKILL'), STOP_GRACE_MS);
  return command.exited.finally(() => clearTimeout(timer));
}

/** Waits for a line on a running command's stdout; on timeout, fails with its stderr. */
async function waitForOutput(command: ReturnType<typeof start>, pattern: RegExp, timeoutMs: number): Promise<void> {
  try {
    await eventually(`output matching ${pattern}`, () => pattern.test(command.output().stdout) || command.output().code !== null, timeoutMs);
  } catch (error) {
    command.child.kill('SIGKILL');
    throw new Error(`${(error as Error).message}\nstderr:\n${command.output().stderr}`);
  }
  if (!pattern.test(command.output().stdout)) throw new Error(`the command exited early (${command.output().code}):\n${command.output().stderr}`);
}

/** An environment with servers of its own: no DATABASE_URL / KAFKA_BROKERS, a scratch data dir, free ports. */
async function isolatedEnv() {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.DATABASE_URL;
  delete env.KAFKA_BROKERS;
  const dataDir = await scratchDir();
  const ports = { pg: await freePort(), kafka: await freePort(), controller: await freePort(), http: await freePort() };
  Object.assign(env, {
    OUTBOX_BENCH_DATA_DIR: dataDir,
    OUTBOX_BENCH_PG_PORT: String(ports.pg),
    OUTBOX_BENCH_KAFKA_PORT: String(ports.kafka),
    OUTBOX_BENCH_KAFKA_CONTROLLER_PORT: String(ports.controller),
    OUTBOX_BENCH_HTTP_PORT: String(ports.http),
    OUTBOX_BENCH_LOG_LEVEL: 'warn',
  });
  return { env, dataDir, ports };
}

function postmasterPid(dataDir: string): number | undefined {
  try {
    return Number(readFileSync(path.join(dataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return undefined;
  }
}

async function assertNothingLeft(dataDir: string, ports: number[], pids: (number | undefined)[]): Promise<void> {
  // A process that was told to stop gets a moment to finish exiting.
  for (const pid of pids) if (pid !== undefined) await eventually(`process ${pid} to exit`, () => !isProcessAlive(pid));
  for (const port of ports) assert.equal(await isPortFree(port), true, `port ${port} is still taken`);
  assert.equal(postmasterPid(dataDir), undefined, 'postmaster.pid was left behind');
}

describe('CLI', () => {
  it('says its version and the Node.js it runs on', async () => {
    const { version } = JSON.parse(readFileSync(path.join(path.dirname(CLI), '..', '..', 'package.json'), 'utf8')) as { version: string };
    const cli = await run(['--version']);
    assert.equal(cli.code, 0);
    assert.equal(cli.stdout, `outbox-bench ${version} (Node.js ${process.versions.node})\n`);
    const bench = spawnSync(process.execPath, [path.join(path.dirname(CLI), '..', 'bench', 'run.js'), '--version'], { encoding: 'utf8' });
    assert.equal(bench.status, 0, bench.stderr);
    assert.equal(bench.stdout, `outbox-bench bench ${version} (Node.js ${process.versions.node})\n`);
  });

  it('has --help on every command', async () => {
    const top = await run(['--help']);
    assert.equal(top.code, 0);
    for (const command of COMMANDS) {
      assert.match(top.stdout, new RegExp(`\\n  ${command.name} `));
      const help = await run([command.name, '--help']);
      assert.equal(help.code, 0, `${command.name} --help`);
      assert.match(help.stdout, new RegExp(`^outbox-bench ${command.name}`), `${command.name} --help shows its usage`);
      assert.match(help.stdout, /--help/);
    }
  });

  it('rejects unknown commands and flags, and bad values, naming them (exit 2)', async () => {
    const unknownCommand = await run(['launch']);
    assert.equal(unknownCommand.code, 2);
    assert.match(unknownCommand.stderr, /unknown command "launch"/);
    const unknownFlag = await run(['relay', '--turbo']);
    assert.equal(unknownFlag.code, 2);
    assert.match(unknownFlag.stderr, /^outbox-bench relay: unknown flag --turbo \(outbox-bench relay --help lists its flags\)\n$/);
    const typo = await run(['relay', '--batch-sise', '5']);
    assert.equal(typo.code, 2);
    assert.match(typo.stderr, /unknown flag --batch-sise; did you mean --batch-size\?/);
    const typoCommand = await run(['relya']);
    assert.equal(typoCommand.code, 2);
    assert.match(typoCommand.stderr, /unknown command "relya"; did you mean relay\?/);
    const badValue = await run(['relay', '--batch-size', 'lots']);
    assert.equal(badValue.code, 2);
    assert.match(badValue.stderr, /flag --batch-size: "lots" is not an integer/);
    const badMode = await run(['relay', '--mode', 'fax']);
    assert.equal(badMode.code, 2);
    assert.match(badMode.stderr, /flag --mode: "fax" is not one of/);
    const badEnv = await run(['migrate'], { ...process.env, OUTBOX_BENCH_PG_PORT: 'x' });
    assert.equal(badEnv.code, 2);
    assert.match(badEnv.stderr, /environment variable OUTBOX_BENCH_PG_PORT: "x" is not an integer/);
    const noSlot = await run(['relay', '--mode', 'polling', '--recover-slot', 'some_slot']);
    assert.equal(noSlot.code, 2);
    assert.match(noSlot.stderr, /--recover-slot is for the CDC modes; polling reads no replication slot/);
    const badAction = await run(['infra', 'sideways']);
    assert.equal(badAction.code, 2);
    assert.match(badAction.stderr, /infra needs one of up, down, status, fetch-kafka/);
  });

  it('refuses to benchmark a broker whose JVM runs without its optimising compiler, before it starts anything', () => {
    const { KAFKA_BROKERS: _brokers, ...env } = process.env;
    const bench = path.join(path.dirname(CLI), '..', 'bench', 'run.js');
    const refused = spawnSync(process.execPath, [bench, 'polling'], { env: { ...env, OUTBOX_BENCH_KAFKA_JIT: 'quick-start' }, encoding: 'utf8' });
    assert.equal(refused.status, 2, refused.stderr);
    assert.match(refused.stderr, /the local broker's JIT is quick-start .*published figures need kafkaJit=full/);
    assert.doesNotMatch(refused.stderr, /starting PostgreSQL and Kafka/);
    const chaos = spawnSync(process.execPath, [path.join(path.dirname(bench), 'chaos.js'), '--rows', 'outbox+cdc'], { env: { ...env, OUTBOX_BENCH_KAFKA_JIT: 'quick-start' }, encoding: 'utf8' });
    assert.equal(chaos.status, 2, chaos.stderr);
    assert.match(chaos.stderr, /the local broker's JIT is quick-start .*published figures need kafkaJit=full/);
  });

  it('refuses values that pass their own check but not together, before any server starts', () => {
    const bench = path.join(path.dirname(CLI), '..', 'bench', 'run.js');
    const refusals: [string[], RegExp][] = [
      [['drain', '--anchor', 'telepathy'], /"telepathy" is none of our relay modes/],
      [['drain', '--mode', 'cdc', '--backlog-for', 'polling=20000'], /--backlog-for: "polling" is not among the relays drained \(cdc\)/],
      [['peers', '--mode', 'carrier-pigeon'], /peers: --mode carrier-pigeon names no relay/],
      [['sweep-payload', '--points', '3KB'], /sweep-payload: unknown point\(s\) 3KB; its points are 256B, 1KB, 4KB, 10KB/],
      [['frontier', '--repeats', '1'], /frontier: a setting is judged by its worst run/],
    ];
    for (const [args, message] of refusals) {
      const refused = spawnSync(process.execPath, [bench, ...args, '--allow-dirty'], { encoding: 'utf8' });
      assert.equal(refused.status, 2, `${args.join(' ')}: ${refused.stderr}`);
      assert.match(refused.stderr, message, args.join(' '));
      assert.doesNotMatch(refused.stderr, /starting PostgreSQL and Kafka/, args.join(' '));
    }
  });

  it('bench:report has --help, and refuses a flag or a folder with nothing to report, writing nothing', async () => {
    const report = path.join(path.dirname(CLI), '..', 'bench', 'report.js');
    const empty = await scratchDir();
    const reportIn = (args: string[]) => spawnSync(process.execPath, [report, ...args], { cwd: empty, encoding: 'utf8' });
    const help = reportIn(['--help']);
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /^Usage: npm run bench:report \[-- <results-folder>\]/);
    const flag = reportIn(['--out', empty]);
    assert.equal(flag.status, 2);
    assert.match(flag.stderr, /^bench:report: unknown flag --out; it takes one results folder/);
    const nothing = reportIn([empty]);
    assert.equal(nothing.status, 2);
    assert.match(nothing.stderr, /holds no <scenario>\/summary\.json to report/);
    assert.equal(reportIn([path.join(empty, 'nonesuch')]).status, 2);
    assert.deepEqual(readdirSync(empty), [], 'nothing written, in the folder or beside it');
  });

  it('leaves the results folder as it was when every scenario it ran failed', async () => {
    const out = await scratchDir();
    writeFileSync(path.join(out, 'README.md'), 'an earlier publication\n');
    const bench = path.join(path.dirname(CLI), '..', 'bench', 'run.js');
    // npm test's servers (DATABASE_URL, KAFKA_BROKERS); a PATH without pgbench fails the scenario once they are reached.
    const failed = spawnSync(process.execPath, [bench, 'load-cost', '--writers', 'pgbench: script', '--repeats', '1', '--allow-dirty', '--out', out], {
      env: { ...process.env, PATH: out },
      encoding: 'utf8',
    });
    assert.equal(failed.status, 1, failed.stderr);
    assert.match(failed.stderr, /bench: load-cost failed: load-cost needs pgbench on PATH/);
    assert.match(failed.stderr, /bench: nothing was measured; .* is left as it was/);
    assert.deepEqual(readdirSync(out), ['README.md'], 'no summary, no page, no charts, no empty folder');
    assert.equal(readFileSync(path.join(out, 'README.md'), 'utf8'), 'an earlier publication\n');
  });

  it('stops the PostgreSQL it started on Ctrl-C: no process, no port left', async () => {
    const { env, dataDir, ports } = await isolatedEnv();
    const serve = start(['serve'], env);
    await waitForOutput(serve, /listening on/, 60_000);
    const pgPid = postmasterPid(dataDir);
    assert.ok(pgPid && isProcessAlive(pgPid), 'PostgreSQL runs while the command does');
    const response = await fetch(`http://127.0.0.1:${ports.http}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{' });
    assert.equal(response.status, 400);
    const result = await signalCommand(serve, 'SIGINT');
    assert.equal(result.code, 130);
    await assertNothingLeft(dataDir, [ports.pg, ports.http], [pgPid]);
  });

  it('stops what it started when the command fails', async (t) => {
    const { env, dataDir, ports } = await isolatedEnv();
    const blocker = await import('node:net').then((net) => net.createServer());
    await new Promise<void>((resolve) => blocker.listen(ports.http, '127.0.0.1', resolve));
    t.after(() => blocker.close());
    const result = await run(['serve'], env);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /EADDRINUSE/);
    await assertNothingLeft(dataDir, [ports.pg], []);
  });

  it('stops Kafka and PostgreSQL it started on SIGTERM, and infra up/down leave and remove them', async () => {
    const { env, dataDir, ports } = await isolatedEnv();
    const consume = start(['consume'], env);
    await waitForOutput(consume, /consuming/, 120_000);
    const kafkaPid = Number(readFileSync(path.join(dataDir, 'kafka', 'broker.pid'), 'utf8'));
    const pgPid = postmasterPid(dataDir);
    assert.equal((await signalCommand(consume, 'SIGTERM')).code, 143);
    await assertNothingLeft(dataDir, [ports.pg, ports.kafka, ports.controller], [kafkaPid, pgPid]);

    const up = await run(['infra', 'up'], env);
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stdout, /Stop them with: npm run infra:down/);
    const status = await run(['infra', 'status'], env);
    assert.match(status.stdout, /PostgreSQL: running .*started by infra up/);
    assert.match(status.stdout, /Kafka: running .*started by infra up/);
    assert.equal(await isPortFree(ports.kafka), false, 'Kafka outlives `infra up`');
    const down = await run(['infra', 'down'], env);
    assert.equal(down.code, 0);
    assert.match(down.stdout, /PostgreSQL: stopped\nKafka: stopped/);
    await assertNothingLeft(dataDir, [ports.pg, ports.kafka, ports.controller], []);
  });
});
