/**
 * The benchmark runner: `node dist/bench/run.js <scenario...|all|chaos> [flags]`
 * (bench/runner/main.ts). `--help` lists every scenario and flag.
 */
import { runBench } from './runner/main.js';

runBench(process.argv.slice(2)).then((code) => process.exit(code));
