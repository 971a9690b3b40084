/**
 * `npm run bench`: the benchmark suite (see suite.ts; `npm run bench -- --help`).
 * Kept under its historical name so `node dist/bench/e2e/engine-throughput.js` still works.
 * Also the entry of the child processes of scenarios that need other Node flags (child.ts).
 */
import { childMain, kChildEnv } from './child.js';
import { run } from './suite.js';

const child = process.env[kChildEnv];
process.exitCode = child === undefined ? await run(process.argv.slice(2)) : await childMain(child);
