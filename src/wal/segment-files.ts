import { closeSync, existsSync, fdatasyncSync, fsyncSync, mkdirSync, openSync, readdirSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { open as openAsync, unlink as unlinkAsync } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { storageError } from '../errors.js';
import { newSegmentHeader } from './format.js';

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
 * Prepare a segment under a temporary name: `bytes` real zeros with its header at offset 0,
 * synced. Never sparse: writing into a hole of a mapped file on a full disk raises SIGBUS and
 * kills the process, so ENOSPC must surface here. Only a complete file is ever renamed to a
 * segment name (see createSegmentSync), so a named segment always has its header.
 */
export function prepareSegmentSync(tmp: string, bytes: number, header: Buffer): void {
  let fd = -1;
  try {
    fd = openSync(tmp, 'w');
    for (let off = 0; off < bytes; ) {
      const n = Math.min(kZeroChunk.length, bytes - off);
      off += writeSync(fd, kZeroChunk, 0, n, off);
    }
    writeSync(fd, header, 0, header.length, 0);
    fsyncSync(fd);
  } catch (err) {
    if (fd >= 0) closeSync(fd);
    fd = -1;
    try {
      unlinkSync(tmp);
    } catch {
      // nothing was created, or it is already gone
    }
    throw storageError(err, `cannot create segment ${tmp}`);
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

/**
 * A spare for the next rotation, on the libuv thread pool so a shard keeps drawing meanwhile:
 * zeros only, synced. Which segment it becomes is decided when it is named (nameSegment).
 */
export async function prepareSpareAsync(tmp: string, bytes: number): Promise<void> {
  const fh = await openAsync(tmp, 'w');
  try {
    for (let off = 0; off < bytes; ) {
      const n = Math.min(kZeroChunkAsync.length, bytes - off);
      const { bytesWritten } = await fh.write(kZeroChunkAsync, 0, n, off);
      off += bytesWritten;
    }
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => {});
    await unlinkAsync(tmp).catch(() => {});
    throw storageError(err, `cannot create segment ${tmp}`);
  }
  await fh.close();
}

/** Give a prepared spare its header (synced), then its segment name (directory synced). */
export function nameSegment(tmp: string, path: string, header: Buffer): void {
  let fd = -1;
  try {
    fd = openSync(tmp, 'r+');
    writeSync(fd, header, 0, header.length, 0);
    fdatasyncSync(fd);
  } catch (err) {
    throw storageError(err, `cannot create segment ${path}`);
  } finally {
    if (fd >= 0) closeSync(fd);
  }
  renameDurably(tmp, path, dirname(path));
}

/** Create segment `path` whole: prepared under a temporary name, renamed, directory synced. */
export function createSegmentSync(path: string, bytes: number, header: Buffer): void {
  const tmp = `${path}.tmp`;
  prepareSegmentSync(tmp, bytes, header);
  renameDurably(tmp, path, dirname(path));
}

/**
 * open() creates each shard's first segment of the new run before writing the snapshot that
 * points at it: a snapshot at seq S then always has its segment S on disk, so a missing one is
 * damage. The shard adopts the file when it starts.
 */
export function createFirstSegments(dir: string, epoch: number, seqs: readonly number[], segmentBytes: number): void {
  seqs.forEach((seq, shard) => {
    const shardDir = join(dir, shardDirName(shard));
    try {
      mkdirSync(shardDir, { recursive: true });
    } catch (err) {
      throw storageError(err, `cannot create ${shardDir}`);
    }
    const path = segmentPath(dir, shard, seq);
    if (!existsSync(path)) createSegmentSync(path, segmentBytes, newSegmentHeader(shard, seq, epoch, segmentBytes));
  });
  fsyncDir(dir);
}

/** The first `n` bytes of a file (fewer when it is shorter). */
export function readFileHead(path: string, n: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
      const r = readSync(fd, buf, got, n - got, got);
      if (r === 0) break;
      got += r;
    }
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
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
