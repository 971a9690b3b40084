#!/usr/bin/env node
/**
 * reward-pool-engine CLI. Subcommands live in src/cli/<name>-command.ts and export
 * `run(argv: string[]): Promise<number>` (the exit code).
 */
import { readFileSync } from 'node:fs';

const usage = `usage: reward-pool-engine <command> [options]

commands:
  recover <dir>        recover a data directory and print the recovery report
  inspect <dir>        list segments, records per type, checksums and the snapshot chain
  serve [options]      serve the engine over HTTP (see: reward-pool-engine serve --help)
  help [command]       this text, or a command's own help
options:
  --version, -v        print the version
  --help, -h           print this text

The benchmark suite runs from a checkout of the repository: npm ci && npm run bench
`;

type Command = () => Promise<{ run(argv: string[]): Promise<number> }>;
const commands = new Map<string, Command>([
  ['recover', () => import('./cli/recover-command.js')],
  ['inspect', () => import('./cli/inspect-command.js')],
  // Loaded only for this command: fastify and prom-client stay out of the other commands.
  ['serve', () => import('./cli/serve-command.js')],
]);

function version(): string {
  // dist/src/cli.js -> package.json two levels up (src/cli.ts the same under vitest).
  const pkg = JSON.parse(readFileSync(new URL(import.meta.url.endsWith('.ts') ? '../package.json' : '../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--version' || name === '-v') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  if (name === 'help' && rest.length > 0) return main([rest[0]!, '--help']);
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? process.stderr : process.stdout).write(usage);
    return name === undefined ? 2 : 0;
  }
  const load = commands.get(name);
  if (load === undefined) {
    process.stderr.write(`reward-pool-engine: unknown command ${JSON.stringify(name)}\n${usage}`);
    return 2;
  }
  const command = await load();
  return command.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const e = err as { code?: string; message?: string };
    process.stderr.write(`reward-pool-engine: ${e?.code ? `${e.code}: ` : ''}${e?.message ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
