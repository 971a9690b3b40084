import {
  closeSync,
  existsSync,
  fdatasyncSync,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmdirSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { open as openAsync } from 'node:fs/promises';
import { nativeBinding, nativeLoadError } from '../native/index.js';
import type { Mapping, OpenMode, Storage } from './storage.js';

const kWarmChunk = 1 << 20;
const kZeros = Buffer.alloc(1 << 20);

/** The real disk: node:fs, plus the project's addon for fallocate and mmap/msync. */
export const realStorage: Storage = {
  mkdirp(path) {
    mkdirSync(path, { recursive: true });
  },
  list(dir) {
    try {
      return readdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  },
  exists: (path) => existsSync(path),
  isDirectory(path) {
    try {
      return statSync(path).isDirectory();
    } catch {
      return false;
    }
  },
  rename: (from, to) => renameSync(from, to),
  unlink: (path) => unlinkSync(path),
  rmdir: (path) => rmdirSync(path),
  syncDir(dir) {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  },
  readFile: (path) => readFileSync(path),
  open: (path, mode: OpenMode) => openSync(path, mode),
  close: (fd) => closeSync(fd),
  fileSize: (fd) => fstatSync(fd).size,
  read: (fd, buf, offset, length, position) => readSync(fd, buf, offset, length, position),
  write: (fd, buf, offset, length, position) => writeSync(fd, buf, offset, length, position),
  sync: (fd) => fsyncSync(fd),
  datasync: (fd) => fdatasyncSync(fd),
  allocate(fd, offset, length) {
    if (nativeLoadError() === undefined) {
      nativeBinding().fallocate(fd, offset, length);
      return;
    }
    // Without the addon (wal 'file' only): real zeros, written, never a hole.
    for (let off = 0; off < length; ) {
      const n = Math.min(kZeros.length, length - off);
      off += writeSync(fd, kZeros, 0, n, offset + off);
    }
  },
  map(fd, length): Mapping {
    const native = nativeBinding();
    const ab = native.mmap(fd, length, native.PROT_READ | native.PROT_WRITE, native.MAP_SHARED, 0);
    return {
      buffer: Buffer.from(ab),
      sync: (offset, len) => native.msync(ab, offset, len, native.MS_SYNC),
      unmap: () => native.munmap(ab),
    };
  },
  warm(path, length) {
    // Reading a freshly allocated file fills the page cache with its zero pages on the libuv
    // pool; writes through the mapping then find their pages instead of faulting each one in.
    void (async () => {
      const fh = await openAsync(path, 'r');
      try {
        const buf = Buffer.allocUnsafe(kWarmChunk);
        for (let off = 0; off < length; off += kWarmChunk) await fh.read(buf, 0, Math.min(kWarmChunk, length - off), off);
      } finally {
        await fh.close();
      }
    })().catch(() => {});
  },
};
