import { join } from 'node:path';
import { storageError } from '../errors.js';
import { writeFully } from '../storage/durable.js';
import type { Storage } from '../storage/storage.js';

/*
 * The only changes recovery makes to a data directory (none with readOnly): files a crash left
 * half-prepared are removed, a torn tail of an unsealed newest segment is overwritten with zeros,
 * so later scans end cleanly before it, and such a segment is synced (zeroTornTail does it too).
 */

/** Remove the *.tmp files of a shard directory (spares and snapshots a crash left unfinished). */
export function removeTempFiles(storage: Storage, shardDir: string): void {
  for (const name of storage.list(shardDir)) {
    if (!name.endsWith('.tmp')) continue;
    try {
      storage.unlink(join(shardDir, name));
    } catch (err) {
      throw storageError(err, `cannot remove ${join(shardDir, name)}`);
    }
  }
}

/**
 * fdatasync an unsealed newest segment recovery read from: its writer died, and what it wrote
 * after its last sync may still be only in the page cache (a process crash, a dead shard
 * worker). The recovered state includes it and the next writer builds on it, so it must be
 * durable before anything is written after it: else a power cut could keep later acknowledged
 * records without it, or leave it, no longer the newest segment, with holes that read as damage.
 */
export function syncSegment(storage: Storage, file: string): void {
  let fd = -1;
  try {
    fd = storage.open(file, 'r+');
    storage.datasync(fd);
  } catch (err) {
    throw storageError(err, `cannot sync ${file}`);
  } finally {
    if (fd >= 0) storage.close(fd);
  }
}

const kChunk = 1 << 20;

/**
 * Zero a torn tail, from `offset` to the last byte written (segments are preallocated zeros),
 * synced. Zeroing the torn record's frame is not enough: after a power cut whole valid records
 * can follow it (pages written back out of order), and once a newer segment follows this one a
 * scan would take them for damage.
 */
export function zeroTornTail(storage: Storage, file: string, offset: number, size: number): void {
  if (offset >= size) return;
  let fd = -1;
  try {
    fd = storage.open(file, 'r+');
    const buf = Buffer.alloc(Math.min(kChunk, size - offset));
    let end = offset;
    for (let at = offset; at < size; ) {
      const n = storage.read(fd, buf, 0, Math.min(buf.length, size - at), at);
      if (n === 0) break;
      for (let i = n - 1; i >= 0; i--) {
        if (buf[i] !== 0) {
          end = at + i + 1;
          break;
        }
      }
      at += n;
    }
    if (end === offset) return;
    buf.fill(0);
    for (let at = offset; at < end; at += Math.min(buf.length, end - at)) writeFully(storage, fd, buf, 0, Math.min(buf.length, end - at), at);
    storage.datasync(fd);
  } catch (err) {
    throw storageError(err, `cannot repair torn tail of ${file}`);
  } finally {
    if (fd >= 0) storage.close(fd);
  }
}
