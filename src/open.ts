import { EngineError } from './errors.js';
import { shardOf } from './hash.js';
import { nativeLoadError } from './native/index.js';
import { acquireDirLock } from './lock.js';
import { windowOf, type FilledOptions } from './options.js';
import type { PoolData } from './pool-state.js';
import { emptyReport, recoverDir, type RecoveredState } from './recovery/recover.js';
import { retireCoveredByBase, writeBaseSnapshots } from './snapshot/base.js';
import { realStorage } from './storage/real-storage.js';
import type { Storage } from './storage/storage.js';
import { createFirstSegments } from './wal/segment-create.js';
import { firstSegmentBytes } from './wal/writer.js';

/** A data directory ready for the shards of a new run. */
export interface PreparedDir {
  state: RecoveredState;
  /** Recovered pools by the shard they live in under this run's shard count. */
  poolsByShard: PoolData[][];
  /** Seq of each shard's open-time snapshot and first segment; undefined with wal 'none'. */
  baseSeqs: number[] | undefined;
  release(): void;
}

/**
 * Everything open() does before shards start, as named steps: lock the directory, recover it,
 * create each shard's first segment of the new run, write the snapshots that point at them
 * (new epoch, new layout), retire what they cover. Each step leaves a state the next open
 * recovers from, whatever moment a crash picks. `reconcile` may replace what was recovered
 * (a replication group's snapshots, for shards the stream cannot bring up to date). `storage`
 * is for tests (counted fault injection); the directory lock always uses the real disk.
 */
export async function prepareDir(
  opts: FilledOptions,
  reconcile?: (state: RecoveredState) => Promise<RecoveredState>,
  storage: Storage = realStorage,
): Promise<PreparedDir> {
  if (opts.wal === 'none') {
    const state: RecoveredState = { pools: new Map(), maxRequestId: 0, epoch: 1, nextSeq: new Map(), shardDirs: [], bases: new Map(), marks: new Map(), report: emptyReport(undefined) };
    return { state, poolsByShard: [], baseSeqs: undefined, release: () => {} };
  }
  const dir = opts.dir!;
  const missing = opts.wal === 'mmap' ? nativeLoadError() : undefined;
  if (missing !== undefined) {
    throw new EngineError(
      'ERR_INVALID_CONFIG',
      `options.wal 'mmap' needs the native addon, which could not be loaded (${missing.message.trim()}). ` +
        `Use wal: 'file' (pwrite + fdatasync: the same durability, no addon), or build the addon from source.`,
      { cause: missing, details: { option: 'wal', value: 'mmap' } },
    );
  }
  const release = await acquireDirLock(dir);
  try {
    let state = await recoverDir(dir, { replayThreads: opts.replayThreads, onProgress: opts.recoveryProgress, idempotency: windowOf(opts), storage });
    if (reconcile !== undefined) state = await reconcile(state);
    const poolsByShard = groupByShard(state.pools.values(), opts.shards);
    const baseSeqs = poolsByShard.map((_, k) => state.nextSeq.get(k) ?? 1);
    createFirstSegments(storage, dir, state.epoch, baseSeqs, firstSegmentBytes(opts.segmentBytes), opts.replication !== undefined);
    writeBaseSnapshots(storage, dir, state.epoch, poolsByShard, baseSeqs, state.maxRequestId, state.marks);
    retireCoveredByBase(storage, dir, baseSeqs, state.shardDirs, opts.archive);
    return { state, poolsByShard, baseSeqs, release };
  } catch (err) {
    release();
    throw err;
  }
}

function groupByShard(pools: Iterable<PoolData>, shards: number): PoolData[][] {
  const out: PoolData[][] = Array.from({ length: shards }, () => []);
  for (const p of pools) out[shardOf(p.id, shards)]!.push(p);
  return out;
}
