/**
 * An open-loop HTTP load: request i is due at `startAt + i / rate`, whatever
 * happened to the requests before it, and carries that scheduled time in
 * `x-intended-at`. Latency runs from the scheduled time to the end of the
 * response, so time spent waiting for a free connection (or for the event
 * loop) counts, and a stalled server shows in the tail instead of lowering
 * the rate (no coordinated omission). autocannon's `overallRate` cannot do
 * this: it limits each connection to a burst per second and measures from
 * the actual send.
 */
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { HEADERS, nowMs } from '../../src/events.js';
import { createHistogram, encodeHistogram, recordMs, summarizeMs, type LatencySummaryMs } from '../../src/latency.js';

export interface OpenLoopOptions {
  url: string;
  /** Requests per second. */
  rate: number;
  durationS: number;
  /** Keep-alive connections at most; requests beyond them queue (and the wait is measured). */
  connections: number;
  /** Epoch ms the first request is due. */
  startAt: number;
  /** The body of request i. */
  body(i: number): string;
}

export interface OpenLoopResult {
  scheduled: number;
  /** Requests answered 2xx. */
  ok: number;
  non2xx: number;
  /** Requests that failed without an answer. */
  errors: number;
  /** Answered requests per second over the schedule's span. */
  achievedPerSec: number;
  /** Scheduled time -> response complete, every answered request. */
  latencyMs: LatencySummaryMs;
  histogram: string;
}

export async function openLoop(options: OpenLoopOptions): Promise<OpenLoopResult> {
  const target = new URL(options.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.connections });
  const histogram = createHistogram();
  const total = Math.floor(options.rate * options.durationS);
  let ok = 0;
  let non2xx = 0;
  let errors = 0;
  const send = (i: number, scheduledAt: number) =>
    new Promise<void>((resolve) => {
      const body = options.body(i);
      const request = http.request(
        {
          agent,
          hostname: target.hostname,
          port: target.port,
          path: target.pathname,
          method: 'POST',
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), [HEADERS.intendedAt]: scheduledAt.toFixed(3) },
        },
        (response) => {
          response.resume();
          response.once('end', () => {
            recordMs(histogram, nowMs() - scheduledAt);
            if ((response.statusCode ?? 0) >= 200 && (response.statusCode ?? 0) < 300) ok += 1;
            else non2xx += 1;
            resolve();
          });
        },
      );
      request.once('error', () => {
        errors += 1;
        resolve();
      });
      request.end(body);
    });
  const inFlight: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = options.startAt + (i * 1_000) / options.rate;
    const wait = due - nowMs();
    // Late requests are sent at once, catching up to the timetable.
    if (wait > 1) await sleep(wait);
    inFlight.push(send(i, due));
  }
  await Promise.all(inFlight);
  const spanS = Math.max(0.001, (nowMs() - options.startAt) / 1_000);
  agent.destroy();
  return { scheduled: total, ok, non2xx, errors, achievedPerSec: Math.round(ok / spanS), latencyMs: summarizeMs(histogram), histogram: encodeHistogram(histogram) };
}
