/**
 * The servers the project starts, and the errors a user gets when it cannot:
 * each names the cause and the fix.
 */
import assert from 'node:assert/strict';
import { mkdir, symlink } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import { resolveConfig } from '../src/config.js';
import { OutboxBenchError } from '../src/errors.js';
import { checkPostgres, ExternalPostgres, LocalKafka, LocalPostgres, ensureKafkaJars, acquireInfra } from '../src/infra/index.js';
import { runCommand } from '../src/infra/processes.js';
import { freePort, log, scratchDir, startRetryingBind } from './helpers.js';

function hasCode(code: string, message: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof OutboxBenchError, `expected an OutboxBenchError, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.match(error.message, message);
    return true;
  };
}

async function occupy(port: number): Promise<net.Server> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return server;
}

/** Runs `fn` with PATH limited to a folder holding only the named commands. */
async function withPath<T>(commands: string[], fn: () => Promise<T>): Promise<T> {
  const bin = path.join(await scratchDir(), 'bin');
  await mkdir(bin);
  for (const command of commands) {
    const { stdout } = await runCommand('sh', ['-c', `command -v ${command}`]);
    await symlink(stdout.trim(), path.join(bin, command));
  }
  const saved = process.env.PATH;
  process.env.PATH = bin;
  try {
    return await fn();
  } finally {
    process.env.PATH = saved;
  }
}

describe('local servers', () => {
  it('refuses a PostgreSQL port that is taken, saying which flag to change', async (t) => {
    const port = await freePort();
    const blocker = await occupy(port);
    t.after(() => blocker.close());
    const config = resolveConfig({ env: {}, overrides: { pgPort: port, dataDir: await scratchDir() } });
    await assert.rejects(new LocalPostgres({ config, log }).start(), hasCode('PORT_IN_USE', new RegExp(`port ${port} \\(PostgreSQL\\) is already in use.*--pg-port`)));
  });

  it('refuses a Kafka port that is taken', async (t) => {
    const port = await freePort();
    const blocker = await occupy(port);
    t.after(() => blocker.close());
    const config = resolveConfig({ env: {}, overrides: { kafkaPort: port, dataDir: await scratchDir() } });
    await assert.rejects(new LocalKafka({ config, log }).start(), hasCode('PORT_IN_USE', /\(Kafka\) is already in use.*--kafka-port.*KAFKA_BROKERS/));
  });

  it('says what to install, or which variable to set, when java is missing', async () => {
    const config = resolveConfig({ env: {}, overrides: { kafkaPort: await freePort(), dataDir: await scratchDir() } });
    await withPath([], () =>
      assert.rejects(new LocalKafka({ config, log }).start(), hasCode('JAVA_MISSING', /Java 17.*not on PATH.*apt-get install openjdk-17.*KAFKA_BROKERS/)),
    );
  });

  it('says what to install when mvn is missing and the jars are not cached', async () => {
    const config = resolveConfig({ env: {}, overrides: { cacheDir: await scratchDir() } });
    await withPath(['java'], () =>
      assert.rejects(ensureKafkaJars(config, log), hasCode('MAVEN_MISSING', /Maven \(mvn\).*Apache Kafka.*apt-get install maven.*KAFKA_BROKERS/)),
    );
  });

  it('reports a Maven fetch that fails, with Maven\'s own words', async () => {
    const config = resolveConfig({ env: {}, overrides: { cacheDir: await scratchDir(), kafkaVersion: '0.0.1-no-such-version' } });
    await assert.rejects(ensureKafkaJars(config, log), hasCode('MAVEN_FETCH_FAILED', /kafka_2\.13:0\.0\.1-no-such-version[\s\S]*Maven Central[\s\S]*KAFKA_BROKERS/));
  });

  it('refuses a server without wal_level=logical when logical decoding is needed, with the fix', async (t) => {
    const config = resolveConfig({ env: {}, overrides: { pgPort: await freePort(), dataDir: await scratchDir() } });
    const server = new LocalPostgres({ config, log, settings: { wal_level: 'replica' } });
    await startRetryingBind(() => server.start());
    t.after(() => server.stop('immediate'));
    const external = new ExternalPostgres(server.url);
    await assert.rejects(checkPostgres(external, true), hasCode('WAL_LEVEL_NOT_LOGICAL', /wal_level=replica.*ALTER SYSTEM SET wal_level = 'logical'.*restart/));
    await checkPostgres(external, false);
  });

  it('says which server it cannot reach when DATABASE_URL or KAFKA_BROKERS point nowhere', async () => {
    const port = await freePort();
    const noDb = resolveConfig({ env: { DATABASE_URL: `postgres://u:secret@127.0.0.1:${port}/x`, KAFKA_BROKERS: `127.0.0.1:${port}` } });
    await assert.rejects(acquireInfra({ config: noDb, log }), (error: unknown) => {
      hasCode('NOT_READY', /cannot connect to DATABASE_URL \(postgres:\/\/u:\*\*\*@127\.0\.0\.1/)(error);
      assert.doesNotMatch((error as Error).message, /secret/, 'the password is redacted');
      return true;
    });
    const noKafka = resolveConfig({ env: { KAFKA_BROKERS: `127.0.0.1:${port}` } });
    await assert.rejects(acquireInfra({ config: noKafka, log, need: { postgres: false } }), hasCode('NOT_READY', new RegExp(`cannot reach Kafka at KAFKA_BROKERS=127\\.0\\.0\\.1:${port}`)));
  });

  it('starts, stops with a crash (immediate) and restarts a PostgreSQL of its own', async (t) => {
    const config = resolveConfig({ env: {}, overrides: { pgPort: await freePort(), dataDir: await scratchDir() } });
    const server = new LocalPostgres({ config, log });
    await startRetryingBind(() => server.start());
    t.after(() => server.stop('fast'));
    assert.ok(server.pid());
    await server.stop('immediate');
    assert.equal(server.pid(), undefined);
    await startRetryingBind(() => server.start());
    await checkPostgres(server, true);
  });
});
