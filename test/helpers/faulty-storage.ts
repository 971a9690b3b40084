/**
 * Counted I/O fault injection (issue 12, item 2; cf. SQLite's counted I/O-error tests): a
 * Storage over the real one (a real directory under _tmp/) that numbers every storage
 * operation and makes the k-th one fail.
 *
 * What counts: every operation of the Storage interface that reaches the file system, reads
 * included: mkdirp, list, exists, isDirectory, rename, unlink, rmdir, syncDir, readFile, open,
 * close, fileSize, read, write, sync, datasync, allocate, map, and Mapping.sync (msync). Not
 * counted: `warm` (a hint whose failures the engine ignores by contract; it would run on the
 * libuv pool and make the numbering depend on timing, so it is not performed at all) and
 * Mapping.unmap (a memory operation, not I/O).
 *
 * How the k-th operation fails, as Node does (an Error whose `code` is the errno name):
 *  - 'EIO' on any of them; 'ENOSPC' on those that can need space or report it (mkdirp, open
 *    when it may create the file ('w', 'wx'), write, allocate, sync, datasync, msync, rename,
 *    close). Nothing is done, except for close, which releases the descriptor and then throws
 *    (Linux always releases it).
 *  - 'short' (write only): writes all but the last byte and returns that count, as write(2)
 *    may. A caller must write the rest; one that ignores the count leaves a hole.
 *  - exists/isDirectory cannot throw (fs.existsSync answers false on any error): their fault
 *    answers false.
 *
 * One FaultPlan can be shared by several FaultyStorage instances (one per shard, each with
 * its label): then the k-th operation of the whole workload fails, and only one shard sees it.
 * With `skipSyncs` the sync operations are counted (and fail) but not performed: nothing here
 * simulates power loss.
 */
import { realStorage } from '../../src/storage/real-storage.js';
import type { Mapping, OpenMode, Storage } from '../../src/storage/storage.js';

export type FaultKind = 'EIO' | 'ENOSPC' | 'short';

export type OpName =
  | 'mkdirp'
  | 'list'
  | 'exists'
  | 'isDirectory'
  | 'rename'
  | 'unlink'
  | 'rmdir'
  | 'syncDir'
  | 'readFile'
  | 'open'
  | 'close'
  | 'fileSize'
  | 'read'
  | 'write'
  | 'sync'
  | 'datasync'
  | 'allocate'
  | 'map'
  | 'msync';

/** One counted operation. */
export interface OpRecord {
  n: number;
  op: OpName;
  /** The file or directory (for descriptor operations, the path it was opened with). */
  path: string;
  /** Label of the FaultyStorage that performed it (e.g. 'shard-0'). */
  label: string;
  /** What the workload was doing (FaultPlan.phase when the operation ran). */
  phase: string;
  /** open: its mode; write/read: bytes asked. */
  detail?: string | number;
}

export interface FaultEvent extends OpRecord {
  kind: FaultKind;
}

// close(2) may report ENOSPC (and EIO) of earlier writes, on NFS for one.
const kSpaceOps: ReadonlySet<OpName> = new Set(['mkdirp', 'open', 'write', 'allocate', 'sync', 'datasync', 'msync', 'rename', 'close']);

/** The fault kinds that make sense for an operation (open: ENOSPC only when it may create). */
export function faultKinds(rec: Pick<OpRecord, 'op' | 'detail'>): FaultKind[] {
  if (rec.op === 'exists' || rec.op === 'isDirectory') return ['EIO'];
  const kinds: FaultKind[] = ['EIO'];
  // open can need space only when it may create the file.
  if (kSpaceOps.has(rec.op) && !(rec.op === 'open' && rec.detail !== 'w' && rec.detail !== 'wx')) kinds.push('ENOSPC');
  if (rec.op === 'write' && typeof rec.detail === 'number' && rec.detail >= 2) kinds.push('short');
  return kinds;
}

const kErrno: Record<'EIO' | 'ENOSPC', { errno: number; text: string }> = {
  EIO: { errno: -5, text: 'i/o error' },
  ENOSPC: { errno: -28, text: 'no space left on device' },
};

function nodeError(code: 'EIO' | 'ENOSPC', syscall: string, path: string): NodeJS.ErrnoException {
  const { errno, text } = kErrno[code];
  return Object.assign(new Error(`${code}: ${text}, ${syscall} '${path}' (injected)`), { errno, code, syscall, path });
}

/** The counter shared by the storages of one run, and which operation fails. */
export class FaultPlan {
  /** Operations counted so far. */
  count = 0;
  /** Set by the workload: recorded with each operation. */
  phase = '';
  /** The operation that was made to fail, once it happened. */
  fired: FaultEvent | undefined;
  /** Every counted operation, when `trace` was asked for. */
  readonly trace: OpRecord[] | undefined;
  readonly #at: number;
  readonly #kind: FaultKind;

  /** Fail operation number `at` (1-based; 0 = never) with `kind`, or EIO where `kind` does not apply. */
  constructor(at: number, kind: FaultKind = 'EIO', opts: { trace?: boolean } = {}) {
    this.#at = at;
    this.#kind = kind;
    this.trace = opts.trace ? [] : undefined;
  }

  /** Count one operation; the fault kind to inject if it is the one. */
  take(op: OpName, path: string, label: string, detail?: string | number): FaultKind | undefined {
    const rec: OpRecord = { n: ++this.count, op, path, label, phase: this.phase, detail };
    this.trace?.push(rec);
    if (rec.n !== this.#at) return undefined;
    const kind = faultKinds(rec).includes(this.#kind) ? this.#kind : 'EIO';
    this.fired = { ...rec, kind };
    return kind;
  }
}

/** A Storage over `inner` (the real disk) whose operations count against `plan`. */
export class FaultyStorage implements Storage {
  readonly plan: FaultPlan;
  readonly label: string;
  readonly #inner: Storage;
  readonly #skipSyncs: boolean;
  readonly #paths = new Map<number, string>();

  /**
   * `skipSyncs`: count sync, datasync, syncDir and msync but do not perform them. Nothing here
   * simulates a power loss (what a reopen reads is the page cache either way), and skipping
   * them makes a sweep of hundreds of runs affordable; the numbering is the same.
   */
  constructor(plan: FaultPlan, label: string, opts: { inner?: Storage; skipSyncs?: boolean } = {}) {
    this.plan = plan;
    this.label = label;
    this.#inner = opts.inner ?? realStorage;
    this.#skipSyncs = opts.skipSyncs ?? false;
  }

  /** Count an operation that fails by throwing; throws when it is the one. */
  #step(op: OpName, path: string, detail?: string | number): void {
    const kind = this.plan.take(op, path, this.label, detail);
    if (kind === 'EIO' || kind === 'ENOSPC') throw nodeError(kind, op === 'msync' ? 'msync' : op, path);
  }

  #path(fd: number): string {
    return this.#paths.get(fd) ?? `<fd ${fd}>`;
  }

  mkdirp(path: string): void {
    this.#step('mkdirp', path);
    this.#inner.mkdirp(path);
  }
  list(dir: string): string[] {
    this.#step('list', dir);
    return this.#inner.list(dir);
  }
  exists(path: string): boolean {
    // fs.existsSync answers false when stat fails: so does the fault.
    if (this.plan.take('exists', path, this.label) !== undefined) return false;
    return this.#inner.exists(path);
  }
  isDirectory(path: string): boolean {
    if (this.plan.take('isDirectory', path, this.label) !== undefined) return false;
    return this.#inner.isDirectory(path);
  }
  rename(from: string, to: string): void {
    this.#step('rename', from);
    this.#inner.rename(from, to);
  }
  unlink(path: string): void {
    this.#step('unlink', path);
    this.#inner.unlink(path);
  }
  rmdir(path: string): void {
    this.#step('rmdir', path);
    this.#inner.rmdir(path);
  }
  syncDir(dir: string): void {
    this.#step('syncDir', dir);
    if (!this.#skipSyncs) this.#inner.syncDir(dir);
  }
  readFile(path: string): Buffer {
    this.#step('readFile', path);
    return this.#inner.readFile(path);
  }
  open(path: string, mode: OpenMode): number {
    this.#step('open', path, mode);
    const fd = this.#inner.open(path, mode);
    this.#paths.set(fd, path);
    return fd;
  }
  close(fd: number): void {
    const path = this.#path(fd);
    this.#paths.delete(fd);
    const kind = this.plan.take('close', path, this.label);
    this.#inner.close(fd);
    if (kind === 'EIO' || kind === 'ENOSPC') throw nodeError(kind, 'close', path);
  }
  fileSize(fd: number): number {
    this.#step('fileSize', this.#path(fd));
    return this.#inner.fileSize(fd);
  }
  read(fd: number, buf: Uint8Array, offset: number, length: number, position: number): number {
    this.#step('read', this.#path(fd), length);
    return this.#inner.read(fd, buf, offset, length, position);
  }
  write(fd: number, buf: Uint8Array, offset: number, length: number, position: number): number {
    const path = this.#path(fd);
    const kind = this.plan.take('write', path, this.label, length);
    if (kind === 'short') return this.#inner.write(fd, buf, offset, length - 1, position);
    if (kind !== undefined) throw nodeError(kind, 'write', path);
    return this.#inner.write(fd, buf, offset, length, position);
  }
  sync(fd: number): void {
    this.#step('sync', this.#path(fd));
    if (!this.#skipSyncs) this.#inner.sync(fd);
  }
  datasync(fd: number): void {
    this.#step('datasync', this.#path(fd));
    if (!this.#skipSyncs) this.#inner.datasync(fd);
  }
  allocate(fd: number, offset: number, length: number): void {
    this.#step('allocate', this.#path(fd), length);
    this.#inner.allocate(fd, offset, length);
  }
  map(fd: number, length: number): Mapping {
    const path = this.#path(fd);
    this.#step('map', path, length);
    const inner = this.#inner.map(fd, length);
    return {
      buffer: inner.buffer,
      sync: (offset, len) => {
        this.#step('msync', path, len);
        if (!this.#skipSyncs) inner.sync(offset, len);
      },
      unmap: () => inner.unmap(),
    };
  }
  warm(): void {
    // A hint (page-cache warming) that the engine lets fail silently: not performed here.
  }
}
