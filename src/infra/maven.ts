/**
 * Fetching jars from Maven Central with `mvn dependency:copy-dependencies`
 * into a cache folder, once. The marker file is written last, so an
 * interrupted fetch is redone rather than half-used.
 */
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { OutboxBenchError } from '../errors.js';
import type { Logger } from '../log.js';
import { commandExists, lastLines, runCommand } from './processes.js';

export interface FetchJarsOptions {
  /** The pom whose dependencies are fetched. */
  pom: string;
  /** -D properties for the pom (versions). */
  properties: Readonly<Record<string, string>>;
  /** Folder that receives libs/ and the marker. */
  home: string;
  /** What is fetched, for messages ("Apache Kafka 4.1.1"). */
  what: string;
  /** Said when Maven is missing or fails: the alternative to fetching. */
  alternative: string;
  log: Logger;
}

const COMPLETE_MARKER = '.complete';

/** Returns the folder holding the jars, fetching them first if needed. */
export async function fetchJars(options: FetchJarsOptions): Promise<string> {
  const libDir = path.join(options.home, 'libs');
  if (existsSync(path.join(options.home, COMPLETE_MARKER))) return libDir;
  if (!(await commandExists('mvn', ['-v']))) {
    throw new OutboxBenchError(
      'MAVEN_MISSING',
      `Maven (mvn) is needed once to fetch ${options.what} from Maven Central, and it is not on PATH. ` +
        `Install it (Debian/Ubuntu: apt-get install maven; macOS: brew install maven), or ${options.alternative}.`,
    );
  }
  options.log.info({ what: options.what, into: libDir }, 'fetching jars from Maven Central (first run only)');
  const staging = `${libDir}.partial-${process.pid}`;
  await fs.rm(staging, { recursive: true, force: true });
  await fs.mkdir(options.home, { recursive: true });
  const result = await runCommand('mvn', [
    '-B',
    '-q',
    '-f',
    options.pom,
    ...Object.entries(options.properties).map(([key, value]) => `-D${key}=${value}`),
    'dependency:copy-dependencies',
    `-DoutputDirectory=${staging}`,
    '-DincludeScope=runtime',
  ]);
  if (result.code !== 0) {
    await fs.rm(staging, { recursive: true, force: true });
    throw new OutboxBenchError(
      'MAVEN_FETCH_FAILED',
      `mvn could not fetch ${options.what} (exit ${result.code}). Check that Maven Central is reachable (proxy settings in ` +
        `~/.m2/settings.xml) and that the version exists, or ${options.alternative}.\n${lastLines(result.stdout + result.stderr, 20)}`,
      { retriable: true },
    );
  }
  await fs.rm(libDir, { recursive: true, force: true });
  await fs.rename(staging, libDir);
  await fs.writeFile(path.join(options.home, COMPLETE_MARKER), `${new Date().toISOString()}\n`);
  return libDir;
}
