/**
 * Security basics, checked for real:
 *  - every listener the project opens (the order service, the metrics
 *    endpoint, the local PostgreSQL and Kafka) is bound to loopback, as the
 *    kernel's socket table shows;
 *  - identifiers from settings are plain SQL identifiers or refused, and
 *    quoted where they are used, so a hostile value never becomes SQL;
 *  - a run's results and logs never hold the database password.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { runPipeline } from '../bench/harness/pipeline.js';
import { summarizeRun } from '../bench/harness/summary.js';
import { resolveConfig } from '../src/config.js';
import { createSql, dropSchema, migrate } from '../src/db.js';
import { OutboxBenchError } from '../src/errors.js';
import { quoteIdentifier } from '../src/identifiers.js';
import { acquireInfra, LocalKafka, LocalPostgres } from '../src/infra/index.js';
import { Metrics } from '../src/metrics.js';
import { createOrderService } from '../src/orders/http.js';
import { prepareSlot } from '../src/relay/cdc/slot.js';
import { freePort, log, scratchDir, startRetryingBind, testEnv, uniqueName, testParameters } from './helpers.js';

/** The local addresses the kernel lists as listening on `port` (IPv4 and IPv6). */
function listeningAddresses(port: number): string[] {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const found: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const [, local, , state] = line.trim().split(/\s+/);
      if (!local || state !== '0A') continue; // 0A: LISTEN
      const [address, portHex] = local.split(':');
      if (portHex !== hexPort) continue;
      // IPv4 in host byte order; a JVM listens on IPv4 loopback through an IPv4-mapped IPv6 socket (::ffff:127.0.0.1).
      const loopback4 = address === '0100007F' || address === '0000000000000000FFFF00000100007F';
      found.push(loopback4 ? '127.0.0.1' : address === '00000000000000000000000001000000' ? '::1' : address!);
    }
  }
  return found;
}

function assertLoopbackOnly(port: number, what: string): void {
  const addresses = listeningAddresses(port);
  assert.ok(addresses.length > 0, `${what} listens on ${port}`);
  assert.deepEqual([...new Set(addresses)], ['127.0.0.1'], `${what} on port ${port} listens on ${addresses.join(', ')}`);
}

const invalidConfig = (error: unknown) => error instanceof OutboxBenchError && error.code === 'CONFIG_INVALID';

describe('security basics', () => {
  it('binds the order service, the metrics endpoint, PostgreSQL and Kafka to loopback by default', async (t) => {
    const env = await testEnv(t);
    const defaults = resolveConfig({ env: {} });
    const service = createOrderService({ sql: env.pool({ max: 1 }), log, bodyLimit: defaults.httpBodyLimitBytes, store: 'table', groupCommitMax: 0 });
    t.after(() => service.close());
    const httpPort = await freePort();
    await service.listen({ host: defaults.httpHost, port: httpPort });
    assertLoopbackOnly(httpPort, 'the order service');

    const metrics = await new Metrics().serve(await freePort());
    t.after(() => metrics.close());
    assertLoopbackOnly(metrics.port, 'the metrics endpoint');

    const dataDir = await scratchDir();
    const config = resolveConfig({ env: {}, overrides: { pgPort: await freePort(), kafkaPort: await freePort(), kafkaControllerPort: await freePort(), dataDir, kafkaHeapMb: 256 } });
    const postgres = new LocalPostgres({ config, log });
    await startRetryingBind(() => postgres.start());
    t.after(() => postgres.stop('fast'));
    assertLoopbackOnly(config.pgPort, 'the local PostgreSQL');
    const kafka = new LocalKafka({ config, log });
    await startRetryingBind(() => kafka.start());
    t.after(() => kafka.stop('graceful'));
    assertLoopbackOnly(config.kafkaPort, 'the local Kafka broker');
    assertLoopbackOnly(config.kafkaControllerPort, 'the local Kafka controller');
  });

  it('refuses hostile identifiers and topic prefixes in settings, and quotes identifiers where they are used', async (t) => {
    for (const [variable, value] of [
      ['OUTBOX_BENCH_SCHEMA', 'outbox; DROP TABLE orders'],
      ['OUTBOX_BENCH_SCHEMA', 'Outbox'],
      ['OUTBOX_BENCH_SLOT', 'slot"--'],
      ['OUTBOX_BENCH_PUBLICATION', "pub') ; SELECT pg_sleep(10); --"],
      ['OUTBOX_BENCH_SLOT', 'x'.repeat(64)],
      ['OUTBOX_BENCH_TOPIC_PREFIX', 'outbox event.'],
      ['OUTBOX_BENCH_TOPIC_PREFIX', 'outbox/../'],
    ] as const) {
      assert.throws(() => resolveConfig({ env: { [variable]: value } }), invalidConfig, `${variable}=${value}`);
    }
    assert.equal(quoteIdentifier('outbox_bench'), '"outbox_bench"');
    assert.throws(() => quoteIdentifier('a"; DROP SCHEMA public; --'), invalidConfig);

    // A library caller that bypasses the resolver still cannot get SQL through.
    const env = await testEnv(t);
    const tables = async () => (await env.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = ${env.config.schema}`)[0]!.n;
    const before = await tables();
    await assert.rejects(prepareSlot({ sql: env.sql, schema: env.config.schema, slotName: uniqueName('s'), publicationName: 'p FOR ALL TABLES; DROP TABLE orders; --' }, log), invalidConfig);
    await assert.rejects(migrate(env.sql, { schema: 'x; DROP TABLE orders', partitionWidth: '1 day', partitionsAhead: 1 }), /not a plain SQL identifier/);
    await assert.rejects(dropSchema(env.sql, `${env.config.schema} CASCADE; --`), invalidConfig);
    assert.equal(await tables(), before, 'nothing was created or dropped');
  });

  it('keeps the database password out of a run\'s results and logs', async (t) => {
    const env = await testEnv(t);
    // A role of its own with a password no other text contains.
    const role = uniqueName('secret_role');
    const password = `pw-${uniqueName('x')}-Zq9`;
    await env.sql.unsafe(`CREATE ROLE ${role} LOGIN SUPERUSER REPLICATION PASSWORD '${password}'`);
    t.after(async () => {
      const admin = createSql(env.config.databaseUrl!, 'public', { max: 1 });
      await admin.unsafe(`DROP OWNED BY ${role} CASCADE`).catch(() => {});
      await admin.unsafe(`DROP ROLE IF EXISTS ${role}`).catch(() => {});
      await admin.end({ timeout: 5 });
    });
    const url = new URL(env.config.databaseUrl!);
    url.username = role;
    url.password = password;
    const config = resolveConfig();
    const infra = await acquireInfra({ config, log });
    t.after(() => infra.release());
    const rawDir = await scratchDir();
    const parameters = testParameters({ relayMode: 'cdc', warmupS: 0, durationS: 2, connectionsPerWorker: 2, keySpace: 10, batchSize: 100, drainTimeoutS: 20, seed: 3 });
    const result = await runPipeline({ infra: { ...infra, databaseUrl: url.toString() }, log, name: uniqueName('secret'), rawDir, quiet: true }, parameters);
    assert.equal(result.lost, 0);
    const outputs = [JSON.stringify(summarizeRun('secret', result)), JSON.stringify(result)];
    const files = (dir: string): string[] => readdirSync(dir).flatMap((name) => (statSync(path.join(dir, name)).isDirectory() ? files(path.join(dir, name)) : [path.join(dir, name)]));
    for (const file of files(rawDir)) outputs.push(readFileSync(file, 'utf8'));
    assert.ok(outputs.length > 3, 'the run wrote logs');
    for (const text of outputs) assert.equal(text.includes(password), false, 'the password appears in an output');
  });
});
