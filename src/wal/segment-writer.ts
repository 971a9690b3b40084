import { join } from 'node:path';
import { EngineError, storageError } from '../errors.js';
import { segmentPath, shardDirPath } from '../storage/data-dir.js';
import { makeDir } from '../storage/durable.js';
import { isSealed, kHeaderBytes, kSealClosed, kSealRotated, newSegmentHeader, sealHeader, writeHeader } from './format.js';
import { peekSegment, type SegmentPeek } from './segment-peek.js';
import { createSegment, nameSegment, prepareSpare } from './segment-create.js';
import { firstSegmentBytes, type WalStats, type WalWriterOptions } from './writer.js';

/** A file prepared for the next rotation (blocks reserved, synced), named only when used. */
interface Spare {
  path: string;
  bytes: number;
}

/**
 * A shard's segments: the first one adopted or created, rotation to the next (growing) one,
 * the spare prepared ahead, the sync policy, the seals. RecordWriter frames records on top;
 * the mmap and file writers expose the bytes of the current segment as `buf`, where segment
 * offset p lives at buf[p - bufBase].
 */
export abstract class SegmentWriterBase {
  readonly stats: WalStats = { bytes: 0, records: 0, syncs: 0, syncNs: 0, rotations: 0 };
  protected readonly opts: WalWriterOptions;
  protected readonly shardDir: string;
  protected buf: Buffer = Buffer.alloc(0);
  protected bufBase = 0;
  /** Segment offset of the next record. */
  protected pos = 0;
  /** Segment offset up to which the current segment is durable. */
  protected syncedPos = 0;
  protected seq: number;
  /** Size of the current segment (its header says so). */
  protected segmentBytes = 0;
  #header = Buffer.alloc(kHeaderBytes);
  /** Bumped each time a new segment becomes current (refs must be defined again in it). */
  protected serial = 0;
  #spare: Spare | undefined;
  #spareScheduled = false;
  #spareCounter = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(opts: WalWriterOptions) {
    this.opts = opts;
    this.shardDir = shardDirPath(opts.dir, opts.shard);
    this.seq = opts.firstSeq;
  }

  /**
   * Open the first segment: the one open() created for this run (with its header) or, after a
   * shard restart, a new one. Separate from the constructor so subclasses are ready.
   */
  start(): this {
    const storage = this.opts.storage;
    makeDir(storage, this.shardDir);
    try {
      storage.syncDir(this.opts.dir);
    } catch (err) {
      throw storageError(err, `cannot sync ${this.opts.dir}`);
    }
    const path = segmentPath(this.opts.dir, this.opts.shard, this.seq);
    if (!this.#adopt(path)) createSegment(storage, path, firstSegmentBytes(this.opts.segmentBytes), this.#newHeader(this.seq, firstSegmentBytes(this.opts.segmentBytes)));
    this.#activate(path);
    this.#scheduleSpare();
    if (this.opts.sync === 'interval') {
      // Background durability: MS_SYNC/fdatasync off the ack path (MS_ASYNC is a no-op on Linux).
      this.#timer = setInterval(() => {
        if (this.pos === this.syncedPos) return;
        try {
          this.syncNow();
        } catch (err) {
          clearInterval(this.#timer);
          this.opts.onBackgroundError(storageError(err, 'background sync failed'));
        }
      }, this.opts.syncIntervalMs);
      this.#timer.unref();
    }
    return this;
  }

  /** Open `path` (complete, header included) as the current segment of `bytes` bytes. */
  protected abstract openSegment(path: string, bytes: number): void;
  /** Release the current segment (after it was synced when the policy asks for it). */
  protected abstract releaseSegment(): void;
  /** Make sure `n` bytes starting at segment offset `pos` are addressable in `buf`. */
  protected abstract ensureWindow(n: number): void;
  /** Hand written bytes to the OS (no-op for mmap). */
  protected abstract flushWindow(): void;
  /** Make everything up to pos durable. */
  protected abstract syncRange(): void;
  /** Write the 64 header bytes at segment offset 0, and make them durable when `durable`. */
  protected abstract writeHeaderBytes(header: Buffer, durable: boolean): void;
  /** True when `buf` maps the whole segment (offset p at buf[p]); false for a staging window. */
  protected abstract readonly wholeSegment: boolean;

  #newHeader(seq: number, bytes: number): Buffer {
    return newSegmentHeader(this.opts.shard, seq, this.opts.epoch, bytes, this.opts.replicated === true);
  }

  /**
   * open() creates each shard's first segment before it writes the snapshot that points at it,
   * so that a snapshot at seq S always has its segment S on disk. Use it when it is there.
   */
  #adopt(path: string): boolean {
    if (!this.opts.storage.exists(path)) return false;
    let peek: SegmentPeek;
    try {
      peek = peekSegment(this.opts.storage, path);
    } catch (err) {
      throw storageError(err, `cannot read segment ${path}`);
    }
    const h = peek.head;
    if (typeof h !== 'object' || h.shard !== this.opts.shard || h.seq !== this.seq || h.epoch !== this.opts.epoch || isSealed(h) || peek.hasRecords) {
      throw new EngineError('ERR_SHARD_FAILED', `segment ${path} exists but is not an empty segment of shard ${this.opts.shard}, epoch ${this.opts.epoch}`, {
        details: { file: path },
      });
    }
    return true;
  }

  protected syncNow(): void {
    const t0 = process.hrtime.bigint();
    this.syncRange();
    this.syncedPos = this.pos;
    this.stats.syncs++;
    this.stats.syncNs += Number(process.hrtime.bigint() - t0);
  }

  #activate(path: string): void {
    let h: SegmentPeek['head'];
    try {
      h = peekSegment(this.opts.storage, path).head;
    } catch (err) {
      throw storageError(err, `cannot read segment ${path}`);
    }
    if (typeof h !== 'object') throw new EngineError('ERR_SHARD_FAILED', `segment ${path}: ${h}`, { details: { file: path } });
    writeHeader(this.#header, 0, h); // the same bytes: a segment being activated is unsealed
    this.segmentBytes = h.segmentBytes;
    this.openSegment(path, h.segmentBytes);
    // The header is already durable: records start after it.
    this.pos = kHeaderBytes;
    this.syncedPos = kHeaderBytes;
    this.bufBase = this.wholeSegment ? 0 : kHeaderBytes;
    this.serial++;
  }

  /** The size of the segment after this one: double, and at least `need` bytes, up to segmentBytes. */
  #nextBytes(need: number): number {
    let bytes = Math.min(this.opts.segmentBytes, this.segmentBytes * 2);
    while (bytes < need && bytes < this.opts.segmentBytes) bytes = Math.min(this.opts.segmentBytes, bytes * 2);
    return bytes;
  }

  /**
   * Prepare the next segment's file after this turn (fallocate and fsync cost a few ms: not on
   * the batch being replied to), then warm its pages off the thread.
   */
  #scheduleSpare(): void {
    if (this.#spare !== undefined || this.#spareScheduled || this.#closed) return;
    this.#spareScheduled = true;
    setImmediate(() => {
      this.#spareScheduled = false;
      if (this.#spare !== undefined || this.#closed) return;
      const bytes = this.#nextBytes(0);
      const path = join(this.shardDir, `spare-${process.pid}-${this.#spareCounter++}.tmp`);
      try {
        prepareSpare(this.opts.storage, path, bytes);
      } catch {
        return; // the rotation creates its segment in line, and meets the error itself
      }
      this.#spare = { path, bytes };
      this.opts.storage.warm(path, bytes);
    }).unref();
  }

  /**
   * Move on to segment seq + 1, of at least `need` bytes. The order keeps every crash state
   * readable: what is written here is made durable first, then the next segment gets its name
   * (durably), and only then is this one sealed as rotated; so a segment sealed as rotated
   * always has its successor on disk, and a missing successor is damage, never a crash.
   */
  protected rotate(need = 0): void {
    // Whatever the sync policy: a rotated segment is never the newest again, and recovery reads
    // anything but the newest strictly, so a power cut must not leave holes in it (with sync
    // 'never' it may lose the newest segment's tail, never make the directory unopenable).
    this.syncNow();
    const next = segmentPath(this.opts.dir, this.opts.shard, this.seq + 1);
    const bytes = this.#nextBytes(need + kHeaderBytes);
    const spare = this.#spare;
    this.#spare = undefined;
    if (spare !== undefined && spare.bytes === bytes) {
      nameSegment(this.opts.storage, spare.path, next, this.#newHeader(this.seq + 1, bytes));
    } else {
      if (spare !== undefined) this.#dropSpare(spare);
      createSegment(this.opts.storage, next, bytes, this.#newHeader(this.seq + 1, bytes));
    }
    sealHeader(this.#header, 0, this.pos, kSealRotated);
    this.writeHeaderBytes(this.#header, true);
    this.releaseSegment();
    this.seq++;
    this.#activate(next);
    this.stats.rotations++;
    this.#scheduleSpare();
  }

  #dropSpare(spare: Spare): void {
    try {
      this.opts.storage.unlink(spare.path);
    } catch {
      // recovery removes *.tmp files anyway
    }
  }

  snapshotBoundary(): number {
    if (this.pos !== kHeaderBytes) this.rotate();
    return this.seq;
  }

  commit(): void {
    this.flushWindow();
    if (this.opts.sync === 'always' && this.pos !== this.syncedPos) this.syncNow();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    // Records durable first, then the seal that says the segment ends here.
    this.flushWindow();
    this.syncNow();
    sealHeader(this.#header, 0, this.pos, kSealClosed);
    this.writeHeaderBytes(this.#header, true);
    this.releaseSegment();
    const spare = this.#spare;
    this.#spare = undefined;
    if (spare !== undefined) this.#dropSpare(spare);
  }

  abandon(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    try {
      this.releaseSegment();
    } catch {
      // the shard has failed already; this only releases the mapping or descriptor
    }
    const spare = this.#spare;
    this.#spare = undefined;
    if (spare !== undefined) this.#dropSpare(spare);
  }
}
