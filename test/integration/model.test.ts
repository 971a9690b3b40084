/**
 * Model-based test (issue 12, item 3): random sequences of createPool / draw / drawMany /
 * updateItem / pool / snapshot / concurrent bursts / close+reopen (with another shard count) /
 * crash (SIGKILL, with and without calls in flight) / second openers / hostile arguments, run by
 * fast-check against a real DrawEngine (worker threads, a temp directory, sync 'always') in a
 * child process (test/fixtures/model-host.mjs), and checked against a plain in-memory model of
 * the domain rules. Outcomes are random: the model does not predict which item a draw picks, it
 * checks that the outcome is legal and then applies it.
 *
 * Checked after every command: pool ids, and every pool's items (weight, quantity, drawn) and
 * lastRequestId, equal to the model's. Checked on every outcome: request ids positive, below
 * 2^53, never acknowledged twice (also across reopens and crashes), increasing within a pool,
 * consecutive within a drawMany; a draw only picks an available item (quantity > 0 or -1), an
 * empty draw (null / 0xFFFF) only when nothing is available, and it still takes an id; keyed
 * calls return their original outcome and draw nothing, or ERR_IDEMPOTENCY_MISMATCH for another
 * pool or count; every error is the documented EngineError code, never a synchronous throw, and
 * a rejected call changes nothing (state, and not one WAL record).
 *
 * Seeded: RPE_SEED=<n> (and RPE_PATH=<path> from a failure's report) replays a run; the seed is
 * printed. Budget: RPE_MODEL_RUNS runs of up to RPE_MODEL_COMMANDS commands.
 */
import { fork } from 'node:child_process';
import fc from 'fast-check';
import { pack } from 'msgpackr';
import { afterAll, describe, expect, it } from 'vitest';
import { DrawEngine, EngineError, fixture } from '../helpers/engine.js';
import { EngineHost, type CallResult, type Desc, type EngineCall, type HostStates, type WireBatch } from '../helpers/model-host.js';
import { testSeed } from '../helpers/seed.js';
import { tmpDir } from '../helpers/tmp.js';

const kSeed = testSeed(0x12_0003);
const kPath = process.env.RPE_PATH || undefined;
const kRuns = Number(process.env.RPE_MODEL_RUNS ?? 10);
const kCommands = Number(process.env.RPE_MODEL_COMMANDS ?? 40);
const kEmpty = 0xffff;
const kMaxTotalWeight = 2 ** 48;

// ---- the model ----

interface MItem {
  id: string;
  weight: number;
  /** -1 = unlimited. */
  quantity: number;
  drawn: number;
}

interface MPool {
  id: string;
  items: MItem[];
  index: Map<string, number>;
  lastRequestId: number;
}

interface MKey {
  pool: string;
  count: number;
  /** The keyed call's outcome (undefined while a burst's call is pending). */
  outcome: { first: number; indices: number[] } | undefined;
}

interface WindowLimits {
  keys: number;
  draws: number;
}

/** What the engine must hold: the domain rules applied to the outcomes it acknowledged. */
class Model {
  readonly pools = new Map<string, MPool>();
  /** Keys in some pool's window, with their call. */
  readonly keys = new Map<string, MKey>();
  /** Per pool, its window of keyed calls, oldest first. */
  readonly windows = new Map<string, string[]>();
  /** Every acknowledged request id range [first, last]. */
  readonly ids: [number, number][] = [];
  shards: number;
  /** metrics().records at the last check (a rejected call must not add any). */
  records = 0;

  constructor(
    shards: number,
    readonly limits: WindowLimits,
    readonly segmentBytes: number,
  ) {
    this.shards = shards;
  }

  /**
   * A fresh keyed call on `pool`: it enters the pool's window, and the oldest keys leave while
   * the window holds more than `limits.keys` keys or `limits.draws` draws (the newest stays).
   */
  addKey(pool: string, key: string, entry: MKey): void {
    const w = this.windows.get(pool) ?? [];
    this.windows.set(pool, w);
    w.push(key);
    this.keys.set(key, entry);
    let draws = w.reduce((a, k) => a + this.keys.get(k)!.count, 0);
    while (w.length > 1 && (w.length > this.limits.keys || draws > this.limits.draws)) {
      const old = w.shift()!;
      draws -= this.keys.get(old)!.count;
      this.keys.delete(old);
    }
  }

  /** Sorted pool ids: the choices a command's selector indexes into. */
  poolIds(): string[] {
    return [...this.pools.keys()].sort();
  }

  maxLastRequestId(): number {
    let max = 0;
    for (const p of this.pools.values()) max = Math.max(max, p.lastRequestId);
    return max;
  }
}

function available(item: MItem): boolean {
  return item.quantity !== 0;
}

/** WAL record bytes (frame, body, padding to 4): a record must fit in a segment after its header. */
function recordBytes(body: number): number {
  return (8 + body + 3) & ~3;
}

function fitsSegment(m: Model, body: number): boolean {
  return recordBytes(body) <= m.segmentBytes - 64;
}

/** A keyed call is one record: key, and one byte per draw (two from 255 items on). */
function keyedFits(m: Model, pool: MPool, key: string, count: number): boolean {
  return fitsSegment(m, 20 + Buffer.byteLength(key, 'utf8') + count * (pool.items.length < 255 ? 1 : 2));
}

/**
 * `first .. first + count - 1` were acknowledged on `pool` with these item indices: check the
 * ids and that each draw was legal when it happened, and apply them in order.
 */
function applyDraws(m: Model, poolId: string, first: number, indices: ArrayLike<number>, ctx: string): void {
  const pool = m.pools.get(poolId)!;
  const count = indices.length;
  const last = first + count - 1;
  expect(Number.isSafeInteger(first) && first >= 1 && last < 2 ** 53, `${ctx}: request ids ${first}..${last} must be positive integers below 2^53`).toBe(true);
  expect(first, `${ctx}: request ids increase within pool ${JSON.stringify(poolId)} (last was ${pool.lastRequestId})`).toBeGreaterThan(pool.lastRequestId);
  for (const [a, b] of m.ids) {
    expect(last < a || first > b, `${ctx}: ids ${first}..${last} were already acknowledged (${a}..${b})`).toBe(true);
  }
  for (let i = 0; i < count; i++) {
    const idx = indices[i]!;
    if (idx === kEmpty) {
      const avail = pool.items.filter(available).map((it) => it.id);
      expect(avail, `${ctx}: draw ${i} (id ${first + i}) was empty while items were available`).toEqual([]);
      continue;
    }
    const item = pool.items[idx];
    expect(item, `${ctx}: draw ${i} names item index ${idx}, not in the catalog`).toBeDefined();
    expect(available(item!), `${ctx}: draw ${i} (id ${first + i}) picked ${JSON.stringify(item!.id)}, which was exhausted`).toBe(true);
    item!.drawn++;
    if (item!.quantity > 0) item!.quantity--;
  }
  pool.lastRequestId = last;
  m.ids.push([first, last]);
}

/** The engine's states must be the model's, exactly. */
function expectStates(m: Model, got: HostStates, ctx: string): void {
  expect([...got.poolIds].sort(), `${ctx}: poolIds()`).toEqual(m.poolIds());
  const want = m.poolIds().map((id) => {
    const p = m.pools.get(id)!;
    return { id, lastRequestId: p.lastRequestId, items: p.items.map((i) => ({ id: i.id, weight: i.weight, quantity: i.quantity, drawn: i.drawn })) };
  });
  const have = [...got.states].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  expect(have, `${ctx}: pool states`).toEqual(want);
}

/** What the runs did: commands by kind, call outcomes by code (printed after the property). */
const stats = new Map<string, number>();
function tally(what: string, n = 1): void {
  stats.set(what, (stats.get(what) ?? 0) + n);
}

function expectOk(r: CallResult, ctx: string): unknown {
  tally('outcome ok');
  if (!r.ok) expect.fail(`${ctx}: expected success, got ${r.error.syncThrow ? 'a synchronous throw' : 'a rejection'} ${r.error.code}: ${r.error.message}`);
  return r.value;
}

function expectError(r: CallResult, code: string, ctx: string): void {
  if (r.ok) expect.fail(`${ctx}: expected ${code}, but it succeeded with ${fmt(r.value)}`);
  expect(r.error.syncThrow ?? false, `${ctx}: threw synchronously (${r.error.message})`).toBe(false);
  expect(r.error.isEngineError, `${ctx}: not an EngineError: ${r.error.message}`).toBe(true);
  expect(r.error.code, `${ctx}: ${r.error.message}`).toBe(code);
  tally(`outcome ${code}`);
}

function fmt(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x instanceof Uint16Array ? Array.from(x) : Number.isNaN(x) ? 'NaN' : x));
  } catch {
    return String(v);
  }
}

// ---- the real system ----

interface RunOptions {
  shards: number;
  window: WindowLimits;
  wal: 'mmap' | 'file';
  segmentBytes: number;
  snapshotEveryRecords: number;
}

/** Every engine host started by the current run (a crash replaces the run's host). */
const hosts = new Set<EngineHost>();
/** A host process started ahead (node and the package loaded), for the next run or crash. */
let spare: Promise<EngineHost> | undefined;

/** A fresh host: the spare, while a new spare starts. */
async function nextHost(): Promise<EngineHost> {
  const host = await (spare ?? EngineHost.start());
  spare = EngineHost.start();
  hosts.add(host);
  return host;
}

interface Real {
  host: EngineHost;
  dir: string;
  opts: RunOptions;
}

function openOptions(r: Real, shards: number): Record<string, unknown> {
  const o = r.opts;
  // The engine's PRNG seeded too: a replayed run draws alike as far as thread timing allows.
  return { dir: r.dir, shards, wal: o.wal, sync: 'always', segmentBytes: o.segmentBytes, snapshotEveryRecords: o.snapshotEveryRecords, idempotencyKeys: o.window.keys, idempotencyDraws: o.window.draws, replayThreads: 1, seed: kSeed };
}

/** After every command: the engine holds exactly the model's state. */
async function check(m: Model, r: Real, ctx: string): Promise<HostStates> {
  const got = await r.host.states();
  expectStates(m, got, ctx);
  m.records = got.records;
  return got;
}

// ---- generators ----

const POOL_IDS = ['a', '__proto__', 'b', 'constructor', '😀', 'p'.repeat(128)];
const ITEM_IDS = ['gold', 'mud', '__proto__', 'toString', 'é', '🎁'];
const KEYS = ['k1', 'k2', 'k3', 'k4', '__proto__', '🔑'];
/** Catalog weights (now and then a total above 2^48), and updates' (which can push it above). */
const WEIGHTS = [1, 1, 2, 3, 7, 100, 2 ** 40, 2 ** 46, 2 ** 46, 2 ** 47];
const UPDATE_WEIGHTS = [1, 2, 5, 100, 2 ** 46, 2 ** 47, 2 ** 48];
const QUANTITIES = [-1, -1, 0, 1, 1, 2, 3, 5, 40, 1000, 2 ** 53 - 1];

interface CatalogSpec {
  /** Items taken from ITEM_IDS, or a wide catalog (u16 indices in the WAL). */
  items: { id: string; weight: number; quantity: number }[];
  wide: number;
}

function catalogOf(spec: CatalogSpec): { id: string; weight: number; quantity: number }[] {
  if (spec.wide === 0) return spec.items;
  return Array.from({ length: spec.wide }, (_, i) => ({ id: `w${i}`, weight: 1 + (i % 5), quantity: i % 3 === 0 ? -1 : i % 3 }));
}

const weightArb = fc.constantFrom(...WEIGHTS);
const quantityArb = fc.constantFrom(...QUANTITIES);
const updateWeightArb = fc.constantFrom(...UPDATE_WEIGHTS);
const catalogArb: fc.Arbitrary<CatalogSpec> = fc.oneof(
  { weight: 9, arbitrary: fc.uniqueArray(fc.record({ id: fc.constantFrom(...ITEM_IDS), weight: weightArb, quantity: quantityArb }), { minLength: 1, maxLength: 4, selector: (i) => i.id }).map((items) => ({ items, wide: 0 })) },
  { weight: 1, arbitrary: fc.constantFrom(254, 255, 256, 300).map((wide) => ({ items: [], wide })) },
);
// Most calls go to two ids, so that they meet the pools created; the others now and then.
const poolArb = fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...POOL_IDS.slice(0, 2)) }, { weight: 1, arbitrary: fc.constantFrom(...POOL_IDS.slice(2)) });
const keyArb = fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom(...KEYS) });
const countArb = fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 20 }) }, { weight: 2, arbitrary: fc.integer({ min: 21, max: 600 }) }, { weight: 1, arbitrary: fc.integer({ min: 601, max: 5000 }) });

function drawCall(pool: string, count: number | 'one', key: string | undefined): EngineCall {
  const opts: Desc[] = key === undefined ? [] : [{ v: { idempotencyKey: key } }];
  return count === 'one' ? { method: 'draw', args: [{ v: pool }, ...opts] } : { method: 'drawMany', args: [{ v: pool }, { v: count }, ...opts] };
}

/** A draw call's outcome in one form: first id and indices. */
function outcomeOf(m: Model, poolId: string, count: number | 'one', value: unknown, ctx: string): { first: number; indices: number[] } {
  const pool = m.pools.get(poolId)!;
  if (count === 'one') {
    const v = value as { requestId: number; itemId: string | null };
    if (v.itemId === null) return { first: v.requestId, indices: [kEmpty] };
    const idx = pool.index.get(v.itemId);
    expect(idx, `${ctx}: drew ${JSON.stringify(v.itemId)}, not an item of the pool`).toBeDefined();
    return { first: v.requestId, indices: [idx!] };
  }
  const b = value as WireBatch;
  expect(b.count, `${ctx}: batch count`).toBe(count);
  expect(b.indices.length, `${ctx}: batch indices`).toBe(count);
  expect(b.items, `${ctx}: batch items are the catalog's ids in order`).toEqual(pool.items.map((i) => i.id));
  expect(b.countsOk && b.itemIdAtOk, `${ctx}: counts()/itemIdAt() agree with indices`).toBe(true);
  return { first: b.firstRequestId, indices: Array.from(b.indices) };
}

/** What a draw call must do per the model, before it runs. */
type Expect = { error: string } | { replay: MKey } | { fresh: MKey | undefined };

/**
 * What a draw call must do, decided as the engine decides when the call is made (keys are
 * taken, and leave windows, in call order): a fresh keyed call enters its pool's window now.
 */
function reserve(m: Model, poolId: string, n: number, key: string | undefined): Expect {
  const pool = m.pools.get(poolId);
  if (pool === undefined) return { error: 'ERR_UNKNOWN_POOL' };
  if (key === undefined) return { fresh: undefined };
  if (!keyedFits(m, pool, key, n)) return { error: 'ERR_INVALID_ARGUMENT' };
  const k = m.keys.get(key);
  if (k !== undefined) return k.pool !== poolId || k.count !== n ? { error: 'ERR_IDEMPOTENCY_MISMATCH' } : { replay: k };
  const entry: MKey = { pool: poolId, count: n, outcome: undefined };
  m.addKey(poolId, key, entry);
  return { fresh: entry };
}

// ---- commands ----

type Cmd = fc.AsyncCommand<Model, Real>;

class CreatePool implements Cmd {
  constructor(
    readonly id: string,
    readonly spec: CatalogSpec,
  ) {}
  check(): boolean {
    return true;
  }
  async run(m: Model, r: Real): Promise<void> {
    tally(`cmd ${this.constructor.name}`);
    const items = catalogOf(this.spec);
    const ctx = this.toString();
    const res = await r.host.call({ method: 'createPool', args: [{ v: this.id }, { v: items }] });
    const total = items.reduce((a, i) => a + i.weight, 0);
    if (total > kMaxTotalWeight) expectError(res, 'ERR_INVALID_CONFIG', ctx);
    else if (m.pools.has(this.id)) expectError(res, 'ERR_POOL_EXISTS', ctx);
    // The creation is one WAL record (its catalog packed with msgpackr): it must fit in a segment.
    else if (!fitsSegment(m, 8 + pack({ id: this.id, items }).length)) expectError(res, 'ERR_INVALID_ARGUMENT', ctx);
    else {
      expectOk(res, ctx);
      m.pools.set(this.id, {
        id: this.id,
        items: items.map((i) => ({ ...i, drawn: 0 })),
        index: new Map(items.map((i, k) => [i.id, k])),
        lastRequestId: 0,
      });
    }
    await check(m, r, ctx);
  }
  toString(): string {
    return `createPool(${fmt(this.id)}, ${this.spec.wide ? `<${this.spec.wide} items>` : fmt(this.spec.items)})`;
  }
}

class Draw implements Cmd {
  constructor(
    readonly pool: string,
    readonly count: number | 'one',
    readonly key: string | undefined,
  ) {}
  check(): boolean {
    return true;
  }
  async run(m: Model, r: Real): Promise<void> {
    tally(`cmd ${this.constructor.name}`);
    const ctx = this.toString();
    const n = this.count === 'one' ? 1 : this.count;
    const want = reserve(m, this.pool, n, this.key);
    const res = await r.host.call(drawCall(this.pool, this.count, this.key));
    const got = settle(m, this.pool, this.count, want, res, ctx);
    if (got !== undefined) applyDraws(m, this.pool, got.first, got.indices, ctx);
    await check(m, r, ctx);
  }
  toString(): string {
    const opts = this.key === undefined ? '' : `, { idempotencyKey: ${fmt(this.key)} }`;
    return this.count === 'one' ? `draw(${fmt(this.pool)}${opts})` : `drawMany(${fmt(this.pool)}, ${this.count}${opts})`;
  }
}

/**
 * Check one draw call's result against what the model expected. Returns a fresh outcome (to be
 * applied, after its key's entry got it) or undefined (an error, or a replay that matched).
 */
function settle(m: Model, poolId: string, count: number | 'one', want: Expect, res: CallResult, ctx: string): { first: number; indices: number[] } | undefined {
  if ('error' in want) {
    expectError(res, want.error, ctx);
    return undefined;
  }
  const got = outcomeOf(m, poolId, count, expectOk(res, ctx), ctx);
  if ('replay' in want) {
    expect(want.replay.outcome, `${ctx}: a replayed key has an outcome`).toBeDefined();
    expect(got, `${ctx}: a repeated key returns the original outcome`).toEqual(want.replay.outcome);
    tally('keyed replays');
    return undefined;
  }
  if (want.fresh !== undefined) want.fresh.outcome = got;
  return got;
}

/** Repeat a keyed call the model holds (as draw() when it was of one draw, now and then). */
class RetryKey implements Cmd {
  constructor(
    readonly sel: number,
    readonly asDraw: boolean,
  ) {}
  check(m: Model): boolean {
    return m.keys.size > 0;
  }
  async run(m: Model, r: Real): Promise<void> {
    tally(`cmd ${this.constructor.name}`);
    const keys = [...m.keys.keys()].sort();
    const key = keys[this.sel % keys.length]!;
    const k = m.keys.get(key)!;
    await new Draw(k.pool, k.count === 1 && this.asDraw ? 'one' : k.count, key).run(m, r);
  }
  toString(): string {
    return `retry(key #${this.sel}${this.asDraw ? ', as draw()' : ''})`;
  }
}

interface Patch {
  weight?: number;
  quantity?: number;
}

class UpdateItem implements Cmd {
  constructor(
    readonly pool: string,
    /** An index into the catalog (mod its length), or an id no catalog has. */
    readonly item: number | string,
    readonly patch: Patch,
  ) {}
  check(): boolean {
    return true;
  }
  async run(m: Model, r: Real): Promise<void> {
    tally(`cmd ${this.constructor.name}`);
    const pool = m.pools.get(this.pool);
    const itemIndex = pool === undefined || typeof this.item === 'string' ? -1 : this.item % pool.items.length;
    const itemId = typeof this.item === 'string' ? this.item : itemIndex >= 0 ? pool!.items[itemIndex]!.id : ITEM_IDS[this.item % ITEM_IDS.length]!;
    const ctx = `updateItem(${fmt(this.pool)}, ${fmt(itemId)}, ${fmt(this.patch)})`;
    const res = await r.host.call({ method: 'updateItem', args: [{ v: this.pool }, { v: itemId }, { v: this.patch }] });
    if (pool === undefined) expectError(res, 'ERR_UNKNOWN_POOL', ctx);
    else if (itemIndex < 0) expectError(res, 'ERR_UNKNOWN_ITEM', ctx);
    else {
      const item = pool.items[itemIndex]!;
      const total = pool.items.reduce((a, i) => a + i.weight, 0) - item.weight + (this.patch.weight ?? item.weight);
      if (total > kMaxTotalWeight) expectError(res, 'ERR_INVALID_ARGUMENT', ctx);
      else {
        expectOk(res, ctx);
        if (this.patch.weight !== undefined) item.weight = this.patch.weight;
        if (this.patch.quantity !== undefined) item.quantity = this.patch.quantity;
      }
    }
    await check(m, r, ctx);
  }
  toString(): string {
    return `updateItem(${fmt(this.pool)}, ${typeof this.item === 'string' ? fmt(this.item) : `#${this.item}`}, ${fmt(this.patch)})`;
  }
}

class ReadPool implements Cmd {
  constructor(readonly pool: string) {}
  check(): boolean {
    return true;
  }
  async run(m: Model, r: Real): Promise<void> {
    tally(`cmd ${this.constructor.name}`);
    const ctx = this.toString();
    const res = await r.host.call({ method: 'pool', args: [{ v: this.pool }] });
    const p = m.pools.get(this.pool);
    if (p === undefined) expectError(res, 'ERR_UNKNOWN_POOL', ctx);
    else expect(expectOk(res, ctx), ctx).toEqual({ id: p.id, lastRequestId: p.lastRequestId, items: p.items.map(({ id, weight, quantity, drawn }) => ({ id, weight, quantity, drawn })) });
  }
  toString(): string {
    return `pool(${fmt(this.pool)})`;
  }
}

class Snapshot implements Cmd {
  check(): boolean {
    return true;
  }
  async run(m: Model, r: Real): Promise<void> {
    tally(`cmd ${this.constructor.name}`);
    await r.host.snapshot();
    await check(m, r, this.toString());
  }
  toString(): string {
    return 'snapshot()';
  }
}

/** Every method, once close() has started: ERR_ENGINE_CLOSED. */
const kAfterClose: EngineCall[] = [
  { method: 'draw', args: [{ v: 'a' }] },
  { method: 'drawMany', args: [{ v: 'a' }, { v: 2 }] },
  { method: 'draw', args: [{ v: 'a' }, { v: { idempotencyKey: 'k1' } }] },
  { method: 'createPool', args: [{ v: 'late' }, { v: [{ id: 'x', weight: 1, quantity: 1 }] }] },
  { method: 'updateItem', args: [{ v: 'a' }, { v: 'gold' }, { v: { weight: 1 } }] },
  { method: 'pool', args: [{ v: 'a' }] },
  { method: 'snapshot', args: [] },
];

/**
 * A clean close, with draw calls issued just before it (close() drains them: every one
 * succeeds, and every call after close() is ERR_ENGINE_CLOSED), then open again (maybe with
 * another shard count): everything is there.
 */
class Reopen implements Cmd {
  constructor(
    readonly shards: number,
    readonly load: BurstCall[] = [],
  ) {}
  check(): boolean {
    return true;
  }
  async run(m: Model, r: Real): Promise<void> {
    tally(`cmd ${this.constructor.name}`);
    const ctx = this.toString();
    if (this.load.length === 0) await r.host.close();
    else {
      await concurrentDraws(
        m,
        this.load,
        async (calls) => {
          const { results, after } = await r.host.burstClose(calls, kAfterClose);
          after.forEach((a, i) => expectError(a, 'ERR_ENGINE_CLOSED', `${ctx}: ${kAfterClose[i]!.method}() after close()`));
          return results;
        },
        ctx,
      );
    }
    const rec = await r.host.open(openOptions(r, this.shards) as never);
    m.shards = this.shards;
    expect(rec.tornTails, `${ctx}: no torn tail after a clean close`).toEqual([]);
    expect(rec.snapshotFallbacks, `${ctx}: no snapshot passed over after a clean close`).toEqual([]);
    expect(rec.maxRequestId, `${ctx}: recovered maxRequestId`).toBe(m.maxLastRequestId());
    await check(m, r, ctx);
  }
  toString(): string {
    return `${this.load.length ? `[${drawsString(this.load)}] then ` : ''}close(); open({ shards: ${this.shards} })`;
  }
}

/**
 * SIGKILL the engine's process, optionally with draws in flight (after `acks` of them were
 * acknowledged), then open the directory in a new process. Every acknowledged call must be
 * there; each call in flight may or may not have happened, as a whole or in part.
 */
class Crash implements Cmd {
  constructor(
    readonly shards: number,
    readonly inflight: { pool: string; count: number | 'one' }[],
    readonly acks: number,
  ) {}
  check(): boolean {
    return true;
  }
  async run(m: Model, r: Real): Promise<void> {
    tally(`cmd ${this.constructor.name}`);
    const ctx = this.toString();
    const calls = this.inflight.filter((c) => m.pools.has(c.pool));
    const host = r.host;
    if (calls.length > 0) {
      await host.fire(calls.map((c) => drawCall(c.pool, c.count, undefined)));
      // Kill once `acks` of them were acknowledged: at least one is still in flight then.
      const want = this.acks % calls.length;
      for (let i = 0; i < 500 && host.late.length < want; i++) await new Promise((res) => setTimeout(res, 2));
    }
    await host.kill();
    r.host = await nextHost();
    await r.host.open(openOptions(r, this.shards) as never);
    m.shards = this.shards;
    const got = await r.host.states();

    // Acknowledged outcomes of the calls in flight: per pool, in id order.
    const acked = new Map<string, { first: number; indices: number[]; n: number }[]>();
    const unknown = new Map<string, number>();
    const settled = new Set<number>();
    for (const l of host.late) {
      const c = calls[l.late]!;
      const lctx = `${ctx}: in-flight ${c.count === 'one' ? 'draw' : `drawMany(${c.count})`} on ${fmt(c.pool)}`;
      const value = expectOk(l, lctx);
      settled.add(l.late);
      const o = outcomeOf(m, c.pool, c.count, value, lctx);
      tally('in-flight acknowledged');
      acked.set(c.pool, [...(acked.get(c.pool) ?? []), { ...o, n: o.indices.length }]);
    }
    tally('in-flight calls', calls.length);
    calls.forEach((c, i) => {
      if (!settled.has(i)) unknown.set(c.pool, (unknown.get(c.pool) ?? 0) + (c.count === 'one' ? 1 : c.count));
    });

    expect([...got.poolIds].sort(), `${ctx}: poolIds()`).toEqual(m.poolIds());
    for (const s of got.states) {
      const p = m.pools.get(s.id)!;
      const pctx = `${ctx}: pool ${fmt(s.id)}`;
      const list = (acked.get(s.id) ?? []).sort((a, b) => a.first - b.first);
      // Acknowledged in-flight draws: fresh ids, and each pick legal (a draw of unknown fate may
      // have run between them and taken stock, so an empty acknowledged draw is not judged).
      const scratch = p.items.map((i) => ({ ...i }));
      const ackedDrawn = new Array<number>(p.items.length).fill(0);
      let last = p.lastRequestId;
      for (const o of list) {
        expect(o.first, `${pctx}: in-flight ids increase`).toBeGreaterThan(last);
        for (const [a, b] of m.ids) expect(o.first + o.n - 1 < a || o.first > b, `${pctx}: in-flight ids ${o.first}.. reused ${a}..${b}`).toBe(true);
        last = o.first + o.n - 1;
        for (const idx of o.indices) {
          if (idx === kEmpty) continue;
          expect(scratch[idx] !== undefined && available(scratch[idx]!), `${pctx}: acknowledged in-flight draw of exhausted item #${idx}`).toBe(true);
          ackedDrawn[idx]!++;
          scratch[idx]!.drawn++;
          if (scratch[idx]!.quantity > 0) scratch[idx]!.quantity--;
        }
      }
      expect(s.lastRequestId, `${pctx}: lastRequestId covers every acknowledged draw`).toBeGreaterThanOrEqual(last);
      let extra = 0;
      s.items.forEach((it, i) => {
        const mi = p.items[i]!;
        expect(it.id, pctx).toBe(mi.id);
        expect(it.weight, `${pctx}: weight of ${fmt(mi.id)}`).toBe(mi.weight);
        expect(it.drawn - mi.drawn, `${pctx}: drawn of ${fmt(mi.id)} holds every acknowledged draw`).toBeGreaterThanOrEqual(ackedDrawn[i]!);
        extra += it.drawn - mi.drawn - ackedDrawn[i]!;
        // Conservation: what was drawn came out of the quantity.
        expect(it.quantity, `${pctx}: quantity of ${fmt(mi.id)}`).toBe(mi.quantity === -1 ? -1 : mi.quantity - (it.drawn - mi.drawn));
      });
      expect(extra, `${pctx}: draws beyond the acknowledged ones come from calls in flight`).toBeLessThanOrEqual(unknown.get(s.id) ?? 0);
      if (s.lastRequestId > last) expect(unknown.get(s.id) ?? 0, `${pctx}: lastRequestId ${s.lastRequestId} beyond every acknowledged id`).toBeGreaterThan(0);
      // The model takes the outcome the engine recovered.
      for (const o of list) m.ids.push([o.first, o.first + o.n - 1]);
      p.lastRequestId = s.lastRequestId;
      s.items.forEach((it, i) => {
        p.items[i]!.quantity = it.quantity;
        p.items[i]!.drawn = it.drawn;
      });
    }
    await check(m, r, ctx);
  }
  toString(): string {
    const f = this.inflight.map((c) => `${c.count === 'one' ? 'draw' : `drawMany:${c.count}`}@${fmt(c.pool)}`).join(' ');
    return `crash(${f ? `in flight: ${f}, kill after ${this.acks} acks; ` : ''}reopen with ${this.shards} shards)`;
  }
}

interface BurstCall {
  pool: string;
  count: number | 'one';
  key: string | undefined;
}

/**
 * Draw calls issued together (`send` issues them, in order, in one turn): the engine takes keys
 * in call order, so the first fresh use of a key draws, later identical calls get its outcome,
 * calls with another pool or count are refused. Then, per pool in request id order, each
 * outcome must have been legal.
 */
async function concurrentDraws(m: Model, calls: BurstCall[], send: (calls: EngineCall[]) => Promise<CallResult[]>, ctx: string): Promise<void> {
  const wants = calls.map((c) => reserve(m, c.pool, c.count === 'one' ? 1 : c.count, c.key));
  const results = await send(calls.map((c) => drawCall(c.pool, c.count, c.key)));
  const fresh: { i: number; first: number; indices: number[] }[] = [];
  // Fresh calls first: their outcomes are what the replays of their keys must return.
  calls.forEach((c, i) => {
    const want = wants[i]!;
    if ('replay' in want) return;
    const got = settle(m, c.pool, c.count, want, results[i]!, `${ctx}: call ${i}`);
    if (got !== undefined) fresh.push({ i, ...got });
  });
  calls.forEach((c, i) => {
    const want = wants[i]!;
    if ('replay' in want) settle(m, c.pool, c.count, want, results[i]!, `${ctx}: call ${i}`);
  });
  fresh.sort((a, b) => a.first - b.first);
  for (const f of fresh) applyDraws(m, calls[f.i]!.pool, f.first, f.indices, `${ctx}: call ${f.i}`);
}

function drawsString(calls: BurstCall[]): string {
  return calls.map((c) => new Draw(c.pool, c.count, c.key).toString()).join(', ');
}

/** Concurrent draw calls issued in one turn (and a snapshot() among them, now and then). */
class Burst implements Cmd {
  constructor(
    readonly calls: BurstCall[],
    /** Where a snapshot() call goes among the calls (-1: none). */
    readonly snapshotAt: number,
  ) {}
  check(): boolean {
    return true;
  }
  async run(m: Model, r: Real): Promise<void> {
    tally(`cmd ${this.constructor.name}`);
    const ctx = this.toString();
    await concurrentDraws(
      m,
      this.calls,
      async (calls) => {
        if (this.snapshotAt < 0) return r.host.burst(calls);
        const at = this.snapshotAt % (calls.length + 1);
        const results = await r.host.burst([...calls.slice(0, at), { method: 'snapshot', args: [] }, ...calls.slice(at)]);
        expectOk(results[at]!, `${ctx}: snapshot()`);
        return [...results.slice(0, at), ...results.slice(at + 1)];
      },
      ctx,
    );
    await check(m, r, ctx);
  }
  toString(): string {
    return `burst[${drawsString(this.calls)}${this.snapshotAt >= 0 ? `, snapshot() at ${this.snapshotAt % (this.calls.length + 1)}` : ''}]`;
  }
}

/**
 * A second DrawEngine.open of the open directory, from the engine's process, this one or
 * another, while draws run on the first: ERR_DIR_LOCKED, and the first engine goes on intact.
 */
class SecondOpener implements Cmd {
  constructor(
    readonly where: 'host' | 'test' | 'child',
    readonly load: BurstCall[],
  ) {}
  check(): boolean {
    return true;
  }
  async #attempt(r: Real, ctx: string): Promise<void> {
    if (this.where === 'host') {
      const got = await r.host.openAgain();
      expect(got.opened, `${ctx}: a second engine opened the directory`).toBe(false);
      expect(got.error?.code, `${ctx}: ${got.error?.message}`).toBe('ERR_DIR_LOCKED');
      expect(got.error?.isEngineError, ctx).toBe(true);
    } else if (this.where === 'test') {
      const err = await DrawEngine.open({ dir: r.dir, shards: 1 }).then(
        async (e) => {
          await e.close();
          return undefined;
        },
        (e: unknown) => e,
      );
      expect(err, `${ctx}: a second engine opened the directory`).toBeInstanceOf(EngineError);
      expect((err as EngineError).code, ctx).toBe('ERR_DIR_LOCKED');
    } else {
      const child = fork(fixture('open-and-hold.mjs'), [r.dir], { execArgv: [], stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
      const msg = await new Promise<{ type: string; code?: string; message?: string }>((resolve, reject) => {
        child.once('message', resolve);
        child.once('exit', (code) => reject(new Error(`opener exited (${code}) without a word`)));
      });
      if (msg.type === 'opened') child.send({ type: 'close' });
      await new Promise((res) => (child.exitCode !== null || child.signalCode !== null ? res(undefined) : child.once('exit', res)));
      expect(msg, ctx).toMatchObject({ type: 'error', code: 'ERR_DIR_LOCKED' });
    }
  }
  async run(m: Model, r: Real): Promise<void> {
    tally(`cmd ${this.constructor.name}`);
    const ctx = this.toString();
    await concurrentDraws(m, this.load, async (calls) => (await Promise.all([r.host.burst(calls), this.#attempt(r, ctx)]))[0], ctx);
    await check(m, r, ctx);
  }
  toString(): string {
    return `secondOpen(from ${this.where}${this.load.length ? `, during [${drawsString(this.load)}]` : ''})`;
  }
}

// ---- hostile arguments ----

/** Pool ids that are not ids at all: ERR_INVALID_ARGUMENT wherever a pool id goes. */
const BAD_POOL_IDS: Desc[] = [
  { v: '' },
  { v: 'x'.repeat(129) },
  { v: '\uD800' },
  { v: 'a\uDC00b' },
  { v: 'p'.repeat(127) + '\uD83D' },
  { v: 1 },
  { v: NaN },
  { v: null },
  { v: undefined },
  { v: true },
  { v: 1n },
  { v: {} },
  { v: ['a'] },
  { make: 'symbol' },
  { make: 'function' },
  { make: 'stringObject', s: 'a' },
  { make: 'proxy' },
  { make: 'revoked' },
  { make: 'getter', prop: 'toString' },
];
/** drawMany counts: ERR_INVALID_ARGUMENT. */
const BAD_COUNTS: Desc[] = [
  { v: 0 },
  { v: -1 },
  { v: -0 },
  { v: 1.5 },
  { v: NaN },
  { v: Infinity },
  { v: -Infinity },
  { v: 2 ** 24 + 1 },
  { v: 2 ** 31 },
  { v: 2 ** 53 },
  { v: 1e300 },
  { v: '5' },
  { v: 5n },
  { v: null },
  { v: undefined },
  { v: true },
  { v: [5] },
  { make: 'numberObject', n: 5 },
  { make: 'valueOf', n: 5 },
  { make: 'proxy' },
  { make: 'symbol' },
];
/** draw/drawMany options: ERR_INVALID_ARGUMENT. */
const BAD_OPTIONS: Desc[] = [
  { v: 'k1' },
  { v: 42 },
  { v: null },
  { v: true },
  { make: 'function' },
  { make: 'symbol' },
  { v: { idempotencyKey: '' } },
  { v: { idempotencyKey: 'k'.repeat(129) } },
  { v: { idempotencyKey: '\uD800' } },
  { v: { idempotencyKey: 'k1\uDFFF' } },
  { v: { idempotencyKey: 42 } },
  { v: { idempotencyKey: null } },
  { v: { idempotencyKey: {} } },
  { v: { idempotencyKey: ['k1'] } },
  { make: 'getter', prop: 'idempotencyKey' },
  { make: 'proxy' },
  { make: 'revoked' },
];
const item = (o: Record<string, unknown>): Record<string, unknown> => ({ id: 'a', weight: 1, quantity: 1, ...o });
/** Catalogs: ERR_INVALID_CONFIG. */
const BAD_CATALOGS: Desc[] = [
  { v: null },
  { v: undefined },
  { v: {} },
  { v: 'items' },
  { v: { length: 1, 0: item({}) } },
  { v: [] },
  { make: 'manyItems', n: 65_535 },
  { v: [null] },
  { v: [undefined] },
  { v: [7] },
  { v: [{ id: 'a', weight: 1 }] },
  { v: [item({ id: '' })] },
  { v: [item({ id: '\uD800' })] },
  { v: [item({ id: 'x'.repeat(129) })] },
  { v: [item({ id: 7 })] },
  { v: [item({}), item({ weight: 2 })] },
  { v: [item({ weight: 0 })] },
  { v: [item({ weight: -1 })] },
  { v: [item({ weight: -0 })] },
  { v: [item({ weight: 1.5 })] },
  { v: [item({ weight: NaN })] },
  { v: [item({ weight: Infinity })] },
  { v: [item({ weight: '1' })] },
  { v: [item({ weight: 2 ** 53 })] },
  { v: [item({ weight: 2 ** 48 + 1 })] },
  { v: [item({ weight: 2 ** 47 + 1 }), item({ id: 'b', weight: 2 ** 47 })] },
  { v: [item({ quantity: -2 })] },
  { v: [item({ quantity: 1.5 })] },
  { v: [item({ quantity: NaN })] },
  { v: [item({ quantity: '1' })] },
  { v: [item({ quantity: 2 ** 53 })] },
  { v: [item({ quantity: Infinity })] },
  { v: [item({ quantity: 1n })] },
  { make: 'proxy' },
  { make: 'proxyArray' },
  { make: 'revoked' },
  { make: 'getterAt', items: [item({}), item({ id: 'b' })], index: 1 },
  { make: 'itemGetter', prop: 'id' },
  { make: 'itemGetter', prop: 'weight' },
  { make: 'itemGetter', prop: 'quantity' },
];
/** updateItem item ids that name no item: ERR_UNKNOWN_ITEM. */
const BAD_ITEMS: Desc[] = [
  { v: 'valueOf' },
  { v: 'hasOwnProperty' },
  { v: '' },
  { v: '\uD800' },
  { v: 0 },
  { v: null },
  { v: undefined },
  { v: ['gold'] },
  { make: 'stringObject', s: 'gold' },
  { make: 'proxy' },
  { make: 'symbol' },
];
/** updateItem patches: ERR_INVALID_ARGUMENT. */
const BAD_PATCHES: Desc[] = [
  { v: null },
  { v: undefined },
  { v: 'w' },
  { v: 5 },
  { v: {} },
  { v: { weight: undefined } },
  { v: { weight: 0 } },
  { v: { weight: -0 } },
  { v: { weight: -1 } },
  { v: { weight: 1.5 } },
  { v: { weight: NaN } },
  { v: { weight: Infinity } },
  { v: { weight: 2 ** 48 + 1 } },
  { v: { weight: '2' } },
  { v: { weight: 2 ** 53 } },
  { v: { weight: 1n } },
  { v: { quantity: -2 } },
  { v: { quantity: 1.5 } },
  { v: { quantity: NaN } },
  { v: { quantity: '1' } },
  { v: { quantity: 2 ** 53 } },
  { v: { quantity: -Infinity } },
  { v: { weight: 5, quantity: -2 } },
  { v: { weight: 0, quantity: 5 } },
  { v: { quantity: 3, weight: NaN } },
  { make: 'getter', prop: 'weight' },
  { make: 'getter', prop: 'quantity', base: { weight: 2 } },
  { make: 'proxy' },
  { make: 'revoked' },
  { make: 'function' },
];

type HostileKind = 'createPool.id' | 'createPool.items' | 'draw.pool' | 'draw.options' | 'drawMany.pool' | 'drawMany.count' | 'drawMany.options' | 'updateItem.pool' | 'updateItem.item' | 'updateItem.patch' | 'pool.pool';

const kHostile: Record<HostileKind, { values: Desc[]; code: string; needsPool: boolean }> = {
  'createPool.id': { values: BAD_POOL_IDS, code: 'ERR_INVALID_ARGUMENT', needsPool: false },
  'createPool.items': { values: BAD_CATALOGS, code: 'ERR_INVALID_CONFIG', needsPool: false },
  'draw.pool': { values: BAD_POOL_IDS, code: 'ERR_INVALID_ARGUMENT', needsPool: false },
  'draw.options': { values: BAD_OPTIONS, code: 'ERR_INVALID_ARGUMENT', needsPool: true },
  'drawMany.pool': { values: BAD_POOL_IDS, code: 'ERR_INVALID_ARGUMENT', needsPool: false },
  'drawMany.count': { values: BAD_COUNTS, code: 'ERR_INVALID_ARGUMENT', needsPool: true },
  'drawMany.options': { values: BAD_OPTIONS, code: 'ERR_INVALID_ARGUMENT', needsPool: true },
  'updateItem.pool': { values: BAD_POOL_IDS, code: 'ERR_INVALID_ARGUMENT', needsPool: false },
  'updateItem.item': { values: BAD_ITEMS, code: 'ERR_UNKNOWN_ITEM', needsPool: true },
  'updateItem.patch': { values: BAD_PATCHES, code: 'ERR_INVALID_ARGUMENT', needsPool: true },
  'pool.pool': { values: BAD_POOL_IDS, code: 'ERR_INVALID_ARGUMENT', needsPool: false },
};

/** One call with one hostile argument, every other argument valid: the documented code, and nothing changes. */
class Hostile implements Cmd {
  constructor(
    readonly kind: HostileKind,
    readonly value: number,
    readonly poolSel: number,
  ) {}
  check(m: Model): boolean {
    return !kHostile[this.kind].needsPool || m.pools.size > 0;
  }
  #desc(): Desc {
    const vs = kHostile[this.kind].values;
    return vs[this.value % vs.length]!;
  }
  callOf(m: Model): EngineCall {
    const ids = m.poolIds();
    const pool = ids.length > 0 ? ids[this.poolSel % ids.length]! : 'a';
    const itemId = m.pools.get(pool)?.items[0]?.id ?? 'gold';
    const bad = this.#desc();
    switch (this.kind) {
      case 'createPool.id':
        return { method: 'createPool', args: [bad, { v: [{ id: 'x', weight: 1, quantity: 1 }] }] };
      case 'createPool.items':
        // An id the valid commands never create.
        return { method: 'createPool', args: [{ v: 'hostile-target' }, bad] };
      case 'draw.pool':
        return { method: 'draw', args: [bad] };
      case 'draw.options':
        return { method: 'draw', args: [{ v: pool }, bad] };
      case 'drawMany.pool':
        return { method: 'drawMany', args: [bad, { v: 3 }] };
      case 'drawMany.count':
        return { method: 'drawMany', args: [{ v: pool }, bad] };
      case 'drawMany.options':
        return { method: 'drawMany', args: [{ v: pool }, { v: 3 }, bad] };
      case 'updateItem.pool':
        return { method: 'updateItem', args: [bad, { v: itemId }, { v: { weight: 1 } }] };
      case 'updateItem.item':
        return { method: 'updateItem', args: [{ v: pool }, bad, { v: { weight: 1 } }] };
      case 'updateItem.patch':
        return { method: 'updateItem', args: [{ v: pool }, { v: itemId }, bad] };
      case 'pool.pool':
        return { method: 'pool', args: [bad] };
    }
  }
  async run(m: Model, r: Real): Promise<void> {
    tally(`cmd ${this.constructor.name}`);
    const ctx = this.toString();
    const records = m.records;
    const res = await r.host.call(this.callOf(m));
    expectError(res, kHostile[this.kind].code, ctx);
    const got = await check(m, r, ctx);
    expect(got.records, `${ctx}: a rejected call wrote WAL records`).toBe(records);
  }
  toString(): string {
    return `hostile ${this.kind} = ${fmt(this.#desc())}`;
  }
}

// ---- the property ----

const drawArb = fc.record({ pool: poolArb, count: fc.oneof(fc.constant('one' as const), countArb), key: keyArb });
const createArb = fc.tuple(poolArb, catalogArb).map(([id, spec]) => new CreatePool(id, spec));
/** Each run starts with pools 'a' and '__proto__' (and maybe one more), so that draws meet pools early. */
const initialArb = fc.tuple(catalogArb, catalogArb, fc.array(createArb, { maxLength: 1 })).map(([a, b, more]) => [new CreatePool('a', a), new CreatePool('__proto__', b), ...more]);
const commandArbs: fc.Arbitrary<Cmd>[] = [
  createArb,
  drawArb.map((d) => new Draw(d.pool, d.count, d.key)),
  drawArb.map((d) => new Draw(d.pool, d.count, d.key)),
  drawArb.map((d) => new Draw(d.pool, d.count, d.key)),
  drawArb.map((d) => new Draw(d.pool, d.count, d.key)),
  fc
    .tuple(
      poolArb,
      fc.oneof({ weight: 9, arbitrary: fc.nat(300) }, { weight: 1, arbitrary: fc.constantFrom('valueOf', 'nope') }),
      fc.oneof(fc.record({ weight: updateWeightArb }), fc.record({ quantity: quantityArb }), fc.record({ weight: updateWeightArb, quantity: quantityArb })),
    )
    .map(([p, i, patch]) => new UpdateItem(p, i, patch)),
  fc
    .tuple(poolArb, fc.nat(300), fc.record({ quantity: quantityArb }))
    .map(([p, i, patch]) => new UpdateItem(p, i, patch)),
  fc.tuple(fc.nat(10), fc.boolean()).map(([k, d]) => new RetryKey(k, d)),
  poolArb.map((p) => new ReadPool(p)),
  fc.constant(new Snapshot()),
  fc.tuple(fc.integer({ min: 1, max: 3 }), fc.array(drawArb, { maxLength: 6 })).map(([s, load]) => new Reopen(s, load)),
  fc
    .tuple(fc.integer({ min: 1, max: 3 }), fc.array(fc.record({ pool: poolArb, count: fc.oneof(fc.constant('one' as const), countArb) }), { maxLength: 6 }), fc.nat(4))
    .map(([s, inflight, acks]) => new Crash(s, inflight, acks)),
  fc.tuple(fc.array(drawArb, { minLength: 2, maxLength: 8 }), fc.integer({ min: -8, max: 8 })).map(([calls, at]) => new Burst(calls, at)),
  fc.tuple(fc.array(drawArb, { minLength: 2, maxLength: 8 }), fc.integer({ min: -8, max: 8 })).map(([calls, at]) => new Burst(calls, at)),
  fc.tuple(fc.constantFrom(...(Object.keys(kHostile) as HostileKind[])), fc.nat(100), fc.nat(10)).map(([k, v, p]) => new Hostile(k, v, p)),
  fc.tuple(fc.constantFrom(...(Object.keys(kHostile) as HostileKind[])), fc.nat(100), fc.nat(10)).map(([k, v, p]) => new Hostile(k, v, p)),
  fc
    .tuple(fc.constantFrom<'host' | 'test' | 'child'>('host', 'host', 'test', 'test', 'child'), fc.array(drawArb, { maxLength: 6 }))
    .map(([w, load]) => new SecondOpener(w, load)),
];

const runOptionsArb: fc.Arbitrary<RunOptions> = fc.record({
  shards: fc.integer({ min: 1, max: 3 }),
  wal: fc.constantFrom<'mmap' | 'file'>('mmap', 'file'),
  segmentBytes: fc.constantFrom(4 * 1024, 16 * 1024, 64 * 1024, 256 * 1024),
  // The idempotency window: the default, or small ones that keys leave in every run.
  window: fc.constantFrom({ keys: 100_000, draws: 1 << 22 }, { keys: 2, draws: 100_000 }, { keys: 3, draws: 700 }),
  snapshotEveryRecords: fc.constantFrom(0, 16, 1000),
});

afterAll(async () => {
  await Promise.all([...hosts].map((h) => h.kill()));
  hosts.clear();
  const last = spare;
  spare = undefined;
  await last?.then((h) => h.kill());
});

async function runModel(opts: RunOptions, cmds: Iterable<Cmd>): Promise<void> {
  const real: Real = { host: await nextHost(), dir: tmpDir('model'), opts };
  try {
    await real.host.open(openOptions(real, opts.shards) as never);
    const model = new Model(opts.shards, opts.window, opts.segmentBytes);
    const timed = [...cmds].map((c) => {
      const run = c.run.bind(c);
      return Object.assign(Object.create(c) as Cmd, {
        run: async (m: Model, r: Real) => {
          const t0 = performance.now();
          await run(m, r);
          // fast-check wraps each command (its `cmd`).
          tally(`ms ${((c as { cmd?: Cmd }).cmd ?? c).constructor.name}`, Math.round(performance.now() - t0));
        },
        toString: () => c.toString(),
      });
    });
    await fc.asyncModelRun(() => ({ model, real }), timed);
    // Last: a clean close and a reopen hold everything.
    await new Reopen(1 + (opts.shards % 3)).run(model, real);
    await real.host.close();
  } finally {
    // Every host of the run (a crash replaces it), whatever happened.
    await Promise.all([...hosts].map((h) => h.kill()));
    hosts.clear();
  }
}

describe('model-based: the engine against the domain rules', () => {
  it(`random command sequences (seed ${kSeed}, ${kRuns} runs of up to ${kCommands} commands)`, { timeout: 300_000 }, async () => {
    console.log(`model.test: seed ${kSeed}${kPath ? `, path ${kPath}` : ''} (replay with RPE_SEED=${kSeed}${kPath ? ` RPE_PATH=${kPath}` : ''})`);
    await fc.assert(
      fc.asyncProperty(runOptionsArb, initialArb, fc.commands(commandArbs, { maxCommands: kCommands, size: 'max' }), (opts, initial, cmds) =>
        runModel(opts, [...initial, ...cmds]),
      ),
      { seed: kSeed, path: kPath, numRuns: kRuns, endOnFailure: false, interruptAfterTimeLimit: 250_000, markInterruptAsFailure: true },
    );
    console.log(`model.test: ${[...stats].sort().map(([k, n]) => `${k}: ${n}`).join(', ')}`);
  });
});
