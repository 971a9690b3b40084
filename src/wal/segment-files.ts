import { closeSync, fsyncSync, openSync, readdirSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { open as openAsync, unlink as unlinkAsync } from 'node:fs/promises';
import { join } from 'node:path';
import { storageError } from '../errors.js';

export function shardDirName(shard: number): string {
  return `shard-${shard}`;
}

export function segmentFileName(seq: number): string {
  return `${String(seq).padStart(10, '0')}.wal`;
}

/** Sequence numbers of the `<seq>.<ext>` files in a shard directory, ascending. */
export function listSeqFiles(shardDir: string, ext: 'wal' | 'snap'): number[] {
  let names: string[];
  try {
    names = readdirSync(shardDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const pattern = ext === 'wal' ? /^(\d+)\.wal$/ : /^(\d+)\.snap$/;
  const seqs: number[] = [];
  for (const name of names) {
    const m = pattern.exec(name);
    if (m) seqs.push(Number(m[1]));
  }
  return seqs.sort((a, b) => a - b);
}

/** Sequence numbers of the segments in a shard directory, ascending. */
export function listSegments(shardDir: string): number[] {
  return listSeqFiles(shardDir, 'wal');
}

/** Shard directory numbers present under dir (from any previous run, whatever its shard count). */
export function listShardDirs(dir: string): number[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: number[] = [];
  for (const name of names) {
    const m = /^shard-(\d+)$/.exec(name);
    if (m) out.push(Number(m[1]));
  }
  return out.sort((a, b) => a - b);
}

export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

const kZeroChunk = Buffer.alloc(1 << 20);
/** The background preparation writes larger pieces: each one costs the shard's loop a turn. */
const kZeroChunkAsync = Buffer.alloc(8 << 20);

/**
 * Create a file of `bytes` real zeros and fsync it. Never sparse: writing into a hole of a
 * mapped file on a full disk raises SIGBUS and kills the process, so ENOSPC must surface here.
 */
export function preallocateSync(path: string, bytes: number): void {
  let fd = -1;
  try {
    fd = openSync(path, 'wx');
    for (let off = 0; off < bytes; ) {
      const n = Math.min(kZeroChunk.length, bytes - off);
      off += writeSync(fd, kZeroChunk, 0, n, off);
    }
    fsyncSync(fd);
  } catch (err) {
    if (fd >= 0) closeSync(fd);
    fd = -1;
    try {
      unlinkSync(path);
    } catch {
      // nothing was created, or it is already gone
    }
    throw storageError(err, `cannot create segment ${path}`);
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

/** Same as preallocateSync on the libuv thread pool, so a shard keeps drawing meanwhile. */
export async function preallocateAsync(path: string, bytes: number): Promise<void> {
  const fh = await openAsync(path, 'wx');
  try {
    for (let off = 0; off < bytes; ) {
      const n = Math.min(kZeroChunkAsync.length, bytes - off);
      const { bytesWritten } = await fh.write(kZeroChunkAsync, 0, n, off);
      off += bytesWritten;
    }
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => {});
    await unlinkAsync(path).catch(() => {});
    throw storageError(err, `cannot create segment ${path}`);
  }
  await fh.close();
}

export function renameDurably(from: string, to: string, dir: string): void {
  try {
    renameSync(from, to);
    fsyncDir(dir);
  } catch (err) {
    throw storageError(err, `cannot rename ${from} to ${to}`);
  }
}

export function segmentPath(dir: string, shard: number, seq: number): string {
  return join(dir, shardDirName(shard), segmentFileName(seq));
}
