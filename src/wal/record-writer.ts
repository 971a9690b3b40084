import { EngineError } from '../errors.js';
import {
  drawWidth,
  kCreateHeaderBytes,
  kDrawHeaderBytes,
  kHeaderBytes,
  kKeyedDrawHeaderBytes,
  kMarkBodyBytes,
  kRecMark,
  type StreamMark,
  kPoolRefHeaderBytes,
  kRecCreatePool,
  kRecDraw16,
  kRecDraw8,
  kRecordFrameBytes,
  kRecPoolRef,
  kUpdateBodyBytes,
  recordBytes,
  recordCrc,
  writeKeyedDrawBody,
  writeUpdateBody,
} from './format.js';
import { SegmentWriterBase } from './segment-writer.js';
import type { WalWriter } from './writer.js';

interface PoolRefInfo {
  poolId: Buffer;
  itemCount: number;
  width: 1 | 2;
  /** Serial of the segment in which this ref was last defined. */
  definedIn: number;
}

/** Below this many draws left to place, a nearly full segment is closed rather than split into. */
const kMinSplitDraws = 256;

/**
 * Records on top of the segments: framing (length, CRC seeded with the segment's seq, body,
 * padding) and pool refs. Records name pools by a small per-shard number; each segment defines
 * the refs it uses (PoolRef or CreatePool record) before using them, so it decodes on its own.
 */
export abstract class RecordWriter extends SegmentWriterBase implements WalWriter {
  #refs = new Map<number, PoolRefInfo>();

  appendMark(mark: StreamMark): void {
    const at = this.#begin(kMarkBodyBytes);
    const buf = this.buf;
    buf.writeUInt32LE(kRecMark, at);
    buf.writeUInt32LE(mark.term, at + 4);
    buf.writeDoubleLE(mark.groupSeq, at + 8);
    buf.writeDoubleLE(mark.streamSeq, at + 16);
    buf.writeDoubleLE(0, at + 24);
    this.#end(at, kMarkBodyBytes);
  }

  get maxRecordBytes(): number {
    return this.opts.segmentBytes - kHeaderBytes;
  }

  appendKeyedDraws(ref: number, firstRequestId: number, key: Buffer, indices: Uint16Array, offset: number, count: number): void {
    const info = this.#ref(ref);
    const width = info.width;
    const bodyLen = kKeyedDrawHeaderBytes + key.length + count * width;
    const at = this.#begin(bodyLen);
    if (this.serial !== info.definedIn) {
      // #begin rotated: define the ref in the new segment first. Rare, so simply retry.
      this.appendKeyedDraws(ref, firstRequestId, key, indices, offset, count);
      return;
    }
    writeKeyedDrawBody(this.buf, at, ref, firstRequestId, key, width, indices, offset, count);
    this.#end(at, bodyLen);
  }

  /** Reserve a record with a body of bodyLen bytes; returns the buf index of the body. */
  #begin(bodyLen: number): number {
    const total = recordBytes(bodyLen);
    if (total > this.opts.segmentBytes - kHeaderBytes) {
      throw new EngineError('ERR_INVALID_ARGUMENT', `a record of ${total} bytes does not fit in a segment of ${this.opts.segmentBytes} bytes`, {
        details: { recordBytes: total, segmentBytes: this.opts.segmentBytes },
      });
    }
    if (this.pos + total > this.segmentBytes) this.rotate(total);
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
    if (info.definedIn !== this.serial) {
      const bodyLen = kPoolRefHeaderBytes + info.poolId.length;
      const at = this.#begin(bodyLen);
      const buf = this.buf;
      buf.writeUInt32LE(kRecPoolRef, at); // type in the low byte, pad zero
      buf.writeUInt32LE(ref, at + 4);
      buf.writeUInt32LE(info.itemCount, at + 8);
      info.poolId.copy(buf, at + kPoolRefHeaderBytes);
      this.#end(at, bodyLen);
      info.definedIn = this.serial;
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
    if (info) info.definedIn = this.serial;
  }

  appendUpdate(ref: number, itemIndex: number, weight: number, quantity: number): void {
    this.#ref(ref);
    const at = this.#begin(kUpdateBodyBytes);
    const serialBefore = this.serial;
    if (serialBefore !== this.#refs.get(ref)!.definedIn) {
      // #begin rotated: define the ref in the new segment first. Rare, so simply retry.
      this.appendUpdate(ref, itemIndex, weight, quantity);
      return;
    }
    writeUpdateBody(this.buf, at, ref, itemIndex, weight, quantity);
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
        this.rotate();
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
}
