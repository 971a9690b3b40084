import { closeSync, fdatasyncSync, mkdirSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { EngineError, storageError } from '../errors.js';
import type { SyncMode } from '../options.js';
import {
  drawWidth,
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
  kUpdateBodyBytes,
  recordBytes,
  recordCrc,
  isSealed,
  kSealClosed,
  kSealRotated,
  readHeader,
  sealHeader,
  newSegmentHeader,
  type SealKind,
} from './format.js';
import { mmapBinding } from './mmap-binding.js';
import { createSegmentSync, fsyncDir, nameSegment, prepareSpareAsync, readFileHead, segmentPath, shardDirName } from './segment-files.js';

export interface WalWriterOptions {
  dir: string;
  shard: number;
  epoch: number;
  /** Sequence number of the first segment this writer creates. */
  firstSeq: number;
  segmentBytes: number;
  sync: SyncMode;
  syncIntervalMs: number;
  /** A background sync failed: the shard must stop acknowledging (fail-stop). */
  onBackgroundError: (err: EngineError) => void;
}

/** Counters a writer accumulates; the shard publishes them to the metrics block. */
export interface WalStats {
  bytes: number;
  records: number;
  syncs: number;
  syncNs: number;
  rotations: number;
}

/**
 * Appends records for one shard. Records reference pools by a small per-shard number (`ref`);
 * each segment defines the refs it uses (PoolRef or CreatePool record) before using them, so a
 * segment decodes on its own.
 */
export interface WalWriter {
  readonly stats: WalStats;
  registerPool(ref: number, poolId: string, itemCount: number): void;
  appendCreate(ref: number, packed: Uint8Array): void;
  appendUpdate(ref: number, itemIndex: number, weight: number, quantity: number): void;
  appendDraws(ref: number, firstRequestId: number, indices: Uint16Array, offset: number, count: number): void;
  /** End of a batch: apply the sync policy. With 'always', returns only once it is durable. */
  commit(): void;
  /**
   * Seq of the first segment a snapshot taken now does not cover: the current one if it holds
   * no record yet, else a fresh one (the current is synced and closed first).
   */
  snapshotBoundary(): number;
  /** Sync what is written, stop the background timer, drop the prepared spare segment. */
  close(): Promise<void>;
}

export class NullWalWriter implements WalWriter {
  readonly stats: WalStats = { bytes: 0, records: 0, syncs: 0, syncNs: 0, rotations: 0 };
  registerPool(): void {}
  appendCreate(): void {}
  appendUpdate(): void {}
  appendDraws(): void {}
  commit(): void {}
  snapshotBoundary(): number {
    return 0;
  }
  async close(): Promise<void> {}
}

interface PoolRefInfo {
  poolId: Buffer;
  itemCount: number;
  width: 1 | 2;
  /** Serial of the segment in which this ref was last defined. */
  definedIn: number;
}

interface Spare {
  path: string;
  done: boolean;
  error: EngineError | undefined;
  promise: Promise<void>;
}

/** Below this many draws left to place, a nearly full segment is closed rather than split into. */
const kMinSplitDraws = 256;

/**
 * Framing, pool refs, rotation and spare-segment preparation shared by the mmap and file
 * writers. Subclasses expose the bytes of the current segment as `buf`, where segment offset p
 * lives at buf[p - bufBase].
 */
abstract class SegmentWriterBase implements WalWriter {
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
  #serial = 0;
  #refs = new Map<number, PoolRefInfo>();
  #spare: Spare | undefined;
  #spareCounter = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(opts: WalWriterOptions) {
    this.opts = opts;
    this.shardDir = join(opts.dir, shardDirName(opts.shard));
    this.seq = opts.firstSeq;
  }

  /**
   * Open the first segment: the one open() created for this run (with its header) or, after a
   * shard restart, a new one. Separate from the constructor so subclasses are ready.
   */
  start(): this {
    try {
      mkdirSync(this.shardDir, { recursive: true });
      fsyncDir(this.opts.dir);
    } catch (err) {
      throw storageError(err, `cannot create ${this.shardDir}`);
    }
    const path = segmentPath(this.opts.dir, this.opts.shard, this.seq);
    if (!this.#adopt(path)) createSegmentSync(path, this.opts.segmentBytes, this.#newHeader(this.seq));
    this.#activate(path);
    this.#prepareSpare();
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

  /** Open `path` (complete, header included) as the current segment. */
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

  #header = Buffer.alloc(kHeaderBytes);
  /** Size of the current segment (its header says so). */
  protected segmentBytes = 0;

  #newHeader(seq: number): Buffer {
    return newSegmentHeader(this.opts.shard, seq, this.opts.epoch, this.opts.segmentBytes);
  }

  /**
   * open() creates each shard's first segment before it writes the snapshot that points at it,
   * so that a snapshot at seq S always has its segment S on disk. Use it when it is there.
   */
  #adopt(path: string): boolean {
    let head: Buffer;
    try {
      head = readFileHead(path, kHeaderBytes + 4);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
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

  /** Note in the header where the records end and why (rotated or closed). */
  #seal(kind: SealKind): void {
    sealHeader(this.#header, 0, this.pos, kind);
    this.writeHeaderBytes(this.#header, this.opts.sync !== 'never');
  }

  protected syncNow(): void {
    const t0 = process.hrtime.bigint();
    this.syncRange();
    this.syncedPos = this.pos;
    this.stats.syncs++;
    this.stats.syncNs += Number(process.hrtime.bigint() - t0);
  }

  #activate(path: string): void {
    const head = readFileHead(path, kHeaderBytes);
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

  #prepareSpare(): void {
    if (this.#spare !== undefined || this.#closed) return;
    const path = join(this.shardDir, `spare-${process.pid}-${this.#spareCounter++}.tmp`);
    const spare: Spare = { path, done: false, error: undefined, promise: Promise.resolve() };
    spare.promise = prepareSpareAsync(path, this.opts.segmentBytes).then(
      () => {
        spare.done = true;
      },
      (err: unknown) => {
        spare.done = true;
        spare.error = storageError(err, 'cannot prepare the next segment');
      },
    );
    this.#spare = spare;
  }

  /**
   * Move on to segment seq + 1. The order keeps every crash state readable: what is written
   * here is made durable first, then the next segment gets its name (durably), and only then is
   * this one sealed as rotated; so a segment sealed as rotated always has its successor on disk,
   * and a missing successor is damage, never a crash.
   */
  #rotate(): void {
    const durable = this.opts.sync !== 'never';
    if (durable) this.syncNow();
    else this.flushWindow();
    const next = segmentPath(this.opts.dir, this.opts.shard, this.seq + 1);
    const spare = this.#spare;
    if (spare?.done && spare.error === undefined) {
      nameSegment(spare.path, next, this.#newHeader(this.seq + 1));
      this.#spare = undefined;
    } else {
      // No spare ready (rotation outpaced preparation, or preparing failed): create in line.
      if (spare?.done) this.#spare = undefined;
      createSegmentSync(next, this.opts.segmentBytes, this.#newHeader(this.seq + 1));
    }
    this.#seal(kSealRotated);
    this.releaseSegment();
    this.seq++;
    this.#activate(next);
    this.stats.rotations++;
    this.#prepareSpare();
  }

  /** Reserve a record with a body of bodyLen bytes; returns the buf index of the body. */
  #begin(bodyLen: number): number {
    const total = recordBytes(bodyLen);
    if (total > this.opts.segmentBytes - kHeaderBytes) {
      throw new EngineError('ERR_INVALID_ARGUMENT', `a record of ${total} bytes does not fit in a segment of ${this.opts.segmentBytes} bytes`, {
        details: { recordBytes: total, segmentBytes: this.opts.segmentBytes },
      });
    }
    if (this.pos + total > this.segmentBytes) this.#rotate();
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
    if (spare) {
      await spare.promise;
      try {
        unlinkSync(spare.path);
      } catch {
        // preparation failed and already removed it
      }
    }
  }
}

export class MmapWalWriter extends SegmentWriterBase {
  protected readonly wholeSegment = true;

  protected openSegment(path: string, bytes: number): void {
    const mm = mmapBinding();
    let fd = -1;
    try {
      fd = openSync(path, 'r+');
      this.buf = mm.map(bytes, mm.PROT_READ | mm.PROT_WRITE, mm.MAP_SHARED, fd, 0);
    } catch (err) {
      throw storageError(err, `cannot map segment ${path}`);
    } finally {
      // The mapping stays valid after the descriptor is closed.
      if (fd >= 0) closeSync(fd);
    }
  }

  protected releaseSegment(): void {
    // @riaskov/mmap-io unmaps when the Buffer is collected; drop our reference.
    this.buf = Buffer.alloc(0);
  }

  protected ensureWindow(): void {}

  protected flushWindow(): void {}

  protected writeHeaderBytes(header: Buffer, durable: boolean): void {
    header.copy(this.buf, 0);
    if (!durable) return;
    try {
      mmapBinding().sync(this.buf, 0, mmapBinding().PAGESIZE, true, false);
    } catch (err) {
      throw storageError(err, `msync of segment ${this.seq} header failed`);
    }
  }

  protected syncRange(): void {
    const page = mmapBinding().PAGESIZE;
    const start = this.syncedPos - (this.syncedPos % page);
    const length = this.pos - start;
    if (length <= 0) return;
    try {
      mmapBinding().sync(this.buf, start, length, true, false);
    } catch (err) {
      throw storageError(err, `msync of segment ${this.seq} failed`);
    }
  }
}

const kStagingBytes = 1 << 20;

export class FileWalWriter extends SegmentWriterBase {
  protected readonly wholeSegment = false;
  #fd = -1;
  #path = '';

  protected openSegment(path: string): void {
    try {
      this.#fd = openSync(path, 'r+');
      this.#path = path;
    } catch (err) {
      throw storageError(err, `cannot open segment ${path}`);
    }
    if (this.buf.length === 0) this.buf = Buffer.allocUnsafe(kStagingBytes);
  }

  protected releaseSegment(): void {
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
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
        let off = 0;
        while (off < len) off += writeSync(this.#fd, this.buf, off, len - off, this.bufBase + off);
      } catch (err) {
        throw storageError(err, `write to ${this.#path} failed`);
      }
    }
    this.bufBase = this.pos;
  }

  protected writeHeaderBytes(header: Buffer, durable: boolean): void {
    try {
      writeSync(this.#fd, header, 0, header.length, 0);
      if (durable) fdatasyncSync(this.#fd);
    } catch (err) {
      throw storageError(err, `write to ${this.#path} failed`);
    }
  }

  protected syncRange(): void {
    this.flushWindow();
    try {
      fdatasyncSync(this.#fd);
    } catch (err) {
      throw storageError(err, `fdatasync of ${this.#path} failed`);
    }
  }
}
