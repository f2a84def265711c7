import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULTS, parseWholeFlag, resolveConfig } from '../src/config.js';
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
    rejects({ env: {}, flags: { kafkaPort: '9000', kafkaControllerPort: '9000' } }, /--kafka-controller-port: must differ from the brokers' ports \(--kafka-port 9000\)/);
    rejects({ env: {}, flags: { kafkaNodes: '3', kafkaPort: '9000', kafkaControllerPort: '9020' } }, /must differ from the brokers' ports \(--kafka-port 9000 and every tenth above it\)/);
  });

  it('normalises accepted values', () => {
    assert.equal(resolveConfig({ env: {}, flags: { partitionWidth: ' 5minutes ' } }).partitionWidth, '5 minutes');
    assert.equal(resolveConfig({ env: {}, flags: { pollIntervalMs: ' 250 ' } }).pollIntervalMs, 250);
  });
});

describe('parseWholeFlag', () => {
  it('takes a whole number within its range, and names the flag and the range otherwise', () => {
    assert.equal(parseWholeFlag('repeats', ' 3 ', 1, 20), 3);
    assert.equal(parseWholeFlag('repeats', '20', 1, 20), 20);
    const usage = (pattern: RegExp) => (error: unknown) => error instanceof OutboxBenchError && error.code === 'USAGE' && pattern.test(error.message);
    assert.throws(() => parseWholeFlag('repeats', '0', 1, 20), usage(/--repeats: 0 is out of range \[1, 20\]/));
    assert.throws(() => parseWholeFlag('repeats', '21', 1, 20), usage(/out of range/));
    for (const raw of ['2.5', '-1', '1e3', '', 'three']) assert.throws(() => parseWholeFlag('tps', raw, 0, 1_000), usage(/--tps: ".*" is not a whole number/), raw);
  });
});
