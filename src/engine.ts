import { EventEmitter } from 'node:events';
import { badCount, engineClosed, keyedCallTooLarge, noSuchPool, notAnEngine, readKey, type DrawOptions } from './call-errors.js';
import { checkCreate, checkUpdate, type ItemPatch, type ItemSpec } from './catalog.js';
import type { DrawResult } from './coordinator/batcher.js';
import type { PoolMeta } from './coordinator/pool-meta.js';
import type { PoolDirectory } from './coordinator/pool-directory.js';
import type { ShardClient } from './coordinator/shard-client.js';
import { ShardSet } from './coordinator/shard-set.js';
import type { DrawBatch } from './draw-batch.js';
import { EngineError } from './errors.js';
import type { EngineMetrics } from './metrics.js';
import { prepareDir, type PreparedDir } from './open.js';
import { fillOptions, type DrawEngineOptions, type FilledOptions } from './options.js';
import { toPoolState, type PoolState } from './pool-state.js';
import { kOpCreate, kOpState, kOpUpdate, type PoolStateReply } from './protocol.js';
import type { RecoveryReport } from './recovery/recover.js';
import { reconcileWithLog } from './replication/bootstrap.js';
import type { ReplicatedLog } from './replication/log.js';
import { NatsLog } from './replication/nats-log.js';
import { kMaxDrawMany, kShardWorkers, type DrawEngineEvents } from './engine-types.js';

export { kMaxDrawMany, kShardWorkers, type DrawEngineEvents } from './engine-types.js';

/**
 * The coordinator. It validates, routes each pool to its shard by a stable hash and batches
 * calls per shard; it holds no pool state (no weights, no quantities), only where each pool
 * lives and its item ids.
 * Events: see DrawEngineEvents.
 */
export class DrawEngine extends EventEmitter<DrawEngineEvents> {
  readonly #opts: FilledOptions;
  readonly #set: ShardSet;
  readonly #shards: ShardClient[];
  readonly #pools: PoolDirectory;
  readonly #recovery: RecoveryReport;
  readonly #release: () => void;
  #closed = false;
  #closing: Promise<void> | undefined;

  private constructor(opts: FilledOptions, prepared: PreparedDir, log: ReplicatedLog | undefined) {
    super();
    this.#opts = opts;
    this.#recovery = prepared.state.report;
    this.#release = prepared.release;
    this.#set = new ShardSet(opts, prepared, (event, payload) => this.emit(event, payload as never), log);
    this.#shards = this.#set.shards;
    this.#pools = this.#set.pools;
  }

  /**
   * Open an engine, recovering what `dir` holds. Rejects with ERR_INVALID_CONFIG,
   * ERR_DIR_LOCKED, ERR_CORRUPT_WAL, ERR_CORRUPT_SNAPSHOT or ERR_DISK_FULL; with replication
   * also ERR_REPLICATION_UNAVAILABLE (no NATS quorum) or ERR_NOT_LEADER (a leader that finds
   * another node renewing the lease).
   */
  static async open(options: DrawEngineOptions): Promise<DrawEngine> {
    const opts = fillOptions(options);
    const log = opts.replication === undefined ? undefined : await NatsLog.connect(opts.replication);
    let prepared: PreparedDir | undefined;
    try {
      prepared = await prepareDir(opts, log && ((state) => reconcileWithLog(log, opts.replication!.node, state, opts.shards)));
      const engine = new DrawEngine(opts, prepared, log);
      await engine.#set.start(prepared);
      return engine;
    } catch (err) {
      prepared?.release();
      await log?.close();
      throw err;
    }
  }

  static #is(value: unknown): value is DrawEngine {
    return typeof value === 'object' && value !== null && #opts in value;
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

  /** True once close() has been called: every method then rejects with ERR_ENGINE_CLOSED. */
  get closed(): boolean {
    return this.#closed;
  }

  /** The options in force, defaults filled in. */
  get options(): Readonly<FilledOptions> {
    return this.#opts;
  }

  /** The rejection for any write here: a closed engine, or a node that does not lead. */
  #refuseWrite(): Promise<never> | undefined {
    if (this.#closed) return Promise.reject(engineClosed());
    const notLeader = this.#set.notLeader();
    return notLeader === undefined ? undefined : Promise.reject(notLeader);
  }

  /** The pool, or the rejection that says why there is none (closed engine, not leading for a write, bad or unknown id). */
  #route(poolId: unknown, write: boolean): PoolMeta | Promise<never> {
    const refused = write ? this.#refuseWrite() : this.#closed ? Promise.reject(engineClosed()) : undefined;
    return refused ?? this.#pools.get(poolId) ?? Promise.reject(noSuchPool(poolId));
  }

  /** With replication: 'leader', 'follower', or 'deposed' (another node took over); undefined without. */
  get role(): 'leader' | 'follower' | 'deposed' | undefined {
    return this.#set.replication?.role;
  }

  /**
   * A follower takes over: it fences the old leader out of the stream, applies everything the
   * stream holds and starts accepting writes. Resolves at once on a leader (and without
   * replication). Rejects with ERR_NOT_LEADER on a deposed engine and
   * ERR_REPLICATION_UNAVAILABLE when the stream cannot be reached.
   */
  promote(): Promise<void> {
    if (!DrawEngine.#is(this)) return Promise.reject(notAnEngine('promote'));
    if (this.#closed) return Promise.reject(engineClosed());
    // Without replication the engine takes writes already: nothing to do.
    return this.#set.replication?.promote() ?? Promise.resolve();
  }

  /** Create a pool; it is logged before the promise resolves. */
  createPool(poolId: string, items: ItemSpec[]): Promise<void> {
    if (!DrawEngine.#is(this)) return Promise.reject(notAnEngine('createPool'));
    const refused = this.#refuseWrite();
    if (refused !== undefined) return refused;
    const catalog = checkCreate(poolId, items, (id) => this.#pools.has(id));
    if (catalog instanceof EngineError) return Promise.reject(catalog);
    const meta = this.#pools.register(
      poolId,
      catalog.map((i) => i.id),
      false,
    );
    return this.#shards[meta.shard]!.control<null>(kOpCreate, meta, { type: 'create', id: poolId, items: catalog }).then(
      () => {
        meta.ready = true;
      },
      (err: unknown) => {
        this.#pools.unregister(meta);
        throw err;
      },
    );
  }

  /** One draw. Resolves once the outcome is logged (and synced, with sync: 'always'). */
  draw(poolId: string, options?: DrawOptions): Promise<DrawResult> {
    if (!DrawEngine.#is(this)) return Promise.reject(notAnEngine('draw'));
    const meta = this.#route(poolId, true);
    if (meta instanceof Promise) return meta;
    if (options === undefined) return this.#shards[meta.shard]!.draw(meta);
    return this.#keyed<DrawResult>('draw', meta, 1, options, false);
  }

  /** `count` draws in one call (1 .. 2^24): a DrawBatch with consecutive request ids. */
  drawMany(poolId: string, count: number, options?: DrawOptions): Promise<DrawBatch> {
    if (!DrawEngine.#is(this)) return Promise.reject(notAnEngine('drawMany'));
    const meta = this.#route(poolId, true);
    if (meta instanceof Promise) return meta;
    if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 1 || count > kMaxDrawMany) {
      return Promise.reject(badCount(poolId, count, kMaxDrawMany));
    }
    if (options === undefined) return this.#shards[meta.shard]!.drawMany(meta, count);
    return this.#keyed<DrawBatch>('drawMany', meta, count, options, true);
  }

  /** A call given options: with an idempotency key it goes through the key index. */
  #keyed<T>(method: string, meta: PoolMeta, count: number, options: DrawOptions, asBatch: boolean): Promise<T> {
    const key = readKey(method, options);
    if (key instanceof EngineError) return Promise.reject(key);
    if (key === undefined) return asBatch ? (this.#shards[meta.shard]!.drawMany(meta, count) as Promise<T>) : (this.#shards[meta.shard]!.draw(meta) as Promise<T>);
    const tooLarge = keyedCallTooLarge(meta, count, key, this.#opts);
    if (tooLarge !== undefined) return Promise.reject(tooLarge);
    return this.#set.keyed<T>(meta, count, key, asBatch);
  }

  /** Change an item's weight and/or quantity; ordered with the pool's draws. */
  updateItem(poolId: string, itemId: string, patch: ItemPatch): Promise<void> {
    if (!DrawEngine.#is(this)) return Promise.reject(notAnEngine('updateItem'));
    const meta = this.#route(poolId, true);
    if (meta instanceof Promise) return meta;
    const update = checkUpdate(poolId, itemId, patch, meta.itemIndex);
    if (update instanceof EngineError) return Promise.reject(update);
    return this.#shards[meta.shard]!.control<null>(kOpUpdate, meta, update).then(() => undefined);
  }

  /** The pool's state, read in order with its draws. */
  pool(poolId: string): Promise<PoolState> {
    if (!DrawEngine.#is(this)) return Promise.reject(notAnEngine('pool'));
    const meta = this.#route(poolId, false);
    if (meta instanceof Promise) return meta;
    return this.#shards[meta.shard]!.control<PoolStateReply>(kOpState, meta, { type: 'state' }).then(toPoolState);
  }

  /** Ids of every created pool. */
  poolIds(): string[] {
    if (!DrawEngine.#is(this)) throw notAnEngine('poolIds');
    return this.#pools.readyIds();
  }

  /**
   * Snapshot every shard now (pools changed since each shard's last snapshot, or all of them
   * when a full snapshot is due). Resolves once every snapshot is durable and what it covers
   * is retired.
   */
  snapshot(): Promise<void> {
    if (!DrawEngine.#is(this)) return Promise.reject(notAnEngine('snapshot'));
    if (this.#closed) return Promise.reject(engineClosed());
    if (this.#opts.wal === 'none') return Promise.resolve();
    return this.#set.snapshotAll();
  }

  /** Synchronous read of the shared counters; no message to any worker. */
  metrics(): EngineMetrics {
    if (!DrawEngine.#is(this)) throw notAnEngine('metrics');
    return this.#set.metrics();
  }

  /** Drain in-flight work, settle snapshot() calls, sync, unmap, stop workers, release the lock. Idempotent. */
  close(): Promise<void> {
    if (!DrawEngine.#is(this)) return Promise.reject(notAnEngine('close'));
    if (this.#closing) return this.#closing;
    this.#closed = true;
    this.#set.stopRestarts();
    this.#closing = (async () => {
      try {
        await this.#set.close();
      } finally {
        this.#release();
        this.emit('close');
      }
    })();
    return this.#closing;
  }
}
