/**
 * The files of a data directory, read the way DESIGN.md lays them out: shard directories,
 * segment (.wal) and snapshot (.snap) files, the records of a segment, file hashes. Nothing here
 * loads the engine (neither src/ nor dist/), so unit and integration tests can both use it.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { Storage } from '../../src/storage/storage.js';
import type { WalWriterOptions } from '../../src/wal/writer.js';

// ---- records of a segment ----

export const kHeaderBytes = 64;
export const kRecDraw8 = 1;
export const kRecDraw16 = 2;
export const kRecPoolRef = 3;
export const kRecCreatePool = 4;
export const kRecUpdateItem = 5;

export interface WalRecord {
  /** Offset of the record frame (its u32 length) in the segment. */
  offset: number;
  len: number;
  /** Offset just past the record and its padding. */
  end: number;
  type: number;
}

export interface DrawRecord extends WalRecord {
  ref: number;
  firstRequestId: number;
  count: number;
  /** Item index per draw; -1 for an empty draw. */
  indices: number[];
}

/**
 * A copy of a segment as it is when its writer died while it was current: the header's sealed
 * end and seal byte back to 0 (checksum fixed). Only such a segment can have a torn tail.
 */
export function unsealed(buf: Buffer): Buffer {
  const out = Buffer.from(buf);
  out.writeUInt32LE(0, 32);
  out.writeUInt8(0, 36);
  out.writeUInt32LE(crc32(out.subarray(0, 60)), 60);
  return out;
}

/**
 * A segment as an older version sealed it, before header byte 36 said why (rotated or closed):
 * the sealed end kept, the seal kind back to 0 (checksum fixed), in place on a file.
 */
export function legacySealFile(file: string): void {
  const buf = readFileSync(file);
  buf.writeUInt8(0, 36);
  buf.writeUInt32LE(crc32(buf.subarray(0, 60)), 60);
  writeFileSync(file, buf);
}

/** unsealed(), in place on a file. */
export function unsealFile(file: string): void {
  writeFileSync(file, unsealed(readFileSync(file)));
}

export function align4(n: number): number {
  return (n + 3) & ~3;
}

/** Records of a segment file: [u32 len][u32 crc][body][pad to 4] after a 64-byte header; a zero length ends the data. */
export function scanRecords(buf: Buffer): { records: WalRecord[]; end: number } {
  const records: WalRecord[] = [];
  let p = kHeaderBytes;
  while (p + 8 <= buf.length) {
    const len = buf.readUInt32LE(p);
    if (len === 0) break;
    const end = p + align4(8 + len);
    records.push({ offset: p, len, end, type: buf[p + 8]! });
    p = end;
  }
  return { records, end: p };
}

export function readRecords(file: string): { buf: Buffer; records: WalRecord[]; end: number } {
  const buf = readFileSync(file);
  return { buf, ...scanRecords(buf) };
}

export function decodeDraw(buf: Buffer, rec: WalRecord): DrawRecord {
  const body = rec.offset + 8;
  const width = rec.type === kRecDraw8 ? 1 : 2;
  const count = buf.readUInt32LE(body + 16);
  const indices: number[] = [];
  for (let i = 0; i < count; i++) {
    const v = width === 1 ? buf[body + 20 + i]! : buf.readUInt16LE(body + 20 + 2 * i);
    indices.push(v === (width === 1 ? 0xff : 0xffff) ? -1 : v);
  }
  return { ...rec, ref: buf.readUInt32LE(body + 4), firstRequestId: buf.readDoubleLE(body + 8), count, indices };
}

// ---- files of a data directory ----

export function shardDir(dir: string, shard: number): string {
  return join(dir, `shard-${shard}`);
}

/** Shard directory numbers under dir. */
export function shardDirs(dir: string): number[] {
  return readdirSync(dir)
    .map((n) => /^shard-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
}

function seqFiles(dir: string, shard: number, ext: 'wal' | 'snap'): string[] {
  const sd = shardDir(dir, shard);
  const name = new RegExp(`^\\d+\\.${ext}$`);
  return readdirSync(sd)
    .filter((n) => name.test(n))
    .sort()
    .map((n) => join(sd, n));
}

/** Segment files of one shard directory, oldest first (absolute paths). */
export function segmentFiles(dir: string, shard = 0): string[] {
  return seqFiles(dir, shard, 'wal');
}

/** Snapshot files of one shard directory, oldest first (absolute paths). */
export function snapshotFiles(dir: string, shard = 0): string[] {
  return seqFiles(dir, shard, 'snap');
}

export function allSegmentFiles(dir: string): string[] {
  return shardDirs(dir).flatMap((k) => segmentFiles(dir, k));
}

/** The sequence number in a segment or snapshot file name (or path). */
export function seqOf(file: string): number {
  return Number(/(\d+)\.(wal|snap)$/.exec(file)![1]);
}

// ---- hashes ----

export function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Content hash of every file under dir, by relative path (to prove that nothing changed). */
export function fingerprint(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string): void => {
    for (const name of readdirSync(d).sort()) {
      const path = join(d, name);
      if (statSync(path).isDirectory()) walk(path, `${rel}${name}/`);
      else out[`${rel}${name}`] = sha256File(path);
    }
  };
  walk(dir, '');
  return out;
}

// ---- writing segments directly (unit tests) ----

/** Options of a WAL writer for shard 0 of dir: epoch 1 from segment 1, 4 KiB segments, no syncs, background errors thrown. */
export function writerOptions(dir: string, storage: Storage, over: Partial<WalWriterOptions> = {}): WalWriterOptions {
  return {
    storage,
    dir,
    shard: 0,
    epoch: 1,
    firstSeq: 1,
    segmentBytes: 4096,
    sync: 'never',
    syncIntervalMs: 10,
    onBackgroundError: (err) => {
      throw err;
    },
    ...over,
  };
}
