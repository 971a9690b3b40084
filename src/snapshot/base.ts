import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { storageError } from '../errors.js';
import type { RecoveredPool } from '../recovery/pool-state.js';
import { fsyncDir, shardDirName } from '../wal/segment-files.js';
import { writeSnapshotFile } from './format.js';
import { applyRetention, retireShardDir } from './retention.js';

/**
 * Every open writes a full snapshot per shard of the new layout, at the first segment the
 * new run will write, before any shard starts. Replay after a restart then never reaches back
 * past this open, and a different shard count starts from a clean per-shard state. Only once
 * every one of them is durable is older data removed.
 */
export function writeBaseSnapshots(
  dir: string,
  epoch: number,
  poolsByShard: RecoveredPool[][],
  nextSeq: Map<number, number>,
  maxRequestId: number,
): number[] {
  const shards = poolsByShard.length;
  const seqs: number[] = [];
  for (let k = 0; k < shards; k++) {
    const seq = nextSeq.get(k) ?? 1;
    try {
      mkdirSync(join(dir, shardDirName(k)), { recursive: true });
    } catch (err) {
      throw storageError(err, `cannot create ${join(dir, shardDirName(k))}`);
    }
    const pools = poolsByShard[k]!;
    writeSnapshotFile(dir, {
      epoch,
      shard: k,
      shards,
      coversBelow: seq,
      maxRequestId,
      kind: 'full',
      createdAt: Date.now(),
      manifest: { poolIds: pools.map((p) => p.id), at: pools.map(() => seq) },
      pools,
    });
    seqs.push(seq);
  }
  fsyncDir(dir);
  return seqs;
}

/** After the base snapshots: drop everything they cover, in every shard directory. */
export function retireCoveredByBase(dir: string, baseSeqs: number[], shardDirs: number[], archive: boolean): void {
  for (let k = 0; k < baseSeqs.length; k++) {
    applyRetention(dir, k, { keepSnapshots: [baseSeqs[k]!], deleteSegmentsBelow: baseSeqs[k]!, snapshotsBelow: baseSeqs[k]! }, archive);
  }
  for (const k of shardDirs) if (k >= baseSeqs.length) retireShardDir(dir, k, archive);
}
