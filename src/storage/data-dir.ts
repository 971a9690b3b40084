import { join } from 'node:path';
import type { Storage } from './storage.js';

/*
 * The data directory's layout (DESIGN.md "On-disk layout"):
 *
 *   dir/LOCK                      the directory lock (flock), holding the owner's pid
 *   dir/shard-<k>/<seq>.wal       WAL segments, seq zero-padded to 10 digits
 *   dir/shard-<k>/<seq>.snap      snapshots: <seq> is the first segment they do not cover
 *   dir/shard-<k>/*.tmp           files being prepared (removed by recovery)
 *   dir/archive/shard-<k>/        retired files, with `archive: true`
 */

export function shardDirName(shard: number): string {
  return `shard-${shard}`;
}

export function shardDirPath(dir: string, shard: number): string {
  return join(dir, shardDirName(shard));
}

function seqName(seq: number, ext: 'wal' | 'snap'): string {
  return `${String(seq).padStart(10, '0')}.${ext}`;
}

export function segmentFileName(seq: number): string {
  return seqName(seq, 'wal');
}

export function snapshotFileName(seq: number): string {
  return seqName(seq, 'snap');
}

export function segmentPath(dir: string, shard: number, seq: number): string {
  return join(dir, shardDirName(shard), segmentFileName(seq));
}

export function snapshotPath(dir: string, shard: number, seq: number): string {
  return join(dir, shardDirName(shard), snapshotFileName(seq));
}

/** Sequence numbers of the `<seq>.<ext>` files in a shard directory, ascending. */
export function listSeqFiles(storage: Storage, shardDir: string, ext: 'wal' | 'snap'): number[] {
  const pattern = ext === 'wal' ? /^(\d+)\.wal$/ : /^(\d+)\.snap$/;
  const seqs: number[] = [];
  for (const name of storage.list(shardDir)) {
    const m = pattern.exec(name);
    if (m) seqs.push(Number(m[1]));
  }
  return seqs.sort((a, b) => a - b);
}

export function listSegments(storage: Storage, shardDir: string): number[] {
  return listSeqFiles(storage, shardDir, 'wal');
}

export function listSnapshots(storage: Storage, shardDir: string): number[] {
  return listSeqFiles(storage, shardDir, 'snap');
}

/** Shard directory numbers present under dir (from any previous run, whatever its shard count). */
export function listShardDirs(storage: Storage, dir: string): number[] {
  const out: number[] = [];
  for (const name of storage.list(dir)) {
    const m = /^shard-(\d+)$/.exec(name);
    if (m) out.push(Number(m[1]));
  }
  return out.sort((a, b) => a - b);
}
