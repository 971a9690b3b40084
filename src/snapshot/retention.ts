import { mkdirSync, readdirSync, renameSync, rmdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { storageError } from '../errors.js';
import { shardDirName } from '../wal/segment-files.js';

export interface RetentionPlan {
  /** Snapshot seqs still needed: the newest chain and the previous one (its fallback). */
  keepSnapshots: number[];
  /** Segments below this seq are covered by the previous snapshot and can go. */
  deleteSegmentsBelow: number;
  /** Only snapshots older than this are considered (newer ones are not ours to judge). */
  snapshotsBelow: number;
}

/** Delete (or move to dir/archive/shard-<k>/) what the newest snapshots make unnecessary. */
export function applyRetention(dir: string, shard: number, plan: RetentionPlan, archive: boolean): string[] {
  const shardDir = join(dir, shardDirName(shard));
  const keep = new Set(plan.keepSnapshots);
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(shardDir);
  } catch {
    return removed;
  }
  for (const name of names) {
    const m = /^(\d+)\.(wal|snap)$/.exec(name);
    if (!m) continue;
    const seq = Number(m[1]);
    const drop = m[2] === 'wal' ? seq < plan.deleteSegmentsBelow : seq < plan.snapshotsBelow && !keep.has(seq);
    if (drop) {
      retire(dir, shard, name, archive);
      removed.push(name);
    }
  }
  return removed;
}

function retire(dir: string, shard: number, name: string, archive: boolean): void {
  const from = join(dir, shardDirName(shard), name);
  try {
    if (archive) {
      const to = join(dir, 'archive', shardDirName(shard));
      mkdirSync(to, { recursive: true });
      renameSync(from, join(to, name));
    } else {
      unlinkSync(from);
    }
  } catch (err) {
    throw storageError(err, `cannot retire ${from}`);
  }
}

/** A shard directory the current layout no longer uses, once its content is covered. */
export function retireShardDir(dir: string, shard: number, archive: boolean): void {
  const shardDir = join(dir, shardDirName(shard));
  for (const name of readdirSync(shardDir)) {
    if (/^\d+\.(wal|snap)$/.test(name)) retire(dir, shard, name, archive);
    else unlinkSync(join(shardDir, name));
  }
  rmdirSync(shardDir);
}
