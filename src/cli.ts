#!/usr/bin/env node
/**
 * reward-pool-engine CLI. Subcommands live in src/cli/<name>-command.ts and export
 * `run(argv: string[]): Promise<number>` (the exit code).
 */
const usage = `usage: reward-pool-engine <command> [options]

commands:
  bench [options]      run the benchmark suite (see: reward-pool-engine bench --help)
  recover <dir>        recover a data directory and print the recovery report
  inspect <dir>        list segments, records per type, checksums and the snapshot chain
  serve [options]      serve the engine over HTTP (see: reward-pool-engine serve --help)
`;

const commands: Record<string, () => Promise<{ run(argv: string[]): Promise<number> }>> = {
  bench: () => import('./cli/bench-command.js'),
  recover: () => import('./cli/recover-command.js'),
  inspect: () => import('./cli/inspect-command.js'),
  // Loaded only for this command: fastify and prom-client stay out of the other commands.
  serve: () => import('./cli/serve-command.js'),
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage);
    return name === undefined ? 2 : 0;
  }
  // Own properties only: `reward-pool-engine constructor` is an unknown command, not a crash.
  const load = Object.hasOwn(commands, name) ? commands[name] : undefined;
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
