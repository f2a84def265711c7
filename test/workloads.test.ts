/**
 * `--workload sql:<file>`: the script parser (every refusal names its line) and its runner,
 * the dry run that refuses a script writing no event, the SQL frame builder
 * against the relay's own, and the shipped example scripts driving real runs
 * end to end with nothing lost.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { checkWorkload, runPipeline, subjectsForWorkload, type PipelineParameters } from '../bench/harness/pipeline.js';
import { buildReport } from '../bench/report.js';
import { loadCost, type LoadCostResult } from '../bench/scenarios/load-cost.js';
import { sweep } from '../bench/scenarios/sweeps.js';
import { ANCHOR, SUBJECTS } from '../bench/scenarios/frontier/subjects.js';
import { anchorRelay, selectRelays } from '../bench/scenarios/peers/relays.js';
import { evaluate, parseWorkload, relaysForWorkload, statementsFor, workloadFromFlag, type SqlWorkload } from '../bench/harness/sql-workload.js';
import { dryRunWorkload, writeWorkloadTransaction } from '../bench/harness/sql-workload-execution.js';
import { resolveConfig } from '../src/config.js';
import type { Sql } from '../src/db.js';
import { isOutboxBenchError } from '../src/errors.js';
import { encodeOutboxFrame } from '../src/outbox-frame.js';
import { TEST_ENVIRONMENT } from './fake-run.js';
import { log, scratchDir, testEnv, testParameters, testServers, uniqueName } from './helpers.js';

const OUTBOX_SCRIPT = 'bench/workloads/order-outbox.sql';
const MESSAGE_SCRIPT = 'bench/workloads/order-message.sql';

/** The WORKLOAD_INVALID error a script gets, its message checked against `pattern`. */
function refused(text: string, pattern: RegExp): void {
  assert.throws(
    () => parseWorkload('w.sql', text),
    (error: unknown) => isOutboxBenchError(error, 'WORKLOAD_INVALID') && pattern.test(error.message),
  );
}


describe('workload scripts: parsing', () => {
  it('reads the shipped examples: variables become parameters, casts stay, the store follows from the script', () => {
    const outbox = workloadFromFlag(`sql:${OUTBOX_SCRIPT}`);
    const message = workloadFromFlag(`sql:${MESSAGE_SCRIPT}`);
    assert.ok(outbox && message);
    assert.equal(outbox.store, 'table');
    assert.equal(message.store, 'message');
    const [sql] = outbox.commands.filter((c) => c.kind === 'sql');
    assert.ok(sql?.kind === 'sql');
    assert.deepEqual(sql.parameters, ['customer', 'amount', 'event_id', 'intended_at']);
    assert.match(sql.text, /'customer-' \|\| \$1::text, \$2, 'EUR'/);
    assert.match(sql.text, /SELECT \$3::uuid, 'order', order_id::text/);
    assert.equal(sql.line, 11, 'a command is reported at the line it starts on');
    assert.equal(workloadFromFlag('orders'), undefined, 'orders is the built-in load');
    const crlf = parseWorkload('crlf.sql', '\\set n 1\r\nSELECT :n,\r\n  2;\r\nSELECT date\'2026-12-07\';\r\n');
    assert.deepEqual(crlf.commands.map((c) => (c.kind === 'sql' ? [c.line, c.text] : [c.line, c.name])), [[1, 'n'], [2, 'SELECT $1,\n  2'], [4, "SELECT date'2026-12-07'"]]);
  });

  it('refuses what it does not support, naming the file and line', () => {
    refused('SELECT 1;\n\\sleep 10ms\n', /^w\.sql:2: \\sleep is not supported/);
    refused('\\set n random(1, 10)\nSELECT :m;\n', /^w\.sql:2: :m is not defined/);
    refused('-- a comment\nBEGIN;\nSELECT 1;\n', /^w\.sql:2: "BEGIN" is refused: the harness makes the transaction/);
    refused('SELECT 1;\n\\set n random(1)\n', /^w\.sql:2: .*random takes 2 arguments/);
    refused('\\set n 1 +\n', /^w\.sql:1: .*unexpected end/);
    refused('\\set event_id 1\n', /^w\.sql:1: :event_id is bound by the harness/);
    refused("SELECT 1;\nSELECT 'open\n", /^w\.sql:2: unterminated string/);
    refused('SELECT $$x$$;\n', /^w\.sql:1: dollar quoting is not supported/);
    refused('-- nothing but comments\n\\set n 1\n', /^w\.sql: holds no SQL command/);
    refused('SELECT 1\n\\set n 1\n;\n', /^w\.sql:2: a meta-command inside the SQL command of line 1: end that command with ";"/);
    refused('SELECT 1; /* note */\n', /^w\.sql:1: block comments are not supported/);
    refused("SELECT E'it\\'s';\n", /^w\.sql:1: E'\.\.\.' strings/);
    refused('SELECT $1;\n', /^w\.sql:1: positional parameters/);
    refused('SELECT 1,\n  2,\n  :m;\n', /^w\.sql:3: :m is not defined/);
    assert.throws(() => workloadFromFlag('sql:/no/such/file.sql'), (error: unknown) => isOutboxBenchError(error, 'WORKLOAD_INVALID') && /cannot read/.test(error.message));
    assert.throws(() => workloadFromFlag('pgbench'), (error: unknown) => isOutboxBenchError(error, 'USAGE'));
  });

  it('evaluates \\set as pgbench does: integer arithmetic, random() within both bounds, earlier variables visible', () => {
    const workload = parseWorkload('w.sql', "\\set a 7 / 2 * -(1 + 1) % 5\n\\set r random(3, 5)\n\\set b greatest(:a, abs(:a)) + least(1, 2)\nSELECT :a, :r, :b, ':not_a_variable', :client_id, x::int;\n");
    const seen = new Set<number>();
    let draw = 0;
    const cycle = [0, 0.5, 0.999_999];
    for (let i = 0; i < 30; i++) {
      const [statement] = statementsFor(workload, { eventId: randomUUID(), intendedAt: 0, clientId: 3 }, () => cycle[draw++ % cycle.length]!);
      assert.ok(statement);
      assert.equal(statement.text, "SELECT $1, $2, $3, ':not_a_variable', $4, x::int");
      const [a, r, b, client] = statement.values;
      assert.equal(a, -1, '7 / 2 = 3, * -2 = -6, % 5 = -1 (truncating, sign of the dividend)');
      assert.equal(b, 1 + 1);
      assert.equal(client, 3);
      seen.add(r as number);
    }
    assert.deepEqual([...seen].sort(), [3, 4, 5], 'random(3, 5) reaches both ends and nothing else');
    assert.throws(() => evaluate({ kind: 'binary', operator: '/', left: { kind: 'number', value: 1 }, right: { kind: 'number', value: 0 } }, new Map(), Math.random));
  });

  it('runs a scenario\'s relays that read the store the script writes, and refuses a scenario with none', () => {
    const message = workloadFromFlag(`sql:${MESSAGE_SCRIPT}`);
    assert.deepEqual(relaysForWorkload(['cdc', 'cdc-message', 'polling'], message), ['cdc-message']);
    assert.deepEqual(relaysForWorkload(['cdc', 'cdc-message'], undefined), ['cdc', 'cdc-message']);
    assert.throws(() => relaysForWorkload(['polling', 'skip-locked'], message), (error: unknown) => isOutboxBenchError(error, 'USAGE'));
  });

  it('is refused by the sweeps whose points vary what a script writes itself: payload and aggregates', async () => {
    const workload = workloadFromFlag(`sql:${OUTBOX_SCRIPT}`);
    const context = (name: string) => ({
      config: resolveConfig(),
      // Refused before any server is touched.
      infra: undefined as never,
      log,
      parameters: testParameters({ workload }),
      outDir: `/nonexistent/sweep-${name}`,
      quiet: true,
      repeats: 1,
      option: () => 0,
      list: (_name: string, fallback: string[]) => fallback,
    });
    for (const name of ['payload', 'hot-keys'] as const) {
      await assert.rejects(sweep(name).run(context(name)), (error: unknown) => isOutboxBenchError(error, 'USAGE') && new RegExp(`sweep-${name} varies the built-in orders`).test(error.message));
    }
  });

  it('drives the comparisons\' relays that read our outbox in its store: no peer with a table of its own, no anchor left out', () => {
    const outbox = workloadFromFlag(`sql:${OUTBOX_SCRIPT}`);
    const message = workloadFromFlag(`sql:${MESSAGE_SCRIPT}`);
    const frontier = subjectsForWorkload(SUBJECTS, outbox, ANCHOR);
    assert.ok(frontier.includes(ANCHOR) && frontier.length < SUBJECTS.length);
    assert.ok(frontier.every((s) => s.parameters.store === 'table'));
    assert.ok(frontier.some((s) => s.relay === 'debezium'), 'Debezium reads our outbox table');
    assert.throws(() => subjectsForWorkload(SUBJECTS, message, ANCHOR), /the anchor of this comparison does not read them/);
    const peers = subjectsForWorkload(selectRelays([]), outbox, anchorRelay());
    assert.deepEqual(
      peers.map((r) => r.family).filter((f, i, all) => all.indexOf(f) === i),
      ['ours', 'debezium'],
      'pg-transactional-outbox writes a table of its own',
    );
  });
});

describe('workload scripts: the runner', () => {
  it('refuses a script that does not parse with exit code 2, naming its line, before any server starts', async () => {
    const dir = await scratchDir();
    const file = path.join(dir, 'sleepy.sql');
    writeFileSync(file, 'SELECT 1;\n\\sleep 10 ms\n');
    const bench = fileURLToPath(new URL('../bench/run.js', import.meta.url));
    const refused = spawnSync(process.execPath, [bench, 'polling', '--workload', `sql:${file}`, '--allow-dirty', '--out', dir], { encoding: 'utf8' });
    assert.equal(refused.status, 2, refused.stderr);
    assert.match(refused.stderr, /sleepy\.sql:2: \\sleep is not supported \(only \\set is\)/);
    assert.doesNotMatch(refused.stderr, /starting PostgreSQL and Kafka/);
  });
});

describe('workload scripts: refused by runs that cannot take them', () => {
  it('refuses a run whose relay reads the other store, before any dry run', async () => {
    const message = workloadFromFlag(`sql:${MESSAGE_SCRIPT}`);
    await assert.rejects(
      checkWorkload({ databaseUrl: 'postgres://nobody@127.0.0.1:1/none', schema: 'none', p: testParameters({ workload: message }), store: 'table' }),
      (error: unknown) => isOutboxBenchError(error, 'USAGE') && /writes logical messages; this run's relay reads outbox rows/.test(error.message),
    );
  });

  it('refuses the flag, with exit code 2 before any server starts, for a scenario whose load a script cannot replace', () => {
    const bench = fileURLToPath(new URL('../bench/run.js', import.meta.url));
    const refused = spawnSync(process.execPath, [bench, 'write-cost', '--workload', `sql:${OUTBOX_SCRIPT}`, '--allow-dirty'], { encoding: 'utf8' });
    assert.equal(refused.status, 2, refused.stderr);
    assert.match(refused.stderr, /write-cost does not take --workload/);
    assert.doesNotMatch(refused.stderr, /starting PostgreSQL and Kafka/);
  });
});

describe('workload scripts: against PostgreSQL', () => {
  it('sends variables as their text, as pgbench does, whatever type PostgreSQL describes', async (t) => {
    const env = await testEnv(t);
    const sql = env.pool({ max: 1, textParameters: true });
    const workload = parseWorkload('types.sql', "\\set f 1\nINSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload, headers)\nVALUES (:event_id, 'order', 'a', 1, 'T', '{}', jsonb_build_object('flag', :f::boolean, 'at', :intended_at::timestamptz));\n");
    const eventId = randomUUID();
    await writeWorkloadTransaction(sql, workload, statementsFor(workload, { eventId, intendedAt: Date.UTC(2026, 11, 7), clientId: 0 }, Math.random));
    const [row] = await env.sql<{ flag: string; at: string }[]>`SELECT headers->>'flag' AS flag, headers->>'at' AS at FROM outbox WHERE event_id = ${eventId}`;
    // Converted by postgres.js's own rules, 1 would have been false and the ISO time a date from its text's number.
    assert.equal(row?.flag, 'true');
    assert.equal(Date.parse(row!.at), Date.UTC(2026, 11, 7), row?.at);
  });

  it('builds the table-less frame in SQL byte for byte as the relay\'s encoder does, and refuses a NULL', async (t) => {
    const env = await testEnv(t);
    const event = { eventId: randomUUID(), aggregateType: 'order', aggregateId: 'ä-1', aggregateVersion: 12, eventType: 'OrderPlaced', payload: '{"note":"€ and \\u0000-free"}', headers: { trace: 'x' } };
    const [row] = await env.sql<{ frame: Buffer }[]>`
      SELECT outbox_frame(${event.eventId}::uuid, ${event.aggregateType}, ${event.aggregateId}, ${event.aggregateVersion}, ${event.eventType}, ${event.payload}, ${JSON.stringify(event.headers)}) AS frame`;
    assert.deepEqual(row?.frame, encodeOutboxFrame(event));
    await assert.rejects(env.sql`SELECT outbox_frame(NULL, 'order', 'a', 1, 'T', '{}')`, /every argument is required/);
  });

  it('refuses, after a rolled-back dry run, a script that writes no event for the relay\'s store; a failing statement is named by its line', async (t) => {
    const env = await testEnv(t);
    const ordersOnly = parseWorkload('orders-only.sql', "-- the business row, but no event\nINSERT INTO orders (order_id, customer_id, amount_cents, currency) VALUES (gen_random_uuid(), 'c', 1, 'EUR');\n");
    const count = async () => (await env.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM orders`)[0]?.n;
    const before = await count();
    await assert.rejects(dryRunWorkload(env.sql, ordersOnly, { store: 'table', schema: env.config.schema }), (error: unknown) => isOutboxBenchError(error, 'WORKLOAD_INVALID') && /orders-only\.sql: a dry run \(rolled back\) wrote no event for the outbox table store/.test(error.message));
    assert.equal(await count(), before, 'the dry run rolled the order back');

    const broken = parseWorkload('broken.sql', 'SELECT 1;\n\nSELECT * FROM no_such_table;\n');
    await assert.rejects(dryRunWorkload(env.sql, broken, { store: 'table', schema: env.config.schema }), (error: unknown) => isOutboxBenchError(error, 'WORKLOAD_INVALID') && /^broken\.sql:3: .*no_such_table/.test(error.message));

    const outbox = workloadFromFlag(`sql:${OUTBOX_SCRIPT}`)!;
    const message = workloadFromFlag(`sql:${MESSAGE_SCRIPT}`)!;
    await dryRunWorkload(env.sql, outbox, { store: 'table', schema: env.config.schema });
    await dryRunWorkload(env.sql, message, { store: 'message', schema: env.config.schema });
    // Each example writes the other store's nothing: refused for it.
    await assert.rejects(dryRunWorkload(env.sql, outbox, { store: 'message', schema: env.config.schema }), /table-less \(message\) store/);
    await assert.rejects(dryRunWorkload(env.sql, message, { store: 'table', schema: env.config.schema }), /outbox table store/);
    assert.equal(await count(), before, 'no dry run left a row behind');
    const [schemas] = await env.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'outbox_bench_dry_run'`;
    assert.equal(schemas?.n, 0, 'nor its recording schema');
  });
});

describe('workload scripts: whole runs', () => {
  // The outbox script live (open loop, a transaction each); the message
  // script three to a transaction (pipelined) as a drain, so that the
  // business rows can be counted before the relay starts.
  for (const [script, relayMode, store, perTransaction, drain] of [
    [OUTBOX_SCRIPT, 'polling', 'table', 1, false],
    [MESSAGE_SCRIPT, 'cdc-message', 'message', 3, true],
  ] as const) {
    it(`drives a ${relayMode} run with ${script} (${perTransaction} per transaction): every event delivered once${drain ? ', an order per event' : ''}`, async (t) => {
      const infra = await testServers(t);
      const workload: SqlWorkload = workloadFromFlag(`sql:${script}`)!;
      let orders: number | undefined;
      const run = await runPipeline(
        {
          infra,
          log,
          name: uniqueName(`workload_${store}`),
          rawDir: await scratchDir(),
          quiet: true,
          ...(drain ? { beforeRelay: async (sql: Sql) => void (orders = (await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM orders`)[0]?.n) } : {}),
        },
        testParameters({ relayMode, store, workload, rate: 150, durationS: 2, ordersPerTransaction: perTransaction, relayAfterLoad: drain }),
      );
      assert.equal(run.failedWrites, 0);
      assert.ok(run.sent >= 150 * 2, `${run.sent} events written`);
      assert.equal(run.lost, 0, 'every committed event arrived');
      assert.equal(run.sent, run.delivered);
      assert.equal(run.duplicates, 0);
      if (drain) assert.equal(orders, run.sent, 'one order per event: the script ran once per event');
      assert.equal(run.parameters.workload?.file, script, 'the result records the script');
    });
  }

  it('measures the load generator against pgbench on the same script and server: every writer at the rate, the ratio in the report\'s table', async (t) => {
    const infra = await testServers(t);
    const root = await scratchDir();
    const outDir = path.join(root, 'load-cost');
    mkdirSync(outDir, { recursive: true });
    const parameters = { ...testParameters(), ...loadCost.defaults, rate: 300, warmupS: 1, durationS: 2 } as PipelineParameters;
    // Two of the three writers (the suite's time): the script through our pool and through pgbench.
    const writers = ['ours: script', 'pgbench: script'];
    const report = await loadCost.run({ config: resolveConfig(), infra, log, parameters, outDir, quiet: true, repeats: 1, option: () => 0, list: (name, fallback) => (name === 'writers' ? writers : fallback) });
    const extra = report.extra as LoadCostResult;
    assert.equal(extra.script, OUTBOX_SCRIPT);
    assert.deepEqual(extra.runs.map((r) => r.writer).sort(), writers);
    for (const run of extra.runs) {
      // 300/s for 2 s: the writers kept the rate (pgbench's -R included), within the edges of the window.
      assert.ok(run.transactions >= 500 && run.transactions <= 700, `${run.writer}: ${run.transactions} transactions in the window`);
      assert.ok(run.writerCpuPerMillion > 0, JSON.stringify(run));
      // A server this process did not start has no process to read: null, never a guess.
      if (infra.postgres.pid() === undefined) assert.equal(run.postgresCpuPerMillion, null);
      else assert.ok((run.postgresCpuPerMillion ?? 0) > 0, JSON.stringify(run));
    }
    writeFileSync(path.join(outDir, 'summary.json'), JSON.stringify({ scenario: 'load-cost', title: report.title, date: new Date().toISOString(), command: 'test', parameters, runs: [], extra, environment: TEST_ENVIRONMENT }));
    const readme = buildReport(root);
    assert.match(readme, /## What the load generator costs/);
    assert.match(readme, /\| ours: script \| [\d,.]+ \[[\d,.]+–[\d,.]+\] \| [\d.]+× \[/);
  });
});

