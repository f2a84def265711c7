/**
 * A transaction's events on disk. The CDC relay cannot publish a transaction
 * before its COMMIT arrives, and backpressure cannot act inside one (the
 * walsender sends the whole transaction), so a transaction of a million
 * events would sit in the relay's heap. Past a threshold its events go to a
 * file instead, and are read back in publish-sized batches once it commits:
 * the relay's memory stays bounded by the threshold, whatever the size of
 * the transaction.
 *
 * Record layout: per event, u32 lengths of topic, key, value and the number
 * of headers, then each header's name and value lengths, then the bytes in
 * that order. Keys and values keep their kind (string or Buffer) by a flag
 * byte, so what is read back is what was written.
 */
import { closeSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { WireEvent } from '../../events.js';

/** A transaction's events, in memory or on disk, read by position in publish order. */
export interface EventLog {
  readonly length: number;
  /** Events [from, from + count) (fewer at the end). A repeated `from` (a publish retried) reads the same events. */
  read(from: number, count: number): WireEvent[];
  /** Frees what it holds (the file, for a spilled log). */
  close(): void;
}

export class MemoryEvents implements EventLog {
  constructor(readonly events: WireEvent[]) {}
  get length(): number {
    return this.events.length;
  }
  read(from: number, count: number): WireEvent[] {
    return this.events.slice(from, from + count);
  }
  close(): void {}
}

// Rationale: 1 MiB writes keep the syscall count low (a few hundred for a
// million events) while the buffer itself stays small.
const WRITE_BUFFER_BYTES = 1 << 20;
// Rationale: read-ahead of the same size as the writes.
const READ_BUFFER_BYTES = 1 << 20;

const KIND_STRING = 0;
const KIND_BUFFER = 1;

function bytesOf(value: Buffer | string): Buffer {
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
}

/** Events appended to a temporary file, then read back once, in order. */
export class SpillFile implements EventLog {
  readonly file: string;
  #fd: number;
  #length = 0;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  // Reading: the file position and event index of the next unread record, and the last batch read.
  #readAt = 0;
  #readIndex = 0;
  #buffer = Buffer.alloc(0);
  #last: { from: number; events: WireEvent[] } | undefined;
  #closed = false;

  constructor(dir: string = os.tmpdir()) {
    this.file = path.join(dir, `outbox-bench-spill-${process.pid}-${randomBytes(6).toString('hex')}`);
    // 0600: events can hold personal data.
    this.#fd = openSync(this.file, 'w+', 0o600);
  }

  get length(): number {
    return this.#length;
  }

  append(event: WireEvent): void {
    const names = Object.keys(event.headers);
    const parts: Buffer[] = [Buffer.from(event.topic, 'utf8'), bytesOf(event.key), bytesOf(event.value)];
    const headerParts = names.flatMap((name) => [Buffer.from(name, 'utf8'), bytesOf(event.headers[name]!)]);
    const head = Buffer.alloc(4 * (4 + headerParts.length) + 2 + names.length);
    let o = 0;
    for (const part of parts) o = head.writeUInt32LE(part.length, o);
    o = head.writeUInt32LE(names.length, o);
    for (const part of headerParts) o = head.writeUInt32LE(part.length, o);
    o = head.writeUInt8(typeof event.key === 'string' ? KIND_STRING : KIND_BUFFER, o);
    o = head.writeUInt8(typeof event.value === 'string' ? KIND_STRING : KIND_BUFFER, o);
    for (const name of names) o = head.writeUInt8(typeof event.headers[name] === 'string' ? KIND_STRING : KIND_BUFFER, o);
    this.#push(head);
    for (const part of [...parts, ...headerParts]) this.#push(part);
    this.#length += 1;
  }

  #push(part: Buffer): void {
    this.#pending.push(part);
    this.#pendingBytes += part.length;
    if (this.#pendingBytes >= WRITE_BUFFER_BYTES) this.#flush();
  }

  #flush(): void {
    if (this.#pendingBytes === 0) return;
    writeSync(this.#fd, Buffer.concat(this.#pending, this.#pendingBytes));
    this.#pending = [];
    this.#pendingBytes = 0;
  }

  /** Ends the writing; reading may start. */
  finish(): void {
    this.#flush();
  }

  read(from: number, count: number): WireEvent[] {
    if (this.#last?.from === from && this.#last.events.length >= Math.min(count, this.#length - from)) return this.#last.events.slice(0, count);
    if (from !== this.#readIndex) throw new Error(`spilled events are read in order: asked for ${from}, next is ${this.#readIndex}`);
    const events: WireEvent[] = [];
    while (events.length < count && this.#readIndex < this.#length) {
      events.push(this.#readOne());
      this.#readIndex += 1;
    }
    this.#last = { from, events };
    return events;
  }

  /** At least `n` bytes of the file from the read position in #buffer. */
  #ensure(n: number): void {
    if (this.#buffer.length >= n) return;
    const chunk = Buffer.allocUnsafe(Math.max(READ_BUFFER_BYTES, n - this.#buffer.length));
    const read = readSync(this.#fd, chunk, 0, chunk.length, this.#readAt);
    this.#readAt += read;
    this.#buffer = Buffer.concat([this.#buffer, chunk.subarray(0, read)]);
    if (this.#buffer.length < n) throw new Error(`spill file ${this.file} ends early`);
  }

  #take(n: number): Buffer {
    this.#ensure(n);
    // A copy: the read buffer is reused, and an event waits for Kafka after this.
    const out = Buffer.from(this.#buffer.subarray(0, n));
    this.#buffer = this.#buffer.subarray(n);
    return out;
  }

  #readOne(): WireEvent {
    const u32 = () => this.#take(4).readUInt32LE(0);
    const [topicLength, keyLength, valueLength, headerCount] = [u32(), u32(), u32(), u32()];
    const headerLengths = Array.from({ length: headerCount * 2 }, u32);
    const kinds = this.#take(2 + headerCount);
    const as = (bytes: Buffer, kind: number) => (kind === KIND_STRING ? bytes.toString('utf8') : bytes);
    const topic = this.#take(topicLength).toString('utf8');
    const key = as(this.#take(keyLength), kinds[0]!);
    const value = as(this.#take(valueLength), kinds[1]!);
    const headers: Record<string, Buffer | string> = {};
    for (let i = 0; i < headerCount; i++) {
      const name = this.#take(headerLengths[2 * i]!).toString('utf8');
      headers[name] = as(this.#take(headerLengths[2 * i + 1]!), kinds[2 + i]!);
    }
    return { topic, key, value, headers };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeSync(this.#fd);
    rmSync(this.file, { force: true });
  }
}
