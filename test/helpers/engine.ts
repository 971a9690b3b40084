/**
 * Shared helpers for the integration tests. They drive the BUILT package (dist/), so run
 * `npm run build` after changing src/ or workers/.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect } from 'vitest';
import { DrawEngine, EngineError } from '../../dist/src/index.js';
import type { DrawEngineOptions, ErrorCode, PoolState } from '../../dist/src/index.js';

export { DrawEngine, EngineError };
export type { PoolState };

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

/** Every pool's state, by id (ids sorted, so two snapshots compare with toEqual). */
export async function allStates(engine: DrawEngine): Promise<Record<string, PoolState>> {
  const ids = engine.poolIds().sort();
  const states = await Promise.all(ids.map((id) => engine.pool(id)));
  const out: Record<string, PoolState> = {};
  for (const s of states) out[s.id] = s;
  return out;
}

export function maxLastRequestId(states: Record<string, PoolState>): number {
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

// ---- WAL files (the on-disk rules of DESIGN.md) ----

export const kHeaderBytes = 64;
export const kRecDraw8 = 1;
export const kRecDraw16 = 2;
export const kRecPoolRef = 3;
export const kRecCreatePool = 4;
export const kRecUpdateItem = 5;

export interface WalRecord {
  /** Offset of the record frame (its u32 length) in the segment. */
  offset: number;
  len: number;
  /** Offset just past the record and its padding. */
  end: number;
  type: number;
}

export interface DrawRecord extends WalRecord {
  ref: number;
  firstRequestId: number;
  count: number;
  /** Item index per draw; -1 for an empty draw. */
  indices: number[];
}

export function align4(n: number): number {
  return (n + 3) & ~3;
}

/** Records of a segment file: [u32 len][u32 crc][body][pad to 4] after a 64-byte header; a zero length ends the data. */
export function scanRecords(buf: Buffer): { records: WalRecord[]; end: number } {
  const records: WalRecord[] = [];
  let p = kHeaderBytes;
  while (p + 8 <= buf.length) {
    const len = buf.readUInt32LE(p);
    if (len === 0) break;
    const end = p + align4(8 + len);
    records.push({ offset: p, len, end, type: buf[p + 8]! });
    p = end;
  }
  return { records, end: p };
}

export function decodeDraw(buf: Buffer, rec: WalRecord): DrawRecord {
  const body = rec.offset + 8;
  const width = rec.type === kRecDraw8 ? 1 : 2;
  const count = buf.readUInt32LE(body + 16);
  const indices: number[] = [];
  for (let i = 0; i < count; i++) {
    const v = width === 1 ? buf[body + 20 + i]! : buf.readUInt16LE(body + 20 + 2 * i);
    indices.push(v === (width === 1 ? 0xff : 0xffff) ? -1 : v);
  }
  return { ...rec, ref: buf.readUInt32LE(body + 4), firstRequestId: buf.readDoubleLE(body + 8), count, indices };
}

/** Shard directory numbers under dir. */
export function shardDirs(dir: string): number[] {
  return readdirSync(dir)
    .map((n) => /^shard-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
}

/** Segment files of one shard directory, oldest first (absolute paths). */
export function segmentFiles(dir: string, shard: number): string[] {
  const sd = join(dir, `shard-${shard}`);
  return readdirSync(sd)
    .filter((n) => /^\d+\.wal$/.test(n))
    .sort()
    .map((n) => join(sd, n));
}

export function allSegmentFiles(dir: string): string[] {
  return shardDirs(dir).flatMap((k) => segmentFiles(dir, k));
}

export function readRecords(file: string): { buf: Buffer; records: WalRecord[]; end: number } {
  const buf = readFileSync(file);
  return { buf, ...scanRecords(buf) };
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
