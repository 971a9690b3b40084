import { crc32 } from 'node:zlib';
import { kMaxIdLength } from '../catalog.js';
import { EngineError } from '../errors.js';
import {
  align4,
  drawWidth,
  kCreateHeaderBytes,
  kDrawHeaderBytes,
  kKeyedDrawHeaderBytes,
  kPoolRefHeaderBytes,
  kRecCreatePool,
  kRecDraw16,
  kRecDraw8,
  kRecordFrameBytes,
  kRecPoolRef,
  kUpdateBodyBytes,
  recordBytes,
  writeKeyedDrawBody,
  writeUpdateBody,
} from '../wal/format.js';
import type { RecordSink } from '../wal/writer.js';

/*
 * One replicated message: a shard's records, as the WAL holds them, for one stream message.
 *
 *   0       4        6       8      12      16          24         28      32
 *   +-------+--------+-------+------+-------+-----------+----------+-------+--------------+
 *   | magic |version | flags | term | shard | msgSeq    | records  | crc   | records...   |
 *   +-------+--------+-------+------+-------+-----------+----------+-------+--------------+
 *   crc: crc32 of bytes 0..28. flags bit 0: fence (no records). msgSeq: the shard's message
 *   number, one more per message, across terms. Then each record as in a segment: u32 length,
 *   u32 crc32(body), body, padding to 4. Every message defines the pool refs it uses (PoolRef
 *   or CreatePool first), so it decodes on its own, as a segment does.
 */
export const kMsgMagic = 0x4d52_5052; // "RPRM"
export const kMsgVersion = 1;
export const kMsgHeaderBytes = 32;
export const kMsgFence = 1;
/**
 * Bytes of the largest PoolRef record (a pool id of 128 UTF-16 units is at most 384 UTF-8
 * bytes): a record must fit in one message together with the definition of its ref.
 */
const kMaxPoolRefRecordBytes = recordBytes(kPoolRefHeaderBytes + 3 * kMaxIdLength);

export interface MessageHeader {
  term: number;
  shard: number;
  msgSeq: number;
  records: number;
  fence: boolean;
}

function writeMsgHeader(buf: Buffer, h: MessageHeader): void {
  buf.writeUInt32LE(kMsgMagic, 0);
  buf.writeUInt16LE(kMsgVersion, 4);
  buf.writeUInt16LE(h.fence ? kMsgFence : 0, 6);
  buf.writeUInt32LE(h.term, 8);
  buf.writeUInt32LE(h.shard, 12);
  buf.writeDoubleLE(h.msgSeq, 16);
  buf.writeUInt32LE(h.records, 24);
  buf.writeUInt32LE(crc32(buf.subarray(0, 28)), 28);
}

export function readMsgHeader(buf: Uint8Array): MessageHeader {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < kMsgHeaderBytes || b.readUInt32LE(0) !== kMsgMagic) throw new EngineError('ERR_CORRUPT_WAL', 'replicated message: bad magic');
  if (crc32(b.subarray(0, 28)) !== b.readUInt32LE(28)) throw new EngineError('ERR_CORRUPT_WAL', 'replicated message: header checksum mismatch');
  const version = b.readUInt16LE(4);
  if (version !== kMsgVersion) throw new EngineError('ERR_CORRUPT_WAL', `replicated message: unsupported version ${version}`);
  return { fence: (b.readUInt16LE(6) & kMsgFence) !== 0, term: b.readUInt32LE(8), shard: b.readUInt32LE(12), msgSeq: b.readDoubleLE(16), records: b.readUInt32LE(24) };
}

/** A message with no records that takes the stream over for `term` (see Replicator.fence). */
export function fenceMessage(term: number, shard: number, msgSeq: number): Uint8Array {
  const buf = Buffer.alloc(kMsgHeaderBytes);
  writeMsgHeader(buf, { term, shard, msgSeq, records: 0, fence: true });
  return buf;
}

/** Visit each record of a message: type and body (a view, valid during the call). */
export function forEachRecord(payload: Uint8Array, visit: (type: number, body: Buffer) => void): MessageHeader {
  const header = readMsgHeader(payload);
  const b = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  let p = kMsgHeaderBytes;
  for (let r = 0; r < header.records; r++) {
    if (p + kRecordFrameBytes > b.length) throw new EngineError('ERR_CORRUPT_WAL', `replicated message ${header.msgSeq}: record ${r} cut off`);
    const len = b.readUInt32LE(p);
    if (len === 0 || p + kRecordFrameBytes + len > b.length) throw new EngineError('ERR_CORRUPT_WAL', `replicated message ${header.msgSeq}: record ${r} length ${len}`);
    const body = b.subarray(p + kRecordFrameBytes, p + kRecordFrameBytes + len);
    if (crc32(body) !== b.readUInt32LE(p + 4)) throw new EngineError('ERR_CORRUPT_WAL', `replicated message ${header.msgSeq}: record ${r} checksum mismatch`);
    visit(body[0]!, body);
    p += align4(kRecordFrameBytes + len);
  }
  return header;
}

interface RefInfo {
  poolId: Buffer;
  itemCount: number;
  width: 1 | 2;
  /** The message (chunk) number in which the ref was last defined. */
  definedIn: number;
}

/**
 * Builds a shard's records into messages of at most maxBytes each: the record sink of a
 * replicating leader. take() returns the messages of the records appended since the last
 * take; a large draw call is split across messages (draw records carry consecutive ids).
 */
export class MessageBuilder implements RecordSink {
  readonly #shard: number;
  readonly #maxBytes: number;
  #chunks: { buf: Buffer; records: number }[] = [];
  #buf: Buffer = Buffer.alloc(0);
  #pos = kMsgHeaderBytes;
  #records = 0;
  /** Number of the current chunk, for ref definitions (bumped per chunk). */
  #chunk = 1;
  readonly #refs = new Map<number, RefInfo>();

  constructor(shard: number, maxBytes: number) {
    this.#shard = shard;
    this.#maxBytes = maxBytes;
    this.#open();
  }

  get maxRecordBytes(): number {
    return this.#maxBytes - kMsgHeaderBytes - kMaxPoolRefRecordBytes;
  }

  /** Nothing appended since the last take(). */
  get empty(): boolean {
    return this.#chunks.length === 0 && this.#records === 0;
  }

  #open(): void {
    this.#buf = Buffer.allocUnsafe(Math.min(this.#maxBytes, 64 * 1024));
    this.#pos = kMsgHeaderBytes;
    this.#records = 0;
    this.#chunk++;
  }

  /** Room for a record of bodyLen bytes, starting a new chunk when this one is full; the body offset. */
  #begin(bodyLen: number): number {
    const total = recordBytes(bodyLen);
    if (kMsgHeaderBytes + total > this.#maxBytes) {
      throw new EngineError('ERR_INVALID_ARGUMENT', `a record of ${total} bytes does not fit in a replicated message of ${this.#maxBytes} bytes`, { details: { recordBytes: total } });
    }
    if (this.#pos + total > this.#maxBytes) this.#flush();
    if (this.#pos + total > this.#buf.length) {
      const bigger = Buffer.allocUnsafe(Math.min(this.#maxBytes, Math.max(this.#pos + total, this.#buf.length * 2)));
      this.#buf.copy(bigger, 0, 0, this.#pos);
      this.#buf = bigger;
    }
    return this.#pos + kRecordFrameBytes;
  }

  #end(bodyAt: number, bodyLen: number): void {
    const buf = this.#buf;
    const frame = bodyAt - kRecordFrameBytes;
    buf.writeUInt32LE(bodyLen, frame);
    buf.writeUInt32LE(crc32(buf.subarray(bodyAt, bodyAt + bodyLen)), frame + 4);
    const total = recordBytes(bodyLen);
    buf.fill(0, bodyAt + bodyLen, frame + total);
    this.#pos += total;
    this.#records++;
  }

  #flush(): void {
    if (this.#records === 0) return;
    this.#chunks.push({ buf: this.#buf.subarray(0, this.#pos), records: this.#records });
    this.#open();
  }

  registerPool(ref: number, poolId: string, itemCount: number): void {
    this.#refs.set(ref, { poolId: Buffer.from(poolId, 'utf8'), itemCount, width: drawWidth(itemCount), definedIn: 0 });
  }

  /** Define the ref in the current chunk (before a record that uses it); its info. */
  #ref(ref: number, needBytes: number): RefInfo {
    const info = this.#refs.get(ref);
    if (info === undefined) throw new EngineError('ERR_SHARD_FAILED', `replication: pool ref ${ref} was never registered`);
    // The ref's record and the one using it go in the same chunk: a record that does not fit
    // here starts the next chunk now, where the ref is defined again (#begin must not flush).
    const defLen = kPoolRefHeaderBytes + info.poolId.length;
    const defBytes = info.definedIn === this.#chunk ? 0 : recordBytes(defLen);
    if (this.#pos + defBytes + recordBytes(needBytes) > this.#maxBytes) this.#flush();
    if (info.definedIn !== this.#chunk) {
      const at = this.#begin(defLen);
      this.#buf.writeUInt32LE(kRecPoolRef, at);
      this.#buf.writeUInt32LE(ref, at + 4);
      this.#buf.writeUInt32LE(info.itemCount, at + 8);
      info.poolId.copy(this.#buf, at + kPoolRefHeaderBytes);
      this.#end(at, defLen);
      info.definedIn = this.#chunk;
    }
    return info;
  }

  appendCreate(ref: number, packed: Uint8Array): void {
    const bodyLen = kCreateHeaderBytes + packed.length;
    const at = this.#begin(bodyLen);
    this.#buf.writeUInt32LE(kRecCreatePool, at);
    this.#buf.writeUInt32LE(ref, at + 4);
    this.#buf.set(packed, at + kCreateHeaderBytes);
    this.#end(at, bodyLen);
    const info = this.#refs.get(ref);
    if (info) info.definedIn = this.#chunk;
  }

  appendUpdate(ref: number, itemIndex: number, weight: number, quantity: number): void {
    this.#ref(ref, kUpdateBodyBytes);
    const at = this.#begin(kUpdateBodyBytes);
    writeUpdateBody(this.#buf, at, ref, itemIndex, weight, quantity);
    this.#end(at, kUpdateBodyBytes);
  }

  appendDraws(ref: number, firstRequestId: number, indices: Uint16Array, offset: number, count: number): void {
    let done = 0;
    while (done < count) {
      const info = this.#ref(ref, kDrawHeaderBytes + info16(count - done, this.#refs.get(ref)?.width ?? 2));
      const width = info.width;
      const room = Math.floor((this.#maxBytes - this.#pos - kRecordFrameBytes - kDrawHeaderBytes - 3) / width);
      if (room < 1) {
        this.#flush();
        continue;
      }
      const chunk = Math.min(count - done, room);
      const bodyLen = kDrawHeaderBytes + chunk * width;
      const at = this.#begin(bodyLen);
      const buf = this.#buf;
      buf.writeUInt32LE(width === 1 ? kRecDraw8 : kRecDraw16, at);
      buf.writeUInt32LE(ref, at + 4);
      buf.writeDoubleLE(firstRequestId + done, at + 8);
      buf.writeUInt32LE(chunk, at + 16);
      const from = offset + done;
      // As in WAL draw records: u16 -> u8 keeps indices below 255, 0xFFFF becomes 0xFF.
      if (width === 1) buf.set(indices.subarray(from, from + chunk), at + kDrawHeaderBytes);
      else buf.set(new Uint8Array(indices.buffer, indices.byteOffset + from * 2, chunk * 2), at + kDrawHeaderBytes);
      this.#end(at, bodyLen);
      done += chunk;
    }
  }

  appendKeyedDraws(ref: number, firstRequestId: number, key: Buffer, indices: Uint16Array, offset: number, count: number): void {
    const width = this.#refs.get(ref)?.width ?? 2;
    const bodyLen = kKeyedDrawHeaderBytes + key.length + count * width;
    this.#ref(ref, bodyLen);
    const at = this.#begin(bodyLen);
    writeKeyedDrawBody(this.#buf, at, ref, firstRequestId, key, width, indices, offset, count);
    this.#end(at, bodyLen);
  }

  /**
   * The messages of everything appended since the last take, numbered from `firstSeq` under
   * `term` (empty when nothing was appended).
   */
  take(term: number, firstSeq: number): Buffer[] {
    this.#flush();
    const chunks = this.#chunks;
    this.#chunks = [];
    return chunks.map(({ buf, records }, i) => {
      writeMsgHeader(buf, { term, shard: this.#shard, msgSeq: firstSeq + i, records, fence: false });
      return buf;
    });
  }
}

/** Bytes of `count` indices of a width (a hint for keeping a ref with its first use). */
function info16(count: number, width: number): number {
  return Math.min(count, 256) * width;
}
