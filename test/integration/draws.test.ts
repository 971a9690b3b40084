/**
 * Draws through the public API on real shard workers: exhaustion, request ids, ordering of
 * updates with draws, many pools across shards, seeded reproducibility, metrics.
 */
import { describe, expect, it } from 'vitest';
import { tmpDir } from '../helpers/tmp.js';
import { allStates, collect, fixture, KiB, units, useChildren, useEngines, type DrawEngine, type Item } from '../helpers/engine.js';

const openEngine = useEngines();
const run = useChildren();

function open(extra: Record<string, unknown> = {}): Promise<DrawEngine> {
  return openEngine({ dir: tmpDir('draws'), shards: 2, segmentBytes: 256 * KiB, ...extra });
}

const LIMITED: Item[] = [
  { id: 'gold', weight: 1, quantity: 30 },
  { id: 'silver', weight: 3, quantity: 50 },
  { id: 'bronze', weight: 6, quantity: 120 },
];
const N = units(LIMITED); // 200

function expectNonNegative(items: { quantity: number }[]): void {
  for (const i of items) expect(i.quantity).toBeGreaterThanOrEqual(0);
}

describe('exhaustion', () => {
  it('drawMany: exactly N successful draws, then empty draws that still get request ids', async () => {
    const engine = await open();
    await engine.createPool('p', LIMITED);

    const a = await engine.drawMany('p', 150);
    expect(a.count).toBe(150);
    expect(a.counts().get(null)).toBeUndefined();
    expectNonNegative((await engine.pool('p')).items);

    const b = await engine.drawMany('p', 60);
    expect(b.firstRequestId).toBe(a.firstRequestId + 150);
    // Nothing can come back without an update: the first 50 succeed, the last 10 are empty.
    for (let i = 0; i < 50; i++) expect(b.itemIdAt(i)).not.toBeNull();
    for (let i = 50; i < 60; i++) {
      expect(b.itemIdAt(i)).toBeNull();
      expect(b.indices[i]).toBe(0xffff);
    }
    expect(b.counts().get(null)).toBe(10);

    const c = await engine.draw('p');
    expect(c).toEqual({ requestId: b.firstRequestId + 60, itemId: null });

    const state = await engine.pool('p');
    expect(state.lastRequestId).toBe(c.requestId);
    const tally = new Map<string, number>();
    for (const batch of [a, b]) for (const [id, n] of batch.counts()) if (id !== null) tally.set(id, (tally.get(id) ?? 0) + n);
    for (const item of state.items) {
      const spec = LIMITED.find((i) => i.id === item.id)!;
      expect(item).toEqual({ id: spec.id, weight: spec.weight, quantity: 0, drawn: spec.quantity });
      expect(tally.get(item.id)).toBe(spec.quantity);
    }
  });

  it('draw(): exactly N of N + 25 concurrent calls get an item, in request-id order', async () => {
    const engine = await open();
    await engine.createPool('p', LIMITED);
    const results = await Promise.all(Array.from({ length: N + 25 }, () => engine.draw('p')));
    const ids = results.map((r) => r.requestId);
    for (let i = 1; i < ids.length; i++) expect(ids[i]).toBe(ids[i - 1]! + 1);
    expect(results.slice(0, N).every((r) => r.itemId !== null)).toBe(true);
    expect(results.slice(N).every((r) => r.itemId === null)).toBe(true);
    const state = await engine.pool('p');
    for (const item of state.items) {
      expect(item.quantity).toBe(0);
      expect(item.drawn).toBe(results.filter((r) => r.itemId === item.id).length);
    }
    expect(state.lastRequestId).toBe(ids[ids.length - 1]);
  });

  it('an unlimited item is never exhausted and keeps quantity -1', async () => {
    const engine = await open();
    await engine.createPool('p', [
      { id: 'rare', weight: 1, quantity: 3 },
      { id: 'mud', weight: 1, quantity: -1 },
    ]);
    const b = await engine.drawMany('p', 5000);
    expect(b.counts().get(null)).toBeUndefined();
    expect(b.counts().get('rare')).toBe(3);
    expect(b.counts().get('mud')).toBe(4997);
    const s = await engine.pool('p');
    expect(s.items).toEqual([
      { id: 'rare', weight: 1, quantity: 0, drawn: 3 },
      { id: 'mud', weight: 1, quantity: -1, drawn: 4997 },
    ]);
  });
});

describe('request ids', () => {
  it('are unique across pools, increasing within a pool, consecutive within drawMany', async () => {
    const engine = await open();
    const pools = ['a', 'b', 'c', 'd'];
    for (const p of pools) await engine.createPool(p, [{ id: 'x', weight: 1, quantity: -1 }]);
    // Per pool, in call order: interleaved draw() and drawMany, nothing awaited in between.
    const calls = pools.map((p) => {
      const out: Promise<{ first: number; count: number }>[] = [];
      for (let i = 0; i < 20; i++) {
        if (i % 3 === 0) out.push(engine.drawMany(p, 1 + i * 7).then((b) => ({ first: b.firstRequestId, count: b.count })));
        else out.push(engine.draw(p).then((r) => ({ first: r.requestId, count: 1 })));
      }
      return Promise.all(out);
    });
    const perPool = await Promise.all(calls);
    const seen = new Set<number>();
    for (const ranges of perPool) {
      let prev = 0;
      for (const { first, count } of ranges) {
        expect(first).toBeGreaterThan(prev);
        expect(Number.isSafeInteger(first) && first > 0).toBe(true);
        for (let id = first; id < first + count; id++) {
          expect(seen.has(id)).toBe(false);
          seen.add(id);
        }
        prev = first + count - 1;
      }
    }
    for (const [k, p] of pools.entries()) {
      const last = perPool[k]![perPool[k]!.length - 1]!;
      expect((await engine.pool(p)).lastRequestId).toBe(last.first + last.count - 1);
    }
  });

  it('draw() then drawMany: firstRequestId is the previous requestId + 1; a following draw() continues', async () => {
    const engine = await open();
    await engine.createPool('p', LIMITED);
    const r = await engine.draw('p');
    const b = await engine.drawMany('p', 17);
    expect(b.firstRequestId).toBe(r.requestId + 1);
    expect(b.count).toBe(17);
    const r2 = await engine.draw('p');
    expect(r2.requestId).toBe(b.firstRequestId + 17);

    // Same without awaiting in between: ids follow call order.
    const p1 = engine.draw('p');
    const p2 = engine.drawMany('p', 5);
    const p3 = engine.draw('p');
    const p4 = engine.draw('p');
    const [x1, x2, x3, x4] = await Promise.all([p1, p2, p3, p4]);
    expect(x1.requestId).toBe(r2.requestId + 1);
    expect(x2.firstRequestId).toBe(x1.requestId + 1);
    expect(x3.requestId).toBe(x2.firstRequestId + 5);
    expect(x4.requestId).toBe(x3.requestId + 1);
  });
});

describe('updateItem is ordered with the pool draws', () => {
  it('drawMany, update, drawMany without awaiting: exactly the restored quantity is drawn again', async () => {
    const engine = await open();
    await engine.createPool('u', [{ id: 'only', weight: 1, quantity: 10 }]);
    const first = engine.drawMany('u', 10);
    const mid = engine.pool('u');
    const upd = engine.updateItem('u', 'only', { quantity: 5 });
    const second = engine.drawMany('u', 10);
    const single = Array.from({ length: 3 }, () => engine.draw('u'));
    const end = engine.pool('u');
    const [b1, s1, , b2, singles, s2] = await Promise.all([first, mid, upd, second, Promise.all(single), end]);

    expect(b1.counts()).toEqual(new Map([['only', 10]]));
    expect(s1.items[0]).toEqual({ id: 'only', weight: 1, quantity: 0, drawn: 10 });
    expect(b2.counts()).toEqual(
      new Map<string | null, number>([
        ['only', 5],
        [null, 5],
      ]),
    );
    for (let i = 0; i < 5; i++) expect(b2.itemIdAt(i)).toBe('only');
    expect(singles.map((r) => r.itemId)).toEqual([null, null, null]);
    expect(s2.items[0]).toEqual({ id: 'only', weight: 1, quantity: 0, drawn: 15 });
    expect(s2.lastRequestId).toBe(singles[2]!.requestId);
  });

  it('draw() calls before and after an update are not merged into one run', async () => {
    const engine = await open();
    await engine.createPool('u', [{ id: 'only', weight: 4, quantity: 10 }]);
    const before = Array.from({ length: 12 }, () => engine.draw('u'));
    const upd = engine.updateItem('u', 'only', { quantity: 5, weight: 9 });
    const after = Array.from({ length: 8 }, () => engine.draw('u'));
    const [rb, , ra] = await Promise.all([Promise.all(before), upd, Promise.all(after)]);
    expect(rb.map((r) => r.itemId)).toEqual([...Array(10).fill('only'), null, null]);
    expect(ra.map((r) => r.itemId)).toEqual([...Array(5).fill('only'), null, null, null]);
    expect(ra[0]!.requestId).toBe(rb[11]!.requestId + 1);
    expect((await engine.pool('u')).items[0]).toEqual({ id: 'only', weight: 9, quantity: 0, drawn: 15 });
  });

  it('a revived item is drawn again; weight-only and unlimited updates apply', async () => {
    const engine = await open();
    await engine.createPool('r', [
      { id: 'star', weight: 5, quantity: 1 },
      { id: 'dust', weight: 1, quantity: 0 },
    ]);
    expect((await engine.draw('r')).itemId).toBe('star');
    expect((await engine.drawMany('r', 50)).counts()).toEqual(new Map([[null, 50]]));

    await engine.updateItem('r', 'star', { quantity: 3 });
    const b = await engine.drawMany('r', 10);
    expect(b.counts()).toEqual(
      new Map<string | null, number>([
        ['star', 3],
        [null, 7],
      ]),
    );

    await engine.updateItem('r', 'dust', { weight: 2 });
    let s = await engine.pool('r');
    expect(s.items).toEqual([
      { id: 'star', weight: 5, quantity: 0, drawn: 4 },
      { id: 'dust', weight: 2, quantity: 0, drawn: 0 },
    ]);

    await engine.updateItem('r', 'dust', { quantity: -1 });
    const c = await engine.drawMany('r', 1000);
    expect(c.counts()).toEqual(new Map([['dust', 1000]]));
    s = await engine.pool('r');
    expect(s.items[1]).toEqual({ id: 'dust', weight: 2, quantity: -1, drawn: 1000 });

    // Back to limited: exactly 7 more, then empty.
    await engine.updateItem('r', 'dust', { quantity: 7 });
    const d = await engine.drawMany('r', 20);
    expect(d.counts()).toEqual(
      new Map<string | null, number>([
        ['dust', 7],
        [null, 13],
      ]),
    );
  });
});

describe('many pools across shards', () => {
  it('40 pools, drawn concurrently, each exhausted exactly, spread over both shards', async () => {
    const engine = await open();
    const ids = Array.from({ length: 40 }, (_, i) => `pool-${i}`);
    await Promise.all(ids.map((id, i) => engine.createPool(id, [
      { id: 'a', weight: 1 + i, quantity: 40 },
      { id: 'b', weight: 2, quantity: 60 },
    ])));
    expect(engine.poolIds().sort()).toEqual([...ids].sort());
    const batches = await Promise.all(ids.map((id) => engine.drawMany(id, 120)));
    const ranges = batches.map((b) => [b.firstRequestId, b.firstRequestId + b.count - 1] as const).sort((x, y) => x[0] - y[0]);
    for (let i = 1; i < ranges.length; i++) expect(ranges[i]![0]).toBeGreaterThan(ranges[i - 1]![1]);
    for (const b of batches) {
      expect(b.counts().get('a')).toBe(40);
      expect(b.counts().get('b')).toBe(60);
      expect(b.counts().get(null)).toBe(20);
    }
    const states = await allStates(engine);
    for (const id of ids) {
      expect(states[id]!.items.map((i) => [i.quantity, i.drawn])).toEqual([
        [0, 40],
        [0, 60],
      ]);
    }
    const m = engine.metrics();
    expect(m.shards).toHaveLength(2);
    for (const s of m.shards) expect(s.draws).toBeGreaterThan(0);
    expect(m.draws).toBe(40 * 120);
    expect(m.emptyDraws).toBe(40 * 20);
  });
});

describe('selection', () => {
  it('follows the weights (200k draws, 6-sigma bounds)', async () => {
    const engine = await open();
    const items = [
      { id: 'w1', weight: 1, quantity: -1 },
      { id: 'w3', weight: 3, quantity: -1 },
      { id: 'w6', weight: 6, quantity: -1 },
    ];
    await engine.createPool('w', items);
    const n = 200_000;
    const counts = (await engine.drawMany('w', n)).counts();
    for (const item of items) {
      const p = item.weight / 10;
      const sigma = Math.sqrt(n * p * (1 - p));
      expect(Math.abs(counts.get(item.id)! - n * p)).toBeLessThan(6 * sigma);
    }
  });

  it('seed with shards: 1 reproduces the outcome sequence; another seed does not', async () => {
    const script = async (engine: DrawEngine): Promise<number[]> => {
      await engine.createPool('s1', [
        { id: 'a', weight: 1, quantity: 300 },
        { id: 'b', weight: 5, quantity: -1 },
        { id: 'c', weight: 11, quantity: 40 },
      ]);
      await engine.createPool('s2', Array.from({ length: 300 }, (_, i) => ({ id: `x${i}`, weight: 1 + (i % 13), quantity: 3 })));
      const out: number[] = [];
      const b1 = await engine.drawMany('s1', 2000);
      const singles = await Promise.all(Array.from({ length: 30 }, () => engine.draw('s2')));
      await engine.updateItem('s1', 'c', { quantity: 100, weight: 2 });
      const [b2, b3] = await Promise.all([engine.drawMany('s1', 500), engine.drawMany('s2', 1000)]);
      out.push(...b1.indices, ...singles.map((r) => (r.itemId === null ? -1 : Number(r.itemId.slice(1)))), ...b2.indices, ...b3.indices);
      return out;
    };
    const e1 = await openEngine({ dir: tmpDir('seed'), shards: 1, seed: 424242, segmentBytes: 256 * KiB });
    const e2 = await openEngine({ dir: tmpDir('seed'), shards: 1, seed: 424242, segmentBytes: 256 * KiB, wal: 'file' });
    const e3 = await openEngine({ dir: tmpDir('seed'), shards: 1, seed: 7, segmentBytes: 256 * KiB });
    const [o1, o2, o3] = await Promise.all([script(e1), script(e2), script(e3)]);
    expect(o1).toHaveLength(2000 + 30 + 500 + 1000);
    expect(o2).toEqual(o1);
    expect(o3).not.toEqual(o1);
    expect(await allStates(e2)).toEqual(await allStates(e1));
  });
});

describe('metrics and poolIds', () => {
  it('metrics() reflects acknowledged work synchronously', async () => {
    const engine = await open({ sync: 'always' });
    expect(engine.metrics().draws).toBe(0);
    await engine.createPool('m', [{ id: 'x', weight: 1, quantity: 100 }]);
    await engine.drawMany('m', 150);
    let m = engine.metrics();
    expect(m.draws).toBe(150);
    expect(m.emptyDraws).toBe(50);
    expect(m.walBytes).toBeGreaterThan(0);
    expect(m.records).toBeGreaterThan(0);
    expect(m.syncs).toBeGreaterThan(0);
    expect(m.pending).toBe(0);
    await Promise.all(Array.from({ length: 10 }, () => engine.draw('m')));
    m = engine.metrics();
    expect(m.draws).toBe(160);
    expect(m.emptyDraws).toBe(60);
    expect(m.shards.reduce((a, s) => a + s.draws, 0)).toBe(160);
    expect(m.shards.some((s) => s.failed)).toBe(false);
  });

  it('poolIds lists every created pool and only those', async () => {
    const engine = await open();
    expect(engine.poolIds()).toEqual([]);
    await engine.createPool('one', LIMITED);
    await engine.createPool('two', LIMITED);
    expect(engine.poolIds().sort()).toEqual(['one', 'two']);
    await engine.createPool('one', LIMITED).catch(() => {});
    expect(engine.poolIds().sort()).toEqual(['one', 'two']);
  });
});

describe('maxPending back-pressure', () => {
  // Run in a child with a small heap: if callers waiting for room are never admitted the child
  // fails (or runs out of memory) instead of hanging this test process.
  it('callers beyond maxPending wait and all resolve, with consecutive ids', async () => {
    const child = run(process.execPath, ['--max-old-space-size=96', fixture('backpressure-waiters.mjs'), tmpDir('bp')]);
    const { code, signal, stdout, stderr } = await collect(child);
    expect({ code, signal, stderr: stderr.slice(0, 400) }).toEqual({ code: 0, signal: null, stderr: '' });
    expect(stdout.trim().split('\n').at(-1)).toBe('ok 1000 drawMany 2500 pending 0');
  });
});
