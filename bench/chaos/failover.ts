/**
 * A primary and a physical standby on loopback, for the failover row of the
 * crash matrix: the CDC relay's slot is a failover slot (PostgreSQL 17+) that
 * the standby keeps in sync, and every client reaches the primary through a
 * TCP proxy that plays the part of a virtual IP or a DNS name: on failover it
 * drops every connection and sends new ones to the promoted standby.
 *
 * The embedded binaries are only initdb, pg_ctl and postgres (no
 * pg_basebackup), so the standby is made with the low-level backup API:
 * pg_backup_start, a copy of the data directory, pg_backup_stop, and the
 * backup label it returns written beside the copy.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import fs from 'node:fs/promises';
import path from 'node:path';
import postgres from 'postgres';
import type { Config } from '../../src/config.js';
import { OutboxBenchError } from '../../src/errors.js';
import { LOCAL_PG_DATABASE, LOCAL_PG_PASSWORD, LOCAL_PG_USER, LocalPostgres } from '../../src/infra/postgres.js';
import { runCommand } from '../../src/infra/processes.js';
import type { Logger } from '../../src/log.js';

/** The standby's physical slot on the primary, and the name its walreceiver reports (synchronous_standby_names). */
const STANDBY_SLOT = 'chaos_standby';
const STANDBY_NAME = 'chaos_standby';

/** Entries of a data directory a base backup leaves out (contents only; the directories stay). */
const NOT_COPIED = new Set(['postmaster.pid', 'postmaster.opts', 'backup_label', 'tablespace_map']);
const EMPTIED = new Set(['pg_wal', 'pg_replslot', 'pg_stat_tmp', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_subtrans']);

/** Copies a live data directory; files that vanish mid-copy (temporary ones) are skipped, as pg_basebackup does. */
async function copyDataDirectory(from: string, to: string, top = true): Promise<void> {
  await fs.mkdir(to, { recursive: true, mode: 0o700 });
  for (const entry of await fs.readdir(from, { withFileTypes: true })) {
    if (top && NOT_COPIED.has(entry.name)) continue;
    const source = path.join(from, entry.name);
    const target = path.join(to, entry.name);
    try {
      if (entry.isDirectory()) {
        if (top && EMPTIED.has(entry.name)) await fs.mkdir(target, { mode: 0o700 });
        else await copyDataDirectory(source, target, false);
      } else if (entry.isFile()) {
        await fs.copyFile(source, target);
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
}

/** A byte pipe from a loopback port to a server port that can be switched. */
export class SwitchableProxy {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #target: number;
  port = 0;

  constructor(target: number) {
    this.#target = target;
    this.#server = createServer((client) => {
      const server = connect({ host: '127.0.0.1', port: this.#target });
      for (const socket of [client, server]) {
        this.#sockets.add(socket);
        socket.on('close', () => this.#sockets.delete(socket));
        // Either side failing ends both: the client sees a dropped connection and reconnects.
        socket.on('error', () => {
          client.destroy();
          server.destroy();
        });
      }
      client.pipe(server).on('close', () => client.destroy());
      server.pipe(client).on('close', () => server.destroy());
      client.on('close', () => server.destroy());
      server.on('close', () => client.destroy());
    });
  }

  async listen(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = port;
  }

  /** New connections go to `target`; every open one is dropped. */
  switchTo(target: number): void {
    this.#target = target;
    for (const socket of this.#sockets) socket.destroy();
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

export interface FailoverPorts {
  proxy: number;
  primary: number;
  standby: number;
}

/** What a promotion found and did. */
export interface Promotion {
  /** Logical failover slots the standby had synced (name, synced position) when the primary was killed. */
  syncedSlots: { slot: string; confirmedLsn: string | null }[];
  /** ms from the primary's kill to the promoted standby taking connections through the proxy. */
  downMs: number;
}

export class PostgresFailover {
  readonly primary: LocalPostgres;
  readonly standby: LocalPostgres;
  readonly proxy: SwitchableProxy;
  readonly #log: Logger;
  #promoted = false;

  private constructor(primary: LocalPostgres, standby: LocalPostgres, proxy: SwitchableProxy, log: Logger) {
    this.primary = primary;
    this.standby = standby;
    this.proxy = proxy;
    this.#log = log;
  }

  /** The URL clients use: the proxy's, so they follow a failover without being told. */
  get url(): string {
    return `postgres://${LOCAL_PG_USER}:${LOCAL_PG_PASSWORD}@127.0.0.1:${this.proxy.port}/${LOCAL_PG_DATABASE}`;
  }

  /** Whichever server is the primary now. */
  get current(): LocalPostgres {
    return this.#promoted ? this.standby : this.primary;
  }

  get promoted(): boolean {
    return this.#promoted;
  }

  static async start(config: Config, workDir: string, ports: FailoverPorts, log: Logger): Promise<PostgresFailover> {
    const primaryConfig: Config = { ...config, pgPort: ports.primary };
    const standbyConfig: Config = { ...config, pgPort: ports.standby };
    const primary = new LocalPostgres({ config: primaryConfig, log, dataDir: path.join(workDir, 'primary') });
    const standby = new LocalPostgres({
      config: standbyConfig,
      log,
      dataDir: path.join(workDir, 'standby'),
      settings: {
        // PostgreSQL 17+ slot synchronisation: the standby copies the
        // primary's failover slots, which needs its own physical slot on the
        // primary and feedback (so the primary keeps the catalog rows the
        // synced slots still need).
        sync_replication_slots: 'on',
        hot_standby_feedback: 'on',
        primary_slot_name: STANDBY_SLOT,
      },
    });
    const proxy = new SwitchableProxy(ports.primary);
    await primary.start();
    const failover = new PostgresFailover(primary, standby, proxy, log);
    try {
      await failover.#makeStandby();
      await standby.start();
      await failover.#requireStandby();
      await proxy.listen(ports.proxy);
    } catch (error) {
      await failover.stop();
      throw error;
    }
    return failover;
  }

  async #makeStandby(): Promise<void> {
    const admin = postgres(this.primary.url, { max: 1, onnotice: () => {} });
    try {
      // Reserved now, so the primary keeps every WAL segment from before the backup starts.
      await admin`SELECT pg_create_physical_replication_slot(${STANDBY_SLOT}, true)`;
      await admin`SELECT pg_backup_start('chaos standby', true)`;
      await copyDataDirectory(this.primary.dataDir, this.standby.dataDir);
      const [stopped] = await admin<{ labelfile: string; spcmapfile: string }[]>`SELECT labelfile, spcmapfile FROM pg_backup_stop(false)`;
      await fs.writeFile(path.join(this.standby.dataDir, 'backup_label'), stopped!.labelfile);
      if (stopped!.spcmapfile) await fs.writeFile(path.join(this.standby.dataDir, 'tablespace_map'), stopped!.spcmapfile);
      // The conninfo holds spaces, which the server's command line cannot carry: it goes in the standby's auto.conf.
      const conninfo = `host=127.0.0.1 port=${this.primary.port} user=${LOCAL_PG_USER} password=${LOCAL_PG_PASSWORD} dbname=${LOCAL_PG_DATABASE} application_name=${STANDBY_NAME}`;
      await fs.appendFile(path.join(this.standby.dataDir, 'postgresql.auto.conf'), `primary_conninfo = '${conninfo}'\n`);
      await fs.writeFile(path.join(this.standby.dataDir, 'standby.signal'), '');
      if (process.getuid?.() === 0) {
        const chown = await runCommand('chown', ['-R', `${LOCAL_PG_USER}:${LOCAL_PG_USER}`, this.standby.dataDir]);
        if (chown.code !== 0) throw new OutboxBenchError('POSTGRES_START_FAILED', `chown of the standby's data directory failed: ${chown.stderr.trim()}`);
      }
      await fs.chmod(this.standby.dataDir, 0o700);
    } finally {
      await admin.end({ timeout: 5 });
    }
  }

  /**
   * Once the standby streams: commits wait for it (an acknowledged commit
   * survives the failover), and logical walsenders of failover slots send
   * nothing it has not received (a relay never publishes an event the new
   * primary will not have).
   */
  async #requireStandby(): Promise<void> {
    const admin = postgres(this.primary.url, { max: 1, onnotice: () => {} });
    try {
      for (let attempt = 0; ; attempt++) {
        const [row] = await admin<{ state: string }[]>`SELECT state FROM pg_stat_replication WHERE application_name = ${STANDBY_NAME}`;
        if (row?.state === 'streaming') break;
        if (attempt >= 600) throw new OutboxBenchError('POSTGRES_START_FAILED', `the standby did not start streaming from the primary within 60 s (state ${row?.state ?? 'not connected'}); see ${this.standby.logFile}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await admin.unsafe(`ALTER SYSTEM SET synchronous_standby_names = '${STANDBY_NAME}'`);
      await admin.unsafe(`ALTER SYSTEM SET synchronized_standby_slots = '${STANDBY_SLOT}'`);
      await admin`SELECT pg_reload_conf()`;
    } finally {
      await admin.end({ timeout: 5 });
    }
    this.#log.info({ primary: this.primary.port, standby: this.standby.port }, 'the standby streams from the primary');
  }

  /** Waits until the standby holds a synced, persistent copy of each of `slots`. */
  async waitForSyncedSlots(slots: readonly string[], timeoutMs = 120_000): Promise<void> {
    const standby = postgres(this.standby.url, { max: 1, onnotice: () => {} });
    try {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const rows = await standby<{ slot: string }[]>`SELECT slot_name AS slot FROM pg_replication_slots WHERE slot_name = ANY(${slots as string[]}) AND synced AND NOT temporary`;
        if (rows.length === slots.length) return;
        if (Date.now() > deadline) {
          throw new OutboxBenchError('CHECK_FAILED', `the standby did not sync the failover slots ${slots.join(', ')} within ${timeoutMs / 1_000} s (synced: ${rows.map((r) => r.slot).join(', ') || 'none'})`);
        }
        // Asks the slot-sync worker's work to be done now rather than at its next nap.
        await standby`SELECT pg_sync_replication_slots()`.catch(() => {});
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    } finally {
      await standby.end({ timeout: 5 });
    }
  }

  /** Kills the primary (immediate mode: a crash), promotes the standby and points the proxy at it. */
  async promote(): Promise<Promotion> {
    if (this.#promoted) throw new Error('the standby was promoted already');
    const standby = postgres(this.standby.url, { max: 1, onnotice: () => {} });
    try {
      const syncedSlots = await standby<{ slot: string; confirmedLsn: string | null }[]>`
        SELECT slot_name AS slot, confirmed_flush_lsn::text AS "confirmedLsn" FROM pg_replication_slots WHERE synced`;
      const killedAt = Date.now();
      await this.primary.stop('immediate');
      const [row] = await standby<{ promoted: boolean }[]>`SELECT pg_promote(true, 60) AS promoted`;
      if (!row?.promoted) throw new OutboxBenchError('CHECK_FAILED', `the standby was not promoted within 60 s; see ${this.standby.logFile}`);
      this.#promoted = true;
      this.proxy.switchTo(this.standby.port);
      const downMs = Date.now() - killedAt;
      this.#log.info({ downMs, syncedSlots }, 'failed over to the standby');
      return { syncedSlots, downMs };
    } finally {
      await standby.end({ timeout: 5 });
    }
  }

  async stop(): Promise<void> {
    await this.proxy.close().catch(() => {});
    await this.standby.stop('fast').catch(() => {});
    await this.primary.stop('fast').catch(() => {});
  }
}
