/**
 * The client settings every process shares.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createSql, reconnectDelaySeconds } from '../src/db.js';

describe('database client', () => {
  it('reconnects within a second of PostgreSQL coming back, however many attempts failed while it was gone', async () => {
    // postgres.js's own delay after 7 consecutive errors is 11-22 s; ours doubles from 0.1 s up to 1 s.
    for (let retries = 1; retries <= 40; retries++) {
      const delay = reconnectDelaySeconds(retries);
      const ceiling = Math.min(0.1 * 2 ** (retries - 1), 1);
      assert.ok(delay >= ceiling / 2 && delay <= ceiling, `after ${retries} errors: ${delay} s (expected ${ceiling / 2}-${ceiling})`);
    }
    // Every pool the project creates uses it (the URL is never connected to here).
    const sql = createSql('postgres://nobody@127.0.0.1:1/none', 'public');
    try {
      assert.equal((sql.options as unknown as { backoff: unknown }).backoff, reconnectDelaySeconds);
    } finally {
      await sql.end({ timeout: 1 });
    }
  });
});
