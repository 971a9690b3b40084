import type { ItemSpec } from '../../src/catalog.js';
import { EngineError } from '../../src/errors.js';
import { shardOf } from '../../src/hash.js';
import { createMetricsBuffer, shardBlock } from '../../src/layout.js';
import type { PoolData } from '../../src/pool-state.js';
import {
  kOpCreate,
  kOpDraw,
  kOpDrawKeyed,
  kOpUpdate,
  type BatchMessage,
  type Control,
  type PoolInit,
  type ShardConfig,
  type SnapshotJob,
} from '../../src/protocol.js';
import { recoverDir, type RecoveredState } from '../../src/recovery/recover.js';
import { kEmptyDraw } from '../../src/selector.js';
import { openWalWriter } from '../../src/shard/open-wal.js';
import { ShardCore } from '../../src/shard/shard-core.js';
import { retireCoveredByBase, writeBaseSnapshots } from '../../src/snapshot/base.js';
import { readSnapshotFile, writeSnapshotFile } from '../../src/snapshot/format.js';
import { applyRetention } from '../../src/snapshot/retention.js';
import type { Storage } from '../../src/storage/storage.js';
import { createFirstSegments } from '../../src/wal/segment-create.js';
import { firstSegmentBytes } from '../../src/wal/writer.js';
import { crashImages, crashStateCount, RecordingStorage, type CrashImage, type FrozenState } from './recording-storage.js';

/*
 * Power-loss checking on top of RecordingStorage: a workload driven through ShardCore the way
 * workers/shard-worker.ts drives it (batches applied, one commit per group, replies counted as
 * acknowledged only once commit() returned; snapshot jobs written as workers/snapshot-task.ts
 * writes them), a reference model of every pool's history, cut points at every storage
 * operation, and a checker that recovers each crash state and compares it with the model.
 */

type Event = { kind: 'create' } | { kind: 'draw'; id: number; idx: number } | { kind: 'update'; item: number; weight: number; quantity: number };

interface KeyedCall {
  key: string;
  firstRequestId: number;
  count: number;
  indices: number[];
  /** Events in the pool's history once this call is in it. */
  at: number;
}

interface ModelState {
  weights: number[];
  quantities: number[];
  drawn: number[];
  lastRequestId: number;
}

/** What a pool went through, in log order: state after any prefix of its history. */
export class PoolModel {
  readonly id: string;
  readonly itemIds: string[];
  readonly events: Event[];
  readonly keyed: KeyedCall[];
  readonly #init: ModelState;
  #states: ModelState[] | undefined;

  constructor(id: string, itemIds: string[], init: ModelState, events: Event[] = [{ kind: 'create' }], keyed: KeyedCall[] = []) {
    this.id = id;
    this.itemIds = itemIds;
    this.#init = init;
    this.events = events;
    this.keyed = keyed;
  }

  static create(id: string, items: ItemSpec[]): PoolModel {
    return new PoolModel(
      id,
      items.map((i) => i.id),
      { weights: items.map((i) => i.weight), quantities: items.map((i) => i.quantity), drawn: items.map(() => 0), lastRequestId: 0 },
    );
  }

  /** Request id of the latest draw in the history. */
  get lastId(): number {
    for (let n = this.events.length - 1; n >= 0; n--) {
      const e = this.events[n]!;
      if (e.kind === 'draw') return e.id;
    }
    return 0;
  }

  push(e: Event): void {
    this.events.push(e);
    this.#states = undefined;
  }

  /** State after the first n events (n >= 1: the creation). */
  states(): ModelState[] {
    if (this.#states !== undefined) return this.#states;
    const out: ModelState[] = [this.#init, this.#init];
    let s = this.#init;
    for (let n = 1; n < this.events.length; n++) {
      const e = this.events[n]!;
      s = { weights: s.weights.slice(), quantities: s.quantities.slice(), drawn: s.drawn.slice(), lastRequestId: s.lastRequestId };
      if (e.kind === 'draw') {
        s.lastRequestId = e.id;
        if (e.idx >= 0) {
          s.drawn[e.idx]!++;
          if (s.quantities[e.idx]! > 0) s.quantities[e.idx]!--;
        }
      } else if (e.kind === 'update') {
        if (!Number.isNaN(e.weight)) s.weights[e.item] = e.weight;
        if (!Number.isNaN(e.quantity)) s.quantities[e.item] = e.quantity;
      }
      out.push(s);
    }
    return (this.#states = out);
  }

  /** The history cut after n events, as the start of a next run. */
  prefix(n: number): PoolModel {
    return new PoolModel(this.id, this.itemIds, this.#init, this.events.slice(0, n), this.keyed.filter((k) => k.at <= n));
  }

  /** Its state as a next run's shard gets it. */
  data(n: number): PoolData {
    const s = this.states()[n]!;
    return {
      id: this.id,
      itemIds: this.itemIds.slice(),
      weights: s.weights.slice(),
      quantities: s.quantities.slice(),
      drawn: s.drawn.slice(),
      lastRequestId: s.lastRequestId,
      keys: this.keyed.filter((k) => k.at <= n).map((k) => ({ key: k.key, firstRequestId: k.firstRequestId, count: k.count, indices: Uint16Array.from(k.indices) })),
    };
  }
}

/** What was acknowledged at some moment: per pool, how many events of its history; the highest request id. */
export interface AckState {
  pools: ReadonlyMap<string, number>;
  maxId: number;
}

/** A cut point: the storage's state there, and what callers had been told was durable. */
export interface Cut {
  label: string;
  frozen: FrozenState;
  models: ReadonlyMap<string, PoolModel>;
  ack: AckState;
}

interface PendingOp {
  kind: number;
  pool: string;
  count: number;
  first: number;
  control?: Control;
  key?: string;
}

export interface WorkloadOptions {
  storage: RecordingStorage;
  dir: string;
  wal: 'mmap' | 'file';
  shards: number;
  segmentBytes: number;
  epoch: number;
  /** Per shard: first segment seq, where the open-time snapshot is (prepareOn's baseSeqs). */
  firstSeqs: number[];
  /** Pools recovered from an earlier run: their history so far (all of it counts as acknowledged). */
  models?: Map<string, PoolModel>;
  maxRequestId?: number;
  seed: number;
  snapshotEveryRecords?: number;
  /**
   * Default: 'always'. With another mode a power cut promises nothing about acknowledged draws:
   * cuts then record nothing as acknowledged, and the check is only that recovery opens the
   * directory on a consistent state (a prefix of each pool's history, no id reused).
   */
  sync?: 'always' | 'never';
}

/**
 * Shards driven without threads, on one storage: ops are queued per shard, send() applies each
 * shard's queue as one batch, commit() makes the applied batches durable and only then counts
 * them as acknowledged, as the worker's commitGroup does.
 */
export class Workload {
  readonly storage: RecordingStorage;
  readonly dir: string;
  readonly cores: ShardCore[] = [];
  readonly models: Map<string, PoolModel>;
  readonly cuts: Cut[] = [];
  readonly #shards: number;
  readonly #promised: boolean;
  readonly #refs = new Map<string, number>();
  readonly #nextRef: number[];
  readonly #queued: PendingOp[][];
  /** Per shard: pools with applied, not yet committed events. */
  readonly #applied: Set<string>[];
  readonly #acked = new Map<string, number>();
  #ackedMaxId = 0;
  #ack: AckState;
  #nextId: number;
  #batchId = 1;
  #snapReq = 1;
  /** Snapshot jobs handed out and not written yet (another thread writes them, a turn later). */
  readonly #jobs: SnapshotJob[] = [];

  constructor(opts: WorkloadOptions) {
    this.storage = opts.storage;
    this.dir = opts.dir;
    this.#shards = opts.shards;
    this.#promised = (opts.sync ?? 'always') === 'always';
    this.models = opts.models ?? new Map();
    this.#nextRef = new Array<number>(opts.shards).fill(0);
    this.#queued = Array.from({ length: opts.shards }, () => []);
    this.#applied = Array.from({ length: opts.shards }, () => new Set());
    this.#nextId = (opts.maxRequestId ?? 0) + 1;
    this.#ackedMaxId = opts.maxRequestId ?? 0;
    const inits: PoolInit[][] = Array.from({ length: opts.shards }, () => []);
    for (const m of this.models.values()) {
      const k = shardOf(m.id, opts.shards);
      const ref = this.#nextRef[k]!++;
      this.#refs.set(m.id, ref);
      inits[k]!.push({ ...m.data(m.events.length), ref });
      this.#acked.set(m.id, m.events.length);
    }
    this.#ack = this.#snapshotAck();
    this.storage.onOp = (op) => this.cut(`#${op.n} before ${op.op} ${op.path}`);
    for (let k = 0; k < opts.shards; k++) {
      const seq = opts.firstSeqs[k]!;
      const config: ShardConfig = {
        shard: k,
        wal: opts.wal,
        dir: opts.dir,
        sync: opts.sync ?? 'always',
        syncIntervalMs: 10,
        segmentBytes: opts.segmentBytes,
        epoch: opts.epoch,
        firstSeq: seq,
        seed: opts.seed,
        shards: opts.shards,
        snapshotEveryRecords: opts.snapshotEveryRecords ?? 0,
        idempotency: { keys: 100_000, draws: 4_194_304 },
        replicated: false,
        mark: undefined,
        maxRequestId: opts.maxRequestId ?? 0,
        // Every open writes a full snapshot per shard at its first segment (prepareOn).
        chain: { seq, files: [seq], at: new Map(inits[k]!.map((p) => [p.id, seq])) },
      };
      const wal = openWalWriter(config, rethrowBackgroundError, this.storage);
      this.cores.push(new ShardCore(config, inits[k]!, shardBlock(createMetricsBuffer(opts.shards), k), wal));
    }
  }

  #snapshotAck(): AckState {
    if (!this.#promised) return { pools: new Map(), maxId: 0 };
    return { pools: new Map(this.#acked), maxId: this.#ackedMaxId };
  }

  get ack(): AckState {
    return this.#ack;
  }

  /** Record a cut point now (the storage calls this before each of its operations). */
  cut(label: string): void {
    // A copy of the map: a restarted shard's histories are replaced, not rewritten.
    this.cuts.push({ label, frozen: this.storage.freeze(), models: new Map(this.models), ack: this.#ack });
  }

  #shardOf(pool: string): number {
    return shardOf(pool, this.#shards);
  }

  create(id: string, items: ItemSpec[]): void {
    const k = this.#shardOf(id);
    this.#refs.set(id, this.#nextRef[k]!++);
    this.models.set(id, PoolModel.create(id, items));
    this.#queued[k]!.push({ kind: kOpCreate, pool: id, count: 0, first: 0, control: { type: 'create', id, items } });
  }

  draw(pool: string, count = 1): void {
    this.#queued[this.#shardOf(pool)]!.push({ kind: kOpDraw, pool, count, first: this.#take(count) });
  }

  drawKeyed(pool: string, key: string, count = 1): void {
    this.#queued[this.#shardOf(pool)]!.push({ kind: kOpDrawKeyed, pool, count, first: this.#take(count), key });
  }

  update(pool: string, itemIndex: number, weight: number, quantity: number): void {
    this.#queued[this.#shardOf(pool)]!.push({ kind: kOpUpdate, pool, count: 0, first: 0, control: { type: 'update', itemIndex, weight, quantity } });
  }

  #take(count: number): number {
    const first = this.#nextId;
    this.#nextId += count;
    return first;
  }

  /** Apply each shard's queued ops as one batch (not yet durable, not acknowledged). */
  send(): void {
    for (let k = 0; k < this.#shards; k++) {
      const ops = this.#queued[k]!.splice(0);
      if (ops.length === 0) continue;
      const msg: BatchMessage = {
        type: 'batch',
        id: this.#batchId++,
        ops: Float64Array.from(ops.flatMap((o) => [o.kind, this.#refs.get(o.pool)!, o.count, o.first])),
        controls: ops.filter((o) => o.control !== undefined).map((o) => o.control!),
        keys: ops.filter((o) => o.key !== undefined).map((o) => o.key!),
      };
      const reply = this.cores[k]!.apply(msg);
      if (reply.error !== null) throw new Error(`batch ${msg.id} failed: ${reply.error.message}`);
      if (reply.opErrors !== null) throw new Error(`batch ${msg.id}: op errors ${JSON.stringify(reply.opErrors)}`);
      const replayed = new Map(reply.replayed ?? []);
      let at = 0;
      ops.forEach((o, i) => {
        const model = this.models.get(o.pool)!;
        if (o.kind === kOpDraw || o.kind === kOpDrawKeyed) {
          const indices = Array.from(reply.indices.subarray(at, at + o.count));
          at += o.count;
          if (replayed.has(i)) return; // a known key: nothing drawn
          indices.forEach((idx, j) => model.push({ kind: 'draw', id: o.first + j, idx: idx === kEmptyDraw ? -1 : idx }));
          if (o.kind === kOpDrawKeyed) model.keyed.push({ key: o.key!, firstRequestId: o.first, count: o.count, indices, at: model.events.length });
        } else if (o.kind === kOpUpdate && o.control?.type === 'update') {
          model.push({ kind: 'update', item: o.control.itemIndex, weight: o.control.weight, quantity: o.control.quantity });
        }
        this.#applied[k]!.add(o.pool);
      });
    }
  }

  /** Commit every shard with applied batches; what committed is acknowledged. */
  commit(): void {
    for (let k = 0; k < this.#shards; k++) {
      const pools = this.#applied[k]!;
      if (pools.size === 0) continue;
      this.cores[k]!.commit();
      for (const p of pools) {
        const m = this.models.get(p)!;
        this.#acked.set(p, m.events.length);
        this.#ackedMaxId = Math.max(this.#ackedMaxId, m.lastId);
      }
      pools.clear();
      this.#ack = this.#snapshotAck();
      const due = this.cores[k]!.snapshotIfDue();
      if (due !== undefined) this.#jobs.push(due);
    }
  }

  /** One event-loop turn of the workers: send, commit, write snapshot jobs handed out earlier, let setImmediate work run (spare segments). */
  async step(): Promise<void> {
    const jobs = this.#jobs.splice(0);
    this.send();
    this.commit();
    for (const j of jobs) this.writeSnapshot(j);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }

  /** engine.snapshot() on one shard, as the worker does: the group committed first; the job written a turn later. */
  requestSnapshot(shard: number): void {
    this.send();
    this.commit();
    const job = this.cores[shard]!.requestSnapshot(this.#snapReq++);
    if (typeof job === 'object') this.#jobs.push(job);
  }

  /** workers/snapshot-task.ts, then the shard's snapshotDone. */
  writeSnapshot(job: SnapshotJob): void {
    const path = writeSnapshotFile(this.storage, this.dir, job.body);
    const check = readSnapshotFile(this.storage, path);
    if (typeof check === 'string') throw new Error(`${path} failed verification after writing: ${check}`);
    applyRetention(this.storage, this.dir, job.body.shard, job.retention, false);
    const next = this.cores[job.body.shard]!.endSnapshot(job.body.coversBelow, null).job;
    if (typeof next === 'object') this.#jobs.push(next);
  }

  /**
   * Shard k's worker dies (nothing closed: its writes stay in the page cache, it writes nothing
   * more) and is restarted as src/coordinator/supervisor.ts does: the shard recovered alone
   * from the storage, a new writer in the same epoch from the next segment on. Its batches
   * applied but not committed were never acknowledged (their calls rejected), but the restarted
   * shard builds on what recovery found of them.
   */
  async restartShard(k: number): Promise<void> {
    if (this.#queued[k]!.length > 0) throw new Error('restartShard: send() the queued ops first');
    this.#applied[k]!.clear();
    const dead = this.cores[k]!;
    const state = await recoverDir(this.dir, { storage: this.storage, replayThreads: 1, onlyShard: k });
    const mine = new Map([...this.models].filter(([id]) => this.#shardOf(id) === k));
    const { problems, prefixes } = verifyRecovered(state, mine, { pools: new Map([...this.#acked].filter(([id]) => mine.has(id))), maxId: 0 });
    if (problems.length > 0) throw new Error(`restartShard(${k}): ${problems.join('; ')}`);
    // What the dead worker applied and recovery did not find (wal 'file' stages records in the
    // worker's memory until the commit) never happened: each history goes on from what was found.
    for (const [id, m] of mine) {
      const n = prefixes.get(id);
      if (n === undefined) this.models.delete(id);
      else if (n < m.events.length) this.models.set(id, m.prefix(n));
    }
    const base = state.bases.get(k);
    const config: ShardConfig = {
      ...dead.config,
      firstSeq: state.nextSeq.get(k) ?? 1,
      maxRequestId: this.#nextId - 1,
      chain: base ? { seq: base.coversBelow, files: base.files, at: new Map(base.manifest.poolIds.map((id, i) => [id, base.manifest.at[i]!])) } : null,
    };
    const pools: PoolInit[] = [...state.pools.values()].map((p) => ({ ...p, ref: this.#refs.get(p.id)! }));
    const wal = openWalWriter(config, rethrowBackgroundError, this.storage);
    this.cores[k] = new ShardCore(config, pools, shardBlock(createMetricsBuffer(this.#shards), k), wal);
  }

  /** The process dies: nothing closed, nothing more written; the page cache keeps what was written. */
  abandon(): void {
    this.storage.onOp = undefined;
  }

  async close(): Promise<void> {
    for (const j of this.#jobs.splice(0)) this.writeSnapshot(j);
    for (const c of this.cores) await c.close();
    this.cut('after close');
  }
}

/** Only sync 'interval' syncs in the background; a failure there must not pass unseen. */
function rethrowBackgroundError(err: EngineError): never {
  throw err;
}

/** shardOf grouping, as open.ts does. */
function groupByShard(pools: Iterable<PoolData>, shards: number): PoolData[][] {
  const out: PoolData[][] = Array.from({ length: shards }, () => []);
  for (const p of pools) out[shardOf(p.id, shards)]!.push(p);
  return out;
}

/**
 * The open-time steps of src/open.ts prepareDir() on a storage (no lock: the storage is ours):
 * recover, create each shard's first segment, write the base snapshots, retire what they cover.
 * `onRecovered` sees the recovered state before anything is written.
 */
export async function prepareOn(
  storage: Storage,
  dir: string,
  shards: number,
  segmentBytes: number,
  onRecovered?: (state: RecoveredState) => void,
): Promise<{ state: RecoveredState; baseSeqs: number[] }> {
  const state = await recoverDir(dir, { storage, replayThreads: 1 });
  onRecovered?.(state);
  const poolsByShard = groupByShard(state.pools.values(), shards);
  const baseSeqs = poolsByShard.map((_, k) => state.nextSeq.get(k) ?? 1);
  createFirstSegments(storage, dir, state.epoch, baseSeqs, firstSegmentBytes(segmentBytes));
  writeBaseSnapshots(storage, dir, state.epoch, poolsByShard, baseSeqs, state.maxRequestId, state.marks);
  retireCoveredByBase(storage, dir, baseSeqs, state.shardDirs, false);
  return { state, baseSeqs };
}

/**
 * Check a recovered state against the models and what was acknowledged. Returns the problems
 * (empty: fine) and, per pool, which prefix of its history the state is.
 */
export function verifyRecovered(state: RecoveredState, models: ReadonlyMap<string, PoolModel>, ack: AckState): { problems: string[]; prefixes: Map<string, number> } {
  const problems: string[] = [];
  const prefixes = new Map<string, number>();
  if (state.maxRequestId < ack.maxId) problems.push(`maxRequestId ${state.maxRequestId} < acknowledged id ${ack.maxId}: ids would be reused`);
  for (const [id, acked] of ack.pools) {
    if (acked >= 1 && !state.pools.has(id)) problems.push(`pool ${id}: acknowledged (${acked} events) but not recovered`);
  }
  for (const [id, rec] of state.pools) {
    const model = models.get(id);
    if (model === undefined) {
      problems.push(`pool ${id}: recovered but never created`);
      continue;
    }
    if (rec.lastRequestId > state.maxRequestId) problems.push(`pool ${id}: lastRequestId ${rec.lastRequestId} > maxRequestId ${state.maxRequestId}: ids would be reused`);
    if (rec.itemIds.join('\0') !== model.itemIds.join('\0')) {
      problems.push(`pool ${id}: items ${JSON.stringify(rec.itemIds)}, expected ${JSON.stringify(model.itemIds)}`);
      continue;
    }
    const states = model.states();
    const from = Math.max(1, ack.pools.get(id) ?? 0);
    let match = -1;
    for (let n = from; n < states.length && match < 0; n++) {
      const s = states[n]!;
      if (s.lastRequestId === rec.lastRequestId && same(s.drawn, rec.drawn) && same(s.quantities, rec.quantities) && same(s.weights, rec.weights)) match = n;
    }
    if (match < 0) {
      const a = states[from]!;
      problems.push(
        `pool ${id}: recovered {lastRequestId ${rec.lastRequestId}, drawn ${JSON.stringify(rec.drawn)}, quantities ${JSON.stringify(rec.quantities)}} ` +
          `is no state of its history from the acknowledged one {lastRequestId ${a.lastRequestId}, drawn ${JSON.stringify(a.drawn)}, quantities ${JSON.stringify(a.quantities)}} on`,
      );
      continue;
    }
    prefixes.set(id, match);
    const want = model.keyed.filter((k) => k.at <= match);
    const got = new Map((rec.keys ?? []).map((k) => [k.key, k]));
    for (const k of want) {
      const g = got.get(k.key);
      if (g === undefined || g.firstRequestId !== k.firstRequestId || g.count !== k.count || !same(Array.from(g.indices), k.indices)) {
        problems.push(`pool ${id}: idempotency key ${k.key} (ids ${k.firstRequestId}+${k.count}) not recovered as logged`);
      }
      if (g !== undefined && g.firstRequestId + g.count - 1 > state.maxRequestId) problems.push(`pool ${id}: key ${k.key}'s ids above maxRequestId`);
    }
    if (got.size !== want.length) problems.push(`pool ${id}: ${got.size} idempotency keys recovered, ${want.length} in its history`);
  }
  return { problems, prefixes };
}

function same(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
  return true;
}

export interface CheckResult {
  cuts: number;
  states: number;
  /** Cuts whose states were all enumerated. */
  exhaustive: number;
  /** Largest number of crash states one cut allowed. */
  maxStatesAtCut: number;
  /** Recovery refused: code -> count. */
  refused: Map<string, number>;
  /** First problems found (refusals and violated guarantees), with their cut. */
  failures: string[];
  failureCount: number;
}

export interface CheckOptions {
  dir: string;
  rng: () => number;
  exhaustiveUpTo?: number;
  samples?: number;
  /** Stop collecting messages after this many (counting goes on). Default: 20. */
  keep?: number;
  /** Called with each crash image recovery succeeded on (e.g. to pick bases for a next run). */
  onRecovered?: (cut: Cut, image: CrashImage, state: RecoveredState, prefixes: Map<string, number>) => void;
}

/** Recover every crash state of every cut (all of them when few, else a seeded sample) and check it. */
export async function checkCuts(cuts: readonly Cut[], opts: CheckOptions): Promise<CheckResult> {
  const res: CheckResult = { cuts: cuts.length, states: 0, exhaustive: 0, maxStatesAtCut: 0, refused: new Map(), failures: [], failureCount: 0 };
  const keep = opts.keep ?? 20;
  const exhaustiveUpTo = opts.exhaustiveUpTo ?? 1024;
  const fail = (msg: string): void => {
    res.failureCount++;
    if (res.failures.length < keep) res.failures.push(msg);
  };
  for (const cut of cuts) {
    const count = crashStateCount(cut.frozen);
    res.maxStatesAtCut = Math.max(res.maxStatesAtCut, count);
    if (count <= exhaustiveUpTo) res.exhaustive++;
    let i = 0;
    for (const image of crashImages(cut.frozen, { rng: opts.rng, exhaustiveUpTo, samples: opts.samples })) {
      res.states++;
      const where = `${cut.label} [state ${i++} of ${count <= exhaustiveUpTo ? count : 'sampled'}]`;
      const storage = RecordingStorage.fromImage(image);
      let state: RecoveredState;
      try {
        state = await recoverDir(opts.dir, { storage, replayThreads: 1 });
      } catch (err) {
        const code = err instanceof EngineError ? err.code : 'not an EngineError';
        res.refused.set(code, (res.refused.get(code) ?? 0) + 1);
        fail(`${where}: recovery refused: ${code}: ${(err as Error).message}`);
        continue;
      }
      const { problems, prefixes } = verifyRecovered(state, cut.models, cut.ack);
      if (problems.length > 0) fail(`${where}: ${problems.join('; ')}`);
      else opts.onRecovered?.(cut, image, state, prefixes);
    }
  }
  return res;
}

/** One line for the test log. */
export function summary(name: string, r: CheckResult, ms: number): string {
  const refused = [...r.refused].map(([c, n]) => `${c} x${n}`).join(', ');
  return `${name}: ${r.cuts} cut points, ${r.states} crash states recovered (${r.exhaustive} cuts exhaustive, largest ${r.maxStatesAtCut} states), ${r.failureCount} failures${refused ? ` (refused: ${refused})` : ''}, ${Math.round(ms)} ms`;
}
