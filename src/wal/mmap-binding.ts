import { createRequire } from 'node:module';

/** The part of @riaskov/mmap-io we use (the fork builds with C++17 and loads in worker threads). */
export interface MmapBinding {
  map(size: number, protection: number, flags: number, fd: number, offset?: number, advise?: number): Buffer;
  sync(buffer: Buffer, offset: number, length: number, blocking: boolean, invalidate: boolean): void;
  readonly PROT_READ: number;
  readonly PROT_WRITE: number;
  readonly MAP_SHARED: number;
  readonly PAGESIZE: number;
}

let binding: MmapBinding | undefined;

/** Loaded lazily so that `wal: 'none'` and 'file' never need the native addon. */
export function mmapBinding(): MmapBinding {
  binding ??= createRequire(import.meta.url)('@riaskov/mmap-io') as MmapBinding;
  return binding;
}
