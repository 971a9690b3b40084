import type { EngineError } from '../errors.js';
import { kRestartsIndex, shardBlock } from '../layout.js';
import { windowOf, type FilledOptions } from '../options.js';
import type { PoolData } from '../pool-state.js';
import type { StreamMark } from '../wal/format.js';
import type { InitMessage, PoolInit, ShardConfig } from '../protocol.js';
import { recoverDir } from '../recovery/recover.js';
import type { IdCounter } from './batcher.js';
import type { IdempotencyIndex } from './idempotency-index.js';
import type { PoolDirectory } from './pool-directory.js';
import type { ShardClient } from './shard-client.js';
import type { SnapshotWriter } from './snapshot-writer.js';

/** A shard that keeps dying is left failed rather than restarted forever. */
export const kMaxRestartsPerShard = 5;

type Init = Omit<InitMessage, 'tag' | 'type' | 'port'>;
type Chain = ShardConfig['chain'];

export interface SupervisorContext {
  readonly opts: FilledOptions;
  readonly epoch: number;
  readonly metrics: SharedArrayBuffer;
  readonly shards: readonly ShardClient[];
  readonly directory: PoolDirectory;
  readonly keys: IdempotencyIndex;
  readonly ids: IdCounter;
  readonly snapshots: SnapshotWriter | undefined;
  emit(event: 'shardExit' | 'shardRestart', payload: unknown): void;
}

/**
 * Starts the shards and restarts one that dies (cf. piscina's worker pool): its calls in flight
 * were rejected; it is recovered alone from its snapshot and WAL and gets a new thread. A shard
 * is not restarted after close(), with wal 'none' (nothing to recover from), under replication
 * or after kMaxRestartsPerShard deaths.
 */
export class Supervisor {
  readonly #ctx: SupervisorContext;
  readonly #restarts: number[];
  #stopped = false;

  constructor(ctx: SupervisorContext) {
    this.#ctx = ctx;
    this.#restarts = new Array<number>(ctx.shards.length).fill(0);
  }

  /** The one place a shard's init message is built, for start and restart alike. */
  #init(k: number, firstSeq: number, chain: Chain, pools: PoolData[], mark: StreamMark | undefined): Init {
    const { opts, directory, epoch, ids, metrics } = this.#ctx;
    const inits: PoolInit[] = pools.map((p) => ({ ...p, ref: directory.get(p.id)!.ref }));
    const config: ShardConfig = {
      shard: k,
      wal: opts.wal,
      dir: opts.dir,
      sync: opts.sync,
      syncIntervalMs: opts.syncIntervalMs,
      segmentBytes: opts.segmentBytes,
      epoch,
      firstSeq,
      seed: opts.seed,
      shards: this.#ctx.shards.length,
      snapshotEveryRecords: opts.snapshotEveryRecords,
      idempotency: windowOf(opts),
      replicated: opts.replication !== undefined,
      mark,
      maxRequestId: ids.next - 1,
      chain,
    };
    return { config, pools: inits, metrics };
  }

  /** Start every shard on its pools; `baseSeqs` are the open-time snapshots (none with wal 'none'). */
  async startAll(poolsByShard: PoolData[][], baseSeqs: number[] | undefined, marks: Map<number, StreamMark>): Promise<void> {
    const started = await Promise.allSettled(
      this.#ctx.shards.map((s, k) => {
        const pools = poolsByShard[k] ?? [];
        const seq = baseSeqs?.[k] ?? 1;
        const chain: Chain = baseSeqs === undefined ? null : { seq, files: [seq], at: new Map(pools.map((p) => [p.id, seq])) };
        return s.start(this.#init(k, seq, chain, pools, marks.get(k)));
      }),
    );
    const failed = started.find((r) => r.status === 'rejected');
    if (failed) {
      this.#stopped = true;
      await Promise.all(this.#ctx.shards.map((s) => s.terminate()));
      throw (failed as PromiseRejectedResult).reason;
    }
  }

  /** No more restarts (the engine is closing). */
  stop(): void {
    this.#stopped = true;
  }

  onExit(shard: ShardClient, err: EngineError): void {
    const k = shard.index;
    this.#ctx.emit('shardExit', { shard: k, error: err });
    // Under replication a leader whose shard died steps down instead (its follower holds everything acknowledged).
    if (this.#ctx.opts.wal === 'none' || this.#ctx.opts.replication !== undefined || this.#stopped || this.#restarts[k]! >= kMaxRestartsPerShard) return;
    this.#restarts[k]!++;
    Atomics.add(shardBlock(this.#ctx.metrics, k), kRestartsIndex, 1n);
    this.#restart(shard).catch((restartErr: unknown) => this.#ctx.emit('shardExit', { shard: k, error: restartErr }));
  }

  async #restart(shard: ShardClient): Promise<void> {
    const k = shard.index;
    const { directory, opts, snapshots } = this.#ctx;
    await snapshots?.settled(k);
    const state = await recoverDir(opts.dir!, { replayThreads: 1, onlyShard: k, idempotency: windowOf(opts) });
    const pools = [...state.pools.values()];
    for (const p of pools) {
      // Logged, but its creation never reached the caller: it exists, so list it.
      const meta = directory.get(p.id) ?? directory.register(p.id, p.itemIds, true);
      meta.ready = true;
      this.#ctx.keys.reset(meta, p.keys ?? []);
    }
    const base = state.bases.get(k);
    const chain: Chain = base ? { seq: base.coversBelow, files: base.files, at: new Map(base.manifest.poolIds.map((id, i) => [id, base.manifest.at[i]!])) } : null;
    if (this.#stopped) return;
    await shard.start(this.#init(k, state.nextSeq.get(k) ?? 1, chain, pools, state.marks.get(k)));
    this.#ctx.emit('shardRestart', { shard: k, threadId: shard.threadId });
  }
}
