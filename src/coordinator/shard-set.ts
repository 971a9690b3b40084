import type { EngineError } from '../errors.js';
import { createMetricsBuffer } from '../layout.js';
import { readMetrics, type EngineMetrics } from '../metrics.js';
import type { PreparedDir } from '../open.js';
import { windowOf, type FilledOptions } from '../options.js';
import type { SnapshotJob } from '../protocol.js';
import type { IdCounter } from './batcher.js';
import { IdempotencyIndex } from './idempotency-index.js';
import { PoolDirectory } from './pool-directory.js';
import type { PoolMeta } from './pool-meta.js';
import { ShardClient } from './shard-client.js';
import { SnapshotWriter } from './snapshot-writer.js';
import { Supervisor } from './supervisor.js';

export type ShardSetEvent = 'shardExit' | 'shardRestart' | 'snapshotError';

/**
 * Everything the coordinator runs for a set of shards, wired together: one client per shard,
 * the pool directory that routes to them, the shared metrics block, the snapshot writer and the
 * supervisor that starts and restarts them.
 */
export class ShardSet {
  readonly shards: ShardClient[] = [];
  readonly pools: PoolDirectory;
  readonly keys: IdempotencyIndex;
  readonly #metrics: SharedArrayBuffer;
  readonly #snapshots: SnapshotWriter | undefined;
  readonly #supervisor: Supervisor;

  constructor(opts: FilledOptions, prepared: PreparedDir, emit: (event: ShardSetEvent, payload: unknown) => void) {
    const { state } = prepared;
    this.#metrics = createMetricsBuffer(opts.shards);
    this.pools = new PoolDirectory(opts.shards);
    this.keys = new IdempotencyIndex(windowOf(opts));
    const ids: IdCounter = { next: state.maxRequestId + 1 };
    this.#snapshots = opts.wal === 'none' ? undefined : new SnapshotWriter(opts.dir!, opts.archive, (shard, error) => emit('snapshotError', { shard, error }));
    const hooks = {
      writeSnapshot: (job: SnapshotJob) => this.#snapshots!.write(job),
      onUnexpectedExit: (shard: ShardClient, err: EngineError) => this.#supervisor.onExit(shard, err),
    };
    for (let k = 0; k < opts.shards; k++) this.shards.push(new ShardClient(k, ids, opts.maxPending, this.#metrics, hooks));
    for (const pools of prepared.poolsByShard) for (const p of pools) this.keys.reset(this.pools.register(p.id, p.itemIds, true), p.keys ?? []);
    this.#supervisor = new Supervisor({
      opts,
      epoch: state.epoch,
      metrics: this.#metrics,
      shards: this.shards,
      directory: this.pools,
      keys: this.keys,
      ids,
      snapshots: this.#snapshots,
      emit,
    });
  }

  start(prepared: PreparedDir): Promise<void> {
    return this.#supervisor.startAll(prepared.poolsByShard, prepared.baseSeqs, prepared.state.marks);
  }

  /**
   * A call with an idempotency key: refused when the key is retained for another pool or count;
   * otherwise sent on its own, and its shard either draws and keeps the outcome with the key or
   * gives back the outcome it kept. A call that fails gives a key it took back.
   */
  keyed<T>(meta: PoolMeta, count: number, key: string, asBatch: boolean): Promise<T> {
    const mismatch = this.keys.check(key, meta, count);
    if (mismatch !== undefined) return Promise.reject(mismatch);
    const fresh = !this.keys.has(key);
    if (fresh) this.keys.add(key, meta, count);
    const call = this.shards[meta.shard]!.keyed<T>(meta, count, key, asBatch);
    if (!fresh) return call;
    return call.catch((err: unknown) => {
      this.keys.remove(key, meta);
      throw err;
    });
  }

  /** Once what is queued has been answered, snapshot every shard; resolves when all are durable. */
  async snapshotAll(): Promise<void> {
    await Promise.all(this.shards.map((s) => s.drained()));
    await Promise.all(this.shards.map((s) => s.snapshot()));
  }

  metrics(): EngineMetrics {
    return readMetrics(this.#metrics, this.shards.length);
  }

  /** No restarts from here on. */
  stopRestarts(): void {
    this.#supervisor.stop();
  }

  async close(): Promise<void> {
    this.#supervisor.stop();
    await Promise.all(this.shards.map((s) => s.close()));
    await this.#snapshots?.close();
  }
}
