import { posix } from 'node:path';
import type { Mapping, OpenMode, Storage } from '../../src/storage/storage.js';

/*
 * An in-memory Storage that records, per file and per directory, what a completed sync made
 * durable, so that tests can build the states a power cut could leave (issue 12, item 1).
 *
 * The model (pessimistic, page-granular, as the page cache is):
 *
 * - Each file has a *durable image* (what a completed fsync/fdatasync/msync put on the device)
 *   and a *current image* (what reads see: the page cache). Every change since the last sync
 *   covering a page is kept as a *version* of that 4 KiB page: the page's content right after
 *   each write() touching it, and, for a mapping, its content each time the mapping is looked at
 *   (every storage call, the mapping's msync and unmap, and freeze()), since stores into a
 *   mapping go through no call. After a power cut each page holds its durable content or any one
 *   of its versions (the last one the kernel happened to write back), independently of every
 *   other page: writeback and the device reorder freely. File sizes likewise: the durable size,
 *   or any size the file had since its last sync.
 * - fsync/fdatasync make the whole file durable, pages dirtied through a mapping included (the
 *   kernel writes back the shared page cache). msync(offset, length) makes the pages covering
 *   that range durable, and only those.
 * - A file's *name* is not made durable by syncing the file. Creations, renames, unlinks,
 *   mkdir and rmdir are durable once their directory is synced; until then a crash keeps any
 *   subset of them (applied in order; an operation that no longer applies, such as renaming a
 *   file whose creation was lost, is skipped). A file or directory whose parent directory's
 *   creation was lost is lost with it.
 *
 * Cut points: `onOp` is called before every call that changes anything (and before every sync),
 * with the state still unchanged by it; freeze() captures that state cheaply (durable images are
 * never modified in place, so frozen states share them). crashImages() then enumerates (or
 * samples) the images a power cut at that point could leave, and RecordingStorage.fromImage()
 * gives a storage holding one, everything durable, for recovery to run on.
 *
 * Not modelled: sub-page (sector) tearing of one page's write-back, data=journal or
 * ordered-mode guarantees a given file system adds (the model allows strictly more states than
 * ext4 does), I/O errors (a separate fault-injecting storage does that), and the real
 * consequences of writing to a mapping after munmap (recorded as a violation instead).
 */

export const kPageBytes = 4096;

export type SyncKind = 'fsync' | 'fdatasync' | 'msync' | 'syncDir';

export interface RecordingOptions {
  /** Directories that exist (durably) from the start, besides '/'. */
  dirs?: string[];
  /**
   * A deliberately wrong storage: when this returns true for a sync, the sync returns without
   * making anything durable (as a writer that forgot it would). For testing the checker.
   */
  dropSync?: (kind: SyncKind, path: string) => boolean;
}

/** One call that changes the storage, as the cut hook sees it. */
export interface OpInfo {
  n: number;
  op: string;
  path: string;
}

interface Inode {
  id: number;
  cur: Buffer;
  /** Never modified in place: frozen states share it. */
  dur: Buffer;
  /** Page index -> its contents since the last sync covering it, oldest first. */
  pages: Map<number, Buffer[]>;
  /** Sizes the file had since its last fsync/fdatasync, oldest first. */
  sizes: number[];
  maps: Set<MemMapping>;
}

/** A namespace operation, durable once its directory is synced. */
export type NsOp =
  | { seq: number; dir: string; kind: 'link'; path: string; ino: number }
  | { seq: number; dir: string; kind: 'unlink'; path: string; ino: number }
  | { seq: number; dir: string; kind: 'rename'; from: string; to: string; ino: number }
  | { seq: number; dir: string; kind: 'mkdir'; path: string }
  | { seq: number; dir: string; kind: 'rmdir'; path: string };

interface OpenFile {
  ino: Inode;
  path: string;
  writable: boolean;
}

/** A file as frozen at a cut point. */
export interface FrozenFile {
  id: number;
  dur: Buffer;
  pages: [number, Buffer[]][];
  sizes: number[];
}

/** The durable state plus everything not yet durable, at one cut point. */
export interface FrozenState {
  durDirs: string[];
  durNames: [string, number][];
  /** Namespace operations not yet made durable by a syncDir, in the order they happened. */
  ops: NsOp[];
  files: Map<number, FrozenFile>;
}

/** What a power cut left: the directories and the files with their content (shared buffers: never write them). */
export interface CrashImage {
  dirs: string[];
  files: Map<string, Buffer>;
}

function fsError(code: string, syscall: string, path: string): NodeJS.ErrnoException {
  const err = new Error(`${code}: ${syscall} '${path}'`) as NodeJS.ErrnoException;
  err.code = code;
  err.syscall = syscall;
  err.path = path;
  return err;
}

function norm(path: string): string {
  return posix.resolve('/', path);
}

function parentOf(path: string): string {
  return posix.dirname(path);
}

function isUnder(path: string, dir: string): boolean {
  return dir === '/' ? path !== '/' : path.startsWith(`${dir}/`);
}

class MemMapping implements Mapping {
  readonly buffer: Buffer;
  readonly ino: Inode;
  /** The file's name when it was mapped. */
  readonly path: string;
  readonly #fs: RecordingStorage;
  unmapped: Buffer | undefined;

  constructor(fs: RecordingStorage, ino: Inode, path: string, length: number) {
    this.#fs = fs;
    this.ino = ino;
    this.path = path;
    this.buffer = Buffer.from(ino.cur.subarray(0, length));
  }

  sync(offset: number, length: number): void {
    this.#fs.msync(this, offset, length);
  }

  unmap(): void {
    this.#fs.unmapping(this);
  }
}

export class RecordingStorage implements Storage {
  readonly #dirs = new Set<string>(['/']);
  readonly #names = new Map<string, Inode>();
  #durDirs = new Set<string>(['/']);
  #durNames = new Map<string, number>();
  #pendingOps: NsOp[] = [];
  readonly #inodes = new Map<number, Inode>();
  readonly #fds = new Map<number, OpenFile>();
  readonly #unmapped: MemMapping[] = [];
  readonly #opts: RecordingOptions;
  #nextIno = 1;
  #nextFd = 100;
  #nsSeq = 0;
  #opCount = 0;
  /** Called before every call that changes the storage (cut points). */
  onOp: ((op: OpInfo) => void) | undefined;
  /** Misuses seen: writes into a mapping after unmap, a mapping longer than its file. */
  readonly violations: string[] = [];
  /** Syncs the dropSync option dropped. */
  dropped = 0;

  constructor(opts: RecordingOptions = {}) {
    this.#opts = opts;
    for (const d of opts.dirs ?? []) this.#mkdirs(norm(d), true);
  }

  /** A storage holding a crash image, everything in it durable. */
  static fromImage(image: CrashImage, opts: RecordingOptions = {}): RecordingStorage {
    const s = new RecordingStorage(opts);
    for (const d of [...image.dirs].sort()) s.#mkdirs(d, true);
    for (const [path, content] of image.files) {
      // The image's buffers are never written: they serve as the durable images as they are.
      const ino = s.#newInode(Buffer.from(content));
      ino.dur = content;
      s.#names.set(path, ino);
      s.#durNames.set(path, ino.id);
    }
    return s;
  }

  /** Number of calls that changed something so far. */
  get opCount(): number {
    return this.#opCount;
  }

  #op(op: string, path: string): void {
    this.#flushAll();
    this.onOp?.({ n: this.#opCount, op, path });
    this.#opCount++;
  }

  #newInode(cur: Buffer): Inode {
    const ino: Inode = { id: this.#nextIno++, cur, dur: Buffer.alloc(0), pages: new Map(), sizes: [], maps: new Set() };
    this.#inodes.set(ino.id, ino);
    return ino;
  }

  #addOp(op: NsOp extends infer T ? (T extends NsOp ? Omit<T, 'seq'> : never) : never): void {
    this.#pendingOps.push({ ...op, seq: this.#nsSeq++ } as NsOp);
  }

  #mkdirs(path: string, durable: boolean): void {
    const chain: string[] = [];
    for (let p = path; !this.#dirs.has(p); p = parentOf(p)) chain.unshift(p);
    for (const p of chain) {
      if (this.#names.has(p)) throw fsError('EEXIST', 'mkdir', p);
      this.#dirs.add(p);
      if (durable) this.#durDirs.add(p);
      else this.#addOp({ dir: parentOf(p), kind: 'mkdir', path: p });
    }
  }

  // ---- page versions ----

  #recordPages(ino: Inode, from: number, to: number): void {
    for (let page = Math.floor(from / kPageBytes); page * kPageBytes < to; page++) {
      const start = page * kPageBytes;
      const content = Buffer.from(ino.cur.subarray(start, Math.min(ino.cur.length, start + kPageBytes)));
      let versions = ino.pages.get(page);
      if (versions === undefined) ino.pages.set(page, (versions = []));
      const last = versions.at(-1);
      if (last === undefined || !last.equals(content)) versions.push(content);
    }
  }

  #resize(ino: Inode, size: number): void {
    if (size === ino.cur.length) return;
    const next = Buffer.alloc(size);
    ino.cur.copy(next, 0, 0, Math.min(size, ino.cur.length));
    ino.cur = next;
    ino.sizes.push(size);
  }

  /** Bring what was stored into live mappings into the page cache, page by page. */
  #flushMapping(m: MemMapping): void {
    const ino = m.ino;
    const n = Math.min(m.buffer.length, ino.cur.length);
    for (let start = 0; start < n; start += kPageBytes) {
      const end = Math.min(n, start + kPageBytes);
      if (m.buffer.compare(ino.cur, start, end, start, end) !== 0) {
        m.buffer.copy(ino.cur, start, start, end);
        this.#recordPages(ino, start, end);
        for (const other of ino.maps) if (other !== m) ino.cur.copy(other.buffer, start, start, Math.min(end, other.buffer.length));
      }
    }
  }

  #flushAll(): void {
    for (const ino of this.#inodes.values()) for (const m of ino.maps) this.#flushMapping(m);
    for (const m of this.#unmapped) {
      if (!m.buffer.equals(m.unmapped!)) {
        this.violations.push(`write into a mapping of inode ${m.ino.id} after unmap`);
        m.unmapped = Buffer.from(m.buffer);
      }
    }
  }

  #drop(kind: SyncKind, path: string): boolean {
    if (this.#opts.dropSync?.(kind, path) === true) {
      this.dropped++;
      return true;
    }
    return false;
  }

  #fd(fd: number, syscall: string): OpenFile {
    const f = this.#fds.get(fd);
    if (f === undefined) throw fsError('EBADF', syscall, String(fd));
    return f;
  }

  // ---- Storage: namespace ----

  mkdirp(path: string): void {
    const p = norm(path);
    if (this.#dirs.has(p)) return;
    this.#op('mkdirp', p);
    this.#mkdirs(p, false);
  }

  list(dir: string): string[] {
    const d = norm(dir);
    if (!this.#dirs.has(d)) {
      if (this.#names.has(d)) throw fsError('ENOTDIR', 'scandir', d);
      return [];
    }
    const out: string[] = [];
    for (const p of this.#dirs) if (p !== '/' && parentOf(p) === d) out.push(posix.basename(p));
    for (const p of this.#names.keys()) if (parentOf(p) === d) out.push(posix.basename(p));
    return out.sort();
  }

  exists(path: string): boolean {
    const p = norm(path);
    return this.#dirs.has(p) || this.#names.has(p);
  }

  isDirectory(path: string): boolean {
    return this.#dirs.has(norm(path));
  }

  rename(from: string, to: string): void {
    const f = norm(from);
    const t = norm(to);
    this.#op('rename', `${f} -> ${t}`);
    const ino = this.#names.get(f);
    if (ino === undefined) throw fsError(this.#dirs.has(f) ? 'EISDIR' : 'ENOENT', 'rename', f);
    if (!this.#dirs.has(parentOf(t))) throw fsError('ENOENT', 'rename', t);
    if (this.#dirs.has(t)) throw fsError('EISDIR', 'rename', t);
    this.#names.delete(f);
    this.#names.set(t, ino);
    if (parentOf(f) === parentOf(t)) {
      this.#addOp({ dir: parentOf(f), kind: 'rename', from: f, to: t, ino: ino.id });
    } else {
      // Two directories, each durable with its own sync.
      this.#addOp({ dir: parentOf(f), kind: 'unlink', path: f, ino: ino.id });
      this.#addOp({ dir: parentOf(t), kind: 'link', path: t, ino: ino.id });
    }
  }

  unlink(path: string): void {
    const p = norm(path);
    this.#op('unlink', p);
    const ino = this.#names.get(p);
    if (ino === undefined) throw fsError(this.#dirs.has(p) ? 'EISDIR' : 'ENOENT', 'unlink', p);
    this.#names.delete(p);
    this.#addOp({ dir: parentOf(p), kind: 'unlink', path: p, ino: ino.id });
  }

  rmdir(path: string): void {
    const p = norm(path);
    this.#op('rmdir', p);
    if (!this.#dirs.has(p)) throw fsError('ENOENT', 'rmdir', p);
    if (this.list(p).length > 0) throw fsError('ENOTEMPTY', 'rmdir', p);
    this.#dirs.delete(p);
    this.#addOp({ dir: parentOf(p), kind: 'rmdir', path: p });
  }

  syncDir(dir: string): void {
    const d = norm(dir);
    this.#op('syncDir', d);
    if (!this.#dirs.has(d)) throw fsError('ENOENT', 'open', d);
    if (this.#drop('syncDir', d)) return;
    const mine = this.#pendingOps.filter((o) => o.dir === d);
    this.#pendingOps = this.#pendingOps.filter((o) => o.dir !== d);
    for (const o of mine) applyNsOp(this.#durDirs, this.#durNames, o, false);
  }

  readFile(path: string): Buffer {
    const p = norm(path);
    this.#flushAll();
    const ino = this.#names.get(p);
    if (ino === undefined) throw fsError(this.#dirs.has(p) ? 'EISDIR' : 'ENOENT', 'open', p);
    return Buffer.from(ino.cur);
  }

  // ---- Storage: files ----

  open(path: string, mode: OpenMode): number {
    const p = norm(path);
    let ino = this.#names.get(p);
    if (mode === 'r' || mode === 'r+') {
      if (ino === undefined) throw fsError(this.#dirs.has(p) ? 'EISDIR' : 'ENOENT', 'open', p);
    } else {
      this.#op(`open ${mode}`, p);
      if (this.#dirs.has(p)) throw fsError('EISDIR', 'open', p);
      if (ino !== undefined && mode === 'wx') throw fsError('EEXIST', 'open', p);
      if (!this.#dirs.has(parentOf(p))) throw fsError('ENOENT', 'open', p);
      if (ino === undefined) {
        ino = this.#newInode(Buffer.alloc(0));
        this.#names.set(p, ino);
        this.#addOp({ dir: parentOf(p), kind: 'link', path: p, ino: ino.id });
      } else {
        if (ino.maps.size > 0) throw new Error(`RecordingStorage: truncating ${p} while it is mapped`);
        this.#resize(ino, 0);
      }
    }
    const fd = this.#nextFd++;
    this.#fds.set(fd, { ino, path: p, writable: mode !== 'r' });
    return fd;
  }

  close(fd: number): void {
    this.#fd(fd, 'close');
    this.#fds.delete(fd);
  }

  fileSize(fd: number): number {
    const f = this.#fd(fd, 'fstat');
    this.#flushAll();
    return f.ino.cur.length;
  }

  read(fd: number, buf: Uint8Array, offset: number, length: number, position: number): number {
    const f = this.#fd(fd, 'read');
    this.#flushAll();
    const cur = f.ino.cur;
    if (position >= cur.length) return 0;
    const n = Math.min(length, cur.length - position);
    buf.set(cur.subarray(position, position + n), offset);
    return n;
  }

  write(fd: number, buf: Uint8Array, offset: number, length: number, position: number): number {
    const f = this.#fd(fd, 'write');
    this.#op('write', `${f.path} @${position}+${length}`);
    if (!f.writable) throw fsError('EBADF', 'write', f.path);
    const ino = f.ino;
    if (position + length > ino.cur.length) this.#resize(ino, position + length);
    ino.cur.set(buf.subarray(offset, offset + length), position);
    for (const m of ino.maps) ino.cur.copy(m.buffer, position, position, Math.min(position + length, m.buffer.length));
    this.#recordPages(ino, position, position + length);
    return length;
  }

  #syncFile(fd: number, kind: 'fsync' | 'fdatasync'): void {
    const f = this.#fd(fd, kind);
    this.#op(kind, f.path);
    if (this.#drop(kind, f.path)) return;
    const ino = f.ino;
    ino.dur = Buffer.from(ino.cur);
    ino.pages.clear();
    ino.sizes = [];
  }

  sync(fd: number): void {
    this.#syncFile(fd, 'fsync');
  }

  datasync(fd: number): void {
    this.#syncFile(fd, 'fdatasync');
  }

  allocate(fd: number, offset: number, length: number): void {
    const f = this.#fd(fd, 'fallocate');
    this.#op('fallocate', `${f.path} @${offset}+${length}`);
    if (!f.writable) throw fsError('EBADF', 'fallocate', f.path);
    // Blocks reserved and reading as zeros: only the size changes (never a hole).
    if (offset + length > f.ino.cur.length) this.#resize(f.ino, offset + length);
  }

  map(fd: number, length: number): Mapping {
    const f = this.#fd(fd, 'mmap');
    this.#flushAll();
    if (length > f.ino.cur.length) {
      // Touching a mapped page past the end of the file is SIGBUS.
      this.violations.push(`mapping ${length} bytes of ${f.path}, which has ${f.ino.cur.length}`);
      throw fsError('EINVAL', 'mmap', f.path);
    }
    const m = new MemMapping(this, f.ino, f.path, length);
    f.ino.maps.add(m);
    return m;
  }

  warm(): void {}

  // ---- mappings ----

  msync(m: MemMapping, offset: number, length: number): void {
    const ino = m.ino;
    this.#op('msync', `${m.path} @${offset}+${length}`);
    if (m.unmapped !== undefined) throw new Error('RecordingStorage: msync of an unmapped mapping');
    if (offset < 0 || length < 0 || offset + length > m.buffer.length) throw fsError('ENOMEM', 'msync', m.path);
    if (this.#drop('msync', m.path)) return;
    // As the addon does: the start rounded down to its page, the length grown by as much.
    const first = Math.floor(offset / kPageBytes);
    const end = offset + length;
    if (end <= first * kPageBytes) return;
    const last = Math.ceil(end / kPageBytes);
    const to = Math.min(ino.cur.length, last * kPageBytes);
    const dur = Buffer.alloc(Math.max(ino.dur.length, to));
    ino.dur.copy(dur);
    ino.cur.copy(dur, first * kPageBytes, first * kPageBytes, to);
    ino.dur = dur;
    for (let page = first; page < last; page++) ino.pages.delete(page);
  }

  unmapping(m: MemMapping): void {
    if (m.unmapped !== undefined) return;
    this.#flushMapping(m);
    m.ino.maps.delete(m);
    m.unmapped = Buffer.from(m.buffer);
    this.#unmapped.push(m);
  }

  // ---- crash states ----

  /** The durable state and what is not durable yet, as of now. Cheap: buffers are shared. */
  freeze(): FrozenState {
    this.#flushAll();
    const reachable = new Set<number>(this.#durNames.values());
    for (const o of this.#pendingOps) if ('ino' in o) reachable.add(o.ino);
    const files = new Map<number, FrozenFile>();
    for (const id of reachable) {
      const ino = this.#inodes.get(id)!;
      files.set(id, { id, dur: ino.dur, pages: [...ino.pages].map(([p, v]) => [p, v.slice()]), sizes: ino.sizes.slice() });
    }
    return { durDirs: [...this.#durDirs], durNames: [...this.#durNames], ops: this.#pendingOps.slice(), files };
  }

  /** The current image (what a process crash, as opposed to a power cut, leaves). */
  currentImage(): CrashImage {
    this.#flushAll();
    return { dirs: [...this.#dirs], files: new Map([...this.#names].map(([p, ino]) => [p, Buffer.from(ino.cur)])) };
  }

  /** Current file paths under a directory, recursively (for assertions and messages). */
  files(under = '/'): string[] {
    const d = norm(under);
    return [...this.#names.keys()].filter((p) => isUnder(p, d)).sort();
  }
}

function applyNsOp(dirs: Set<string>, names: Map<string, number>, o: NsOp, crash: boolean): void {
  switch (o.kind) {
    case 'link':
      if (!crash || !names.has(o.path)) names.set(o.path, o.ino);
      break;
    case 'unlink':
      if (names.get(o.path) === o.ino) names.delete(o.path);
      break;
    case 'rename':
      if (names.get(o.from) === o.ino) {
        names.delete(o.from);
        names.set(o.to, o.ino);
      }
      break;
    case 'mkdir':
      dirs.add(o.path);
      break;
    case 'rmdir': {
      // Only an empty directory can have been removed.
      const busy = crash && ([...names.keys()].some((p) => isUnder(p, o.path)) || [...dirs].some((p) => isUnder(p, o.path)));
      if (!busy) dirs.delete(o.path);
      break;
    }
  }
}

/** One independent choice a power cut makes: which version of a page, which size, whether an operation happened. */
type Choice =
  | { kind: 'page'; file: number; page: number; options: number }
  | { kind: 'size'; file: number; options: number }
  | { kind: 'op'; op: number; options: 1 };

function choicesOf(frozen: FrozenState): Choice[] {
  const out: Choice[] = [];
  for (const f of frozen.files.values()) {
    for (const [page, versions] of f.pages) out.push({ kind: 'page', file: f.id, page, options: versions.length });
    if (f.sizes.length > 0) out.push({ kind: 'size', file: f.id, options: f.sizes.length });
  }
  frozen.ops.forEach((_, i) => out.push({ kind: 'op', op: i, options: 1 }));
  return out;
}

/** How many distinct crash states the frozen state allows (each choice: nothing, or one of its options). */
export function crashStateCount(frozen: FrozenState): number {
  return choicesOf(frozen).reduce((n, c) => n * (c.options + 1), 1);
}

/** Number of independent not-yet-durable items (pages, sizes, namespace operations). */
export function unsyncedItems(frozen: FrozenState): number {
  return choicesOf(frozen).length;
}

function buildImage(frozen: FrozenState, choices: Choice[], picks: number[]): CrashImage {
  const dirs = new Set(frozen.durDirs);
  const names = new Map(frozen.durNames);
  const pageChoice = new Map<number, Map<number, number>>();
  const sizeChoice = new Map<number, number>();
  const opChosen = new Set<number>();
  choices.forEach((c, i) => {
    const v = picks[i]!;
    if (v === 0) return;
    if (c.kind === 'page') {
      let m = pageChoice.get(c.file);
      if (m === undefined) pageChoice.set(c.file, (m = new Map()));
      m.set(c.page, v - 1);
    } else if (c.kind === 'size') sizeChoice.set(c.file, v - 1);
    else opChosen.add(c.op);
  });
  frozen.ops.forEach((o, i) => {
    if (opChosen.has(i)) applyNsOp(dirs, names, o, true);
  });
  // Whatever lost its parent directory is lost with it.
  const alive = (p: string): boolean => {
    for (let d = parentOf(p); d !== '/'; d = parentOf(d)) if (!dirs.has(d)) return false;
    return true;
  };
  const files = new Map<string, Buffer>();
  for (const [path, id] of names) {
    if (!alive(path)) continue;
    const f = frozen.files.get(id)!;
    const s = sizeChoice.get(id);
    const pages = pageChoice.get(id);
    if (s === undefined && pages === undefined) {
      files.set(path, f.dur); // shared: durable images are never modified
      continue;
    }
    const size = s === undefined ? f.dur.length : f.sizes[s]!;
    const content = Buffer.alloc(size);
    f.dur.copy(content, 0, 0, Math.min(size, f.dur.length));
    if (pages !== undefined) {
      const versions = new Map(f.pages);
      for (const [page, v] of pages) {
        const at = page * kPageBytes;
        if (at < size) versions.get(page)![v]!.copy(content, at, 0, Math.min(kPageBytes, size - at));
      }
    }
    files.set(path, content);
  }
  return { dirs: [...dirs].filter((d) => d === '/' || alive(d)), files };
}

export interface CrashImageOptions {
  /** Enumerate every state when there are at most this many. Default: 1024 (10 independent items). */
  exhaustiveUpTo?: number;
  /** Otherwise: this many seeded random states, plus nothing-made-it and everything-made-it. Default: 24. */
  samples?: number;
  /** A [0, 1) generator for sampling. */
  rng: () => number;
}

/** The crash states of a frozen state: all of them when few, else a seeded sample. */
export function* crashImages(frozen: FrozenState, opts: CrashImageOptions): Generator<CrashImage> {
  const choices = choicesOf(frozen);
  const total = choices.reduce((n, c) => n * (c.options + 1), 1);
  const limit = opts.exhaustiveUpTo ?? 1024;
  if (total <= limit) {
    const picks = new Array<number>(choices.length).fill(0);
    for (let k = 0; k < total; k++) {
      yield buildImage(frozen, choices, picks);
      // Mixed-radix increment.
      for (let i = 0; i < picks.length; i++) {
        if (++picks[i]! <= choices[i]!.options) break;
        picks[i] = 0;
      }
    }
    return;
  }
  yield buildImage(frozen, choices, choices.map(() => 0));
  yield buildImage(frozen, choices, choices.map((c) => c.options));
  const samples = opts.samples ?? 24;
  for (let s = 0; s < samples; s++) {
    // Vary how much made it: some samples keep almost nothing, some almost everything.
    const p = opts.rng();
    yield buildImage(
      frozen,
      choices,
      choices.map((c) => (opts.rng() < p ? 1 + Math.floor(opts.rng() * c.options) : 0)),
    );
  }
}
