import type { Storage } from '../storage/storage.js';

const kReadChunk = 4 << 20;

/**
 * The bytes of one segment file, read on demand. Segments are preallocated (64 MiB by
 * default) but often hold far less, so recovery reads only up to the end of the records.
 */
export class SegmentSource {
  readonly buf: Buffer;
  readonly size: number;
  #loaded: number;
  #fd: number;
  readonly #storage: Storage | undefined;

  private constructor(buf: Buffer, size: number, loaded: number, fd: number, storage: Storage | undefined) {
    this.buf = buf;
    this.size = size;
    this.#loaded = loaded;
    this.#fd = fd;
    this.#storage = storage;
  }

  static fromBuffer(buf: Buffer): SegmentSource {
    return new SegmentSource(buf, buf.length, buf.length, -1, undefined);
  }

  static open(storage: Storage, file: string): SegmentSource {
    const fd = storage.open(file, 'r');
    try {
      const size = storage.fileSize(fd);
      return new SegmentSource(Buffer.allocUnsafe(size), size, 0, fd, storage);
    } catch (err) {
      storage.close(fd);
      throw err;
    }
  }

  /** Bytes [0, min(n, size)) are valid in buf after this. */
  ensure(n: number): void {
    const want = Math.min(this.size, n);
    if (want <= this.#loaded) return;
    const upTo = Math.min(this.size, Math.max(want, this.#loaded + kReadChunk));
    while (this.#loaded < upTo) {
      const got = this.#storage!.read(this.#fd, this.buf, this.#loaded, upTo - this.#loaded, this.#loaded);
      if (got === 0) throw new Error(`unexpected end of file at ${this.#loaded} of ${this.size}`);
      this.#loaded += got;
    }
  }

  close(): void {
    if (this.#fd >= 0) this.#storage!.close(this.#fd);
    this.#fd = -1;
  }
}
