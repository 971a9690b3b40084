/**
 * The load loops. Each runs for a wall-clock window and returns the draws it completed; the
 * caller measures time, heap and engine counters around it. None of them reads the clock per
 * call in the draw() loops: a clock read costs about as much as a draw, so they stop on a timer
 * flag instead.
 */
import { setImmediate as yieldTurn } from 'node:timers/promises';
import type { DrawEngine, ItemSpec } from '../../src/index.js';
import { Sfc32 } from '../../src/prng.js';
import { WeightedSelector } from '../../src/selector.js';

/** Every pool of every scenario has this catalog: 6 items, unlimited, so no draw is empty. */
export const kCatalog: ItemSpec[] = [
  { id: 'diamond', weight: 10, quantity: -1 },
  { id: 'gold', weight: 20, quantity: -1 },
  { id: 'silver', weight: 30, quantity: -1 },
  { id: 'rock', weight: 40, quantity: -1 },
  { id: 'mud', weight: 70, quantity: -1 },
  { id: 'log', weight: 50, quantity: -1 },
];

/**
 * Create pools until every shard owns `perShard` of them, and return those. Which shard owns a
 * pool is found through the public API only (one draw, then see whose counter moved), so the
 * load is even whatever the hash. For many pools an uneven split no longer matters and the
 * probing round trips would dominate, so above 64 pools they are simply created.
 */
export async function createPools(engine: DrawEngine, perShard: number): Promise<string[]> {
  const shards = engine.shards;
  const want = perShard * shards;
  if (shards === 1 || want > 64) {
    const ids = Array.from({ length: want }, (_, i) => `pool-${i}`);
    await Promise.all(ids.map((id) => engine.createPool(id, kCatalog)));
    return ids;
  }
  const owned: string[][] = Array.from({ length: shards }, () => []);
  const chosen: string[] = [];
  for (let i = 0; chosen.length < want; i++) {
    if (i > want * 16) throw new Error(`could not place ${perShard} pools on each of ${shards} shards after ${i} pools`);
    const id = `pool-${i}`;
    await engine.createPool(id, kCatalog);
    const before = engine.metrics().shards.map((s) => s.draws);
    await engine.drawMany(id, 1);
    const after = engine.metrics().shards;
    const k = after.findIndex((s, j) => s.draws !== before[j]);
    if (k >= 0 && owned[k]!.length < perShard) {
      owned[k]!.push(id);
      chosen.push(id);
    }
  }
  // Interleave shards so that pools[i % n] alternates between them.
  const out: string[] = [];
  for (let j = 0; j < perShard; j++) for (let k = 0; k < shards; k++) out.push(owned[k]![j]!);
  return out;
}

/** A timer flag: set after `ms`. */
function deadline(ms: number): { readonly stop: boolean; cancel(): void } {
  const flag = { stop: false, cancel: () => clearTimeout(timer) };
  const timer = setTimeout(() => {
    flag.stop = true;
  }, ms);
  return flag;
}

/**
 * drawMany(batch) in a closed loop, `perPool` calls in flight per pool, until the window ends.
 * With the defaults (8 pools per shard, 2 per pool, 65,536 draws) each shard has 1,048,576 draws
 * queued or in flight: exactly the default maxPending, so no call waits for room.
 */
export async function drawManyLoop(engine: DrawEngine, pools: string[], batch: number, ms: number, perPool = 2): Promise<number> {
  let draws = 0;
  const end = performance.now() + ms;
  const loop = async (pool: string): Promise<void> => {
    // One clock read per call is fine here: a call is tens of thousands of draws.
    while (performance.now() < end) {
      const b = await engine.drawMany(pool, batch);
      draws += b.count;
    }
  };
  const loops: Promise<void>[] = [];
  for (const p of pools) for (let j = 0; j < perPool; j++) loops.push(loop(p));
  await Promise.all(loops);
  return draws;
}

/** `inFlight` draw() calls in flight (one async loop each, pools round-robin) until the window ends. */
export async function drawLoop(engine: DrawEngine, pools: string[], inFlight: number, ms: number): Promise<number> {
  let draws = 0;
  const flag = deadline(ms);
  const loop = async (pool: string): Promise<void> => {
    while (!flag.stop) {
      await engine.draw(pool);
      draws++;
    }
  };
  const loops = new Array<Promise<void>>(inFlight);
  for (let i = 0; i < inFlight; i++) loops[i] = loop(pools[i % pools.length]!);
  await Promise.all(loops);
  flag.cancel();
  return draws;
}

/** Exactly `total` draw() calls, at most `inFlight` at a time (builds the recovery directory). */
export async function drawCount(engine: DrawEngine, pools: string[], inFlight: number, total: number): Promise<number> {
  let issued = 0;
  let done = 0;
  const loop = async (pool: string): Promise<void> => {
    while (issued < total) {
      issued++;
      await engine.draw(pool);
      done++;
    }
  };
  const loops: Promise<void>[] = [];
  for (let i = 0; i < Math.min(inFlight, total); i++) loops.push(loop(pools[i % pools.length]!));
  await Promise.all(loops);
  return done;
}

/**
 * Reference: the bare selection loop on this thread, WeightedSelector.drawInto with Sfc32 over
 * the same catalog, `batch` draws per call: what one core does with no engine around it. It
 * yields to the event loop every ~16 calls (for the progress line), a negligible cost.
 */
export async function selectionLoop(batch: number, ms: number): Promise<number> {
  const sel = new WeightedSelector(
    kCatalog.map((c) => c.weight),
    kCatalog.map((c) => c.quantity),
  );
  const rng = Sfc32.fromSeed(1);
  const out = new Uint16Array(batch);
  let draws = 0;
  const end = performance.now() + ms;
  while (performance.now() < end) {
    for (let i = 0; i < 16; i++) {
      sel.drawInto(rng, batch, out, 0);
      draws += batch;
    }
    await yieldTurn();
  }
  return draws;
}

// One executor for every promise (as the coordinator does): no closure per call.
let captured: (value: unknown) => void = () => {};
function capture(resolve: (value: unknown) => void): void {
  captured = resolve;
}

/**
 * Reference: the bare cost of one promise per call, with the loop shape of the draw() scenario.
 * Each call creates a promise and queues its resolver; once per event-loop turn (setImmediate,
 * as the coordinator flushes a batch) every queued promise is resolved, with `undefined`, or
 * with a fresh `{ requestId, itemId }` object when `withResult` is set (the object draw() must
 * build). No routing, no message, no worker: what is left when the engine costs nothing.
 */
export async function promiseLoop(inFlight: number, ms: number, withResult: boolean): Promise<number> {
  let queue: ((value: unknown) => void)[] = [];
  let scheduled = false;
  let nextId = 1;
  const flush = (): void => {
    scheduled = false;
    const q = queue;
    queue = [];
    if (withResult) for (let i = 0; i < q.length; i++) q[i]!({ requestId: nextId++, itemId: 'mud' });
    else for (let i = 0; i < q.length; i++) q[i]!(undefined);
  };
  const call = (): Promise<unknown> => {
    const p = new Promise(capture);
    queue.push(captured);
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
    return p;
  };
  let draws = 0;
  const flag = deadline(ms);
  const loop = async (): Promise<void> => {
    while (!flag.stop) {
      await call();
      draws++;
    }
  };
  const loops = new Array<Promise<void>>(inFlight);
  for (let i = 0; i < inFlight; i++) loops[i] = loop();
  await Promise.all(loops);
  flag.cancel();
  return draws;
}
