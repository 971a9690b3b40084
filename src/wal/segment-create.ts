import { storageError } from '../errors.js';
import { segmentPath, shardDirPath } from '../storage/data-dir.js';
import { closeFile, makeDir, renameDurably, writeFully } from '../storage/durable.js';
import type { Storage } from '../storage/storage.js';
import { newSegmentHeader } from './format.js';

/*
 * Segments are created whole before they get their name: blocks reserved (fallocate: no zeros
 * written, no sparse holes, so a write through the mapping can never meet a full disk), the
 * header written, everything synced; then renamed and the directory synced. A named segment
 * always has its header; a crash leaves at most a *.tmp file, which recovery removes.
 */

/** A spare for a later rotation: `bytes` reserved and synced under a temporary name. */
export function prepareSpare(storage: Storage, tmp: string, bytes: number): void {
  let fd = -1;
  try {
    fd = storage.open(tmp, 'w');
    storage.allocate(fd, 0, bytes);
    storage.sync(fd);
  } catch (err) {
    if (fd >= 0) storage.close(fd);
    fd = -1;
    try {
      storage.unlink(tmp); // a failed fallocate may have reserved part of the space
    } catch {
      // nothing was created
    }
    throw storageError(err, `cannot create segment ${tmp}`);
  } finally {
    if (fd >= 0) closeFile(storage, fd, tmp);
  }
}

/** Give a prepared spare its header (synced), then its segment name (directory synced). */
export function nameSegment(storage: Storage, tmp: string, path: string, header: Buffer): void {
  let fd = -1;
  try {
    fd = storage.open(tmp, 'r+');
    writeFully(storage, fd, header, 0, header.length, 0);
    storage.datasync(fd);
  } catch (err) {
    throw storageError(err, `cannot create segment ${path}`);
  } finally {
    if (fd >= 0) closeFile(storage, fd, tmp);
  }
  renameDurably(storage, tmp, path);
}

/** Create segment `path` whole (see above). */
export function createSegment(storage: Storage, path: string, bytes: number, header: Buffer): void {
  const tmp = `${path}.tmp`;
  prepareSpare(storage, tmp, bytes);
  nameSegment(storage, tmp, path, header);
}

/**
 * open() creates each shard's first segment of the new run before writing the snapshot that
 * points at it: a snapshot at seq S then always has its segment S on disk, so a missing one is
 * damage. The shard adopts the file when it starts.
 */
export function createFirstSegments(storage: Storage, dir: string, epoch: number, seqs: readonly number[], bytes: number, replicated = false): void {
  seqs.forEach((seq, shard) => {
    makeDir(storage, shardDirPath(dir, shard));
    const path = segmentPath(dir, shard, seq);
    if (!storage.exists(path)) createSegment(storage, path, bytes, newSegmentHeader(shard, seq, epoch, bytes, replicated));
  });
  try {
    storage.syncDir(dir);
  } catch (err) {
    throw storageError(err, `cannot sync ${dir}`);
  }
}
