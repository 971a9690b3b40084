/**
 * `reward-pool-engine serve` as a user runs it: --help lists every flag (and the README
 * documents each), flags override the config file, paths in the file are relative to it, the
 * loopback-only rule without keys (exit 2), invalid configs (exit 2), a locked directory
 * (exit 4), the gRPC endpoint beside HTTP, and SIGINT closes cleanly (exit 0).
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RewardPoolClient } from '../../dist/src/client/index.js';
import { kServeFlags } from '../../dist/src/server/config.js';
import { collect, useChildren } from '../helpers/engine.js';
import { cliPath, keys, listeningUrl, root, stdoutMatch, tokens, writeConfig } from '../helpers/server.js';
import { tmpDir } from '../helpers/tmp.js';

const spawnChild = useChildren();

function serveSync(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cliPath, 'serve', ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function serveAsync(...args: string[]): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cliPath, 'serve', ...args], { encoding: 'utf8', timeout: 30_000 }, (err, _stdout, stderr) => {
      resolve({ status: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stderr });
    });
  });
}

describe('serve --help', () => {
  it('lists every flag, each documented in the README too', () => {
    const r = serveSync('--help');
    expect(r.status).toBe(0);
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    for (const [name] of kServeFlags) {
      expect(r.stdout).toContain(`--${name}`);
      expect(readme, `README documents --${name}`).toContain(`--${name}`);
    }
  });

  it('an unknown command, even an Object.prototype name, is a usage error', () => {
    for (const name of ['constructor', 'toString', 'nope']) {
      const r = spawnSync(process.execPath, [cliPath, name], { encoding: 'utf8' });
      expect(r.status, name).toBe(2);
      expect(r.stderr).toContain(`unknown command "${name}"`);
    }
  });
});

describe('refusals (exit 2)', () => {
  it('a non-loopback host without keys', () => {
    const dir = tmpDir('refuse');
    for (const args of [['--host', '0.0.0.0'], ['--host', '::'], ['--config', writeConfig(dir, { listen: { host: '10.0.0.1' } })]]) {
      const r = serveSync('--dir', join(dir, 'data'), '--port', '0', ...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toContain('must be a loopback address');
      expect(r.stderr).toContain('ERR_INVALID_CONFIG');
    }
    expect(existsSync(join(dir, 'data')), 'the engine was never opened').toBe(false);
  });

  it('invalid configs and flags, naming the field', async () => {
    const dir = tmpDir('invalid');
    const notJson = join(dir, 'not.json');
    writeFileSync(notJson, '{"engine": ');
    const cases: [string[], string][] = [
      [['--config', writeConfig(dir, { engine: { wal: 'none' }, listen: { port: 70000 } }, 'a.json')], 'config.listen.port must be an integer from 0 to 65535, got 70000'],
      [['--config', writeConfig(dir, { engine: { dir: 'd', shards: 0 } }, 'b.json')], 'config engine: options.shards must be an integer from 1 to 256, got 0'],
      [['--config', writeConfig(dir, { engine: { wal: 'none' }, colour: 'blue' }, 'c.json')], 'config.colour is not a known field'],
      [['--config', writeConfig(dir, { engine: { wal: 'none' }, auth: { keys: [{ id: 'k', token: 'short', scopes: ['read'] }] } }, 'd.json')], 'config.auth.keys[0].token must be a string of at least 16'],
      [['--config', writeConfig(dir, { engine: { wal: 'none' }, tls: { cert: 'c.pem' } }, 'e.json')], 'config.tls needs both cert and key'],
      [['--config', writeConfig(dir, { engine: { wal: 'none' }, limits: { maxDrawCount: 2 ** 25 } }, 'f.json')], 'config.limits.maxDrawCount must be an integer from 1 to 16777216'],
      [['--config', join(dir, 'missing.json')], 'cannot be read'],
      [['--config', notJson], 'is not valid JSON'],
      [['--port', '0'], 'a data directory is required: --dir or config.engine.dir'],
      [['--dir', join(dir, 'x'), '--port', 'eighty'], '--port must be an integer, got "eighty"'],
      [['--dir', join(dir, 'x'), '--sync', 'sometimes'], "options.sync must be one of 'always', 'interval', 'never'"],
      [['--dir', join(dir, 'x'), '--log-level', 'loud'], 'config.server.logLevel must be one of'],
      [['--dir', join(dir, 'x'), '--tls-cert', join(dir, 'no.pem'), '--tls-key', join(dir, 'no.key')], 'TLS certificate file'],
      [['--bogus'], "Unknown option '--bogus'"],
      [['--wal', 'none', '--grpc-host', '127.0.0.1'], 'config.grpc.port is required to serve gRPC'],
      [['--wal', 'none', '--grpc-port', '0', '--grpc-host', '0.0.0.0'], 'the gRPC host (--grpc-host, config.grpc.host) must be a loopback address'],
    ];
    // Side by side: each is a process that exits at once.
    const results = await Promise.all(cases.map(([args]) => serveAsync(...args)));
    results.forEach((r, i) => {
      const [args, message] = cases[i]!;
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(message);
    });
  });
});

describe('running', () => {
  it('flags override the file, file paths are relative to the file, SIGINT closes with exit 0', async () => {
    const dir = tmpDir('run');
    const config = writeConfig(dir, { engine: { dir: 'data', shards: 2, segmentBytes: 1 << 20 }, listen: { host: '127.0.0.1', port: 1 }, auth: { keys } });
    const child = spawnChild(process.execPath, [cliPath, 'serve', '--config', config, '--port', '0', '--shards', '1', '--max-draw-count', '10', '--grpc-port', '0', '--grpc-default-pool', 'p'], { cwd: root });
    const done = collect(child);
    const grpcLine = stdoutMatch(child, /grpc listening on 127\.0\.0\.1:(\d+)/);
    const url = await listeningUrl(child);
    expect(Number((await grpcLine)[1])).toBeGreaterThan(0);
    expect(existsSync(join(dir, 'data', 'shard-0'))).toBe(true);
    const client = new RewardPoolClient({ url, token: tokens.all });
    try {
      expect((await client.metrics()).shards).toHaveLength(1);
      await client.createPool('p', [{ id: 'a', weight: 1, quantity: -1 }]);
      await expect(client.drawMany('p', 11)).rejects.toMatchObject({ code: 'ERR_INVALID_REQUEST', message: 'body/count must be <= 10' });
      expect((await client.drawMany('p', 10)).count).toBe(10);
    } finally {
      await client.close();
    }
    // A second server on the same directory: the engine's lock refuses it (exit 4).
    const second = serveSync('--config', config, '--port', '0');
    expect(second.status).toBe(4);
    expect(second.stderr).toContain('ERR_DIR_LOCKED');
    child.kill('SIGINT');
    const r = await done;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('SIGINT: closing');
  });
});
