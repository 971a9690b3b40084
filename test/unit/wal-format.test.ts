import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { pack, unpack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { EngineError } from '../../src/errors.js';
import {
  align4,
  drawWidth,
  kCreateHeaderBytes,
  kDrawHeaderBytes,
  kHeaderBytes,
  kMagic,
  kPoolRefHeaderBytes,
  kRecCreatePool,
  kRecDraw16,
  kRecDraw8,
  kRecPoolRef,
  kRecUpdateItem,
  kUpdateBodyBytes,
  readHeader,
  recordBytes,
  recordCrc,
  writeHeader,
} from '../../src/wal/format.js';
import { scanSegment, type ScanResult } from '../../src/wal/reader.js';
import { SegmentSource } from '../../src/wal/segment-source.js';
import { realStorage } from '../../src/storage/real-storage.js';
import { FileWalWriter } from '../../src/wal/file-writer.js';
import { MmapWalWriter } from '../../src/wal/mmap-writer.js';
import type { WalWriter, WalWriterOptions } from '../../src/wal/writer.js';
import { tmpDir } from '../helpers/tmp.js';
import { segmentFiles, unsealed, writerOptions } from '../helpers/wal-files.js';

type Kind = 'mmap' | 'file';

const kSample = [
  { id: 'diamond', weight: 10, quantity: 100 },
  { id: 'gold', weight: 20, quantity: 1000 },
  { id: 'silver', weight: 30, quantity: 10_000 },
  { id: 'rock', weight: 40, quantity: 100_000 },
  { id: 'mud', weight: 70, quantity: -1 },
  { id: 'log', weight: 50, quantity: -1 },
];

function openWriter(kind: Kind, dir: string, over: Partial<WalWriterOptions> = {}): WalWriter {
  const opts = writerOptions(dir, realStorage, over);
  return kind === 'mmap' ? new MmapWalWriter(opts).start() : new FileWalWriter(opts).start();
}

interface Rec {
  type: number;
  offset: number;
  /** Body length (the u32 length field). */
  len: number;
  body: Buffer;
}

function scan(input: Buffer | SegmentSource, file: string, newest: boolean): { result: ScanResult; recs: Rec[] } {
  const recs: Rec[] = [];
  const result = scanSegment(input, { file, newest }, (type, body, offset) => {
    recs.push({ type, offset, len: body.length, body: Buffer.from(body) });
  });
  return { result, recs };
}

/** Scan a file the way recovery does: through a SegmentSource that reads on demand. */
function scanFile(file: string, newest: boolean): { result: ScanResult; recs: Rec[] } {
  const src = SegmentSource.open(realStorage, file);
  try {
    return scan(src, file, newest);
  } finally {
    src.close();
  }
}

type Decoded =
  | { kind: 'draws'; ref: number; first: number; indices: number[] }
  | { kind: 'poolRef'; ref: number; itemCount: number; poolId: string }
  | { kind: 'create'; ref: number; value: unknown }
  | { kind: 'update'; ref: number; item: number; weight: number; quantity: number };

function decode(r: Rec): Decoded {
  const b = r.body;
  expect(b[0]).toBe(r.type);
  switch (r.type) {
    case kRecDraw8:
    case kRecDraw16: {
      const count = b.readUInt32LE(16);
      const width = r.type === kRecDraw8 ? 1 : 2;
      expect(b.length).toBe(kDrawHeaderBytes + count * width);
      const indices: number[] = [];
      for (let i = 0; i < count; i++) indices.push(width === 1 ? b[kDrawHeaderBytes + i]! : b.readUInt16LE(kDrawHeaderBytes + 2 * i));
      return { kind: 'draws', ref: b.readUInt32LE(4), first: b.readDoubleLE(8), indices };
    }
    case kRecPoolRef:
      return { kind: 'poolRef', ref: b.readUInt32LE(4), itemCount: b.readUInt32LE(8), poolId: b.toString('utf8', kPoolRefHeaderBytes) };
    case kRecCreatePool:
      return { kind: 'create', ref: b.readUInt32LE(4), value: unpack(b.subarray(kCreateHeaderBytes)) };
    case kRecUpdateItem:
      expect(b.length).toBe(kUpdateBodyBytes);
      return { kind: 'update', ref: b.readUInt32LE(4), item: b.readUInt32LE(8), weight: b.readDoubleLE(16), quantity: b.readDoubleLE(24) };
    default:
      throw new Error(`unknown type ${r.type}`);
  }
}

function expectCorrupt(fn: () => unknown, file: string, offset: number): EngineError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected ERR_CORRUPT_WAL at offset ${offset}`).toBeInstanceOf(EngineError);
  const err = caught as EngineError;
  expect(err.code).toBe('ERR_CORRUPT_WAL');
  expect(err.message).toContain(file);
  expect(err.message).toContain(`offset ${offset}`);
  expect(err.details).toMatchObject({ file, offset });
  return err;
}

const u16 = (xs: number[]): Uint16Array => Uint16Array.from(xs);

describe('format helpers', () => {
  it('drawWidth: one byte per draw below 255 items (0xFF is the empty marker), else two', () => {
    expect(drawWidth(1)).toBe(1);
    expect(drawWidth(254)).toBe(1);
    expect(drawWidth(255)).toBe(2);
    expect(drawWidth(65_534)).toBe(2);
  });

  it('align4 and recordBytes', () => {
    expect([0, 1, 2, 3, 4, 5].map(align4)).toEqual([0, 4, 4, 4, 4, 8]);
    expect(recordBytes(kUpdateBodyBytes)).toBe(40);
    expect(recordBytes(kDrawHeaderBytes + 1)).toBe(32);
  });

  it('recordCrc is zlib.crc32 seeded with the segment sequence number', () => {
    const body = Buffer.from([1, 2, 3, 4, 5]);
    expect(recordCrc(body, 7)).toBe(crc32(body, 7));
    expect(recordCrc(body, 7)).not.toBe(recordCrc(body, 8));
  });

  it('writeHeader / readHeader round trip', () => {
    const buf = Buffer.alloc(128);
    writeHeader(buf, 0, { shard: 3, seq: 42, epoch: 9, segmentBytes: 8192, createdAt: 1_700_000_000_123 });
    expect(buf.readUInt32LE(0)).toBe(kMagic);
    expect(buf.subarray(0, 4).toString('latin1')).toBe('RPWL');
    expect(readHeader(buf)).toMatchObject({ version: 1, shard: 3, seq: 42, epoch: 9, segmentBytes: 8192, createdAt: 1_700_000_000_123 });
  });

  it('readHeader names what is wrong', () => {
    const good = Buffer.alloc(128);
    writeHeader(good, 0, { shard: 0, seq: 1, epoch: 1, segmentBytes: 4096, createdAt: 0 });
    expect(readHeader(Buffer.alloc(128))).toBe('empty');
    expect(readHeader(Buffer.alloc(10))).toBe('empty');
    expect(readHeader(good.subarray(0, 10))).toMatch(/truncated/);
    const magic = Buffer.from(good);
    magic[0] ^= 1;
    expect(readHeader(magic)).toBe('bad magic');
    const sum = Buffer.from(good);
    sum[16] ^= 1;
    expect(readHeader(sum)).toBe('header checksum mismatch');
    const version = Buffer.from(good);
    version.writeUInt16LE(2, 4);
    version.writeUInt32LE(crc32(version.subarray(0, 60)), 60);
    expect(readHeader(version)).toMatch(/version 2/);
  });
});

describe('WAL writer and reader: round trip', () => {
  it.each<Kind>(['mmap', 'file'])('%s writer: names, preallocation, header and every record read back', (kind) => {
    const dir = tmpDir(`wal-roundtrip-${kind}`);
    const w = openWriter(kind, dir, { shard: 2, epoch: 5, firstSeq: 7, segmentBytes: 8192, sync: 'always' });
    const created = { id: 'spring', items: kSample };
    w.registerPool(0, 'spring', kSample.length);
    w.appendCreate(0, pack(created));
    w.appendDraws(0, 1, u16([4, 0, 5, 0xffff, 3]), 0, 5);
    w.appendUpdate(0, 2, NaN, 7);
    w.appendUpdate(0, 1, 9, NaN);
    w.commit();
    // A second pool, known from recovery (no creation record): defined with a PoolRef.
    w.registerPool(1, 'big', 300);
    const bigDraws = u16([299, 0xffff, 0, 256, 17, 255]);
    // With an offset into the indices array.
    w.appendDraws(1, 6, u16([1, 1, ...bigDraws]), 2, bigDraws.length);
    w.appendDraws(0, 12, u16([1, 2, 3]), 1, 2);
    w.appendUpdate(1, 299, 1, -1);
    w.commit();
    return w.close().then(() => {
      const files = segmentFiles(dir, 2);
      expect(files).toEqual([join(dir, 'shard-2', '0000000007.wal')]);
      expect(statSync(files[0]!).size).toBe(8192);
      // No spare segment left behind.
      expect(readdirSync(join(dir, 'shard-2')).filter((n) => n.endsWith('.tmp'))).toEqual([]);

      const buf = readFileSync(files[0]!);
      const header = readHeader(buf);
      expect(header).toMatchObject({ version: 1, shard: 2, seq: 7, epoch: 5, segmentBytes: 8192 });
      const { result, recs } = scan(buf, files[0]!, true);
      expect(result.torn).toBeUndefined();
      expect(result.records).toBe(recs.length);
      expect(recs.map((r) => decode(r))).toEqual([
        { kind: 'create', ref: 0, value: created },
        { kind: 'draws', ref: 0, first: 1, indices: [4, 0, 5, 0xff, 3] },
        { kind: 'update', ref: 0, item: 2, weight: NaN, quantity: 7 },
        { kind: 'update', ref: 0, item: 1, weight: 9, quantity: NaN },
        { kind: 'poolRef', ref: 1, itemCount: 300, poolId: 'big' },
        { kind: 'draws', ref: 1, first: 6, indices: [299, 0xffff, 0, 256, 17, 255] },
        { kind: 'draws', ref: 0, first: 12, indices: [2, 3] },
        { kind: 'update', ref: 1, item: 299, weight: 1, quantity: -1 },
      ]);
      expect(recs.map((r) => r.type)).toEqual([
        kRecCreatePool,
        kRecDraw8,
        kRecUpdateItem,
        kRecUpdateItem,
        kRecPoolRef,
        kRecDraw16,
        kRecDraw8,
        kRecUpdateItem,
      ]);
      // Records start on 4-byte boundaries right after the header and follow each other.
      expect(recs[0]!.offset).toBe(kHeaderBytes);
      for (let i = 1; i < recs.length; i++) expect(recs[i]!.offset).toBe(recs[i - 1]!.offset + recordBytes(recs[i - 1]!.len));
      const last = recs[recs.length - 1]!;
      expect(result.end).toBe(last.offset + recordBytes(last.len));
      // Everything after the data is still the preallocated zeros.
      expect(buf.subarray(result.end).every((b) => b === 0)).toBe(true);
      expect(w.stats.records).toBe(recs.length);
      expect(w.stats.bytes).toBe(result.end - kHeaderBytes);
      expect(w.stats.rotations).toBe(0);
    });
  });

  it.each<Kind>(['mmap', 'file'])('%s writer: padding bytes between records are zero', async (kind) => {
    const dir = tmpDir(`wal-pad-${kind}`);
    const w = openWriter(kind, dir, { segmentBytes: 16384 });
    w.registerPool(0, 'p', 6);
    // Draw records of 1..3 draws have bodies of 21..23 bytes: 3..1 pad bytes each. Commit after
    // each so the file writer reuses its staging buffer.
    for (let k = 0; k < 40; k++) {
      w.appendDraws(0, 1 + k * 3, u16([5, 5, 5]), 0, 1 + (k % 3));
      w.commit();
    }
    await w.close();
    const file = segmentFiles(dir)[0]!;
    const buf = readFileSync(file);
    const { recs } = scan(buf, file, true);
    expect(recs).toHaveLength(41);
    for (const r of recs) {
      const padFrom = r.offset + 8 + r.len;
      const padTo = r.offset + recordBytes(r.len);
      expect(Array.from(buf.subarray(padFrom, padTo)), `pad after the record at ${r.offset}`).toEqual(new Array(padTo - padFrom).fill(0));
    }
  });

  it('uses one byte per draw: a 10,000-draw record with a small catalog costs <= 1.1 WAL bytes per draw', async () => {
    const dir = tmpDir('wal-bytes');
    const w = openWriter('mmap', dir, { segmentBytes: 65_536 });
    w.registerPool(0, 'spring', kSample.length);
    w.appendCreate(0, pack({ id: 'spring', items: kSample }));
    const indices = new Uint16Array(10_000);
    for (let i = 0; i < indices.length; i++) indices[i] = (i * 7) % 6;
    w.appendDraws(0, 1, indices, 0, indices.length);
    w.commit();
    await w.close();
    const file = segmentFiles(dir)[0]!;
    const { result, recs } = scan(readFileSync(file), file, true);
    expect(recs.map((r) => r.type)).toEqual([kRecCreatePool, kRecDraw8]);
    const walBytes = result.end - kHeaderBytes;
    expect(walBytes / 10_000).toBeLessThanOrEqual(1.1);
    expect(w.stats.bytes / 10_000).toBeLessThanOrEqual(1.1);
    expect((decode(recs[1]!) as { indices: number[] }).indices).toEqual(Array.from(indices));
  });

  it('two bytes per draw from 255 items on', async () => {
    const dir = tmpDir('wal-width');
    const w = openWriter('file', dir, { segmentBytes: 65_536 });
    w.registerPool(0, 'a', 254);
    w.registerPool(1, 'b', 255);
    w.appendDraws(0, 1, u16([253, 0xffff]), 0, 2);
    w.appendDraws(1, 3, u16([254, 0xffff]), 0, 2);
    await w.close();
    const file = segmentFiles(dir)[0]!;
    const { recs } = scan(readFileSync(file), file, true);
    expect(recs.map((r) => decode(r))).toEqual([
      { kind: 'poolRef', ref: 0, itemCount: 254, poolId: 'a' },
      { kind: 'draws', ref: 0, first: 1, indices: [253, 0xff] },
      { kind: 'poolRef', ref: 1, itemCount: 255, poolId: 'b' },
      { kind: 'draws', ref: 1, first: 3, indices: [254, 0xffff] },
    ]);
  });

  it('refuses a record larger than a segment with ERR_INVALID_ARGUMENT, writing nothing', async () => {
    const dir = tmpDir('wal-too-big');
    const w = openWriter('mmap', dir, { segmentBytes: 4096 });
    w.registerPool(0, 'huge', 1);
    let caught: unknown;
    try {
      w.appendCreate(0, new Uint8Array(5000));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(EngineError);
    expect((caught as EngineError).code).toBe('ERR_INVALID_ARGUMENT');
    expect((caught as EngineError).message).toContain('4096');
    w.appendDraws(0, 1, u16([0]), 0, 1);
    await w.close();
    const file = segmentFiles(dir)[0]!;
    const { recs } = scan(readFileSync(file), file, true);
    expect(recs.map((r) => r.type)).toEqual([kRecPoolRef, kRecDraw8]);
  });
});

describe('WAL rotation', () => {
  it.each<Kind>(['mmap', 'file'])('%s writer: several segments, each scans cleanly and defines its refs; draw runs split correctly', async (kind) => {
    const dir = tmpDir(`wal-rotate-${kind}`);
    const w = openWriter(kind, dir, { segmentBytes: 4096, epoch: 3 });
    w.registerPool(0, 'small', 6);
    w.appendCreate(0, pack({ id: 'small', items: kSample }));
    w.registerPool(1, 'wide', 300);
    let nextId = 1;
    const expectedSmall: number[] = [];
    const expectedWide: number[] = [];
    const runs: { ref: number; first: number; count: number }[] = [];
    for (let k = 0; k < 12; k++) {
      const count = k === 5 ? 10_000 : 700 + k * 37;
      const idx = new Uint16Array(count);
      const ref = k % 3 === 2 ? 1 : 0;
      for (let i = 0; i < count; i++) idx[i] = ref === 0 ? (i % 11 === 0 ? 0xffff : (i * 5 + k) % 6) : (i * 31 + k) % 300;
      w.appendDraws(ref, nextId, idx, 0, count);
      runs.push({ ref, first: nextId, count });
      for (const v of idx) (ref === 0 ? expectedSmall : expectedWide).push(ref === 0 && v === 0xffff ? 0xff : v);
      nextId += count;
      if (k % 4 === 0) w.appendUpdate(0, k % 6, NaN, 50 + k);
      w.commit();
    }
    await w.close();

    const files = segmentFiles(dir);
    expect(files.length).toBeGreaterThan(3);
    expect(w.stats.rotations).toBe(files.length - 1);
    const seen = new Map<number, number[]>([
      [0, []],
      [1, []],
    ]);
    const firstIds = new Map<number, number[]>([
      [0, []],
      [1, []],
    ]);
    let totalDraws = 0;
    files.forEach((file, i) => {
      expect(file.endsWith(`${String(i + 1).padStart(10, '0')}.wal`)).toBe(true);
      expect(statSync(file).size).toBe(4096);
      const buf = readFileSync(file);
      const newest = i === files.length - 1;
      const { result, recs } = scan(buf, file, newest);
      expect(result.torn).toBeUndefined();
      expect(result.header).toMatchObject({ seq: i + 1, shard: 0, epoch: 3, segmentBytes: 4096 });
      // Older segments also scan as non-newest without error.
      expect(scan(buf, file, false).result.records).toBe(recs.length);
      const defined = new Set<number>();
      for (const r of recs) {
        const d = decode(r);
        if (d.kind === 'poolRef' || d.kind === 'create') defined.add(d.ref);
        else {
          expect(defined.has(d.ref), `${file}: ref ${d.ref} used before its definition at ${r.offset}`).toBe(true);
          if (d.kind === 'draws') {
            seen.get(d.ref)!.push(...d.indices);
            firstIds.get(d.ref)!.push(d.first, d.indices.length);
            totalDraws += d.indices.length;
          }
        }
      }
    });
    expect(totalDraws).toBe(nextId - 1);
    expect(seen.get(0)).toEqual(expectedSmall);
    expect(seen.get(1)).toEqual(expectedWide);
    // Every run's chunks carry consecutive request ids and add up to the run's count.
    for (const ref of [0, 1]) {
      const pairs = firstIds.get(ref)!;
      const chunks: { first: number; count: number }[] = [];
      for (let i = 0; i < pairs.length; i += 2) chunks.push({ first: pairs[i]!, count: pairs[i + 1]! });
      for (const run of runs.filter((r) => r.ref === ref)) {
        const mine = chunks.filter((c) => c.first >= run.first && c.first < run.first + run.count);
        expect(mine.reduce((a, c) => a + c.count, 0)).toBe(run.count);
        let id = run.first;
        for (const c of mine) {
          expect(c.first).toBe(id);
          id += c.count;
        }
      }
    }
    // The 10,000-draw run cannot fit in one 4 KiB segment: it was split.
    const big = runs[5]!;
    expect(firstIds.get(big.ref)!.filter((_, i) => i % 2 === 0).filter((f) => f >= big.first && f < big.first + big.count).length).toBeGreaterThan(1);
  });
});

describe('WAL writer snapshotBoundary', () => {
  it.each<Kind>(['mmap', 'file'])('%s writer: closes a segment holding records and returns the fresh one; an empty current segment is the boundary itself', async (kind) => {
    const dir = tmpDir(`wal-boundary-${kind}`);
    const w = openWriter(kind, dir, { segmentBytes: 8192, firstSeq: 3 });
    expect(w.snapshotBoundary()).toBe(3);
    expect(segmentFiles(dir)).toHaveLength(1);
    w.registerPool(0, 'p', 6);
    w.appendDraws(0, 1, u16([1, 2, 3]), 0, 3);
    expect(w.snapshotBoundary()).toBe(4);
    expect(w.snapshotBoundary()).toBe(4);
    // Records after the boundary land in the new segment, which defines its refs again.
    w.appendDraws(0, 4, u16([5]), 0, 1);
    await w.close();
    const files = segmentFiles(dir);
    expect(files.map((f) => f.slice(-14))).toEqual(['0000000003.wal', '0000000004.wal']);
    const older = scan(readFileSync(files[0]!), files[0]!, false);
    expect(older.recs.map((r) => decode(r))).toEqual([
      { kind: 'poolRef', ref: 0, itemCount: 6, poolId: 'p' },
      { kind: 'draws', ref: 0, first: 1, indices: [1, 2, 3] },
    ]);
    const newer = scan(readFileSync(files[1]!), files[1]!, true);
    expect(newer.recs.map((r) => decode(r))).toEqual([
      { kind: 'poolRef', ref: 0, itemCount: 6, poolId: 'p' },
      { kind: 'draws', ref: 0, first: 4, indices: [5] },
    ]);
  });
});

describe('SegmentSource (on-demand reads)', () => {
  it('scans a segment larger than its 4 MiB read chunk, with records straddling the chunk boundary, like the in-memory scan', async () => {
    const dir = tmpDir('wal-big');
    const w = openWriter('file', dir, { segmentBytes: 8 << 20 });
    w.registerPool(0, 'p', 6);
    const idx = new Uint16Array(100_003);
    for (let i = 0; i < idx.length; i++) idx[i] = (i * 13) % 6;
    let first = 1;
    for (let k = 0; k < 120; k++) {
      w.appendDraws(0, first, idx, 0, idx.length);
      first += idx.length;
    }
    await w.close();
    // Segments grow 1, 2, 4, 8 MiB: the last one is the large one.
    const file = segmentFiles(dir).at(-1)!;
    expect(statSync(file).size).toBe(8 << 20);
    const mem = scan(readFileSync(file), file, true);
    const disk = scanFile(file, true);
    expect(disk.result).toEqual(mem.result);
    expect(disk.recs.length).toBe(mem.recs.length);
    for (let i = 0; i < mem.recs.length; i++) expect(disk.recs[i]!.body.equals(mem.recs[i]!.body)).toBe(true);
    // Some record really crosses the 4 MiB boundary.
    expect(mem.recs.some((r) => r.offset < 4 << 20 && r.offset + 8 + r.len > 4 << 20)).toBe(true);
    expect(mem.result.end).toBeGreaterThan(4 << 20);
  });
});

/**
 * A small segment with a handful of records of assorted sizes, as its writer left it when it
 * died (unsealed): the only state in which its tail can be torn. `sealed` keeps the seal of the
 * clean close.
 */
async function handfulSegment(kind: Kind = 'mmap', sealed = false): Promise<{ file: string; buf: Buffer; recs: Rec[] }> {
  const dir = tmpDir('wal-handful');
  const w = openWriter(kind, dir, { segmentBytes: 4096 });
  w.registerPool(0, 'spring', kSample.length);
  w.appendCreate(0, pack({ id: 'spring', items: kSample.slice(0, 3) }));
  const idx = new Uint16Array(300);
  for (let i = 0; i < idx.length; i++) idx[i] = (i * 7 + 1) % 6;
  w.appendDraws(0, 1, idx, 0, 37);
  w.appendUpdate(0, 1, 5, 3);
  w.appendDraws(0, 38, idx, 37, 130);
  w.registerPool(1, 'other', 2);
  w.appendDraws(1, 168, idx, 0, 3);
  w.appendUpdate(0, 0, NaN, 0);
  w.appendDraws(0, 171, idx, 100, 61);
  await w.close();
  const file = segmentFiles(dir)[0]!;
  const buf = sealed ? readFileSync(file) : unsealed(readFileSync(file));
  const { result, recs } = scan(buf, file, true);
  expect(result.torn).toBeUndefined();
  expect(recs.length).toBe(8);
  // The first byte of every record (low byte of its length) is non-zero, so a cut anywhere
  // inside a record leaves at least one non-zero byte of it.
  for (const r of recs) expect(buf[r.offset]).not.toBe(0);
  return { file, buf, recs };
}

describe('WAL torn tails and corruption', () => {
  it('truncated anywhere: ERR_CORRUPT_WAL naming the file, newest or not, sealed or not (segments are created whole)', async () => {
    for (const sealed of [false, true]) {
      const { file, buf } = await handfulSegment('mmap', sealed);
      let checked = 0;
      for (let cut = kHeaderBytes; cut < buf.length; cut += 7) {
        const data = Buffer.from(buf.subarray(0, cut));
        for (const newest of [true, false]) {
          const err = expectCorrupt(() => scan(data, file, newest), file, 0);
          expect(err.message).toContain(`file is ${cut} bytes`);
        }
        checked++;
      }
      expect(checked).toBeGreaterThan(500);
    }
  });

  it('sealed (closed cleanly): records cut, zeroed or rewritten before the sealed end are corruption, never a torn tail', async () => {
    const { file, buf, recs } = await handfulSegment('mmap', true);
    const header = readHeader(buf) as { sealedEnd: number; seal: number };
    expect(header.seal).toBe(2);
    expect(header.sealedEnd).toBe(recs.at(-1)!.offset + recordBytes(recs.at(-1)!.len));
    let checked = 0;
    for (const r of recs) {
      // Zeroed from a record boundary to the end: the "clean end" a crash would leave, here loss.
      const zeroed = Buffer.from(buf);
      zeroed.fill(0, r.offset);
      expectCorrupt(() => scan(zeroed, file, true), file, r.offset);
      // A flipped byte in the last record: torn only if the writer had died.
      const flipped = Buffer.from(buf);
      flipped[r.offset + 9]! ^= 0x5a;
      expectCorrupt(() => scan(flipped, file, true), file, r.offset);
      checked++;
    }
    // A record appended after the seal is not part of the segment either.
    const extra = Buffer.from(buf);
    const last = recs.at(-1)!;
    buf.copy(extra, header.sealedEnd, last.offset, last.offset + recordBytes(last.len));
    expectCorrupt(() => scan(extra, file, true), file, header.sealedEnd);
    expect(checked).toBe(recs.length);
  });

  it('zero-filled (not truncated) from every offset: a torn write in a preallocated segment', async () => {
    const { file, buf, recs } = await handfulSegment('file');
    const first = recs[0]!;
    const last = recs[recs.length - 1]!;
    for (let cut = first.offset + 8 + first.len; cut <= last.offset + recordBytes(last.len); cut++) {
      const data = Buffer.from(buf);
      data.fill(0, cut);
      // Model: the first record whose bytes changed ends the data; it is a clean end if it was
      // zeroed from its first byte on, a torn record otherwise.
      let k = 0;
      while (k < recs.length && data.subarray(recs[k]!.offset, recs[k]!.offset + 8 + recs[k]!.len).equals(buf.subarray(recs[k]!.offset, recs[k]!.offset + 8 + recs[k]!.len))) k++;
      const torn = k < recs.length && cut > recs[k]!.offset;
      const res = scan(data, file, true);
      expect(res.recs.length, `cut ${cut}`).toBe(k);
      for (let i = 0; i < k; i++) expect(res.recs[i]!.body.equals(recs[i]!.body)).toBe(true);
      if (torn) {
        expect(res.result.torn?.offset, `cut ${cut}`).toBe(recs[k]!.offset);
        expectCorrupt(() => scan(data, file, false), file, recs[k]!.offset);
      } else {
        expect(res.result.torn, `cut ${cut}`).toBeUndefined();
      }
    }
  });

  it('a flipped byte in any older record (valid records after it) is ERR_CORRUPT_WAL naming file and offset, except at the end of an unsealed newest segment', async () => {
    // In the newest segment of a writer that died, a bad record followed by valid ones is what a
    // power cut leaves when later pages of the last unsynced group reached the disk before an
    // earlier one (test/unit/power-loss.test.ts): the data ends there, nothing after it was
    // acknowledged. Sealed (after a clean close) it stays damage, newest or not.
    const unsealedSeg = await handfulSegment();
    const sealedSeg = await handfulSegment('mmap', true);
    let checked = 0;
    for (const [{ file, buf, recs }, sealed] of [[unsealedSeg, false], [sealedSeg, true]] as const) {
      for (const r of recs.slice(0, -1)) {
        for (let at = r.offset; at < r.offset + 8 + r.len; at++) {
          const data = Buffer.from(buf);
          data[at]! ^= 0xff;
          const err = expectCorrupt(() => scan(data, file, false), file, r.offset);
          expect(err.details.reason).toEqual(expect.any(String));
          if (sealed) {
            expectCorrupt(() => scan(data, file, true), file, r.offset);
          } else {
            const res = scan(data, file, true);
            expect(res.result.torn?.offset, `flip at ${at}`).toBe(r.offset);
            expect(res.recs.length).toBe(recs.indexOf(r));
          }
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(600);
  });

  it('a flipped byte in the last record is a torn tail in the newest segment, corruption elsewhere', async () => {
    const { file, buf, recs } = await handfulSegment();
    const last = recs[recs.length - 1]!;
    for (let at = last.offset; at < last.offset + 8 + last.len; at++) {
      const data = Buffer.from(buf);
      data[at]! ^= 0x5a;
      const res = scan(data, file, true);
      expect(res.result.torn?.offset, `flip at ${at}`).toBe(last.offset);
      expect(res.recs.length).toBe(recs.length - 1);
      expectCorrupt(() => scan(data, file, false), file, last.offset);
    }
  });

  it('a zeroed length word in the middle of an older segment, with valid records after it, is corruption, not the end of data', async () => {
    // An older segment was synced in full before the writer rotated away from it, so a zero
    // length followed by valid records cannot be a torn write: the records after it (acknowledged
    // draws) would be dropped silently.
    const { file, buf, recs } = await handfulSegment();
    const victim = recs[3]!;
    const data = Buffer.from(buf);
    data.writeUInt32LE(0, victim.offset);
    expectCorrupt(() => scan(data, file, false), file, victim.offset);
  });

  it('an unknown record type with a valid checksum is ERR_CORRUPT_WAL', async () => {
    const { file, buf, recs } = await handfulSegment();
    const victim = recs[2]!;
    const data = Buffer.from(buf);
    const seq = readHeader(data) as { seq: number };
    data[victim.offset + 8] = 99;
    data.writeUInt32LE(recordCrc(data.subarray(victim.offset + 8, victim.offset + 8 + victim.len), seq.seq), victim.offset + 4);
    const err = expectCorrupt(() => scan(data, file, true), file, victim.offset);
    expect(err.message).toContain('unknown record type 99');
  });

  it('records do not validate under another sequence number (CRC seeded with seq)', async () => {
    const { file, buf } = await handfulSegment();
    const data = Buffer.from(buf);
    data.writeUInt32LE(2, 12); // seq 1 -> 2, with a valid header checksum
    data.writeUInt32LE(crc32(data.subarray(0, 60)), 60);
    expect(readHeader(data)).toMatchObject({ seq: 2 });
    expectCorrupt(() => scan(data, file, false), file, kHeaderBytes);
    // In the newest segment every record is bad and none is valid after: the whole tail is torn.
    const res = scan(data, file, true);
    expect(res.recs).toHaveLength(0);
    expect(res.result.torn?.offset).toBe(kHeaderBytes);
  });

  it.each([
    ['magic', 0],
    ['version', 4],
    ['shard', 8],
    ['seq', 12],
    ['epoch', 16],
    ['createdAt', 30],
    ['checksum', 61],
  ])('a bad header (%s byte flipped) is ERR_CORRUPT_WAL at offset 0, even in the newest segment', async (_name, at) => {
    const { file, buf } = await handfulSegment();
    const data = Buffer.from(buf);
    data[at]! ^= 0x10;
    for (const newest of [true, false]) {
      const err = expectCorrupt(() => scan(data, file, newest), file, 0);
      expect(err.message).toContain('header');
    }
  });

  it('an all-zero or truncated header is ERR_CORRUPT_WAL at offset 0', async () => {
    const { file, buf } = await handfulSegment();
    const zero = Buffer.from(buf);
    zero.fill(0, 0, kHeaderBytes);
    expectCorrupt(() => scan(zero, file, true), file, 0);
    expectCorrupt(() => scan(Buffer.from(buf.subarray(0, 40)), file, true), file, 0);
  });

  it('a visitor that cannot decode a record turns into ERR_CORRUPT_WAL at that record; an EngineError passes through', async () => {
    const { file, buf, recs } = await handfulSegment();
    let n = 0;
    const err = expectCorrupt(
      () =>
        scanSegment(buf, { file, newest: true }, () => {
          if (n++ === 2) throw new Error('bad item index');
        }),
      file,
      recs[2]!.offset,
    );
    expect(err.message).toContain('bad item index');
    const own = new EngineError('ERR_CORRUPT_WAL', 'mine');
    expect(() =>
      scanSegment(buf, { file, newest: true }, () => {
        throw own;
      }),
    ).toThrow(own);
  });
});
