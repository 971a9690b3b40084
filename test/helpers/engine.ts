/**
 * Shared helpers for the integration tests. They drive the BUILT package (dist/), so run
 * `npm run build` after changing src/ or workers/. The files of a data directory (segments,
 * records, snapshots, hashes) are read with ./wal-files.ts.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect } from 'vitest';
import { DrawEngine, EngineError } from '../../dist/src/index.js';
import { nativeBinding } from '../../dist/src/native/index.js';
import type { DrawEngineOptions, ErrorCode, PoolState } from '../../dist/src/index.js';

export { DrawEngine, EngineError };
export type { PoolState };

/** Pool states by id, as allStates returns them. */
export type States = Record<string, PoolState>;

const native = nativeBinding();

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** Absolute path of a fixture script under test/fixtures. */
export function fixture(name: string): string {
  return fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));
}

/**
 * Engines opened through the returned function are closed after each test (even when the test
 * failed half-way). Call once at the top level of a test file.
 */
export function useEngines(): (options: DrawEngineOptions) => Promise<DrawEngine> {
  const open: DrawEngine[] = [];
  afterEach(async () => {
    const engines = open.splice(0);
    await Promise.allSettled(engines.map((e) => e.close()));
  });
  return async (options) => {
    const engine = await DrawEngine.open(options);
    open.push(engine);
    return engine;
  };
}

/** Child processes started through the returned function are SIGKILLed after each test. */
export function useChildren(): (cmd: string, args: string[], opts?: SpawnOptions) => ChildProcess {
  const live: ChildProcess[] = [];
  afterEach(() => {
    for (const c of live.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });
  return (cmd, args, opts = {}) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    live.push(child);
    return child;
  };
}

/** Resolves with the exit code/signal and everything the child printed. */
export function collect(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/**
 * Assert that `promise` rejects with an EngineError of `code` whose message contains every
 * string in `contains`. Returns the error for further checks.
 */
export async function expectCode(promise: Promise<unknown>, code: ErrorCode, ...contains: string[]): Promise<EngineError> {
  let err: unknown;
  try {
    await promise;
  } catch (e) {
    err = e;
  }
  expect(err, `expected a rejection with ${code}`).toBeDefined();
  expect(err).toBeInstanceOf(EngineError);
  const e = err as EngineError;
  expect(e.code, e.message).toBe(code);
  for (const s of contains) expect(e.message).toContain(s);
  return e;
}

/**
 * The directory's LOCK is free: its flock can be taken (and is given back at once). The file
 * itself stays after close: it is never deleted, only unlocked.
 */
export function expectUnlocked(dir: string): void {
  const fd = openSync(join(dir, 'LOCK'), 'r');
  try {
    expect(native.flock(fd, native.LOCK_EX | native.LOCK_NB), `${dir}/LOCK is still held`).toBe(true);
  } finally {
    closeSync(fd);
  }
}

/** Every pool's state, by id (ids sorted, so two snapshots compare with toEqual). */
export async function allStates(engine: DrawEngine): Promise<States> {
  const ids = engine.poolIds().sort();
  const states = await Promise.all(ids.map((id) => engine.pool(id)));
  // fromEntries defines own properties, so ids such as '__proto__' are ordinary keys here too.
  return Object.fromEntries(states.map((s) => [s.id, s]));
}

export function maxLastRequestId(states: States): number {
  return Math.max(0, ...Object.values(states).map((s) => s.lastRequestId));
}

/** Which shard owns `poolId`: one draw, then see whose counter moved. Nothing else may run meanwhile. */
export async function shardOfPool(engine: DrawEngine, poolId: string): Promise<number> {
  const before = engine.metrics().shards.map((s) => s.draws);
  await engine.draw(poolId);
  const after = engine.metrics().shards.map((s) => s.draws);
  const moved = after.map((d, k) => d - before[k]!);
  const k = moved.findIndex((d) => d > 0);
  expect(moved.filter((d) => d > 0)).toHaveLength(1);
  return k;
}

// ---- catalogs ----

export interface Item {
  id: string;
  weight: number;
  quantity: number;
}

/** Total number of units of limited items (the catalog must have no unlimited item). */
export function units(items: Item[]): number {
  return items.reduce((a, i) => a + i.quantity, 0);
}

/** A catalog of n items with ids i0..i(n-1). */
export function bigCatalog(n: number, quantity = 1000): Item[] {
  return Array.from({ length: n }, (_, i) => ({ id: `i${i}`, weight: 1 + (i % 7), quantity: i % 5 === 0 ? -1 : quantity }));
}
