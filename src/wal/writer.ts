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
  sealHeader,
  writeHeader,
} from './format.js';
import { mmapBinding } from './mmap-binding.js';
import { fsyncDir, preallocateAsync, preallocateSync, renameDurably, segmentPath, shardDirName } from './segment-files.js';

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

  /** Create and map the first segment. Separate from the constructor so subclasses are ready. */
  start(): this {
    try {
      mkdirSync(this.shardDir, { recursive: true });
      fsyncDir(this.opts.dir);
    } catch (err) {
      throw storageError(err, `cannot create ${this.shardDir}`);
    }
    this.#activate(preallocateSync, false);
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

  /** Open `path` (already preallocated) as the current segment. */
  protected abstract openSegment(path: string): void;
  /** Release the current segment (after it was synced when the policy asks for it). */
  protected abstract releaseSegment(): void;
  /** Make sure `n` bytes starting at segment offset `pos` are addressable in `buf`. */
  protected abstract ensureWindow(n: number): void;
  /** Hand written bytes to the OS (no-op for mmap). */
  protected abstract flushWindow(): void;
  /** Make everything up to pos durable. */
  protected abstract syncRange(): void;
  /** Write the 64 header bytes at segment offset 0 (made durable by the next sync). */
  protected abstract writeHeaderBytes(header: Buffer): void;

  #header = Buffer.alloc(kHeaderBytes);

  /** Note in the header where the records end: a hint that lets replay plan its threads. */
  #seal(): void {
    sealHeader(this.#header, 0, this.pos);
    this.writeHeaderBytes(this.#header);
  }

  protected syncNow(): void {
    const t0 = process.hrtime.bigint();
    this.syncRange();
    this.syncedPos = this.pos;
    this.stats.syncs++;
    this.stats.syncNs += Number(process.hrtime.bigint() - t0);
  }

  #activate(create: (path: string, bytes: number) => void, useSpare: boolean): void {
    const path = segmentPath(this.opts.dir, this.opts.shard, this.seq);
    const spare = this.#spare;
    if (useSpare && spare?.done && spare.error === undefined) {
      renameDurably(spare.path, path, this.shardDir);
      this.#spare = undefined;
    } else {
      // No spare ready (rotation outpaced preparation, or preparing failed): create in line.
      if (spare?.done) this.#spare = undefined;
      create(path, this.opts.segmentBytes);
    }
    this.openSegment(path);
    this.bufBase = 0;
    this.pos = 0;
    this.syncedPos = 0;
    this.ensureWindow(kHeaderBytes);
    writeHeader(this.#header, 0, {
      shard: this.opts.shard,
      seq: this.seq,
      epoch: this.opts.epoch,
      segmentBytes: this.opts.segmentBytes,
      createdAt: Date.now(),
    });
    this.#header.copy(this.buf, 0);
    this.pos = kHeaderBytes;
    this.#serial++;
  }

  #prepareSpare(): void {
    if (this.#spare !== undefined || this.#closed) return;
    const path = join(this.shardDir, `spare-${process.pid}-${this.#spareCounter++}.tmp`);
    const spare: Spare = { path, done: false, error: undefined, promise: Promise.resolve() };
    spare.promise = preallocateAsync(path, this.opts.segmentBytes).then(
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

  #rotate(): void {
    this.#seal();
    if (this.opts.sync !== 'never') this.syncNow();
    else this.flushWindow();
    this.releaseSegment();
    this.seq++;
    this.#activate(preallocateSync, true);
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
    if (this.pos + total > this.opts.segmentBytes) this.#rotate();
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
      const room = Math.floor((this.opts.segmentBytes - this.pos - kRecordFrameBytes - kDrawHeaderBytes - 3) / width);
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
    this.#seal();
    this.flushWindow();
    this.syncNow();
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
  protected openSegment(path: string): void {
    const mm = mmapBinding();
    let fd = -1;
    try {
      fd = openSync(path, 'r+');
      this.buf = mm.map(this.opts.segmentBytes, mm.PROT_READ | mm.PROT_WRITE, mm.MAP_SHARED, fd, 0);
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

  protected writeHeaderBytes(header: Buffer): void {
    header.copy(this.buf, 0);
    // The dirty range synced next starts past page 0 once the segment has grown.
    if (this.opts.sync !== 'never' && this.syncedPos >= mmapBinding().PAGESIZE) {
      try {
        mmapBinding().sync(this.buf, 0, mmapBinding().PAGESIZE, true, false);
      } catch (err) {
        throw storageError(err, `msync of segment ${this.seq} header failed`);
      }
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

  protected writeHeaderBytes(header: Buffer): void {
    if (this.bufBase === 0) {
      header.copy(this.buf, 0);
      return;
    }
    try {
      writeSync(this.#fd, header, 0, header.length, 0);
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
