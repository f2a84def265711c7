/**
 * `npm run chaos`: the crash-injection matrix, which is the runner's `chaos`
 * (bench/scenarios/chaos.ts): `node dist/bench/chaos.js [flags]` is
 * `node dist/bench/run.js chaos [flags]`, so the commands recorded with it
 * replay as they are.
 */
import { runBench } from './runner/main.js';

runBench(['chaos', ...process.argv.slice(2)]).then((code) => process.exit(code));
