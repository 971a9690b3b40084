/*
 * The storage seam: every file operation of the WAL, the snapshots and recovery goes through a
 * Storage, so that another implementation can stand in for the real disk: one that records
 * which writes a completed sync covered (simulated power loss), or one that fails the k-th
 * operation (counted fault injection). Failures are thrown as Node does: an Error whose `code`
 * is the errno name ('ENOSPC', 'EIO').
 */

/** A shared, writable mapping of a whole file. */
export interface Mapping {
  /** The mapped bytes: writing here writes the file (through the page cache). */
  readonly buffer: Buffer;
  /** msync(MS_SYNC) of [offset, offset + length): durable when it returns. */
  sync(offset: number, length: number): void;
  /** Unmap now; `buffer` must not be used afterwards. */
  unmap(): void;
}

export type OpenMode = 'r' | 'r+' | 'w' | 'wx';

export interface Storage {
  /** mkdir -p. */
  mkdirp(path: string): void;
  /** Names in a directory ([] when it does not exist). */
  list(dir: string): string[];
  exists(path: string): boolean;
  isDirectory(path: string): boolean;
  rename(from: string, to: string): void;
  unlink(path: string): void;
  rmdir(path: string): void;
  /** fsync of a directory: makes the renames and creations in it durable. */
  syncDir(dir: string): void;
  readFile(path: string): Buffer;

  open(path: string, mode: OpenMode): number;
  close(fd: number): void;
  fileSize(fd: number): number;
  read(fd: number, buf: Uint8Array, offset: number, length: number, position: number): number;
  write(fd: number, buf: Uint8Array, offset: number, length: number, position: number): number;
  /** fsync. */
  sync(fd: number): void;
  /** fdatasync. */
  datasync(fd: number): void;
  /** Reserve real blocks for [offset, offset + length), extending the file; never sparse. */
  allocate(fd: number, offset: number, length: number): void;
  /** Map `length` bytes of the file, shared and writable. */
  map(fd: number, length: number): Mapping;
  /**
   * Bring a prepared file into the page cache off the calling thread, so the first writes
   * through a mapping of it do not fault page by page. A hint: failures are ignored.
   */
  warm(path: string, length: number): void;
}
