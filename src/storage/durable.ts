import { dirname } from 'node:path';
import { storageError } from '../errors.js';
import type { Storage } from './storage.js';

/*
 * Durable file steps on top of a Storage: a rename is durable once its directory is synced; a
 * file is written whole under a temporary name, synced, then renamed, so it is either whole or
 * absent after any crash.
 */

export function renameDurably(storage: Storage, from: string, to: string): void {
  try {
    storage.rename(from, to);
    storage.syncDir(dirname(to));
  } catch (err) {
    throw storageError(err, `cannot rename ${from} to ${to}`);
  }
}

/**
 * Write all `length` bytes: write(2) may write fewer than asked (and says how many); the rest
 * is written in further calls. A write that makes no progress is an error, not a loop.
 */
export function writeFully(storage: Storage, fd: number, buf: Uint8Array, offset: number, length: number, position: number): void {
  let off = 0;
  while (off < length) {
    const n = storage.write(fd, buf, offset + off, length - off, position + off);
    if (!(n > 0)) throw Object.assign(new Error(`write made no progress at ${position + off} (${off} of ${length} bytes written)`), { code: 'EIO' });
    off += n;
  }
}

/**
 * close(2), as a coded error: it can report EIO or ENOSPC of earlier writes (NFS does), and
 * releases the descriptor either way.
 */
export function closeFile(storage: Storage, fd: number, path: string): void {
  try {
    storage.close(fd);
  } catch (err) {
    throw storageError(err, `cannot close ${path}`);
  }
}

/** Temp file, write, fsync, rename, fsync the directory. */
export function writeFileDurably(storage: Storage, path: string, data: Uint8Array): void {
  const tmp = `${path}.tmp`;
  let fd = -1;
  try {
    fd = storage.open(tmp, 'w');
    writeFully(storage, fd, data, 0, data.length, 0);
    storage.sync(fd);
  } catch (err) {
    throw storageError(err, `cannot write ${tmp}`);
  } finally {
    if (fd >= 0) closeFile(storage, fd, tmp);
  }
  renameDurably(storage, tmp, path);
}

/** The first `n` bytes of a file (fewer when it is shorter). */
export function readFileHead(storage: Storage, path: string, n: number): Buffer {
  const fd = storage.open(path, 'r');
  try {
    const buf = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
      const r = storage.read(fd, buf, got, n - got, got);
      if (r === 0) break;
      got += r;
    }
    return buf.subarray(0, got);
  } finally {
    storage.close(fd);
  }
}

/** mkdir -p, as a coded error. */
export function makeDir(storage: Storage, path: string): void {
  try {
    storage.mkdirp(path);
  } catch (err) {
    throw storageError(err, `cannot create ${path}`);
  }
}
