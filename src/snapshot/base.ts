import type { PoolData } from '../pool-state.js';
import { storageError } from '../errors.js';
import type { Storage } from '../storage/storage.js';
import type { StreamMark } from '../wal/format.js';
import { writeSnapshotFile } from './format.js';
import { applyRetention, retireShardDir } from './retention.js';

/**
 * Every open writes a full snapshot per shard of the new layout, at the first segment the
 * new run will write, before any shard starts. Replay after a restart then never reaches back
 * past this open, and a different shard count starts from a clean per-shard state. Only once
 * every one of them is durable is older data removed.
 */
export function writeBaseSnapshots(
  storage: Storage,
  dir: string,
  epoch: number,
  poolsByShard: PoolData[][],
  seqs: number[],
  maxRequestId: number,
  marks: Map<number, StreamMark> = new Map(),
): void {
  const shards = poolsByShard.length;
  for (let k = 0; k < shards; k++) {
    const seq = seqs[k]!;
    const pools = poolsByShard[k]!;
    writeSnapshotFile(storage, dir, {
      epoch,
      shard: k,
      shards,
      coversBelow: seq,
      maxRequestId,
      kind: 'full',
      createdAt: Date.now(),
      manifest: { poolIds: pools.map((p) => p.id), at: pools.map(() => seq) },
      pools,
      replication: marks.get(k),
    });
  }
  try {
    storage.syncDir(dir);
  } catch (err) {
    throw storageError(err, `cannot sync ${dir}`);
  }
}

/** After the base snapshots: drop everything they cover, in every shard directory. */
export function retireCoveredByBase(storage: Storage, dir: string, baseSeqs: number[], shardDirs: number[], archive: boolean): void {
  for (let k = 0; k < baseSeqs.length; k++) {
    applyRetention(storage, dir, k, { keepSnapshots: [baseSeqs[k]!], deleteSegmentsBelow: baseSeqs[k]!, snapshotsBelow: baseSeqs[k]! }, archive);
  }
  for (const k of shardDirs) if (k >= baseSeqs.length) retireShardDir(storage, dir, k, archive);
}
