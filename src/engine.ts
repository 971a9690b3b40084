import { EventEmitter } from 'node:events';
import { Piscina } from 'piscina';
import { checkPoolId, isValidId, kIdRule, validateCatalog, validatePatch, type ItemPatch, type ItemSpec } from './catalog.js';
import { PoolMeta } from './coordinator/pool-meta.js';
import { ShardClient, type DrawResult, type IdCounter } from './coordinator/shard-client.js';
import { workerEntry } from './coordinator/worker-path.js';
import type { DrawBatch } from './draw-batch.js';
import { EngineError, errorFromWire, show, type WireError } from './errors.js';
import { shardOf } from './hash.js';
import { createMetricsBuffer, kRestartsIndex, shardBlock } from './layout.js';
import { acquireDirLock } from './lock.js';
import { readMetrics, type EngineMetrics } from './metrics.js';
import { fillOptions, type DrawEngineOptions, type FilledOptions } from './options.js';
import { kOpCreate, kOpState, kOpUpdate, type PoolInit, type PoolStateReply, type ShardConfig, type SnapshotJob } from './protocol.js';
import type { RecoveredPool } from './recovery/pool-state.js';
import { emptyReport, recoverDir, type RecoveredState, type RecoveryReport } from './recovery/recover.js';
import { retireCoveredByBase, writeBaseSnapshots } from './snapshot/base.js';
import { createFirstSegments } from './wal/segment-files.js';
import type { LoadedSnapshot } from './snapshot/chain.js';

export interface PoolItemState {
  id: string;
  weight: number;
  /** -1 = unlimited. */
  quantity: number;
  /** Successful draws over the pool's whole life. */
  drawn: number;
}

export interface PoolState {
  id: string;
  /** Request id of the pool's latest draw (0 before any). */
  lastRequestId: number;
  items: PoolItemState[];
}

/**
 * Most draws one drawMany call may ask for: 2^24 (16,777,216), so a single call holds at most
 * 32 MiB of indices on each side of the thread boundary. More is several calls.
 */
export const kMaxDrawMany = 1 << 24;
/** A shard that keeps dying is left failed rather than restarted forever. */
const kMaxRestartsPerShard = 5;

/** Internal handle for tests and diagnostics: the shard Worker objects. */
export const kShardWorkers = Symbol.for('reward-pool-engine.shardWorkers');

/**
 * The coordinator. It validates, routes each pool to its shard by a stable hash and batches
 * calls per shard; it holds no pool state (no weights, no quantities), only where each pool
 * lives and its item ids.
 *
 * Events: 'shardExit' ({ shard, error }) when a worker dies, 'shardRestart' ({ shard, threadId })
 * once it is back, 'snapshotError' ({ shard, error }) when a snapshot could not be written
 * (the WAL still holds everything), 'close'.
 */
function notAnEngine(method: string): EngineError {
  return new EngineError('ERR_INVALID_ARGUMENT', `${method}() must be called on a DrawEngine (engine.${method}(...)); it was called on something else, e.g. as a detached method`, {
    details: { method },
  });
}

export class DrawEngine extends EventEmitter {
  readonly #opts: FilledOptions;
  readonly #shards: ShardClient[] = [];
  readonly #pools = new Map<string, PoolMeta>();
  readonly #nextRef: number[];
  readonly #ids: IdCounter;
  readonly #metricsSab: SharedArrayBuffer;
  readonly #recovery: RecoveryReport;
  readonly #releaseLock: () => void;
  readonly #epoch: number;
  #snapshotPool: Piscina | undefined;
  readonly #snapshotsInFlight = new Map<number, Promise<unknown>>();
  /** snapshot() calls not yet settled. */
  readonly #snapshotCalls = new Set<Promise<void>>();
  readonly #restarts: number[];
  #closed = false;
  #closing: Promise<void> | undefined;

  private constructor(opts: FilledOptions, state: RecoveredState, releaseLock: () => void) {
    super();
    this.#opts = opts;
    this.#metricsSab = createMetricsBuffer(opts.shards);
    this.#recovery = state.report;
    this.#releaseLock = releaseLock;
    this.#epoch = state.epoch;
    this.#ids = { next: state.maxRequestId + 1 };
    this.#nextRef = new Array<number>(opts.shards).fill(0);
    this.#restarts = new Array<number>(opts.shards).fill(0);
    const hooks = {
      writeSnapshot: (job: SnapshotJob) => this.#writeSnapshot(job),
      onUnexpectedExit: (shard: ShardClient, err: EngineError) => this.#onShardExit(shard, err),
    };
    for (let k = 0; k < opts.shards; k++) this.#shards.push(new ShardClient(k, this.#ids, opts.maxPending, this.#metricsSab, hooks));
  }

  /**
   * Open an engine, recovering what `dir` holds. Rejects with ERR_INVALID_CONFIG,
   * ERR_DIR_LOCKED, ERR_CORRUPT_WAL, ERR_CORRUPT_SNAPSHOT or ERR_DISK_FULL.
   */
  static async open(options: DrawEngineOptions): Promise<DrawEngine> {
    const opts = fillOptions(options);
    if (opts.wal === 'none') {
      const state: RecoveredState = { pools: new Map(), maxRequestId: 0, epoch: 1, nextSeq: new Map(), shardDirs: [], bases: new Map(), report: emptyReport(undefined) };
      const engine = new DrawEngine(opts, state, () => {});
      await engine.#startAll(state, undefined);
      return engine;
    }
    const release = acquireDirLock(opts.dir!);
    try {
      const state = await recoverDir(opts.dir!, { replayThreads: opts.replayThreads, onProgress: opts.recoveryProgress });
      const engine = new DrawEngine(opts, state, release);
      const byShard = engine.#registerRecovered(state.pools);
      // The first segment of each shard, then the open-time snapshots (new epoch, new layout)
      // that point at them, durable before any shard writes.
      createFirstSegments(opts.dir!, state.epoch, byShard.map((_, k) => state.nextSeq.get(k) ?? 1), opts.segmentBytes);
      const baseSeqs = writeBaseSnapshots(opts.dir!, state.epoch, byShard, state.nextSeq, state.maxRequestId);
      retireCoveredByBase(opts.dir!, baseSeqs, state.shardDirs, opts.archive);
      await engine.#startAll(state, baseSeqs);
      return engine;
    } catch (err) {
      release();
      throw err;
    }
  }

  #registerRecovered(pools: Map<string, RecoveredPool>): RecoveredPool[][] {
    const byShard: RecoveredPool[][] = this.#shards.map(() => []);
    for (const p of pools.values()) {
      const meta = this.#register(p.id, p.itemIds, true);
      byShard[meta.shard.index]!.push(p);
    }
    return byShard;
  }

  #config(k: number, firstSeq: number, chain: ShardConfig['chain']): ShardConfig {
    const o = this.#opts;
    return {
      shard: k,
      wal: o.wal,
      dir: o.dir,
      sync: o.sync,
      syncIntervalMs: o.syncIntervalMs,
      segmentBytes: o.segmentBytes,
      epoch: this.#epoch,
      firstSeq,
      seed: o.seed,
      shards: this.#shards.length,
      snapshotEveryRecords: o.snapshotEveryRecords,
      maxRequestId: this.#ids.next - 1,
      chain,
    };
  }

  #poolInit(meta: PoolMeta, p: RecoveredPool): PoolInit {
    return {
      ref: meta.ref,
      id: p.id,
      itemIds: p.itemIds,
      itemCount: p.itemIds.length,
      weights: p.weights,
      quantities: p.quantities,
      drawn: p.drawn,
      lastRequestId: p.lastRequestId,
    };
  }

  async #startAll(state: RecoveredState, baseSeqs: number[] | undefined): Promise<void> {
    const inits: PoolInit[][] = this.#shards.map(() => []);
    for (const p of state.pools.values()) {
      const meta = this.#pools.get(p.id)!;
      inits[meta.shard.index]!.push(this.#poolInit(meta, p));
    }
    const started = await Promise.allSettled(
      this.#shards.map((s, k) => {
        const seq = baseSeqs?.[k] ?? 1;
        const chain = baseSeqs === undefined ? null : { seq, files: [seq], at: new Map(inits[k]!.map((p) => [p.id, seq])) };
        return s.start(this.#config(k, seq, chain), inits[k]!);
      }),
    );
    const failed = started.find((r) => r.status === 'rejected');
    if (failed) {
      await Promise.all(this.#shards.map((s) => s.worker?.terminate()));
      throw (failed as PromiseRejectedResult).reason;
    }
  }

  #register(id: string, itemIds: readonly string[], ready: boolean): PoolMeta {
    const k = shardOf(id, this.#shards.length);
    const meta = new PoolMeta(id, this.#nextRef[k]!++, this.#shards[k]!, itemIds, ready);
    this.#pools.set(id, meta);
    return meta;
  }

  #writeSnapshot(job: SnapshotJob): Promise<void> {
    this.#snapshotPool ??= new Piscina({ filename: workerEntry('snapshot-task'), minThreads: 0, maxThreads: 1, idleTimeout: 1000 });
    const transfer: ArrayBuffer[] = [];
    for (const p of job.body.pools) for (const a of [p.weights, p.quantities, p.drawn]) if (a instanceof Float64Array) transfer.push(a.buffer as ArrayBuffer);
    const task = { dir: this.#opts.dir!, body: job.body, retention: job.retention, archive: this.#opts.archive };
    const run = this.#snapshotPool.run(task, { transferList: transfer }).then((r: { error?: WireError }) => {
      if (r.error) throw errorFromWire(r.error);
    });
    const shard = job.body.shard;
    this.#snapshotsInFlight.set(shard, run.catch(() => {}));
    return run.catch((err: unknown) => {
      this.emit('snapshotError', { shard, error: err });
      throw err;
    });
  }

  #onShardExit(shard: ShardClient, err: EngineError): void {
    const k = shard.index;
    this.emit('shardExit', { shard: k, error: err });
    if (this.#opts.wal === 'none' || this.#closed || this.#restarts[k]! >= kMaxRestartsPerShard) return;
    this.#restarts[k]!++;
    Atomics.add(shardBlock(this.#metricsSab, k), kRestartsIndex, 1n);
    void this.#restartShard(shard).catch((restartErr: unknown) => {
      this.emit('shardExit', { shard: k, error: restartErr });
    });
  }

  /** Recover one shard from its snapshot and WAL and start a new worker for it. */
  async #restartShard(shard: ShardClient): Promise<void> {
    const k = shard.index;
    await this.#snapshotsInFlight.get(k);
    const state = await recoverDir(this.#opts.dir!, { replayThreads: 1, onlyShard: k });
    const inits: PoolInit[] = [];
    for (const p of state.pools.values()) {
      let meta = this.#pools.get(p.id);
      // Logged, but its creation never reached the caller: it exists, so list it.
      if (meta === undefined) meta = this.#register(p.id, p.itemIds, true);
      meta.ready = true;
      inits.push(this.#poolInit(meta, p));
    }
    const base: LoadedSnapshot | undefined = state.bases.get(k);
    const chain = base ? { seq: base.coversBelow, files: base.files, at: new Map(base.manifest.poolIds.map((id, i) => [id, base.manifest.at[i]!])) } : null;
    if (this.#closed) return;
    await shard.start(this.#config(k, state.nextSeq.get(k) ?? 1, chain), inits);
    this.emit('shardRestart', { shard: k, threadId: shard.threadId });
  }

  /** Number of shard threads. */
  get shards(): number {
    return this.#shards.length;
  }

  /** Thread ids of the shard workers (they change when a shard is restarted). */
  get shardThreadIds(): number[] {
    return this.#shards.map((s) => s.threadId);
  }

  get [kShardWorkers](): unknown[] {
    return this.#shards.map((s) => s.worker);
  }

  /** What open() recovered. */
  get recovery(): RecoveryReport {
    return this.#recovery;
  }

  /** The options in force, defaults filled in. */
  get options(): Readonly<FilledOptions> {
    return this.#opts;
  }

  #closedError(): EngineError {
    return new EngineError('ERR_ENGINE_CLOSED', 'the engine is closed');
  }

  #meta(poolId: unknown): PoolMeta | undefined {
    return typeof poolId === 'string' ? this.#pools.get(poolId) : undefined;
  }

  /** Why poolId names no pool: not a valid id at all, or no such pool. */
  #missing(poolId: unknown): Promise<never> {
    if (!isValidId(poolId)) {
      return Promise.reject(new EngineError('ERR_INVALID_ARGUMENT', `poolId must be ${kIdRule}, got ${show(poolId)}`, { details: { poolId } }));
    }
    return Promise.reject(new EngineError('ERR_UNKNOWN_POOL', `no pool with id ${show(poolId)}`, { details: { poolId } }));
  }

  static #is(value: unknown): value is DrawEngine {
    return typeof value === 'object' && value !== null && #opts in value;
  }

  /** Create a pool; it is logged before the promise resolves. */
  createPool(poolId: string, items: ItemSpec[]): Promise<void> {
    if (!DrawEngine.#is(this)) return Promise.reject(notAnEngine('createPool'));
    if (this.#closed) return Promise.reject(this.#closedError());
    let catalog: ItemSpec[];
    try {
      checkPoolId(poolId);
      catalog = validateCatalog(poolId, items);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#pools.has(poolId)) {
      return Promise.reject(new EngineError('ERR_POOL_EXISTS', `pool ${show(poolId)} already exists`, { details: { poolId } }));
    }
    const meta = this.#register(
      poolId,
      catalog.map((i) => i.id),
      false,
    );
    return meta.shard.control<null>(kOpCreate, meta, { type: 'create', id: poolId, items: catalog }).then(
      () => {
        meta.ready = true;
      },
      (err: unknown) => {
        if (this.#pools.get(poolId) === meta && !meta.ready) this.#pools.delete(poolId);
        throw err;
      },
    );
  }

  /** One draw. Resolves once the outcome is logged (and synced, with sync: 'always'). */
  draw(poolId: string): Promise<DrawResult> {
    if (!DrawEngine.#is(this)) return Promise.reject(notAnEngine('draw'));
    if (this.#closed) return Promise.reject(this.#closedError());
    const meta = this.#meta(poolId);
    if (meta === undefined) return this.#missing(poolId);
    return meta.shard.draw(meta);
  }

  /** `count` draws in one call: a DrawBatch with consecutive request ids. */
  drawMany(poolId: string, count: number): Promise<DrawBatch> {
    if (!DrawEngine.#is(this)) return Promise.reject(notAnEngine('drawMany'));
    if (this.#closed) return Promise.reject(this.#closedError());
    const meta = this.#meta(poolId);
    if (meta === undefined) return this.#missing(poolId);
    if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 1 || count > kMaxDrawMany) {
      return Promise.reject(
        new EngineError('ERR_INVALID_ARGUMENT', `drawMany(${show(poolId)}): count must be an integer from 1 to ${kMaxDrawMany}, got ${show(count)}`, {
          details: { poolId, count },
        }),
      );
    }
    return meta.shard.drawMany(meta, count);
  }

  /** Change an item's weight and/or quantity; ordered with the pool's draws. */
  updateItem(poolId: string, itemId: string, patch: ItemPatch): Promise<void> {
    if (!DrawEngine.#is(this)) return Promise.reject(notAnEngine('updateItem'));
    if (this.#closed) return Promise.reject(this.#closedError());
    const meta = this.#meta(poolId);
    if (meta === undefined) return this.#missing(poolId);
    const itemIndex = typeof itemId === 'string' ? meta.itemIndex.get(itemId) : undefined;
    if (itemIndex === undefined) {
      return Promise.reject(
        new EngineError('ERR_UNKNOWN_ITEM', `pool ${show(poolId)} has no item ${show(itemId)}`, { details: { poolId, itemId } }),
      );
    }
    let checked: { weight: number; quantity: number };
    try {
      checked = validatePatch(poolId, itemId, patch);
    } catch (err) {
      return Promise.reject(err);
    }
    return meta.shard.control<null>(kOpUpdate, meta, { type: 'update', itemIndex, weight: checked.weight, quantity: checked.quantity }).then(() => undefined);
  }

  /** The pool's state, read in order with its draws. */
  pool(poolId: string): Promise<PoolState> {
    if (!DrawEngine.#is(this)) return Promise.reject(notAnEngine('pool'));
    if (this.#closed) return Promise.reject(this.#closedError());
    const meta = this.#meta(poolId);
    if (meta === undefined) return this.#missing(poolId);
    return meta.shard.control<PoolStateReply>(kOpState, meta, { type: 'state' }).then((s) => ({
      id: meta.id,
      lastRequestId: s.lastRequestId,
      items: meta.items.map((id, i) => ({ id, weight: s.weights[i]!, quantity: s.quantities[i]!, drawn: s.drawn[i]! })),
    }));
  }

  /** Ids of every created pool. */
  poolIds(): string[] {
    if (!DrawEngine.#is(this)) throw notAnEngine('poolIds');
    const out: string[] = [];
    for (const meta of this.#pools.values()) if (meta.ready) out.push(meta.id);
    return out;
  }

  /**
   * Snapshot every shard now (pools changed since each shard's last snapshot, or all of them
   * when a full snapshot is due). Resolves once every snapshot is durable and what it covers
   * is retired.
   */
  snapshot(): Promise<void> {
    if (!DrawEngine.#is(this)) return Promise.reject(notAnEngine('snapshot'));
    if (this.#closed) return Promise.reject(this.#closedError());
    if (this.#opts.wal === 'none') return Promise.resolve();
    const run = (async () => {
      await Promise.all(this.#shards.map((s) => s.drained()));
      await Promise.all(this.#shards.map((s) => s.snapshot()));
    })();
    // close() waits for these: a snapshot asked for before close() settles one way or the other.
    const settled = run.then(
      () => {},
      () => {},
    );
    this.#snapshotCalls.add(settled);
    void settled.then(() => this.#snapshotCalls.delete(settled));
    return run;
  }

  /** Synchronous read of the shared counters; no message to any worker. */
  metrics(): EngineMetrics {
    if (!DrawEngine.#is(this)) throw notAnEngine('metrics');
    return readMetrics(this.#metricsSab, this.#shards.length);
  }

  /** Drain in-flight work, sync, unmap, stop workers, release the lock. Idempotent. */
  close(): Promise<void> {
    if (!DrawEngine.#is(this)) return Promise.reject(notAnEngine('close'));
    if (this.#closing) return this.#closing;
    this.#closed = true;
    this.#closing = (async () => {
      try {
        await Promise.all(this.#snapshotCalls);
        await Promise.all(this.#shards.map((s) => s.close()));
        await Promise.all(this.#snapshotsInFlight.values());
        await this.#snapshotPool?.close();
      } finally {
        this.#releaseLock();
        this.emit('close');
      }
    })();
    return this.#closing;
  }
}
