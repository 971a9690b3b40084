import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import type { ItemSpec } from '../../src/catalog.js';
import { EngineError } from '../../src/errors.js';
import { Sfc32 } from '../../src/prng.js';
import { applySpan } from '../../src/recovery/fold.js';
import type { PoolData as RecoveredPool } from '../../src/pool-state.js';
import { mergeSpan, newSpanSummary, SegmentSummarizer, type SpanSummary } from '../../src/recovery/summary.js';
import { kEmptyDraw, WeightedSelector } from '../../src/selector.js';
import {
  kCreateHeaderBytes,
  kDrawHeaderBytes,
  kPoolRefHeaderBytes,
  kRecCreatePool,
  kRecDraw16,
  kRecDraw8,
  kRecPoolRef,
  kRecUpdateItem,
  kUpdateBodyBytes,
} from '../../src/wal/format.js';
import { scanSegment } from '../../src/wal/reader.js';
import { realStorage } from '../../src/storage/real-storage.js';
import { FileWalWriter } from '../../src/wal/file-writer.js';
import { MmapWalWriter } from '../../src/wal/mmap-writer.js';
import { tmpDir } from '../helpers/tmp.js';
import { segmentFiles, writerOptions } from '../helpers/wal-files.js';

// ---------------------------------------------------------------------------------------------
// A random history generator with a reference model: WeightedSelector per pool, driven by a
// seeded Sfc32, so draws always have outcomes the real engine could have produced.

interface PoolDef {
  id: string;
  items: ItemSpec[];
}

type Op =
  | { kind: 'create'; pool: number }
  | { kind: 'draw'; pool: number; first: number; indices: Uint16Array }
  | { kind: 'update'; pool: number; item: number; weight: number; quantity: number };

interface History {
  pools: PoolDef[];
  ops: Op[];
  /** states[i]: every created pool's state before ops[i] (states[ops.length] is the final state). */
  states: Map<string, RecoveredPool>[];
  emptyDraws: number[];
  totalDraws: number;
}

function poolDefs(rng: Sfc32): PoolDef[] {
  const ids = (n: number, p: string): string[] => Array.from({ length: n }, (_, i) => `${p}${i}`);
  return [
    {
      id: 'alpha',
      items: [
        { id: 'diamond', weight: 10, quantity: 5 },
        { id: 'gold', weight: 20, quantity: 20 },
        { id: 'silver', weight: 30, quantity: 60 },
        { id: 'rock', weight: 40, quantity: 200 },
        { id: 'mud', weight: 70, quantity: -1 },
        { id: 'log', weight: 50, quantity: -1 },
      ],
    },
    // 260 items: draws are logged with two bytes each.
    {
      id: 'beta',
      items: ids(260, 'b').map((id) => ({ id, weight: 1 + rng.below(50), quantity: rng.below(5) === 0 ? -1 : rng.below(30) })),
    },
    // Small stock: runs dry often, so empty draws and revivals happen.
    {
      id: 'gamma',
      items: [
        { id: 'x', weight: 1, quantity: 3 },
        { id: 'y', weight: 2, quantity: 4 },
        { id: 'z', weight: 3, quantity: 5 },
      ],
    },
  ];
}

function stateOf(pools: PoolDef[], sels: (WeightedSelector | undefined)[], last: number[]): Map<string, RecoveredPool> {
  const m = new Map<string, RecoveredPool>();
  pools.forEach((p, k) => {
    const s = sels[k];
    if (s === undefined) return;
    m.set(p.id, {
      id: p.id,
      itemIds: p.items.map((i) => i.id),
      weights: Array.from(s.weights),
      quantities: Array.from(s.quantities),
      drawn: Array.from(s.drawn),
      lastRequestId: last[k]!,
    });
  });
  return m;
}

function generate(seed: number, nOps: number): History {
  const rng = Sfc32.fromSeed(seed, 7);
  const pools = poolDefs(rng);
  const sels: (WeightedSelector | undefined)[] = pools.map(() => undefined);
  const last = pools.map(() => 0);
  const emptyDraws = pools.map(() => 0);
  const ops: Op[] = [];
  const states: Map<string, RecoveredPool>[] = [];
  let nextId = 1;
  let created = 0;
  for (let o = 0; o < nOps; o++) {
    states.push(stateOf(pools, sels, last));
    if (created === 0 || (created < pools.length && rng.below(10) === 0)) {
      const k = created++;
      const p = pools[k]!;
      sels[k] = new WeightedSelector(
        p.items.map((i) => i.weight),
        p.items.map((i) => i.quantity),
      );
      ops.push({ kind: 'create', pool: k });
      continue;
    }
    const k = rng.below(created);
    const sel = sels[k]!;
    if (rng.below(10) < 6) {
      const count = 1 + rng.below(rng.below(4) === 0 ? 3000 : 300);
      const indices = new Uint16Array(count);
      emptyDraws[k]! += sel.drawInto(rng, count, indices, 0);
      ops.push({ kind: 'draw', pool: k, first: nextId, indices });
      nextId += count;
      last[k] = nextId - 1;
    } else {
      const item = rng.below(sel.size);
      const what = rng.below(3);
      const weight = what !== 1 ? 1 + rng.below(100) : NaN;
      const quantity = what !== 0 ? (rng.below(4) === 0 ? -1 : rng.below(40)) : NaN;
      sel.update(item, weight, quantity);
      ops.push({ kind: 'update', pool: k, item, weight, quantity });
    }
  }
  states.push(stateOf(pools, sels, last));
  return { pools, ops, states, emptyDraws, totalDraws: nextId - 1 };
}

// ---------------------------------------------------------------------------------------------
// Writing a span of the history with the real writer, and summarizing what it wrote.

/** Write ops[from, to) as one run of a shard would (pools created earlier are registered). */
async function writeSpan(h: History, from: number, to: number, dir: string, segmentBytes: number, kind: 'mmap' | 'file'): Promise<void> {
  const opts = writerOptions(dir, realStorage, { segmentBytes });
  const w = kind === 'mmap' ? new MmapWalWriter(opts).start() : new FileWalWriter(opts).start();
  for (let o = 0; o < from; o++) {
    const op = h.ops[o]!;
    if (op.kind === 'create') w.registerPool(op.pool, h.pools[op.pool]!.id, h.pools[op.pool]!.items.length);
  }
  for (let o = from; o < to; o++) {
    const op = h.ops[o]!;
    const p = h.pools[op.pool]!;
    if (op.kind === 'create') {
      w.registerPool(op.pool, p.id, p.items.length);
      w.appendCreate(op.pool, pack({ id: p.id, items: p.items }));
    } else if (op.kind === 'draw') {
      w.appendDraws(op.pool, op.first, op.indices, 0, op.indices.length);
    } else {
      w.appendUpdate(op.pool, op.item, op.weight, op.quantity);
    }
    if (o % 5 === 0) w.commit();
  }
  w.commit();
  await w.close();
}

/** One SpanSummary per segment file of dir/shard-0, oldest first. */
function summarizeSegments(dir: string): SpanSummary[] {
  const files = segmentFiles(dir);
  return files.map((file, i) => {
    const s = new SegmentSummarizer();
    const res = scanSegment(readFileSync(file), { file, newest: i === files.length - 1 }, s.visit);
    expect(res.torn).toBeUndefined();
    return s.span;
  });
}

function fold(spans: SpanSummary[]): SpanSummary {
  const acc = newSpanSummary();
  for (const s of spans) mergeSpan(acc, s);
  return acc;
}

/** A comparable plain form of a summary (typed arrays to arrays; NaN kept as NaN). */
function plain(span: SpanSummary): unknown {
  return {
    draws: span.draws,
    maxRequestId: span.maxRequestId,
    pools: [...span.pools.values()]
      .sort((a, b) => (a.poolId < b.poolId ? -1 : 1))
      .map((p) => ({
        poolId: p.poolId,
        itemCount: p.itemCount,
        created: p.created,
        lastRequestId: p.lastRequestId,
        emptyDraws: p.emptyDraws,
        draws: Array.from(p.draws),
        drawsAfterSetQ: Array.from(p.drawsAfterSetQ),
        setQ: Array.from(p.setQ),
        setW: Array.from(p.setW),
      })),
  };
}

function plainPools(pools: Map<string, RecoveredPool>): unknown {
  return [...pools.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
}

function clonePools(pools: Map<string, RecoveredPool>): Map<string, RecoveredPool> {
  return new Map([...pools].map(([k, p]) => [k, { ...p, itemIds: [...p.itemIds], weights: [...p.weights], quantities: [...p.quantities], drawn: [...p.drawn] }]));
}

/** Sorted random cut points in (0, n). */
function cuts(rng: Sfc32, n: number, k: number): number[] {
  const set = new Set<number>();
  while (set.size < k) set.add(1 + rng.below(n - 1));
  return [...set].sort((a, b) => a - b);
}

// ---------------------------------------------------------------------------------------------

describe('span summaries: folding spans equals applying the whole history (property, fixed seeds)', () => {
  it.each([1, 2, 3, 4, 5, 6])('seed %i', async (seed) => {
    const h = generate(seed, 160);
    const n = h.ops.length;
    const final = h.states[n]!;
    expect(final.size).toBe(3);
    const rng = Sfc32.fromSeed(seed, 99);

    // The whole history in one segment.
    const wholeDir = tmpDir(`summary-whole-${seed}`);
    await writeSpan(h, 0, n, wholeDir, 1 << 20, seed % 2 === 0 ? 'mmap' : 'file');
    const wholeSegs = summarizeSegments(wholeDir);
    expect(wholeSegs).toHaveLength(1);
    const whole = wholeSegs[0]!;
    expect(whole.draws).toBe(h.totalDraws);
    expect(whole.maxRequestId).toBe(h.totalDraws);
    const fromWhole = new Map<string, RecoveredPool>();
    applySpan(fromWhole, whole);
    expect(plainPools(fromWhole)).toEqual(plainPools(final));
    h.pools.forEach((p, k) => expect(whole.pools.get(p.id)!.emptyDraws, `${p.id} empty draws`).toBe(h.emptyDraws[k]));

    // Split at random boundaries; each span written by its own writer with small segments, so
    // spans are split again by rotation.
    const bounds = [0, ...cuts(rng, n, 1 + rng.below(5)), n];
    const spanSegs: SpanSummary[][] = [];
    for (let s = 0; s + 1 < bounds.length; s++) {
      const dir = tmpDir(`summary-span-${seed}-${s}`);
      await writeSpan(h, bounds[s]!, bounds[s + 1]!, dir, rng.below(2) === 0 ? 12_288 : 16_384, s % 2 === 0 ? 'mmap' : 'file');
      spanSegs.push(summarizeSegments(dir));
    }
    const allSegs = spanSegs.flat();
    expect(allSegs.length).toBeGreaterThan(bounds.length - 1);

    // 1. Folding every segment summary in log order gives the same summary as the whole.
    const folded = fold(allSegs);
    expect(plain(folded)).toEqual(plain(whole));
    const fromFolded = new Map<string, RecoveredPool>();
    applySpan(fromFolded, folded);
    expect(plainPools(fromFolded)).toEqual(plainPools(final));

    // 2. Applying span by span (as recovery on top of a snapshot does) gives the same state.
    const stepwise = new Map<string, RecoveredPool>();
    for (const segs of spanSegs) applySpan(stepwise, fold(segs));
    expect(plainPools(stepwise)).toEqual(plainPools(final));

    // 3. Starting from the exact state at a span boundary (a snapshot) and applying the rest.
    for (let s = 1; s + 1 < bounds.length; s++) {
      const pools = clonePools(h.states[bounds[s]!]!);
      applySpan(pools, fold(spanSegs.slice(s).flat()));
      expect(plainPools(pools), `snapshot at op ${bounds[s]}`).toEqual(plainPools(final));
    }
  });
});

describe('mergeSpan is associative (property, fixed seeds)', () => {
  it.each([11, 12, 13, 14])('seed %i', async (seed) => {
    const h = generate(seed, 120);
    const dir = tmpDir(`summary-assoc-${seed}`);
    await writeSpan(h, 0, h.ops.length, dir, 12_288, 'mmap');
    const segs = summarizeSegments(dir);
    expect(segs.length).toBeGreaterThanOrEqual(3);
    const whole = plain(fold(segs));
    const rng = Sfc32.fromSeed(seed, 5);
    for (let trial = 0; trial < 20; trial++) {
      const [i, j] = cuts(rng, segs.length, 2) as [number, number];
      const a = fold(segs.slice(0, i));
      const b = fold(segs.slice(i, j));
      const c = fold(segs.slice(j));
      const left = newSpanSummary();
      mergeSpan(left, a);
      mergeSpan(left, b);
      mergeSpan(left, c);
      const bc = newSpanSummary();
      mergeSpan(bc, b);
      mergeSpan(bc, c);
      const right = newSpanSummary();
      mergeSpan(right, a);
      mergeSpan(right, bc);
      expect(plain(left)).toEqual(plain(right));
      expect(plain(left)).toEqual(whole);
      // Merging does not modify the later operand.
      expect(plain(b)).toEqual(plain(fold(segs.slice(i, j))));
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Hand-built record bodies (layout from src/wal/format.ts) for the summarizer's edge cases.

function poolRefBody(ref: number, poolId: string, itemCount: number): Buffer {
  const id = Buffer.from(poolId, 'utf8');
  const b = Buffer.alloc(kPoolRefHeaderBytes + id.length);
  b.writeUInt32LE(kRecPoolRef, 0);
  b.writeUInt32LE(ref, 4);
  b.writeUInt32LE(itemCount, 8);
  id.copy(b, kPoolRefHeaderBytes);
  return b;
}

function createBody(ref: number, id: string, items: ItemSpec[]): Buffer {
  const packed = pack({ id, items });
  const b = Buffer.alloc(kCreateHeaderBytes + packed.length);
  b.writeUInt32LE(kRecCreatePool, 0);
  b.writeUInt32LE(ref, 4);
  packed.copy(b, kCreateHeaderBytes);
  return b;
}

function drawBody(ref: number, first: number, indices: number[], width: 1 | 2): Buffer {
  const b = Buffer.alloc(kDrawHeaderBytes + indices.length * width);
  b.writeUInt32LE(width === 1 ? kRecDraw8 : kRecDraw16, 0);
  b.writeUInt32LE(ref, 4);
  b.writeDoubleLE(first, 8);
  b.writeUInt32LE(indices.length, 16);
  indices.forEach((v, i) => (width === 1 ? b.writeUInt8(v, kDrawHeaderBytes + i) : b.writeUInt16LE(v, kDrawHeaderBytes + 2 * i)));
  return b;
}

function updateBody(ref: number, item: number, weight: number, quantity: number): Buffer {
  const b = Buffer.alloc(kUpdateBodyBytes);
  b.writeUInt32LE(kRecUpdateItem, 0);
  b.writeUInt32LE(ref, 4);
  b.writeUInt32LE(item, 8);
  b.writeDoubleLE(weight, 16);
  b.writeDoubleLE(quantity, 24);
  return b;
}

function summarize(...bodies: Buffer[]): SpanSummary {
  const s = new SegmentSummarizer();
  for (const b of bodies) s.visit(b[0]!, b);
  return s.span;
}

const abc: ItemSpec[] = [
  { id: 'a', weight: 1, quantity: 10 },
  { id: 'b', weight: 2, quantity: -1 },
  { id: 'c', weight: 3, quantity: 0 },
];

describe('SegmentSummarizer on hand-built records', () => {
  it('keeps the last set quantity/weight and the draws after the last quantity set', () => {
    const span = summarize(
      createBody(4, 'p', abc),
      drawBody(4, 1, [0, 0, 1, 0xff], 1),
      updateBody(4, 0, NaN, 7),
      drawBody(4, 5, [0, 1, 0], 1),
      updateBody(4, 1, 9, NaN),
      drawBody(4, 8, [1], 1),
    );
    const p = span.pools.get('p')!;
    expect(p.created).toEqual(abc);
    expect(Array.from(p.draws)).toEqual([4, 3, 0]);
    expect(Array.from(p.drawsAfterSetQ)).toEqual([2, 3, 0]);
    expect(Array.from(p.setQ)).toEqual([7, NaN, NaN]);
    expect(Array.from(p.setW)).toEqual([NaN, 9, NaN]);
    expect(p.emptyDraws).toBe(1);
    expect(p.lastRequestId).toBe(8);
    expect(span.draws).toBe(8);
    expect(span.maxRequestId).toBe(8);
    const pools = new Map<string, RecoveredPool>();
    applySpan(pools, span);
    expect(pools.get('p')).toEqual({ id: 'p', itemIds: ['a', 'b', 'c'], weights: [1, 9, 3], quantities: [5, -1, 0], drawn: [4, 3, 0], lastRequestId: 8 });
  });

  it('decodes u16 draws and the 0xFFFF empty marker', () => {
    const span = summarize(poolRefBody(0, 'wide', 300), drawBody(0, 10, [299, 0xffff, 256, 299], 2));
    const p = span.pools.get('wide')!;
    expect(p.draws[299]).toBe(2);
    expect(p.draws[256]).toBe(1);
    expect(p.emptyDraws).toBe(1);
    expect(p.lastRequestId).toBe(13);
  });

  it.each([
    ['a ref used before it is defined', () => summarize(drawBody(3, 1, [0], 1)), /ref 3/],
    ['an item index out of range (u8)', () => summarize(poolRefBody(0, 'p', 3), drawBody(0, 1, [3], 1)), /index 3/],
    ['an item index out of range (u16)', () => summarize(poolRefBody(0, 'p', 300), drawBody(0, 1, [300], 2)), /index 300/],
    ['an update of an item out of range', () => summarize(poolRefBody(0, 'p', 3), updateBody(0, 5, 1, 1)), /index 5/],
    ['a pool redefined with another item count', () => summarize(poolRefBody(0, 'p', 3), poolRefBody(1, 'p', 4)), /redefined/],
    ['a pool created twice', () => summarize(createBody(0, 'p', abc), createBody(1, 'p', abc)), /created twice/],
    ['a draw record whose length disagrees with its count', () => summarize(poolRefBody(0, 'p', 3), drawBody(0, 1, [0, 1], 1).subarray(0, kDrawHeaderBytes + 1)), /2 draws/],
  ])('rejects %s', (_name, fn, message) => {
    expect(fn).toThrow(message);
  });

  it('an undecodable record becomes ERR_CORRUPT_WAL through scanSegment', async () => {
    const dir = tmpDir('summary-undecodable');
    const w = new MmapWalWriter(writerOptions(dir, realStorage, { segmentBytes: 4096 })).start();
    w.registerPool(0, 'p', 3);
    // A draw index past the catalog (the writer does not check; recovery must).
    w.appendDraws(0, 1, Uint16Array.of(0, 7), 0, 2);
    await w.close();
    const file = join(dir, 'shard-0', '0000000001.wal');
    const s = new SegmentSummarizer();
    let caught: unknown;
    try {
      scanSegment(readFileSync(file), { file, newest: true }, s.visit);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(EngineError);
    expect((caught as EngineError).code).toBe('ERR_CORRUPT_WAL');
    expect((caught as EngineError).message).toContain(file);
  });
});

describe('applySpan', () => {
  it('rejects WAL history for a pool that was never created', () => {
    const pools = new Map<string, RecoveredPool>();
    expect(() => applySpan(pools, summarize(poolRefBody(0, 'ghost', 3), drawBody(0, 1, [0], 1)))).toThrow(EngineError);
    try {
      applySpan(pools, summarize(poolRefBody(0, 'ghost', 3), drawBody(0, 1, [0], 1)));
    } catch (err) {
      expect((err as EngineError).code).toBe('ERR_CORRUPT_WAL');
      expect((err as EngineError).message).toContain('"ghost"');
    }
  });

  it('rejects a creation of a pool that already exists', () => {
    const pools = new Map<string, RecoveredPool>();
    applySpan(pools, summarize(createBody(0, 'p', abc)));
    expect(() => applySpan(pools, summarize(createBody(0, 'p', abc)))).toThrow(/created again/);
  });

  it('rejects draws that would take a quantity below zero', () => {
    const pools = new Map<string, RecoveredPool>();
    let caught: unknown;
    try {
      applySpan(pools, summarize(createBody(0, 'p', abc), drawBody(0, 1, [2], 1)));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(EngineError);
    expect((caught as EngineError).code).toBe('ERR_CORRUPT_WAL');
    expect((caught as EngineError).message).toContain('"c"');
  });

  it('rejects an item count that disagrees with the catalog', () => {
    const pools = new Map<string, RecoveredPool>();
    applySpan(pools, summarize(createBody(0, 'p', abc)));
    expect(() => applySpan(pools, summarize(poolRefBody(0, 'p', 4), drawBody(0, 1, [0], 1)))).toThrow(/4 items/);
  });

  it('applies a quantity set to unlimited and back to finite, with draws in between', () => {
    const pools = new Map<string, RecoveredPool>();
    applySpan(pools, summarize(createBody(0, 'p', abc), drawBody(0, 1, [0, 0], 1)));
    expect(pools.get('p')!.quantities).toEqual([8, -1, 0]);
    applySpan(pools, summarize(poolRefBody(0, 'p', 3), updateBody(0, 0, NaN, -1), drawBody(0, 3, [0, 0, 0], 1)));
    expect(pools.get('p')!.quantities).toEqual([-1, -1, 0]);
    applySpan(pools, summarize(poolRefBody(0, 'p', 3), drawBody(0, 6, [0], 1), updateBody(0, 0, NaN, 4), drawBody(0, 7, [0], 1)));
    expect(pools.get('p')).toMatchObject({ quantities: [3, -1, 0], drawn: [7, 0, 0], lastRequestId: 7 });
  });

  it('an empty span changes nothing', () => {
    const pools = new Map<string, RecoveredPool>();
    applySpan(pools, summarize(createBody(0, 'p', abc), drawBody(0, 1, [0], 1)));
    const before = JSON.stringify([...pools]);
    applySpan(pools, newSpanSummary());
    expect(JSON.stringify([...pools])).toBe(before);
  });
});

// Keep the empty-draw marker of the selector and the u16 WAL marker in step.
describe('markers', () => {
  it('the selector empty draw is the u16 WAL empty marker', () => {
    expect(kEmptyDraw).toBe(0xffff);
  });
});
