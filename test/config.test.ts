import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULTS, resolveConfig } from '../src/config.js';
import { OutboxBenchError } from '../src/errors.js';

function rejects(input: Parameters<typeof resolveConfig>[0], pattern: RegExp): void {
  assert.throws(
    () => resolveConfig(input),
    (error: unknown) => error instanceof OutboxBenchError && error.code === 'CONFIG_INVALID' && pattern.test(error.message),
  );
}

describe('resolveConfig', () => {
  it('starts from frozen defaults: 500 ms polling, loopback HTTP', () => {
    const config = resolveConfig({ env: {} });
    assert.equal(config.pollIntervalMs, 500);
    assert.equal(config.httpHost, '127.0.0.1');
    assert.equal(config.databaseUrl, undefined);
    assert.ok(Object.isFrozen(config));
    assert.ok(Object.isFrozen(DEFAULTS));
  });

  it('lets env override defaults and flags override env', () => {
    const config = resolveConfig({
      env: { OUTBOX_BENCH_BATCH_SIZE: '250', KAFKA_BROKERS: 'a:1, b:2', DATABASE_URL: 'postgres://u:p@h:5/db' },
      flags: { batchSize: '300' },
    });
    assert.equal(config.batchSize, 300);
    assert.deepEqual(config.kafkaBrokers, ['a:1', 'b:2']);
    assert.equal(config.databaseUrl, 'postgres://u:p@h:5/db');
  });

  it('names the flag or variable at fault', () => {
    rejects({ env: {}, flags: { batchSize: 'ten' } }, /^flag --batch-size: "ten" is not an integer$/);
    rejects({ env: {}, flags: { batchSize: '0' } }, /^flag --batch-size: 0 is out of range \[1, 100000\]$/);
    rejects({ env: { OUTBOX_BENCH_PG_PORT: '70000' } }, /^environment variable OUTBOX_BENCH_PG_PORT: 70000 is out of range/);
    rejects({ env: {}, flags: { relayMode: 'carrier-pigeon' } }, /^flag --mode: "carrier-pigeon" is not one of polling, skip-locked/);
    rejects({ env: { KAFKA_BROKERS: 'localhost' } }, /KAFKA_BROKERS: "localhost" is not host:port/);
    rejects({ env: { DATABASE_URL: 'mysql://x' } }, /DATABASE_URL: "mysql:\/\/x" must start with postgres:\/\//);
    rejects({ env: {}, flags: { schema: 'Robert"; DROP TABLE' } }, /flag --schema: .* is not a plain identifier/);
    rejects({ env: {}, flags: { partitionWidth: 'fortnight' } }, /flag --partition-width: "fortnight" is not a duration/);
    rejects({ env: {}, flags: { kafkaPort: '9000', kafkaControllerPort: '9000' } }, /--kafka-controller-port: must differ from --kafka-port/);
  });

  it('normalises accepted values', () => {
    assert.equal(resolveConfig({ env: {}, flags: { partitionWidth: ' 5minutes ' } }).partitionWidth, '5 minutes');
    assert.equal(resolveConfig({ env: {}, flags: { pollIntervalMs: ' 250 ' } }).pollIntervalMs, 250);
  });
});
