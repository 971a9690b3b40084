import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The project's own Node-API addon (`binding.gyp` target `rpe_native`, C sources beside this
 * file). Every function is synchronous. An OS failure throws an `Error` shaped like node:fs
 * errors (`NodeJS.ErrnoException`): `code` is the errno name (`'ENOSPC'`), `errno` the negative
 * errno as libuv reports it, `syscall` the failing call. A bad argument throws a `TypeError`
 * with code `ERR_INVALID_ARG_TYPE` (wrong type, or an ArrayBuffer that is not a mapping) or
 * `ERR_INVALID_ARG_VALUE` (a mapping already unmapped; a prot, flags or advice value other
 * than the exported constants), or a `RangeError` with code `ERR_OUT_OF_RANGE` (negative,
 * fractional, past the end of the mapping or file).
 */
export interface NativeBinding {
  /**
   * flock(2) on `fd`, retried on EINTR. Returns `false` only when `LOCK_NB` was given and the
   * lock is held through another open file description; `true` once taken (or released).
   */
  flock(fd: number, operation: number): boolean;
  /**
   * mmap(2) of `length` bytes of `fd` from `offset` (a multiple of `PAGESIZE`), as an
   * ArrayBuffer over the mapped pages. `prot` is `PROT_READ` or `PROT_READ | PROT_WRITE`,
   * `flags` is `MAP_SHARED` or `MAP_PRIVATE` (nothing else: no MAP_FIXED). A regular file must
   * already cover the range (the addon refuses instead of letting a store raise SIGBUS). Collecting the ArrayBuffer
   * unmaps it; `munmap` does so now. Writing through a view of a mapping without
   * `PROT_WRITE` kills the process with SIGSEGV: the ArrayBuffer cannot be made read-only.
   * Throws `ERR_NO_EXTERNAL_BUFFERS` on a runtime built with the V8 sandbox (none of Node
   * 20, 22, 24, 26 as released).
   */
  mmap(fd: number, length: number, prot: number, flags: number, offset: number): ArrayBuffer;
  /** Detaches `buffer` (every view then has length 0) and unmaps it. A no-op the second time. */
  munmap(buffer: ArrayBuffer): void;
  /**
   * msync(2) of bytes [offset, offset + length) of the mapping; the start is rounded down to
   * a page. Note `MS_ASYNC` does nothing on Linux since 2.6.19.
   */
  msync(buffer: ArrayBuffer, offset: number, length: number, flags: number): void;
  /**
   * madvise(2) of bytes [offset, offset + length) of the mapping, start rounded down to a page.
   * Only the five exported `MADV_*` values are accepted.
   */
  madvise(buffer: ArrayBuffer, offset: number, length: number, advice: number): void;
  /**
   * Allocates real blocks for [offset, offset + length) and extends the file to cover it,
   * without writing zeros and without leaving holes (fallocate(2) mode 0, or
   * posix_fallocate(3) where the filesystem lacks it). A full disk throws code `'ENOSPC'`.
   */
  fallocate(fd: number, offset: number, length: number): void;
  readonly LOCK_SH: number;
  readonly LOCK_EX: number;
  readonly LOCK_NB: number;
  readonly LOCK_UN: number;
  readonly PROT_READ: number;
  readonly PROT_WRITE: number;
  readonly MAP_SHARED: number;
  readonly MAP_PRIVATE: number;
  readonly MS_SYNC: number;
  readonly MS_ASYNC: number;
  readonly MS_INVALIDATE: number;
  readonly MADV_NORMAL: number;
  readonly MADV_RANDOM: number;
  readonly MADV_SEQUENTIAL: number;
  readonly MADV_WILLNEED: number;
  readonly MADV_DONTNEED: number;
  /** sysconf(_SC_PAGESIZE): mmap offsets must be multiples of it. */
  readonly PAGESIZE: number;
}

/**
 * The package root, where node-gyp-build looks for build/Release/ and prebuilds/. Compiled,
 * this file is dist/src/native/index.js (three levels down); run from source by vitest it is
 * src/native/index.ts (two levels down).
 */
function packageRoot(): string {
  const here = import.meta.url;
  return resolve(fileURLToPath(new URL(here.endsWith('.ts') ? '../../' : '../../../', here)));
}

let binding: NativeBinding | undefined;
let loadError: Error | undefined;

function load(): void {
  if (binding !== undefined || loadError !== undefined) return;
  if (process.env.RPE_DISABLE_NATIVE === '1') {
    // Diagnostics and tests: behave as a machine where no binary fits.
    loadError = Object.assign(new Error('reward-pool-engine: the native addon is disabled by RPE_DISABLE_NATIVE=1'), { code: 'ERR_NATIVE_ADDON' });
    return;
  }
  const root = packageRoot();
  // build/ or prebuilds/ of the package, else src/native/build/: the published package ships
  // no root binding.gyp (see src/native/rpe_native.gypi), so a source build inside an app's
  // node_modules lands there.
  const sourceBuild = join(root, 'src', 'native');
  try {
    const nodeGypBuild = createRequire(import.meta.url)('node-gyp-build') as (dir: string) => NativeBinding;
    try {
      binding = nodeGypBuild(root);
    } catch (err) {
      if (!existsSync(join(sourceBuild, 'build'))) throw err;
      binding = nodeGypBuild(sourceBuild);
    }
  } catch (err) {
    // Kept, not retried: a missing or broken binary stays so for this process.
    loadError = Object.assign(
      new Error(
        `reward-pool-engine: the native addon rpe_native could not be loaded from ${root}: ${String((err as Error)?.message ?? err).trimEnd()}\n` +
          `    No prebuilt binary fits this platform? Build one from source (needs python3, make and a C compiler): ` +
          `npx --yes node-gyp rebuild --directory=${sourceBuild}`,
        { cause: err },
      ),
      { code: 'ERR_NATIVE_ADDON' },
    );
  }
}

/**
 * The addon, loaded on first use (so that `wal: 'none'` and `'file'` never need it) and
 * cached. Throws the cached load error, the same object each time, when it cannot load.
 */
export function nativeBinding(): NativeBinding {
  load();
  if (binding === undefined) throw loadError!;
  return binding;
}

/**
 * Why the addon cannot load (code `ERR_NATIVE_ADDON`, the original error as `cause`), or
 * `undefined` when it loads. Tries the load once, like nativeBinding(), and never throws.
 */
export function nativeLoadError(): Error | undefined {
  load();
  return loadError;
}
