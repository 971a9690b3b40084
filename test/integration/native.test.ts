/**
 * The rpe_native addon (src/native/*.c) through its compiled loader: flock between open file
 * descriptions and processes, mmap/msync/madvise/munmap, fallocate (real blocks; ENOSPC on a
 * full tmpfs; the posix_fallocate fallback on ext2), loading inside a worker thread, and coded
 * errors for bad arguments.
 */
import { execFileSync, fork } from 'node:child_process';
import { closeSync, copyFileSync, fstatSync, mkdirSync, openSync, readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { Worker } from 'node:worker_threads';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { nativeBinding, nativeLoadError } from '../../dist/src/native/index.js';
import { fixture, KiB, MiB } from '../helpers/engine.js';
import { tmpDir } from '../helpers/tmp.js';

const native = nativeBinding();
const page = native.PAGESIZE;
const RW = native.PROT_READ | native.PROT_WRITE;

/** Descriptors opened by a test are closed after it (and their flocks released with them). */
const fds: number[] = [];
afterEach(() => {
  for (const fd of fds.splice(0)) closeSync(fd);
});
function open(path: string, flags = 'r+'): number {
  const fd = openSync(path, flags);
  fds.push(fd);
  return fd;
}

/** A file of `size` bytes (written, so not sparse), opened read-write. */
function fileOf(size: number, label = 'file'): { path: string; fd: number } {
  const path = join(tmpDir(label), 'data');
  writeFileSync(path, Buffer.alloc(size));
  return { path, fd: open(path) };
}

/** How many mappings of `path` this process has (/proc/self/maps lists the real path). */
function mappingsOf(path: string): number {
  const real = realpathSync(path);
  return readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((line) => line.endsWith(` ${real}`)).length;
}

/** Calls fn, which must throw; returns what it threw. */
function thrown(fn: () => unknown): NodeJS.ErrnoException {
  try {
    fn();
  } catch (err) {
    return err as NodeJS.ErrnoException;
  }
  throw new Error('expected a throw');
}

describe('loading', () => {
  it('loads, with the constants as numbers', () => {
    expect(nativeLoadError()).toBeUndefined();
    for (const name of ['LOCK_SH', 'LOCK_EX', 'LOCK_NB', 'LOCK_UN', 'PROT_READ', 'PROT_WRITE', 'MAP_SHARED', 'MAP_PRIVATE', 'MS_SYNC', 'MS_ASYNC', 'MS_INVALIDATE', 'MADV_NORMAL', 'MADV_RANDOM', 'MADV_SEQUENTIAL', 'MADV_WILLNEED', 'MADV_DONTNEED'] as const) {
      expect(Number.isInteger(native[name]), name).toBe(true);
    }
    expect(page >= 4096 && (page & (page - 1)) === 0).toBe(true);
  });

  /** The compiled loader copied into a fresh package root (source map comment dropped). */
  async function loaderIn(root: string): Promise<typeof import('../../dist/src/native/index.js')> {
    mkdirSync(join(root, 'dist/src/native'), { recursive: true });
    const compiled = readFileSync(new URL('../../dist/src/native/index.js', import.meta.url), 'utf8');
    writeFileSync(join(root, 'dist/src/native/index.js'), compiled.replace(/^\/\/# sourceMappingURL=.*$/m, ''));
    writeFileSync(join(root, 'package.json'), '{"type":"module"}');
    return (await import(pathToFileURL(join(root, 'dist/src/native/index.js')).href)) as typeof import('../../dist/src/native/index.js');
  }

  it('nativeLoadError() says why it cannot load and how to build, and nativeBinding() throws that same error', async () => {
    const root = realpathSync(tmpDir('no-binary'));
    const loader = await loaderIn(root);
    const err = loader.nativeLoadError() as NodeJS.ErrnoException;
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe('ERR_NATIVE_ADDON');
    expect(err.message).toContain(`could not be loaded from ${root}: No native build was found`);
    expect(err.message).toContain(`npx --yes node-gyp rebuild --directory=${join(root, 'src/native')}`);
    expect(err.cause).toBeInstanceOf(Error);
    expect(thrown(() => loader.nativeBinding())).toBe(err);
    expect(loader.nativeLoadError()).toBe(err);
  });

  it('finds a source build in src/native/build/ (how an installed package builds in place)', async () => {
    const root = tmpDir('source-build');
    const built = (createRequire(import.meta.url)('node-gyp-build') as { path(dir: string): string }).path(fileURLToPath(new URL('../..', import.meta.url)));
    mkdirSync(join(root, 'src/native/build/Release'), { recursive: true });
    copyFileSync(built, join(root, 'src/native/build/Release/rpe_native.node'));
    const loader = await loaderIn(root);
    expect(loader.nativeLoadError()).toBeUndefined();
    expect(loader.nativeBinding().PAGESIZE).toBe(page);
  });
});

describe('flock', () => {
  it('is exclusive between two open file descriptions in one process; LOCK_UN releases', () => {
    const { path, fd: a } = fileOf(16);
    const b = open(path);
    expect(native.flock(a, native.LOCK_EX | native.LOCK_NB)).toBe(true);
    expect(native.flock(b, native.LOCK_EX | native.LOCK_NB)).toBe(false);
    expect(native.flock(b, native.LOCK_SH | native.LOCK_NB)).toBe(false);
    // Re-locking through the same description only converts the lock.
    expect(native.flock(a, native.LOCK_EX | native.LOCK_NB)).toBe(true);
    expect(native.flock(a, native.LOCK_UN)).toBe(true);
    expect(native.flock(b, native.LOCK_EX | native.LOCK_NB)).toBe(true);
    expect(native.flock(a, native.LOCK_SH | native.LOCK_NB)).toBe(false);
    expect(native.flock(b, native.LOCK_UN)).toBe(true);
    // Shared locks coexist.
    expect(native.flock(a, native.LOCK_SH | native.LOCK_NB)).toBe(true);
    expect(native.flock(b, native.LOCK_SH | native.LOCK_NB)).toBe(true);
  });

  it('is exclusive between processes, and the kernel releases it when the holder is SIGKILLed', async () => {
    const { path, fd } = fileOf(16);
    const child = fork(fixture('flock-and-hold.mjs'), [path], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    try {
      const msg = await new Promise<{ type: string; taken: boolean }>((resolve, reject) => {
        child.once('message', resolve);
        child.once('exit', (code) => reject(new Error(`child exited early (${code})`)));
      });
      expect(msg).toEqual({ type: 'locked', taken: true });
      expect(native.flock(fd, native.LOCK_EX | native.LOCK_NB)).toBe(false);
      const exited = new Promise((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
      child.kill('SIGKILL');
      expect(await exited).toBe('SIGKILL');
      expect(native.flock(fd, native.LOCK_EX | native.LOCK_NB)).toBe(true);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });

  it('reports an OS failure with the errno name', () => {
    const err = thrown(() => native.flock(2 ** 31 - 1, native.LOCK_EX));
    expect(err).toMatchObject({ code: 'EBADF', errno: -9, syscall: 'flock', message: 'EBADF: bad file descriptor, flock' });
  });
});

describe('mmap, msync, madvise, munmap', () => {
  it('writes through a view reach the file after msync', () => {
    const size = 3 * page;
    const { path, fd } = fileOf(size);
    const map = native.mmap(fd, size, RW, native.MAP_SHARED, 0);
    expect(map).toBeInstanceOf(ArrayBuffer);
    expect(map.byteLength).toBe(size);
    const view = new Uint8Array(map);
    const bytes = Buffer.from('acknowledged draw');
    view.set(bytes, page + 10);
    // An offset inside a page: the addon rounds the start down to the page.
    native.msync(map, page + 10, bytes.length, native.MS_SYNC);
    expect(readFileSync(path).subarray(page + 10, page + 10 + bytes.length)).toEqual(bytes);
    native.munmap(map);
  });

  it('maps from a page-aligned offset and sees what fs wrote', () => {
    const path = join(tmpDir('offset'), 'data');
    const content = Buffer.alloc(2 * page);
    const marker = Buffer.from('second page');
    marker.copy(content, page);
    writeFileSync(path, content);
    const map = native.mmap(open(path), page, native.PROT_READ, native.MAP_SHARED, page);
    expect(Buffer.from(map, 0, marker.length)).toEqual(marker);
    native.munmap(map);
  });

  it('MAP_PRIVATE writes stay private', () => {
    const { path, fd } = fileOf(page);
    const map = native.mmap(fd, page, RW, native.MAP_PRIVATE, 0);
    new Uint8Array(map).fill(7);
    native.msync(map, 0, page, native.MS_SYNC);
    expect(readFileSync(path).every((b) => b === 0)).toBe(true);
    native.munmap(map);
  });

  it('munmap detaches (views read length 0), really unmaps, and is a no-op the second time', () => {
    const { path, fd } = fileOf(2 * page);
    const map = native.mmap(fd, 2 * page, RW, native.MAP_SHARED, 0);
    const view = new Uint8Array(map);
    const dv = new DataView(map);
    view[0] = 1;
    expect(mappingsOf(path)).toBe(1);
    native.munmap(map);
    expect(map.byteLength).toBe(0);
    expect(view.length).toBe(0);
    expect(view[0]).toBeUndefined();
    expect(() => dv.getUint8(0)).toThrow(TypeError);
    expect(mappingsOf(path)).toBe(0);
    expect(native.munmap(map)).toBeUndefined();
    const err = thrown(() => native.msync(map, 0, 0, native.MS_SYNC));
    expect(err).toBeInstanceOf(TypeError);
    expect(err.code).toBe('ERR_INVALID_ARG_VALUE');
    expect(thrown(() => native.madvise(map, 0, 0, native.MADV_NORMAL)).code).toBe('ERR_INVALID_ARG_VALUE');
  });

  it('a mapping nobody unmapped is unmapped when its ArrayBuffer is collected', async () => {
    const { path, fd } = fileOf(page);
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    (() => {
      for (let i = 0; i < 8; i++) new Uint8Array(native.mmap(fd, page, RW, native.MAP_SHARED, 0))[0] = i;
    })();
    expect(mappingsOf(path)).toBeGreaterThan(0);
    // Node runs buffer finalizers from the event loop after the collection.
    for (let i = 0; i < 50 && mappingsOf(path) > 0; i++) {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(mappingsOf(path)).toBe(0);
  });

  it('madvise takes every advice within the mapping', () => {
    const { fd } = fileOf(4 * page);
    const map = native.mmap(fd, 4 * page, RW, native.MAP_SHARED, 0);
    for (const advice of [native.MADV_NORMAL, native.MADV_RANDOM, native.MADV_SEQUENTIAL, native.MADV_WILLNEED, native.MADV_DONTNEED]) {
      native.madvise(map, 100, 2 * page, advice);
    }
    native.madvise(map, 4 * page, 0, native.MADV_NORMAL); // empty range at the end
    // Advice that is not advice (Linux MADV_REMOVE = 9 punches holes; MADV_HWPOISON = 100).
    for (const advice of [9, 100]) {
      const err = thrown(() => native.madvise(map, 0, page, advice));
      expect(err).toBeInstanceOf(TypeError);
      expect(err.code).toBe('ERR_INVALID_ARG_VALUE');
      expect(err.message).toContain(`"advice" argument must be MADV_NORMAL`);
    }
    native.msync(map, 4 * page, 0, native.MS_SYNC);
    native.msync(map, 0, 4 * page, native.MS_ASYNC | native.MS_INVALIDATE);
    native.munmap(map);
  });

  it('msync and madvise refuse ranges outside the mapping with ERR_OUT_OF_RANGE', () => {
    const { fd } = fileOf(2 * page);
    const map = native.mmap(fd, 2 * page, RW, native.MAP_SHARED, 0);
    const cases: Array<[number, number, string]> = [
      [2 * page + 1, 0, '"offset"'],
      [-1, 1, '"offset"'],
      [0, 2 * page + 1, '"length"'],
      [page, page + 1, '"length"'],
      [0, -1, '"length"'],
      [1.5, 1, 'It must be an integer'],
      [0, Number.NaN, 'Received NaN'],
      [0, Number.POSITIVE_INFINITY, 'Received Infinity'],
    ];
    for (const [offset, length, text] of cases) {
      for (const call of [() => native.msync(map, offset, length, native.MS_SYNC), () => native.madvise(map, offset, length, native.MADV_NORMAL)]) {
        const err = thrown(call);
        expect(err, `${offset}, ${length}`).toBeInstanceOf(RangeError);
        expect(err.code).toBe('ERR_OUT_OF_RANGE');
        expect(err.message).toContain(text);
      }
    }
    expect(thrown(() => native.msync(map, 0, 2 * page, native.MS_SYNC | native.MS_ASYNC))).toMatchObject({
      code: 'EINVAL',
      errno: -22,
      syscall: 'msync',
      message: 'EINVAL: invalid argument, msync',
    });
    native.munmap(map);
  });

  it('mmap refuses what would crash later or cannot work, with coded errors', () => {
    const { path, fd } = fileOf(page);
    // Past the end of the file: a store there would raise SIGBUS.
    const past = thrown(() => native.mmap(fd, 2 * page, RW, native.MAP_SHARED, 0));
    expect(past).toBeInstanceOf(RangeError);
    expect(past.code).toBe('ERR_OUT_OF_RANGE');
    expect(past.message).toContain(`the file has ${page} bytes`);
    expect(thrown(() => native.mmap(fd, page, RW, native.MAP_SHARED, page)).code).toBe('ERR_OUT_OF_RANGE');
    expect(thrown(() => native.mmap(fd, 100, RW, native.MAP_SHARED, 100)).message).toContain('multiple of PAGESIZE');
    expect(thrown(() => native.mmap(fd, 0, RW, native.MAP_SHARED, 0)).code).toBe('ERR_OUT_OF_RANGE');
    // Writable shared mapping of a read-only descriptor.
    const ro = open(path, 'r');
    expect(thrown(() => native.mmap(ro, page, RW, native.MAP_SHARED, 0))).toMatchObject({ code: 'EACCES', syscall: 'mmap', errno: -13 });
    expect(thrown(() => native.mmap(2 ** 31 - 1, page, RW, native.MAP_SHARED, 0))).toMatchObject({ code: 'EBADF' });
    expect(mappingsOf(path)).toBe(0);
  });
});

describe('fallocate', () => {
  it('allocates real blocks and sets the size (not sparse)', () => {
    const path = join(tmpDir('falloc'), 'seg');
    const fd = open(path, 'w+');
    const length = 8 * MiB + 123;
    native.fallocate(fd, 0, length);
    const st = fstatSync(fd);
    expect(st.size).toBe(length);
    expect(st.blocks * 512).toBeGreaterThanOrEqual(length);
    // Contrast: a truncated file of the same size has no blocks at all.
    const sparse = join(tmpDir('sparse'), 'seg');
    writeFileSync(sparse, '');
    execFileSync('truncate', ['-s', String(length), sparse]);
    expect(statSync(sparse).blocks).toBe(0);
    // Reads as zeros, and a range past the end extends the file.
    expect(readFileSync(path).every((b) => b === 0)).toBe(true);
    native.fallocate(fd, length, 64 * KiB);
    expect(fstatSync(fd).size).toBe(length + 64 * KiB);
  });

  it('does not shrink a file or touch its data', () => {
    const { path, fd } = fileOf(0);
    writeFileSync(path, 'keep me');
    native.fallocate(fd, 0, 3);
    expect(readFileSync(path, 'utf8')).toBe('keep me');
  });

  // Mounting needs root: the suite runs as root here and in CI.
  describe('on a full tmpfs', () => {
    let mnt = '';
    afterAll(() => {
      if (!mnt) return;
      try {
        execFileSync('umount', [mnt], { stdio: 'ignore' });
      } catch {
        execFileSync('umount', ['-l', mnt], { stdio: 'ignore' });
      }
    });

    it('ENOSPC comes out as code ENOSPC; the failed call leaves the size alone', () => {
      mnt = tmpDir('tmpfs');
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt]);
      const fd = open(join(mnt, 'seg'), 'w+');
      const err = thrown(() => native.fallocate(fd, 0, 2 * MiB));
      expect(err).toBeInstanceOf(Error);
      expect(err).toMatchObject({ code: 'ENOSPC', errno: -28, syscall: 'fallocate', message: 'ENOSPC: no space left on device, fallocate' });
      expect(fstatSync(fd).size).toBe(0);
      // What fits still works.
      native.fallocate(fd, 0, 256 * KiB);
      expect(fstatSync(fd).size).toBe(256 * KiB);
    });
  });
});

describe('in a worker thread', () => {
  it('loads and works in a Worker; its teardown unmaps what it left mapped', async () => {
    const file = join(tmpDir('worker'), 'seg');
    const length = 4 * page;
    const worker = new Worker(fixture('native-in-worker.mjs'), { workerData: { file, length } });
    const messages: Array<Record<string, unknown>> = [];
    let checkedLock: boolean | undefined;
    const exited = new Promise<number>((resolve, reject) => {
      worker.on('error', reject);
      worker.on('exit', resolve);
    });
    worker.on('message', (msg: Record<string, unknown>) => {
      messages.push(msg);
      if (msg.type === 'locked') {
        // The worker's descriptor holds the lock; ours is another open file description.
        checkedLock = native.flock(open(file), native.LOCK_EX | native.LOCK_NB);
        worker.postMessage('go');
      }
    });
    expect(await exited).toBe(0);
    expect(checkedLock).toBe(false);
    expect(messages).toEqual([
      { type: 'locked', taken: true },
      { type: 'done', taken: true, unlocked: true, size: length, blocks: expect.any(Number), viewLengthAfterUnmap: 0, badArgCode: 'ERR_INVALID_ARG_TYPE' },
    ]);
    expect((messages[1]!.blocks as number) * 512).toBeGreaterThanOrEqual(length);
    const data = readFileSync(file);
    expect(data.subarray(page, page + 100).every((b) => b === 0x5a)).toBe(true);
    expect(data[page + 100]).toBe(0);
    expect(mappingsOf(file)).toBe(0);
  });
});

describe('bad arguments throw coded errors and never crash', () => {
  it.each([
    ['flock()', () => native.flock(undefined as never, native.LOCK_EX), TypeError, 'ERR_INVALID_ARG_TYPE', 'The "fd" argument must be of type number. Received type undefined'],
    ['flock("3")', () => native.flock('3' as never, native.LOCK_EX), TypeError, 'ERR_INVALID_ARG_TYPE', 'Received type string'],
    ['flock(-1)', () => native.flock(-1, native.LOCK_EX), RangeError, 'ERR_OUT_OF_RANGE', 'The value of "fd" is out of range. It must be >= 0 && <= 2147483647. Received -1'],
    ['flock(fd, 2**31)', () => native.flock(0, 2 ** 31), RangeError, 'ERR_OUT_OF_RANGE', '"operation"'],
    ['mmap(1.5)', () => native.mmap(1.5, 4096, RW, 1, 0), RangeError, 'ERR_OUT_OF_RANGE', 'It must be an integer. Received 1.5'],
    ['mmap length -1', () => native.mmap(0, -1, RW, 1, 0), RangeError, 'ERR_OUT_OF_RANGE', '"length"'],
    ['mmap length 2**53', () => native.mmap(0, 2 ** 53, RW, 1, 0), RangeError, 'ERR_OUT_OF_RANGE', 'Received 9007199254740992'],
    ['mmap length 10n', () => native.mmap(0, 10n as never, RW, 1, 0), TypeError, 'ERR_INVALID_ARG_TYPE', 'Received type bigint'],
    ['mmap prot "rw"', () => native.mmap(0, 4096, 'rw' as never, 1, 0), TypeError, 'ERR_INVALID_ARG_TYPE', '"prot"'],
    ['mmap prot PROT_NONE', () => native.mmap(0, 4096, 0, 1, 0), TypeError, 'ERR_INVALID_ARG_VALUE', 'The "prot" argument must be PROT_READ or PROT_READ | PROT_WRITE. Received 0'],
    // Linux MAP_FIXED = 0x10: with no address argument it would map page 0 or over V8's heap.
    ['mmap flags MAP_FIXED', () => native.mmap(0, 4096, RW, native.MAP_SHARED | 0x10, 0), TypeError, 'ERR_INVALID_ARG_VALUE', 'The "flags" argument must be MAP_SHARED or MAP_PRIVATE'],
    ['mmap without offset', () => (native.mmap as (...a: unknown[]) => unknown)(0, 4096, RW, 1), TypeError, 'ERR_INVALID_ARG_TYPE', '"offset"'],
    ['munmap()', () => (native.munmap as (...a: unknown[]) => unknown)(), TypeError, 'ERR_INVALID_ARG_TYPE', 'must be an ArrayBuffer returned by mmap()'],
    ['munmap({})', () => native.munmap({} as never), TypeError, 'ERR_INVALID_ARG_TYPE', 'must be an ArrayBuffer returned by mmap()'],
    ['munmap(Uint8Array)', () => native.munmap(new Uint8Array(8) as never), TypeError, 'ERR_INVALID_ARG_TYPE', 'returned by mmap()'],
    ['munmap(ArrayBuffer)', () => native.munmap(new ArrayBuffer(4096)), TypeError, 'ERR_INVALID_ARG_TYPE', 'not a mapping'],
    ['munmap(SharedArrayBuffer)', () => native.munmap(new SharedArrayBuffer(8) as never), TypeError, 'ERR_INVALID_ARG_TYPE', 'returned by mmap()'],
    ['msync(detached ArrayBuffer)', () => native.msync(detached(), 0, 0, native.MS_SYNC), TypeError, 'ERR_INVALID_ARG_TYPE', 'not a mapping'],
    ['madvise(Buffer)', () => native.madvise(Buffer.alloc(8) as never, 0, 0, native.MADV_NORMAL), TypeError, 'ERR_INVALID_ARG_TYPE', 'returned by mmap()'],
    ['fallocate length 0', () => native.fallocate(0, 0, 0), RangeError, 'ERR_OUT_OF_RANGE', 'It must be >= 1'],
    ['fallocate offset -1', () => native.fallocate(0, -1, 1), RangeError, 'ERR_OUT_OF_RANGE', '"offset"'],
    ['fallocate length null', () => native.fallocate(0, 0, null as never), TypeError, 'ERR_INVALID_ARG_TYPE', 'Received type null'],
  ])('%s', (_name, call, type, code, text) => {
    const err = thrown(call);
    expect(err).toBeInstanceOf(type);
    expect(err.code).toBe(code);
    expect(err.message).toContain(text);
  });
});

/** An ordinary ArrayBuffer, detached by transferring it away. */
function detached(): ArrayBuffer {
  const ab = new ArrayBuffer(16);
  structuredClone(ab, { transfer: [ab] });
  return ab;
}
