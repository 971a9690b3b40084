import { describe, expect, it } from 'vitest';
import { Batcher, type DrawResult, type IdCounter } from '../../src/coordinator/batcher.js';
import { PoolMeta } from '../../src/coordinator/pool-meta.js';
import { DrawBatch } from '../../src/draw-batch.js';
import { EngineError, errorToWire, type WireError } from '../../src/errors.js';
import {
  kOpCreate,
  kOpDraw,
  kOpState,
  kOpStride,
  kOpUpdate,
  type BatchMessage,
  type BatchReply,
  type Control,
  type PoolStateReply,
} from '../../src/protocol.js';
import { kEmptyDraw } from '../../src/selector.js';
import { below, mulberry32, testSeed } from '../helpers/seed.js';

const gems = new PoolMeta('gems', 0, 0, ['ruby', 'opal', 'jade'], true);
const coins = new PoolMeta('coins', 1, 0, ['copper', 'silver'], true);
const wide = new PoolMeta('wide', 7, 0, Array.from({ length: 300 }, (_, i) => `w${i}`), true);

const stateControl: Control = { type: 'state' };
const updateControl: Control = { type: 'update', itemIndex: 1, weight: 5, quantity: NaN };
const createControl: Control = { type: 'create', id: 'gems', items: [{ id: 'ruby', weight: 1, quantity: 1 }] };

/** One op of a packed batch, read back from its Float64Array. */
interface PackedOp {
  kind: number;
  ref: number;
  count: number;
  firstId: number;
}

function opsOf(msg: BatchMessage): PackedOp[] {
  expect(msg.ops.length % kOpStride).toBe(0);
  const out: PackedOp[] = [];
  for (let o = 0; o < msg.ops.length; o += kOpStride) {
    out.push({ kind: msg.ops[o]!, ref: msg.ops[o + 1]!, count: msg.ops[o + 2]!, firstId: msg.ops[o + 3]! });
  }
  return out;
}

function pack(b: Batcher): BatchMessage {
  const msg = b.pack();
  if (msg === undefined) throw new Error('nothing was packed');
  return msg;
}

/** A successful reply: indices for the draw ops (in op order), one result per control. */
function reply(id: number, indices: number[], controlResults: (PoolStateReply | null)[] = [], opErrors: [number, WireError][] | null = null): BatchReply {
  return { type: 'done', id, indices: Uint16Array.from(indices), controlResults, replayed: null, opErrors, error: null };
}

/** Outcome of a promise, or 'pending', once the microtasks queued so far have run. */
async function outcome<T>(p: Promise<T>): Promise<'pending' | { value: T } | { error: unknown }> {
  let state: 'pending' | { value: T } | { error: unknown } = 'pending';
  p.then(
    (value) => (state = { value }),
    (error: unknown) => (state = { error }),
  );
  for (let i = 0; i < 10; i++) await Promise.resolve();
  return state;
}

function stateReply(id: string, n: number): PoolStateReply {
  return { id, itemIds: Array.from({ length: n }, (_, i) => `i${i}`), weights: new Float64Array(n).fill(1), quantities: new Float64Array(n), drawn: new Float64Array(n), lastRequestId: 9 };
}

describe('Batcher: draw() runs', () => {
  it('joins draw() calls for one pool in one turn into one op, resolvers in call order', async () => {
    const ids: IdCounter = { next: 1 };
    const b = new Batcher(ids);
    const calls = [b.draw(gems), b.draw(gems), b.draw(gems), b.draw(gems)];
    const msg = pack(b);
    expect(opsOf(msg)).toEqual([{ kind: kOpDraw, ref: 0, count: 4, firstId: 1 }]);
    expect(msg.controls).toEqual([]);
    expect(ids.next).toBe(5);
    expect(b.settle(reply(msg.id, [2, 0, kEmptyDraw, 1]))).toEqual({ draws: 4, error: null });
    expect(await Promise.all(calls)).toEqual<DrawResult[]>([
      { requestId: 1, itemId: 'jade' },
      { requestId: 2, itemId: 'ruby' },
      { requestId: 3, itemId: null },
      { requestId: 4, itemId: 'opal' },
    ]);
  });

  it('keeps one run per pool: draws on another pool in between do not close it', () => {
    const b = new Batcher({ next: 1 });
    void b.draw(gems);
    void b.draw(coins);
    void b.draw(gems);
    void b.draw(coins);
    void b.draw(gems);
    expect(opsOf(pack(b))).toEqual([
      { kind: kOpDraw, ref: 0, count: 3, firstId: 1 },
      { kind: kOpDraw, ref: 1, count: 2, firstId: 4 },
    ]);
  });

  it('another op on the same pool closes the run: later draw() calls get later ids', async () => {
    const b = new Batcher({ next: 100 });
    const d1 = b.draw(gems);
    const d2 = b.draw(gems);
    const many = b.drawMany(gems, 5);
    const d3 = b.draw(gems);
    const state = b.control<PoolStateReply>(kOpState, gems, stateControl);
    const d4 = b.draw(gems);
    const d5 = b.draw(gems);
    const msg = pack(b);
    expect(opsOf(msg)).toEqual([
      { kind: kOpDraw, ref: 0, count: 2, firstId: 100 },
      { kind: kOpDraw, ref: 0, count: 5, firstId: 102 },
      { kind: kOpDraw, ref: 0, count: 1, firstId: 107 },
      { kind: kOpState, ref: 0, count: 0, firstId: 0 },
      { kind: kOpDraw, ref: 0, count: 2, firstId: 108 },
    ]);
    const s = stateReply('gems', 3);
    b.settle(reply(msg.id, [0, 1, 2, 2, 2, 2, 2, 1, 0, 0], [s]));
    expect((await d1).requestId).toBe(100);
    expect((await d2).requestId).toBe(101);
    expect((await many).firstRequestId).toBe(102);
    expect(await d3).toEqual({ requestId: 107, itemId: 'opal' });
    expect(await state).toBe(s);
    expect(await d4).toEqual({ requestId: 108, itemId: 'ruby' });
    expect(await d5).toEqual({ requestId: 109, itemId: 'ruby' });
  });

  it('a control on another pool does not close the run', () => {
    const b = new Batcher({ next: 1 });
    void b.draw(gems);
    void b.control(kOpUpdate, coins, updateControl);
    void b.draw(gems);
    expect(opsOf(pack(b)).map((o) => [o.kind, o.ref, o.count])).toEqual([
      [kOpDraw, 0, 2],
      [kOpUpdate, 1, 0],
    ]);
  });

  it('pack() closes every run: the next turn starts a new op', () => {
    const b = new Batcher({ next: 1 });
    void b.draw(gems);
    const first = pack(b);
    void b.draw(gems);
    void b.draw(gems);
    const second = pack(b);
    expect(opsOf(first)).toEqual([{ kind: kOpDraw, ref: 0, count: 1, firstId: 1 }]);
    expect(opsOf(second)).toEqual([{ kind: kOpDraw, ref: 0, count: 2, firstId: 2 }]);
  });
});

describe('Batcher: pack()', () => {
  it('returns undefined when nothing is queued, and numbers batches 1, 2, 3', () => {
    const b = new Batcher({ next: 1 });
    expect(b.pack()).toBeUndefined();
    void b.draw(gems);
    expect(pack(b).id).toBe(1);
    expect(b.pack()).toBeUndefined();
    void b.drawMany(coins, 2);
    expect(pack(b).id).toBe(2);
    void b.control(kOpState, coins, stateControl);
    expect(pack(b).id).toBe(3);
  });

  it('lays out kind, ref, count, firstId per kOpStride slots, controls in op order', () => {
    const b = new Batcher({ next: 41 });
    void b.control(kOpCreate, gems, createControl);
    void b.draw(gems);
    void b.drawMany(wide, 1000);
    void b.control(kOpUpdate, wide, updateControl);
    void b.draw(coins);
    void b.control(kOpState, gems, stateControl);
    const msg = pack(b);
    expect(msg.type).toBe('batch');
    expect(msg.ops).toBeInstanceOf(Float64Array);
    expect(msg.ops.length).toBe(6 * kOpStride);
    expect(Array.from(msg.ops)).toEqual([
      kOpCreate, 0, 0, 0,
      kOpDraw, 0, 1, 41,
      kOpDraw, 7, 1000, 42,
      kOpUpdate, 7, 0, 0,
      kOpDraw, 1, 1, 1042,
      kOpState, 0, 0, 0,
    ]); // prettier-ignore
    expect(msg.controls).toEqual([createControl, updateControl, stateControl]);
    expect(msg.controls[0]).toBe(createControl);
  });

  it('assigns ids from the shared counter at pack time, in op order, contiguous per op', () => {
    const ids: IdCounter = { next: 1 };
    const a = new Batcher(ids);
    const b = new Batcher(ids);
    // Queued first on a, but b packs first: b's ops get the lower ids.
    void a.draw(gems);
    void a.drawMany(gems, 3);
    void b.drawMany(coins, 10);
    void b.draw(coins);
    void b.draw(coins);
    const mb = pack(b);
    const ma = pack(a);
    expect(opsOf(mb).map((o) => [o.firstId, o.count])).toEqual([
      [1, 10],
      [11, 2],
    ]);
    expect(opsOf(ma).map((o) => [o.firstId, o.count])).toEqual([
      [13, 1],
      [14, 3],
    ]);
    expect(ids.next).toBe(17);
    // Each batcher numbers its own batches.
    expect([ma.id, mb.id]).toEqual([1, 1]);
  });

  it('gives every request exactly one id across two batchers sharing a counter, increasing per pool (seeded)', async () => {
    const seed = testSeed(0xba7c_0001);
    const rng = mulberry32(seed);
    const ids: IdCounter = { next: 1 };
    const pools = [gems, coins, wide];
    const batchers = [new Batcher(ids), new Batcher(ids)];
    /** Request id -> pool it went to. */
    const seen = new Map<number, string>();
    const lastPerPool = new Map<string, number>();
    let queued = 0;
    for (let turn = 0; turn < 300; turn++) {
      const ctx = `seed ${seed} (RPE_SEED), turn ${turn}`;
      for (let k = below(rng, 12); k > 0; k--) {
        const bi = below(rng, 2);
        // A pool lives on one shard: gems and coins on batcher 0, wide on batcher 1.
        const pool = bi === 0 ? pools[below(rng, 2)]! : wide;
        const r = below(rng, 10);
        if (r < 6) {
          void batchers[bi]!.draw(pool);
          queued++;
        } else if (r < 8) {
          const n = 1 + below(rng, 50);
          void batchers[bi]!.drawMany(pool, n);
          queued += n;
        } else {
          void batchers[bi]!.control(kOpState, pool, stateControl);
        }
      }
      for (const bi of below(rng, 2) === 0 ? [0, 1] : [1, 0]) {
        const msg = batchers[bi]!.pack();
        if (msg === undefined) continue;
        for (const op of opsOf(msg)) {
          if (op.kind !== kOpDraw) continue;
          const pool = pools.find((p) => p.ref === op.ref)!;
          for (let id = op.firstId; id < op.firstId + op.count; id++) {
            expect(seen.has(id), `${ctx}: id ${id} given twice`).toBe(false);
            seen.set(id, pool.id);
            expect(id, `${ctx}: ids of ${pool.id} increase`).toBeGreaterThan(lastPerPool.get(pool.id) ?? 0);
            lastPerPool.set(pool.id, id);
          }
        }
      }
      // Both batchers packed: every request queued so far has its id, and no id was skipped.
      expect(seen.size, ctx).toBe(queued);
      expect(ids.next - 1, ctx).toBe(queued);
    }
    expect(Math.min(...seen.keys()), `seed ${seed}`).toBe(1);
    expect(Math.max(...seen.keys()), `seed ${seed}`).toBe(seen.size);
  });
});

describe('Batcher: settle()', () => {
  it('resolves drawMany with a DrawBatch over its own slice of the indices', async () => {
    const b = new Batcher({ next: 10 });
    const d = b.draw(coins);
    const m1 = b.drawMany(gems, 3);
    const m2 = b.drawMany(wide, 4);
    const msg = pack(b);
    const indices = [1, 2, kEmptyDraw, 0, 299, 0, kEmptyDraw, 150];
    expect(b.settle(reply(msg.id, indices))).toEqual({ draws: 8, error: null });
    expect(await d).toEqual({ requestId: 10, itemId: 'silver' });
    const g = await m1;
    expect(g).toBeInstanceOf(DrawBatch);
    expect(g.firstRequestId).toBe(11);
    expect(g.count).toBe(3);
    expect(g.items).toBe(gems.items);
    expect(Array.from(g.indices)).toEqual([2, kEmptyDraw, 0]);
    expect([0, 1, 2].map((i) => g.itemIdAt(i))).toEqual(['jade', null, 'ruby']);
    const w = await m2;
    expect(w.firstRequestId).toBe(14);
    expect(Array.from(w.indices)).toEqual([299, 0, kEmptyDraw, 150]);
    expect(w.itemIdAt(0)).toBe('w299');
  });

  it('resolves controls with their results in op order (null for create and update)', async () => {
    const b = new Batcher({ next: 1 });
    const c1 = b.control(kOpCreate, gems, createControl);
    const s1 = b.control<PoolStateReply>(kOpState, gems, stateControl);
    const u = b.control(kOpUpdate, coins, updateControl);
    const s2 = b.control<PoolStateReply>(kOpState, coins, stateControl);
    const msg = pack(b);
    const r1 = stateReply('gems', 3);
    const r2 = stateReply('coins', 2);
    expect(b.settle(reply(msg.id, [], [null, r1, null, r2]))).toEqual({ draws: 0, error: null });
    expect(await c1).toBeNull();
    expect(await s1).toBe(r1);
    expect(await u).toBeNull();
    expect(await s2).toBe(r2);
  });

  it('rejects only the ops named in opErrors, with EngineErrors; the others still get their own slice and result', async () => {
    const b = new Batcher({ next: 1 });
    const ok1 = b.drawMany(gems, 2); // op 0
    const badRun = [b.draw(coins), b.draw(coins)]; // op 1: failed run, 2 indices
    const badCreate = b.control(kOpCreate, wide, createControl); // op 2: failed control
    const ok2 = b.draw(gems); // op 3 (the drawMany closed the first gems run)
    const st = b.control<PoolStateReply>(kOpState, gems, stateControl); // op 4
    const badMany = b.drawMany(wide, 3); // op 5: failed drawMany
    const ok3 = b.drawMany(coins, 1); // op 6 (the failed coins run is its own op)
    const msg = pack(b);
    expect(opsOf(msg).map((o) => o.kind)).toEqual([kOpDraw, kOpDraw, kOpCreate, kOpDraw, kOpState, kOpDraw, kOpDraw]);
    const unknown = new EngineError('ERR_UNKNOWN_POOL', 'pool ref 1 is not known to this shard (its creation failed)', { details: { ref: 1 } });
    const exists = new EngineError('ERR_POOL_EXISTS', 'pool "gems" already exists');
    const gone = new EngineError('ERR_UNKNOWN_POOL', 'pool ref 7 is not known');
    const s = stateReply('gems', 3);
    const r = b.settle(
      reply(
        msg.id,
        [0, 1, kEmptyDraw, kEmptyDraw, 2, kEmptyDraw, kEmptyDraw, kEmptyDraw, 1],
        [null, s],
        [
          [1, errorToWire(unknown)],
          [2, errorToWire(exists)],
          [5, errorToWire(gone)],
        ],
      ),
    );
    expect(r).toEqual({ draws: 9, error: null });
    expect(Array.from((await ok1).indices)).toEqual([0, 1]);
    for (const p of badRun) {
      const e = await p.then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(e).toBeInstanceOf(EngineError);
      expect(e).toMatchObject({ code: 'ERR_UNKNOWN_POOL', message: unknown.message, details: { ref: 1 } });
    }
    await expect(badCreate).rejects.toSatisfy((e: unknown) => e instanceof EngineError && e.code === 'ERR_POOL_EXISTS' && e.message === exists.message);
    expect(await ok2).toEqual({ requestId: 5, itemId: 'jade' });
    expect(await st).toBe(s);
    await expect(badMany).rejects.toMatchObject({ code: 'ERR_UNKNOWN_POOL', message: gone.message });
    const last = await ok3;
    expect(last.firstRequestId).toBe(9);
    expect(last.itemIdAt(0)).toBe('silver');
  });

  it('a whole-batch error rejects every op of the batch and is returned', async () => {
    const b = new Batcher({ next: 1 });
    const all = [b.draw(gems), b.draw(gems), b.drawMany(coins, 4), b.control(kOpState, gems, stateControl)];
    const msg = pack(b);
    const fail = new EngineError('ERR_DISK_FULL', 'shard 0 WAL append failed: ENOSPC', { details: { errno: 'ENOSPC' } });
    const r = b.settle({ type: 'done', id: msg.id, indices: new Uint16Array(0), controlResults: [], replayed: null, opErrors: null, error: errorToWire(fail) });
    expect(r.draws).toBe(6);
    expect(r.error).toBeInstanceOf(EngineError);
    expect(r.error).toMatchObject({ code: 'ERR_DISK_FULL', message: fail.message });
    for (const p of all) await expect(p).rejects.toBe(r.error);
    expect(b.idle).toBe(true);
  });

  it('settles batches in the order they were sent', async () => {
    const b = new Batcher({ next: 1 });
    const first = b.draw(gems);
    const m1 = pack(b);
    const second = b.draw(gems);
    const m2 = pack(b);
    expect(b.batchesInFlight).toBe(2);
    b.settle(reply(m1.id, [0]));
    expect(await outcome(second)).toBe('pending');
    expect(await first).toEqual({ requestId: 1, itemId: 'ruby' });
    b.settle(reply(m2.id, [1]));
    expect(await second).toEqual({ requestId: 2, itemId: 'opal' });
  });

  it('a reply for the wrong batch id is a protocol error that settles nothing', async () => {
    const b = new Batcher({ next: 1 });
    const d = b.draw(gems);
    const m1 = pack(b);
    void b.draw(gems).catch(() => {});
    const m2 = pack(b);
    const r = b.settle(reply(m2.id, [0]));
    expect(r.draws).toBe(0);
    expect(r.error).toBeInstanceOf(EngineError);
    expect(r.error).toMatchObject({ code: 'ERR_SHARD_FAILED', message: `shard replied to batch ${m2.id}, expected ${m1.id}` });
    expect(await outcome(d)).toBe('pending');
    expect(b.batchesInFlight).toBe(2);
    // The right reply still settles it.
    b.settle(reply(m1.id, [2]));
    expect(await d).toEqual({ requestId: 1, itemId: 'jade' });
  });

  it('a reply with nothing in flight is a protocol error', () => {
    const b = new Batcher({ next: 1 });
    const r = b.settle(reply(3, []));
    expect(r).toMatchObject({ draws: 0, error: { code: 'ERR_SHARD_FAILED', message: 'shard replied to batch 3, expected undefined' } });
  });
});

describe('Batcher: failAll and state', () => {
  it('failAll rejects queued and in-flight ops with the error, and leaves the batcher idle', async () => {
    const b = new Batcher({ next: 1 });
    const sent = [b.draw(gems), b.drawMany(coins, 2), b.control(kOpState, gems, stateControl)];
    pack(b);
    const queued = [b.draw(gems), b.draw(gems), b.control(kOpUpdate, coins, updateControl)];
    expect(b.hasQueued).toBe(true);
    expect(b.batchesInFlight).toBe(1);
    const err = new EngineError('ERR_SHARD_FAILED', 'shard 0 exited with code 1');
    b.failAll(err);
    for (const p of [...sent, ...queued]) await expect(p).rejects.toBe(err);
    expect(b.idle).toBe(true);
    expect(b.hasQueued).toBe(false);
    expect(b.batchesInFlight).toBe(0);
    expect(b.pack()).toBeUndefined();
  });

  it('after failAll, new draws start fresh runs and count only their own draws', async () => {
    const ids: IdCounter = { next: 1 };
    const b = new Batcher(ids);
    void b.draw(gems).catch(() => {});
    void b.drawMany(gems, 5).catch(() => {});
    b.failAll(new EngineError('ERR_SHARD_FAILED', 'gone'));
    const d = b.draw(gems);
    const msg = pack(b);
    expect(opsOf(msg)).toEqual([{ kind: kOpDraw, ref: 0, count: 1, firstId: 1 }]);
    expect(b.settle(reply(msg.id, [1]))).toEqual({ draws: 1, error: null });
    expect(await d).toEqual({ requestId: 1, itemId: 'opal' });
  });

  it('idle, hasQueued and batchesInFlight follow queueing, packing and settling', () => {
    const b = new Batcher({ next: 1 });
    expect([b.idle, b.hasQueued, b.batchesInFlight]).toEqual([true, false, 0]);
    void b.draw(gems);
    expect([b.idle, b.hasQueued, b.batchesInFlight]).toEqual([false, true, 0]);
    const m1 = pack(b);
    expect([b.idle, b.hasQueued, b.batchesInFlight]).toEqual([false, false, 1]);
    void b.control(kOpState, gems, stateControl);
    expect([b.idle, b.hasQueued, b.batchesInFlight]).toEqual([false, true, 1]);
    const m2 = pack(b);
    expect([b.idle, b.hasQueued, b.batchesInFlight]).toEqual([false, false, 2]);
    b.settle(reply(m1.id, [0]));
    expect([b.idle, b.hasQueued, b.batchesInFlight]).toEqual([false, false, 1]);
    b.settle(reply(m2.id, [], [stateReply('gems', 3)]));
    expect([b.idle, b.hasQueued, b.batchesInFlight]).toEqual([true, false, 0]);
  });

  it('settle() reports each batch its own draw count (draw runs plus drawMany, not controls)', () => {
    const b = new Batcher({ next: 1 });
    void b.draw(gems);
    void b.draw(coins);
    void b.drawMany(wide, 7);
    void b.control(kOpState, gems, stateControl);
    const m1 = pack(b);
    void b.drawMany(gems, 3);
    const m2 = pack(b);
    expect(b.settle(reply(m1.id, [0, 0, 0, 0, 0, 0, 0, 0, 0], [null])).draws).toBe(9);
    expect(b.settle(reply(m2.id, [0, 0, 0])).draws).toBe(3);
  });
});
