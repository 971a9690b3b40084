import { EventEmitter } from 'node:events';
import { checkPoolId, isValidId, validateCatalog, validatePatch, type ItemPatch, type ItemSpec } from './catalog.js';
import { PoolMeta } from './coordinator/pool-meta.js';
import { ShardClient, type DrawResult, type IdCounter } from './coordinator/shard-client.js';
import type { DrawBatch } from './draw-batch.js';
import { EngineError, show } from './errors.js';
import { shardOf } from './hash.js';
import { createMetricsBuffer } from './layout.js';
import { acquireDirLock } from './lock.js';
import { readMetrics, type EngineMetrics } from './metrics.js';
import { fillOptions, type DrawEngineOptions, type FilledOptions } from './options.js';
import { kOpCreate, kOpState, kOpUpdate, type PoolInit, type PoolStateReply } from './protocol.js';
import { emptyReport, recoverDir, type RecoveredState, type RecoveryReport } from './recovery/recover.js';

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

const kMaxDrawMany = 0x7fff_ffff;

/**
 * The coordinator. It validates, routes each pool to its shard by a stable hash and batches
 * calls per shard; it holds no pool state (no weights, no quantities), only where each pool
 * lives and its item ids.
 */
export class DrawEngine extends EventEmitter {
  readonly #opts: FilledOptions;
  readonly #shards: ShardClient[];
  readonly #pools = new Map<string, PoolMeta>();
  readonly #nextRef: number[];
  readonly #metricsSab: SharedArrayBuffer;
  readonly #recovery: RecoveryReport;
  readonly #releaseLock: () => void;
  #closed = false;
  #closing: Promise<void> | undefined;

  private constructor(opts: FilledOptions, shards: ShardClient[], sab: SharedArrayBuffer, state: RecoveredState, releaseLock: () => void) {
    super();
    this.#opts = opts;
    this.#shards = shards;
    this.#metricsSab = sab;
    this.#recovery = state.report;
    this.#releaseLock = releaseLock;
    this.#nextRef = new Array<number>(shards.length).fill(0);
  }

  /** Open (and recover) an engine. Rejects with ERR_INVALID_CONFIG, ERR_DIR_LOCKED, ERR_CORRUPT_WAL, ERR_DISK_FULL. */
  static async open(options: DrawEngineOptions): Promise<DrawEngine> {
    const opts = fillOptions(options);
    let release: () => void = () => {};
    let state: RecoveredState;
    if (opts.wal !== 'none') {
      release = acquireDirLock(opts.dir!);
      try {
        state = recoverDir(opts.dir!);
      } catch (err) {
        release();
        throw err;
      }
    } else {
      state = { pools: new Map(), maxRequestId: 0, epoch: 1, nextSeq: new Map(), report: emptyReport(undefined) };
    }
    const sab = createMetricsBuffer(opts.shards);
    const ids: IdCounter = { next: state.maxRequestId + 1 };
    const shards: ShardClient[] = [];
    for (let k = 0; k < opts.shards; k++) shards.push(new ShardClient(k, ids, opts.maxPending, sab));
    const engine = new DrawEngine(opts, shards, sab, state, release);
    const inits: PoolInit[][] = shards.map(() => []);
    for (const p of state.pools.values()) {
      const meta = engine.#register(p.id, p.itemIds, true);
      inits[meta.shard.index]!.push({
        ref: meta.ref,
        id: p.id,
        itemCount: p.itemIds.length,
        weights: p.weights,
        quantities: p.quantities,
        drawn: p.drawn,
        lastRequestId: p.lastRequestId,
      });
    }
    try {
      await Promise.all(
        shards.map((s, k) =>
          s.start(
            {
              shard: k,
              wal: opts.wal,
              dir: opts.dir,
              sync: opts.sync,
              syncIntervalMs: opts.syncIntervalMs,
              segmentBytes: opts.segmentBytes,
              epoch: state.epoch,
              firstSeq: state.nextSeq.get(k) ?? 1,
              seed: opts.seed,
            },
            inits[k]!,
            sab,
          ),
        ),
      );
    } catch (err) {
      await Promise.all(shards.map((s) => s.worker.terminate()));
      release();
      throw err;
    }
    return engine;
  }

  #register(id: string, itemIds: readonly string[], ready: boolean): PoolMeta {
    const k = shardOf(id, this.#shards.length);
    const meta = new PoolMeta(id, this.#nextRef[k]!++, this.#shards[k]!, itemIds, ready);
    this.#pools.set(id, meta);
    return meta;
  }

  /** Number of shard threads. */
  get shards(): number {
    return this.#shards.length;
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

  #lookup(poolId: unknown): PoolMeta | EngineError {
    const meta = typeof poolId === 'string' ? this.#pools.get(poolId) : undefined;
    if (meta !== undefined) return meta;
    if (!isValidId(poolId)) {
      return new EngineError('ERR_INVALID_ARGUMENT', `poolId must be a string of 1-128 characters, got ${show(poolId)}`, { details: { poolId } });
    }
    return new EngineError('ERR_UNKNOWN_POOL', `no pool with id ${show(poolId)}`, { details: { poolId } });
  }

  /** Create a pool; it is logged before the promise resolves. */
  createPool(poolId: string, items: ItemSpec[]): Promise<void> {
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
        if (this.#pools.get(poolId) === meta) this.#pools.delete(poolId);
        throw err;
      },
    );
  }

  /** One draw. Resolves once the outcome is logged (and synced, with sync: 'always'). */
  draw(poolId: string): Promise<DrawResult> {
    if (this.#closed) return Promise.reject(this.#closedError());
    const meta = this.#lookup(poolId);
    if (meta instanceof EngineError) return Promise.reject(meta);
    return meta.shard.draw(meta);
  }

  /** `count` draws in one call: a DrawBatch with consecutive request ids. */
  drawMany(poolId: string, count: number): Promise<DrawBatch> {
    if (this.#closed) return Promise.reject(this.#closedError());
    const meta = this.#lookup(poolId);
    if (meta instanceof EngineError) return Promise.reject(meta);
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
    if (this.#closed) return Promise.reject(this.#closedError());
    const meta = this.#lookup(poolId);
    if (meta instanceof EngineError) return Promise.reject(meta);
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
    if (this.#closed) return Promise.reject(this.#closedError());
    const meta = this.#lookup(poolId);
    if (meta instanceof EngineError) return Promise.reject(meta);
    return meta.shard.control<PoolStateReply>(kOpState, meta, { type: 'state' }).then((s) => ({
      id: meta.id,
      lastRequestId: s.lastRequestId,
      items: meta.items.map((id, i) => ({ id, weight: s.weights[i]!, quantity: s.quantities[i]!, drawn: s.drawn[i]! })),
    }));
  }

  /** Ids of every created pool. */
  poolIds(): string[] {
    const out: string[] = [];
    for (const meta of this.#pools.values()) if (meta.ready) out.push(meta.id);
    return out;
  }

  /** Synchronous read of the shared counters; no message to any worker. */
  metrics(): EngineMetrics {
    return readMetrics(this.#metricsSab, this.#shards.length);
  }

  /** Drain in-flight work, sync, unmap, stop workers, release the lock. Idempotent. */
  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closed = true;
    this.#closing = (async () => {
      try {
        await Promise.all(this.#shards.map((s) => s.close()));
      } finally {
        this.#releaseLock();
        this.emit('close');
      }
    })();
    return this.#closing;
  }
}
