/**
 * Helpers for the service tests: API keys, servers built with createServer (closed after each
 * test), `serve` child processes, and a before/after check that a request changed nothing.
 * Like ./engine.ts they drive the BUILT package (dist/).
 */
import { createHash } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect } from 'vitest';
import { createServer, type ServerOptions, type ServiceApp } from '../../dist/src/server/index.js';
import { allStates, DrawEngine, type States } from './engine.js';

export { createServer };
export type { ServiceApp };

export const root = fileURLToPath(new URL('../..', import.meta.url));
export const cliPath = join(root, 'dist/src/cli.js');

/** One token per scope set; at least 16 visible ASCII characters each. */
export const tokens = {
  all: 'tok-all-0123456789abcdef',
  draw: 'tok-draw-0123456789abcdef',
  read: 'tok-read-0123456789abcdef',
  admin: 'tok-admin-0123456789abcdef',
  metrics: 'tok-metrics-0123456789abcdef',
} as const;

export const sha256Hex = (s: string): string => createHash('sha256').update(s).digest('hex');

/** Keys for `tokens`; the read key is given as a digest, the others as tokens. */
export const keys: NonNullable<ServerOptions['auth']>['keys'] = [
  { id: 'all', token: tokens.all, scopes: ['draw', 'read', 'admin', 'metrics'] },
  { id: 'draw', token: tokens.draw, scopes: ['draw'] },
  { id: 'read', sha256: sha256Hex(tokens.read), scopes: ['read'] },
  { id: 'admin', token: tokens.admin, scopes: ['admin'] },
  { id: 'metrics', token: tokens.metrics, scopes: ['metrics'] },
];

export const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });

export interface Served {
  engine: DrawEngine;
  app: ServiceApp;
}

/**
 * Engines and servers opened through the returned function are closed after each test (the
 * server closes its engine). Call once at the top level of a test file.
 */
export function useServers(): (engineOptions: Parameters<typeof DrawEngine.open>[0], serverOptions?: ServerOptions) => Promise<Served> {
  const open: Served[] = [];
  afterEach(async () => {
    const served = open.splice(0);
    await Promise.allSettled(served.map(async (s) => {
      await s.app.close();
      await s.engine.close();
    }));
  });
  return async (engineOptions, serverOptions = { auth: { keys } }) => {
    const engine = await DrawEngine.open(engineOptions);
    const app = createServer(engine, serverOptions);
    open.push({ engine, app });
    await app.ready();
    return { engine, app };
  };
}

/** Everything a rejected request must leave as it was: every pool's state and the engine's draw counters. */
export async function stateOf(engine: DrawEngine): Promise<{ ids: string[]; states: States; draws: number; records: number; walBytes: number }> {
  const m = engine.metrics();
  return { ids: engine.poolIds().sort(), states: await allStates(engine), draws: m.draws, records: m.records, walBytes: m.walBytes };
}

/** Run fn and assert that the engine's state did not change. */
export async function expectUnchanged(engine: DrawEngine, fn: () => Promise<unknown>): Promise<void> {
  const before = await stateOf(engine);
  await fn();
  expect(await stateOf(engine)).toEqual(before);
}

/** A config file for `serve` in dir; returns its path. */
export function writeConfig(dir: string, config: unknown, name = 'serve.json'): string {
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

/**
 * Wait for a `serve` child to print "listening on <url>"; rejects with its output if it exits
 * first or takes longer than timeoutMs.
 */
export function listeningUrl(child: ChildProcess, timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`serve did not listen within ${timeoutMs} ms\nstdout: ${out}\nstderr: ${err}`)), timeoutMs);
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`serve exited (${code ?? signal}) before listening\nstdout: ${out}\nstderr: ${err}`));
    });
  });
}

/** Resolves with the first match of `re` in a child's stdout (from now on). */
export function stdoutMatch(child: ChildProcess, re: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`no ${re} on stdout within ${timeoutMs} ms: ${out}`)), timeoutMs);
    const onData = (d: Buffer): void => {
      out += d.toString();
      const m = re.exec(out);
      if (m) {
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        resolve(m);
      }
    };
    child.stdout?.on('data', onData);
  });
}
