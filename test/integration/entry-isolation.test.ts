/**
 * Importing the embedded engine (`reward-pool-engine`, dist/src/index.js) must not load the
 * service's dependencies (nor the server entry grpc-js, which only a gRPC endpoint needs). A child process runs with a module resolve hook (registered with
 * `--import`) that throws on any import resolving into fastify, prom-client, undici or their
 * dependencies, and checks require.cache afterwards for CommonJS loads the hook cannot see. The
 * hook is proven to work by the server and client entries, which it must refuse.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { fixture } from '../helpers/engine.js';
import { cliPath, root } from '../helpers/server.js';
import { tmpDir } from '../helpers/tmp.js';

function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  return runForbidding(undefined, ...args);
}

/** Run node with the hook; `forbid` narrows the refused packages (a regular expression). */
function runForbidding(forbid: string | undefined, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const env = { ...process.env, ...(forbid === undefined ? {} : { RPE_FORBID: forbid }) };
  const r = spawnSync(process.execPath, ['--import', fixture('forbid-service-deps.mjs'), ...args], { cwd: root, encoding: 'utf8', timeout: 30_000, env });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('the main entry loads no service dependency', () => {
  it('the server entry does not load grpc until a gRPC server is created', () => {
    const r = runForbidding('@grpc/[^/]+|protobufjs', fixture('import-entry.mjs'), 'dist/src/server/index.js');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('imports and runs an engine without fastify, prom-client, undici or grpc', () => {
    const r = run(fixture('import-entry.mjs'), 'dist/src/index.js', '--use');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^ok \d+/);
  });

  it('the CLI’s other commands do not load them either', () => {
    const r = run(cliPath, 'inspect', tmpDir('empty'));
    expect(r.stderr).not.toContain('forbidden');
    expect(r.status).toBe(3); // not a data directory: the command ran
  });

  it('the hook refuses the server and client entries (so it does see imports)', () => {
    for (const entry of ['dist/src/server/index.js', 'dist/src/client/index.js']) {
      const r = run(fixture('import-entry.mjs'), entry);
      expect(r.status, entry).not.toBe(0);
      expect(r.stderr).toContain('forbidden import of a service dependency');
    }
  });
});
