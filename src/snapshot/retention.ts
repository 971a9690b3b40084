import { join } from 'node:path';
import { storageError } from '../errors.js';
import { shardDirName } from '../storage/data-dir.js';
import type { Storage } from '../storage/storage.js';

export interface RetentionPlan {
  /** Snapshot seqs still needed: the newest chain and the previous one (its fallback). */
  keepSnapshots: number[];
  /** Segments below this seq are covered by the previous snapshot and can go. */
  deleteSegmentsBelow: number;
  /** Only snapshots older than this are considered (newer ones are not ours to judge). */
  snapshotsBelow: number;
}

/** Delete (or move to dir/archive/shard-<k>/) what the newest snapshots make unnecessary. */
export function applyRetention(storage: Storage, dir: string, shard: number, plan: RetentionPlan, archive: boolean): string[] {
  const shardDir = join(dir, shardDirName(shard));
  const keep = new Set(plan.keepSnapshots);
  const removed: string[] = [];
  let names: string[];
  try {
    names = storage.list(shardDir);
  } catch {
    return removed;
  }
  for (const name of names) {
    const m = /^(\d+)\.(wal|snap)$/.exec(name);
    if (!m) continue;
    const seq = Number(m[1]);
    const drop = m[2] === 'wal' ? seq < plan.deleteSegmentsBelow : seq < plan.snapshotsBelow && !keep.has(seq);
    if (drop) {
      retire(storage, dir, shard, name, archive);
      removed.push(name);
    }
  }
  return removed;
}

function retire(storage: Storage, dir: string, shard: number, name: string, archive: boolean): void {
  const from = join(dir, shardDirName(shard), name);
  try {
    if (archive) {
      const to = join(dir, 'archive', shardDirName(shard));
      storage.mkdirp(to);
      storage.rename(from, join(to, name));
    } else {
      storage.unlink(from);
    }
  } catch (err) {
    throw storageError(err, `cannot retire ${from}`);
  }
}

/** A shard directory the current layout no longer uses, once its content is covered. */
export function retireShardDir(storage: Storage, dir: string, shard: number, archive: boolean): void {
  const shardDir = join(dir, shardDirName(shard));
  try {
    for (const name of storage.list(shardDir)) {
      if (/^\d+\.(wal|snap)$/.test(name)) retire(storage, dir, shard, name, archive);
      else storage.unlink(join(shardDir, name));
    }
    storage.rmdir(shardDir);
  } catch (err) {
    throw storageError(err, `cannot retire ${shardDir}`);
  }
}
