import { join } from 'node:path';
import { EngineError, storageError } from '../errors.js';
import { segmentPath, shardDirPath } from '../storage/data-dir.js';
import { makeDir, readFileHead } from '../storage/durable.js';
import {
  drawWidth,
  isSealed,
  kCreateHeaderBytes,
  kDrawHeaderBytes,
  kHeaderBytes,
  kPoolRefHeaderBytes,
  kRecCreatePool,
  kRecDraw16,
  kRecDraw8,
  kRecordFrameBytes,
  kRecPoolRef,
  kRecUpdateItem,
  kSealClosed,
  kSealRotated,
  kUpdateBodyBytes,
  newSegmentHeader,
  readHeader,
  recordBytes,
  recordCrc,
  sealHeader,
} from './format.js';
import { createSegment, nameSegment, prepareSpare } from './segment-create.js';
import { firstSegmentBytes, type WalStats, type WalWriter, type WalWriterOptions } from './writer.js';

interface PoolRefInfo {
  poolId: Buffer;
  itemCount: number;
  width: 1 | 2;
  /** Serial of the segment in which this ref was last defined. */
  definedIn: number;
}

/** A file prepared for the next rotation (blocks reserved, synced), named only when used. */
interface Spare {
  path: string;
  bytes: number;
}

/** Below this many draws left to place, a nearly full segment is closed rather than split into. */
const kMinSplitDraws = 256;

/**
 * Framing, pool refs, rotation and spare-segment preparation shared by the mmap and file
 * writers. Subclasses expose the bytes of the current segment as `buf`, where segment offset p
 * lives at buf[p - bufBase].
 */
export abstract class SegmentWriterBase implements WalWriter {
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
  #serial = 0;
  #refs = new Map<number, PoolRefInfo>();
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
    return newSegmentHeader(this.opts.shard, seq, this.opts.epoch, bytes);
  }

  /**
   * open() creates each shard's first segment before it writes the snapshot that points at it,
   * so that a snapshot at seq S always has its segment S on disk. Use it when it is there.
   */
  #adopt(path: string): boolean {
    if (!this.opts.storage.exists(path)) return false;
    let head: Buffer;
    try {
      head = readFileHead(this.opts.storage, path, kHeaderBytes + 4);
    } catch (err) {
      throw storageError(err, `cannot read segment ${path}`);
    }
    const h = readHeader(head.subarray(0, kHeaderBytes));
    if (typeof h !== 'object' || h.shard !== this.opts.shard || h.seq !== this.seq || h.epoch !== this.opts.epoch || isSealed(h) || head.readUInt32LE(kHeaderBytes) !== 0) {
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
    let head: Buffer;
    try {
      head = readFileHead(this.opts.storage, path, kHeaderBytes);
    } catch (err) {
      throw storageError(err, `cannot read segment ${path}`);
    }
    const h = readHeader(head);
    if (typeof h !== 'object') throw new EngineError('ERR_SHARD_FAILED', `segment ${path}: ${h}`, { details: { file: path } });
    head.copy(this.#header, 0);
    this.segmentBytes = h.segmentBytes;
    this.openSegment(path, h.segmentBytes);
    // The header is already durable: records start after it.
    this.pos = kHeaderBytes;
    this.syncedPos = kHeaderBytes;
    this.bufBase = this.wholeSegment ? 0 : kHeaderBytes;
    this.#serial++;
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
  #rotate(need = 0): void {
    const durable = this.opts.sync !== 'never';
    if (durable) this.syncNow();
    else this.flushWindow();
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
    this.writeHeaderBytes(this.#header, durable);
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

  /** Reserve a record with a body of bodyLen bytes; returns the buf index of the body. */
  #begin(bodyLen: number): number {
    const total = recordBytes(bodyLen);
    if (total > this.opts.segmentBytes - kHeaderBytes) {
      throw new EngineError('ERR_INVALID_ARGUMENT', `a record of ${total} bytes does not fit in a segment of ${this.opts.segmentBytes} bytes`, {
        details: { recordBytes: total, segmentBytes: this.opts.segmentBytes },
      });
    }
    if (this.pos + total > this.segmentBytes) this.#rotate(total);
    this.ensureWindow(total);
    return this.pos - this.bufBase + kRecordFrameBytes;
  }

  /** Seal the record: CRC, then the length last, so a crash mid-record leaves a zero length. */
  #end(bodyAt: number, bodyLen: number): void {
    const buf = this.buf;
    const frame = bodyAt - kRecordFrameBytes;
    buf.writeUInt32LE(recordCrc(buf.subarray(bodyAt, bodyAt + bodyLen), this.seq), frame + 4);
    buf.writeUInt32LE(bodyLen, frame);
    const total = recordBytes(bodyLen);
    // Padding is zeroed so no stale memory of the reused file staging buffer reaches disk.
    buf.fill(0, bodyAt + bodyLen, frame + total);
    this.pos += total;
    this.stats.bytes += total;
    this.stats.records++;
  }

  registerPool(ref: number, poolId: string, itemCount: number): void {
    this.#refs.set(ref, { poolId: Buffer.from(poolId, 'utf8'), itemCount, width: drawWidth(itemCount), definedIn: 0 });
  }

  #ref(ref: number): PoolRefInfo {
    const info = this.#refs.get(ref);
    if (info === undefined) throw new EngineError('ERR_SHARD_FAILED', `WAL writer: pool ref ${ref} was never registered`);
    if (info.definedIn !== this.#serial) {
      const bodyLen = kPoolRefHeaderBytes + info.poolId.length;
      const at = this.#begin(bodyLen);
      const buf = this.buf;
      buf.writeUInt32LE(kRecPoolRef, at); // type in the low byte, pad zero
      buf.writeUInt32LE(ref, at + 4);
      buf.writeUInt32LE(info.itemCount, at + 8);
      info.poolId.copy(buf, at + kPoolRefHeaderBytes);
      this.#end(at, bodyLen);
      info.definedIn = this.#serial;
    }
    return info;
  }

  appendCreate(ref: number, packed: Uint8Array): void {
    const bodyLen = kCreateHeaderBytes + packed.length;
    const at = this.#begin(bodyLen);
    const buf = this.buf;
    buf.writeUInt32LE(kRecCreatePool, at);
    buf.writeUInt32LE(ref, at + 4);
    buf.set(packed, at + kCreateHeaderBytes);
    this.#end(at, bodyLen);
    // A CreatePool record defines the ref in this segment (rotation inside #begin came first).
    const info = this.#refs.get(ref);
    if (info) info.definedIn = this.#serial;
  }

  appendUpdate(ref: number, itemIndex: number, weight: number, quantity: number): void {
    this.#ref(ref);
    const at = this.#begin(kUpdateBodyBytes);
    const serialBefore = this.#serial;
    if (serialBefore !== this.#refs.get(ref)!.definedIn) {
      // #begin rotated: define the ref in the new segment first. Rare, so simply retry.
      this.appendUpdate(ref, itemIndex, weight, quantity);
      return;
    }
    const buf = this.buf;
    buf.writeUInt32LE(kRecUpdateItem, at);
    buf.writeUInt32LE(ref, at + 4);
    buf.writeUInt32LE(itemIndex, at + 8);
    buf.writeUInt32LE(0, at + 12);
    buf.writeDoubleLE(weight, at + 16);
    buf.writeDoubleLE(quantity, at + 24);
    this.#end(at, kUpdateBodyBytes);
  }

  appendDraws(ref: number, firstRequestId: number, indices: Uint16Array, offset: number, count: number): void {
    let done = 0;
    while (done < count) {
      const info = this.#ref(ref);
      const width = info.width;
      const left = count - done;
      const room = Math.floor((this.segmentBytes - this.pos - kRecordFrameBytes - kDrawHeaderBytes - 3) / width);
      const chunk = Math.min(left, room);
      if (chunk < Math.min(left, kMinSplitDraws) && this.pos > kHeaderBytes) {
        this.#rotate();
        continue;
      }
      const bodyLen = kDrawHeaderBytes + chunk * width;
      const at = this.#begin(bodyLen);
      const buf = this.buf;
      buf.writeUInt32LE(width === 1 ? kRecDraw8 : kRecDraw16, at);
      buf.writeUInt32LE(ref, at + 4);
      buf.writeDoubleLE(firstRequestId + done, at + 8);
      buf.writeUInt32LE(chunk, at + 16);
      const out = at + kDrawHeaderBytes;
      const from = offset + done;
      if (width === 1) {
        // A typed-array set converts each u16 to u8 modulo 256 in native code: indices below
        // 255 stay as they are and the empty marker 0xFFFF becomes 0xFF (kEmpty8).
        buf.set(indices.subarray(from, from + chunk), out);
      } else {
        buf.set(new Uint8Array(indices.buffer, indices.byteOffset + from * 2, chunk * 2), out);
      }
      this.#end(at, bodyLen);
      done += chunk;
    }
  }

  snapshotBoundary(): number {
    if (this.pos !== kHeaderBytes) this.#rotate();
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
}
