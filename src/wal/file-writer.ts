import { storageError } from '../errors.js';
import { closeFile, writeFully } from '../storage/durable.js';
import { RecordWriter } from './record-writer.js';

const kStagingBytes = 1 << 20;

/** Records staged in memory and written with pwrite; a sync is an fdatasync. */
export class FileWalWriter extends RecordWriter {
  protected readonly wholeSegment = false;
  #fd = -1;
  #path = '';

  protected openSegment(path: string): void {
    try {
      this.#fd = this.opts.storage.open(path, 'r+');
      this.#path = path;
    } catch (err) {
      throw storageError(err, `cannot open segment ${path}`);
    }
    if (this.buf.length === 0) this.buf = Buffer.allocUnsafe(kStagingBytes);
  }

  protected releaseSegment(): void {
    // Forget the descriptor before closing it: close releases it even when it fails, and the
    // number can be reused at once by any thread of the process (another shard's segment).
    const fd = this.#fd;
    this.#fd = -1;
    if (fd >= 0) closeFile(this.opts.storage, fd, this.#path);
  }

  protected ensureWindow(n: number): void {
    if (this.pos - this.bufBase + n <= this.buf.length) return;
    this.flushWindow();
    if (n > this.buf.length) this.buf = Buffer.allocUnsafe(Math.max(n, this.buf.length * 2));
  }

  protected flushWindow(): void {
    const len = this.pos - this.bufBase;
    if (len > 0 && this.#fd >= 0) {
      try {
        writeFully(this.opts.storage, this.#fd, this.buf, 0, len, this.bufBase);
      } catch (err) {
        throw storageError(err, `write to ${this.#path} failed`);
      }
    }
    this.bufBase = this.pos;
  }

  protected writeHeaderBytes(header: Buffer, durable: boolean): void {
    try {
      writeFully(this.opts.storage, this.#fd, header, 0, header.length, 0);
      if (durable) this.opts.storage.datasync(this.#fd);
    } catch (err) {
      throw storageError(err, `write to ${this.#path} failed`);
    }
  }

  protected syncRange(): void {
    this.flushWindow();
    try {
      this.opts.storage.datasync(this.#fd);
    } catch (err) {
      throw storageError(err, `fdatasync of ${this.#path} failed`);
    }
  }
}
