import { EngineError } from '../errors.js';
import { createMetricsBuffer } from '../layout.js';
import { readMetrics, type EngineMetrics } from '../metrics.js';
import type { PreparedDir } from '../open.js';
import { windowOf, type FilledOptions } from '../options.js';
import type { AppliedReply, PublishRequest, SnapshotJob } from '../protocol.js';
import type { ReplicatedLog } from '../replication/log.js';
import { Replication, type Role } from '../replication/replication.js';
import type { IdCounter } from './batcher.js';
import { IdempotencyIndex } from './idempotency-index.js';
import { PoolDirectory } from './pool-directory.js';
import type { PoolMeta } from './pool-meta.js';
import { ShardClient } from './shard-client.js';
import { SnapshotWriter } from './snapshot-writer.js';
import { Supervisor } from './supervisor.js';

export type ShardSetEvent = 'shardExit' | 'shardRestart' | 'snapshotError' | 'roleChange' | 'replicationError';

/**
 * Everything the coordinator runs for a set of shards, wired together: one client per shard,
 * the pool directory that routes to them, the shared metrics block, the snapshot writer and the
 * supervisor that starts and restarts them, and (with a replicated log) the replication that
 * publishes their groups or feeds them their leader's.
 */
export class ShardSet {
  readonly shards: ShardClient[] = [];
  readonly pools: PoolDirectory;
  readonly keys: IdempotencyIndex;
  readonly #metrics: SharedArrayBuffer;
  readonly #snapshots: SnapshotWriter | undefined;
  readonly #supervisor: Supervisor;
  readonly #emit: (event: ShardSetEvent, payload: unknown) => void;
  /** snapshotAll() calls not yet settled: close() waits for them. */
  readonly #snapshotCalls = new Set<Promise<unknown>>();
  readonly replication: Replication | undefined;

  constructor(opts: FilledOptions, prepared: PreparedDir, emit: (event: ShardSetEvent, payload: unknown) => void, log?: ReplicatedLog) {
    const { state } = prepared;
    this.#metrics = createMetricsBuffer(opts.shards);
    this.pools = new PoolDirectory(opts.shards);
    this.keys = new IdempotencyIndex(windowOf(opts));
    const ids: IdCounter = { next: state.maxRequestId + 1 };
    this.#snapshots = opts.wal === 'none' ? undefined : new SnapshotWriter(opts.dir!, opts.archive, (shard, error) => emit('snapshotError', { shard, error }));
    this.#emit = emit;
    const hooks = {
      writeSnapshot: (job: SnapshotJob) => this.#writeSnapshot(job),
      publish: log === undefined ? undefined : (shard: ShardClient, req: PublishRequest) => this.replication!.publish(shard, req),
      onUnexpectedExit: (shard: ShardClient, err: EngineError) => {
        this.#supervisor.onExit(shard, err);
        this.replication?.shardFailed(shard.index, err);
      },
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
    if (log !== undefined && opts.replication !== undefined) {
      this.replication = new Replication(log, opts.replication, this.shards, state.marks, state.maxRequestId, {
        learned: (reply) => this.#learned(reply),
        raiseIds: (next) => {
          ids.next = Math.max(ids.next, next);
        },
        changed: (role, term) => this.#roleChanged(role, term),
        error: (error) => emit('replicationError', { error }),
      });
    }
  }

  /** A follower shard applied its leader's message: route to the pools it created, know its keys. */
  #learned(reply: AppliedReply): void {
    for (const c of reply.created) this.pools.registerAt(c.id, c.ref, c.itemIds);
    for (const k of reply.keyed) {
      const meta = this.pools.get(k.poolId);
      if (meta !== undefined) this.keys.add(k.key, meta, k.count);
    }
  }

  #roleChanged(role: Role, term: number): void {
    const m = this.replication?.metrics();
    this.#emit('roleChange', { role, term, leader: m?.leader, leaderAddress: m?.leaderAddress });
  }

  /** Write a shard's snapshot; a leader then uploads it for new followers (a failed upload is reported, not fatal). */
  async #writeSnapshot(job: SnapshotJob): Promise<void> {
    const path = await this.#snapshots!.write(job);
    const mark = job.body.replication;
    if (this.replication === undefined || mark === undefined) return;
    await this.replication.snapshotWritten(job.body.shard, mark, path).catch((err: unknown) => {
      this.#emit('snapshotError', { shard: job.body.shard, error: new EngineError('ERR_REPLICATION_UNAVAILABLE', `shard ${job.body.shard}'s snapshot was written but not uploaded: ${(err as Error)?.message}`, { cause: err }) });
    });
  }

  /** Start the shards; with replication, follow the stream and (a leader) take over. */
  async start(prepared: PreparedDir): Promise<void> {
    await this.#supervisor.startAll(prepared.poolsByShard, prepared.baseSeqs, prepared.state.marks);
    try {
      await this.replication?.start();
    } catch (err) {
      await this.replication?.close();
      await Promise.all(this.shards.map((s) => s.terminate()));
      throw err;
    }
  }

  /** Why a write is refused here (a node that does not lead), or undefined. */
  notLeader(): EngineError | undefined {
    return this.replication?.notLeader();
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
  /** Snapshot every shard; close() waits for the calls not yet settled. */
  snapshotAll(): Promise<void> {
    const run = (async () => {
      await Promise.all(this.shards.map((s) => s.drained()));
      await Promise.all(this.shards.map((s) => s.snapshot()));
    })();
    const settled: Promise<unknown> = run.then(
      () => this.#snapshotCalls.delete(settled),
      () => this.#snapshotCalls.delete(settled),
    );
    this.#snapshotCalls.add(settled);
    return run;
  }

  metrics(): EngineMetrics {
    const m = readMetrics(this.#metrics, this.shards.length);
    if (this.replication !== undefined) m.replication = this.replication.metrics();
    return m;
  }

  /** No restarts from here on. */
  stopRestarts(): void {
    this.#supervisor.stop();
  }

  /** Answer what is in flight (published or timed out), stop replicating, stop the shards. */
  async close(): Promise<void> {
    this.#supervisor.stop();
    await Promise.all(this.#snapshotCalls);
    await Promise.all(this.shards.map((s) => s.drained()));
    await this.replication?.close();
    await Promise.all(this.shards.map((s) => s.close()));
    await this.#snapshots?.close();
  }
}
