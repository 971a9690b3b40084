import { join } from 'node:path';
import { storageError } from '../errors.js';
import { writeFully } from '../storage/durable.js';
import type { Storage } from '../storage/storage.js';

/*
 * The only changes recovery makes to a data directory (none with readOnly): files a crash left
 * half-prepared are removed, and a torn record at the tail of an unsealed newest segment is
 * overwritten with zeros, so later scans end cleanly before it.
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

/** Zero the first bytes (length and CRC) of the torn record at `offset`, synced. */
export function zeroTornTail(storage: Storage, file: string, offset: number, size: number): void {
  const n = Math.min(8, size - offset);
  if (n <= 0) return;
  let fd = -1;
  try {
    fd = storage.open(file, 'r+');
    writeFully(storage, fd, Buffer.alloc(n), 0, n, offset);
    storage.datasync(fd);
  } catch (err) {
    throw storageError(err, `cannot repair torn tail of ${file}`);
  } finally {
    if (fd >= 0) storage.close(fd);
  }
}
