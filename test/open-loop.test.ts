/**
 * The open-loop HTTP load measures from the schedule: requests are due on a
 * timetable whatever the server does, carry their scheduled time, and a
 * server slower than the rate shows in the latency as queueing, not as a
 * lower rate with flattering latencies.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { openLoop } from '../bench/harness/open-loop-http.js';
import { HEADERS, nowMs } from '../src/events.js';

describe('open-loop HTTP load', () => {
  it('sends on its timetable, stamps the scheduled time, and counts queueing behind a slow server', async (t) => {
    const stamps: number[] = [];
    // Answers one request at a time, 100 ms each: 10 requests/s at most.
    let busy = Promise.resolve();
    const server = http.createServer((request, response) => {
      stamps.push(Number(request.headers[HEADERS.intendedAt]));
      request.resume();
      busy = busy.then(async () => {
        await sleep(100);
        response.writeHead(201).end('{}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const { port } = server.address() as AddressInfo;
    const startAt = Math.ceil(nowMs()) + 200;
    const result = await openLoop({ url: `http://127.0.0.1:${port}/orders`, rate: 20, durationS: 2, connections: 4, startAt, body: (i) => JSON.stringify({ i }) });

    assert.equal(result.scheduled, 40);
    assert.equal(result.ok, 40);
    // Every request carries its own slot of the timetable, 50 ms apart.
    assert.deepEqual(
      [...stamps].sort((a, b) => a - b).map((stamp) => Math.round(stamp - startAt)),
      Array.from({ length: 40 }, (_, i) => i * 50),
    );
    // The server clears 10/s of the 20/s offered: the last request waits
    // about 2 s behind the others. A closed loop, or latency measured from
    // the actual send, would show about 100-400 ms.
    assert.ok(result.latencyMs.max >= 1_800, `max ${result.latencyMs.max} ms`);
    assert.ok(result.latencyMs.p50 >= 900, `p50 ${result.latencyMs.p50} ms`);
  });
});
