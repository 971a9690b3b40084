import { storageError } from '../errors.js';
import { closeFile } from '../storage/durable.js';
import type { Mapping } from '../storage/storage.js';
import { kHeaderBytes } from './format.js';
import { RecordWriter } from './record-writer.js';

/** Records written straight into the mapped segment; a sync is an msync(MS_SYNC) of the dirty range. */
export class MmapWalWriter extends RecordWriter {
  protected readonly wholeSegment = true;
  #mapping: Mapping | undefined;

  protected openSegment(path: string, bytes: number): void {
    const storage = this.opts.storage;
    let fd = -1;
    try {
      fd = storage.open(path, 'r+');
      this.#mapping = storage.map(fd, bytes);
      this.buf = this.#mapping.buffer;
    } catch (err) {
      throw storageError(err, `cannot map segment ${path}`);
    } finally {
      // The mapping stays valid after the descriptor is closed.
      if (fd >= 0) closeFile(storage, fd, path);
    }
  }

  protected releaseSegment(): void {
    this.buf = Buffer.alloc(0);
    this.#mapping?.unmap();
    this.#mapping = undefined;
  }

  protected ensureWindow(): void {}

  protected flushWindow(): void {}

  protected writeHeaderBytes(header: Buffer, durable: boolean): void {
    header.copy(this.buf, 0);
    if (!durable) return;
    try {
      this.#mapping!.sync(0, kHeaderBytes);
    } catch (err) {
      throw storageError(err, `msync of segment ${this.seq} header failed`);
    }
  }

  protected syncRange(): void {
    // The native msync rounds the start down to its page.
    const length = this.pos - this.syncedPos;
    if (length <= 0) return;
    try {
      this.#mapping!.sync(this.syncedPos, length);
    } catch (err) {
      throw storageError(err, `msync of segment ${this.seq} failed`);
    }
  }
}
