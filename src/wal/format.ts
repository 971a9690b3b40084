import { crc32 } from 'node:zlib';
import { kEmptyDraw } from '../selector.js';

/*
 * Segment layout (little-endian):
 *
 *   0      4        6          8      12     16     20             24          32         36     37        60    64
 *   +------+--------+----------+------+------+------+--------------+-----------+----------+------+---------+-----+
 *   |magic |version |headerLen |shard | seq  |epoch |segmentBytes  |createdAt  |sealedEnd |seal  |repl|rsv |crc  |
 *   +------+--------+----------+------+------+------+--------------+-----------+----------+------+---------+-----+
 *   A segment is created whole (preallocated, header written and synced) before it gets its
 *   final name, so a named segment always has a valid header.
 *   sealedEnd / seal: where the records end, and why the writer stopped writing here: 1 = rotated
 *   (segment seq + 1 exists), 2 = closed cleanly (the last of its run). 0 / 0 = not sealed: the
 *   writer died while this segment was current, so its tail may be torn. A sealed segment is
 *   checked strictly: records must run exactly to sealedEnd. (Segments from before the seal
 *   byte have sealedEnd set and seal 0.)
 *   repl (byte 37): 1 when written under replication, where records count only once a mark
 *   record (the stream stored them) follows.
 *   then records, each starting on a 4-byte boundary:
 *   +---------+-------------------------+----------------+--------+
 *   | u32 len | u32 crc32(body, seed=seq)| body (len bytes)| pad->4 |
 *   +---------+-------------------------+----------------+--------+
 *   A zero length (the preallocated zeros) marks the end of written data.
 */
export const kMagic = 0x4c57_5052; // "RPWL" read as LE bytes 52 50 57 4c
export const kVersion = 1;
export const kHeaderBytes = 64;
export const kRecordFrameBytes = 8;

export const kRecDraw8 = 1;
export const kRecDraw16 = 2;
export const kRecPoolRef = 3;
export const kRecCreatePool = 4;
export const kRecUpdateItem = 5;
export const kRecKeyedDraw = 6;
export const kRecMark = 7;
export const kRecordTypeNames: Record<number, string> = {
  [kRecDraw8]: 'draw8',
  [kRecDraw16]: 'draw16',
  [kRecPoolRef]: 'poolRef',
  [kRecCreatePool]: 'createPool',
  [kRecUpdateItem]: 'updateItem',
  [kRecKeyedDraw]: 'keyedDraw',
  [kRecMark]: 'mark',
};

/**
 * Mark body (replication): type u8, pad x3, term u32, groupSeq f64, streamSeq f64, pad f64.
 * Written after the records of a group the replicated log has stored: in a segment written
 * under replication, records count only once a mark follows them.
 */
export const kMarkBodyBytes = 32;

/** Where a shard's log stands in the replicated stream. */
export interface StreamMark {
  /** Leadership term of the group. */
  term: number;
  /** The shard's group number (one stream message per group). */
  groupSeq: number;
  /** The message's sequence in the stream. */
  streamSeq: number;
}

/** Body header of a draw record: type u8, pad u8 x3, poolRef u32, firstRequestId f64, count u32. */
export const kDrawHeaderBytes = 20;
/** PoolRef body: type u8, pad x3, poolRef u32, itemCount u32, then the UTF-8 pool id. */
export const kPoolRefHeaderBytes = 12;
/** CreatePool body: type u8, pad x3, poolRef u32, then a msgpackr-packed {id, items}. */
export const kCreateHeaderBytes = 8;
/**
 * KeyedDraw body: type u8, width u8 (1 or 2), keyLen u16, poolRef u32, firstRequestId f64,
 * count u32, then the UTF-8 key, then one index per draw. A keyed call is never split across
 * segments: the key and its whole outcome are one record.
 */
export const kKeyedDrawHeaderBytes = 20;

/** Bytes of a keyed draw record (frame included). */
export function keyedDrawRecordBytes(keyBytes: number, count: number, width: 1 | 2): number {
  return recordBytes(kKeyedDrawHeaderBytes + keyBytes + count * width);
}

/** UpdateItem body: type u8, pad x3, poolRef u32, itemIndex u32, pad u32, weight f64, quantity f64 (NaN = unchanged). */
export const kUpdateBodyBytes = 32;

/**
 * A keyed draw record's body, at `at` of `buf` (keyedDrawRecordBytes of it): the WAL and the
 * replicated messages share it. Width-1 indices are stored as bytes, 0xFFFF becoming 0xFF as in
 * draw records.
 */
export function writeKeyedDrawBody(buf: Buffer, at: number, ref: number, firstRequestId: number, key: Buffer, width: 1 | 2, indices: Uint16Array, offset: number, count: number): void {
  buf.writeUInt8(kRecKeyedDraw, at);
  buf.writeUInt8(width, at + 1);
  buf.writeUInt16LE(key.length, at + 2);
  buf.writeUInt32LE(ref, at + 4);
  buf.writeDoubleLE(firstRequestId, at + 8);
  buf.writeUInt32LE(count, at + 16);
  key.copy(buf, at + kKeyedDrawHeaderBytes);
  const out = at + kKeyedDrawHeaderBytes + key.length;
  if (width === 1) buf.set(indices.subarray(offset, offset + count), out);
  else buf.set(new Uint8Array(indices.buffer, indices.byteOffset + offset * 2, count * 2), out);
}

/** An updateItem record's body, at `at` of `buf` (kUpdateBodyBytes): the WAL and the replicated messages share it. */
export function writeUpdateBody(buf: Buffer, at: number, ref: number, itemIndex: number, weight: number, quantity: number): void {
  buf.writeUInt32LE(kRecUpdateItem, at);
  buf.writeUInt32LE(ref, at + 4);
  buf.writeUInt32LE(itemIndex, at + 8);
  buf.writeUInt32LE(0, at + 12);
  buf.writeDoubleLE(weight, at + 16);
  buf.writeDoubleLE(quantity, at + 24);
}

/** Draw index meaning "nothing available": 0xFF in u8 records, 0xFFFF in u16 records. */
export const kEmpty8 = 0xff;
export const kEmpty16 = kEmptyDraw;

/** Catalogs with fewer than 255 items log one byte per draw (255 is the empty marker). */
export function drawWidth(itemCount: number): 1 | 2 {
  return itemCount < 255 ? 1 : 2;
}

export function align4(n: number): number {
  return (n + 3) & ~3;
}

export function recordBytes(bodyLen: number): number {
  return align4(kRecordFrameBytes + bodyLen);
}

export function recordCrc(body: Uint8Array, seq: number): number {
  return crc32(body, seq >>> 0);
}

/** Why a segment was sealed (header byte 36). */
export const kSealNone = 0;
export const kSealRotated = 1;
export const kSealClosed = 2;
export type SealKind = typeof kSealNone | typeof kSealRotated | typeof kSealClosed;

export interface SegmentHeader {
  version: number;
  shard: number;
  seq: number;
  epoch: number;
  segmentBytes: number;
  createdAt: number;
  /** 0 = not sealed. */
  sealedEnd: number;
  /** kSealNone, kSealRotated or kSealClosed. */
  seal: SealKind;
  /** Written under replication: records count once a mark follows them. */
  replicated: boolean;
}

/** Sealed in any way (including segments written before the seal byte existed). */
export function isSealed(h: SegmentHeader): boolean {
  return h.sealedEnd > 0 || h.seal !== kSealNone;
}

export function writeHeader(buf: Buffer, at: number, h: Omit<SegmentHeader, 'version' | 'sealedEnd' | 'seal' | 'replicated'> & { replicated?: boolean }): void {
  buf.fill(0, at, at + kHeaderBytes);
  buf.writeUInt32LE(kMagic, at);
  buf.writeUInt16LE(kVersion, at + 4);
  buf.writeUInt16LE(kHeaderBytes, at + 6);
  buf.writeUInt32LE(h.shard, at + 8);
  buf.writeUInt32LE(h.seq, at + 12);
  buf.writeUInt32LE(h.epoch, at + 16);
  buf.writeUInt32LE(h.segmentBytes, at + 20);
  buf.writeDoubleLE(h.createdAt, at + 24);
  buf.writeUInt8(h.replicated ? 1 : 0, at + 37);
  buf.writeUInt32LE(crc32(buf.subarray(at, at + 60)), at + 60);
}

/** A fresh header for a new segment. */
export function newSegmentHeader(shard: number, seq: number, epoch: number, segmentBytes: number, replicated = false): Buffer {
  const buf = Buffer.alloc(kHeaderBytes);
  writeHeader(buf, 0, { shard, seq, epoch, segmentBytes, createdAt: Date.now(), replicated });
  return buf;
}

/** Record where the records end and why, in an already written header. */
export function sealHeader(buf: Buffer, at: number, end: number, seal: SealKind): void {
  buf.writeUInt32LE(end, at + 32);
  buf.writeUInt8(seal, at + 36);
  buf.writeUInt32LE(crc32(buf.subarray(at, at + 60)), at + 60);
}

/** Returns the header, 'empty' for an all-zero header (a crash during creation), or an error text. */
export function readHeader(buf: Buffer): SegmentHeader | 'empty' | string {
  if (buf.length < kHeaderBytes) {
    return buf.every((b) => b === 0) ? 'empty' : `header truncated at ${buf.length} bytes`;
  }
  const head = buf.subarray(0, kHeaderBytes);
  if (head.every((b) => b === 0)) return 'empty';
  if (buf.readUInt32LE(0) !== kMagic) return 'bad magic';
  if (crc32(buf.subarray(0, 60)) !== buf.readUInt32LE(60)) return 'header checksum mismatch';
  const version = buf.readUInt16LE(4);
  if (version !== kVersion) return `unsupported format version ${version}`;
  const seal = buf.readUInt8(36);
  if (seal > kSealClosed) return `unknown seal ${seal}`;
  return {
    version,
    shard: buf.readUInt32LE(8),
    seq: buf.readUInt32LE(12),
    epoch: buf.readUInt32LE(16),
    segmentBytes: buf.readUInt32LE(20),
    createdAt: buf.readDoubleLE(24),
    sealedEnd: buf.readUInt32LE(32),
    seal: seal as SealKind,
    replicated: buf.readUInt8(37) === 1,
  };
}
