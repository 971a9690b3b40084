/**
 * Close/reopen recovery through the public API, for each WAL mode and sync policy: identical
 * state, any shard count, ids never reused, rotation, torn tails, corruption.
 */
import { closeSync, existsSync, openSync, readdirSync, readFileSync, renameSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { tmpDir } from '../helpers/tmp.js';
import {
  allStates,
  expectUnlocked,
  bigCatalog,
  expectCode,
  KiB,
  maxLastRequestId,
  shardOfPool,
  useEngines,
  DrawEngine,
  type Item,
  type PoolState,
} from '../helpers/engine.js';
import {
  allSegmentFiles,
  decodeDraw,
  kRecDraw16,
  kRecDraw8,
  readRecords,
  segmentFiles,
  seqOf,
  shardDirs,
  snapshotFiles,
  unsealFile,
} from '../helpers/wal-files.js';

const openEngine = useEngines();

type Wal = 'mmap' | 'file';
type Sync = 'always' | 'never' | 'interval';

const ALPHA: Item[] = [
  { id: 'gold', weight: 1, quantity: 50 },
  { id: 'silver', weight: 3, quantity: 200 },
  { id: 'mud', weight: 6, quantity: -1 },
];
const BETA: Item[] = [
  { id: 'a', weight: 1, quantity: 100 },
  { id: 'b', weight: 2, quantity: 100 },
];

/** A mixed history: creations, draw() and drawMany, exhaustion, updates, a u16-width pool. */
async function workload(engine: DrawEngine, phase: number): Promise<void> {
  if (phase === 1) {
    await Promise.all([
      engine.createPool('alpha', ALPHA),
      engine.createPool('beta', BETA),
      engine.createPool('wide', bigCatalog(300, 20)),
      engine.createPool('quiet', [{ id: 'q', weight: 1, quantity: 1 }]),
      engine.createPool('upd', [{ id: 'u', weight: 5, quantity: 3 }]),
    ]);
  }
  const p: Promise<unknown>[] = [];
  p.push(engine.drawMany('alpha', 1000 * phase));
  for (let i = 0; i < 40; i++) p.push(engine.draw('alpha'));
  p.push(engine.drawMany('beta', 120 * phase));
  p.push(engine.drawMany('wide', 3000));
  for (let i = 0; i < 25; i++) p.push(engine.draw('wide'));
  p.push(engine.updateItem('alpha', 'gold', { quantity: 10 * phase, weight: 2 + phase }));
  p.push(engine.drawMany('alpha', 500));
  p.push(engine.updateItem('beta', 'a', { quantity: 3 * phase }));
  p.push(engine.drawMany('beta', 5));
  p.push(engine.updateItem('wide', `i${phase}`, { weight: 9 + phase }));
  p.push(engine.updateItem('upd', 'u', { quantity: phase % 2 === 0 ? -1 : 4 }));
  p.push(engine.drawMany('upd', 6));
  p.push(engine.updateItem('upd', 'u', { weight: phase }));
  p.push(engine.createPool(`late-${phase}`, [{ id: 'l', weight: 1, quantity: 7 }]).then(() => engine.drawMany(`late-${phase}`, 9)));
  await Promise.all(p);
}

const combos: [Wal, Sync][] = [
  ['mmap', 'always'],
  ['mmap', 'never'],
  ['file', 'always'],
  ['file', 'never'],
];

describe.each(combos)('wal %s, sync %s', (wal, sync) => {
  const open = (dir: string, shards: number, segmentBytes = 256 * KiB): Promise<DrawEngine> =>
    openEngine({ dir, shards, wal, sync, segmentBytes });

  it('reopen gives identical state, also with 2 -> 1 -> 3 -> 2 shards; ids never reused; recovery report', async () => {
    const dir = tmpDir(`reopen-${wal}-${sync}`);
    // Draws and records of all runs so far, and of the previous run alone.
    let draws = 0;
    let records = 0;
    let lastDraws = 0;
    let lastRecords = 0;
    let prev: Record<string, PoolState> = {};
    const shardCounts = [2, 2, 1, 3, 2];
    for (let run = 0; run < shardCounts.length; run++) {
      const engine = await openEngine({ dir, shards: shardCounts[run]!, wal, sync, segmentBytes: 256 * KiB, snapshotEveryRecords: 0 });
      expect(engine.shards).toBe(shardCounts[run]);
      const r = engine.recovery;
      expect(await allStates(engine)).toEqual(prev);
      expect(engine.poolIds().sort()).toEqual(Object.keys(prev).sort());
      expect(r.tornTails).toEqual([]);
      expect(r.snapshotFallbacks).toEqual([]);
      expect(r.epoch).toBe(run + 1);
      expect(r.pools).toBe(Object.keys(prev).length);
      expect(r.maxRequestId).toBe(maxLastRequestId(prev));
      // WAL replayed = what was logged after the snapshot recovery started from: every open
      // writes one (no automatic snapshots here), so that is the previous run; without any
      // snapshot it is the whole history.
      if (r.snapshotsLoaded > 0) {
        expect(r.drawsReplayed).toBe(lastDraws);
        expect(r.records).toBe(lastRecords);
      } else {
        expect(r.drawsReplayed).toBe(draws);
        expect(r.records).toBe(records);
      }
      if (run > 0) expect(r.segments).toBeGreaterThanOrEqual(1);
      if (run === shardCounts.length - 1) break;

      const maxBefore = maxLastRequestId(prev);
      if (run > 0) {
        // The first id handed out after a restart is above every id issued before.
        const first = await engine.draw('alpha');
        expect(first.requestId).toBeGreaterThan(maxBefore);
      }
      await workload(engine, run + 1);
      const m = engine.metrics();
      lastDraws = m.draws;
      lastRecords = m.records;
      draws += m.draws;
      records += m.records;
      prev = await allStates(engine);
      for (const s of Object.values(prev)) for (const i of s.items) expect(i.quantity).toBeGreaterThanOrEqual(-1);
      await engine.close();
    }
  });

  it('rotation: drawMany of 1e6 over 64 KiB segments recovers exactly', async () => {
    const dir = tmpDir(`rotate-${wal}-${sync}`);
    const segmentBytes = 64 * KiB;
    let engine = await open(dir, 2, segmentBytes);
    await engine.createPool('big', ALPHA);
    await engine.createPool('wide', bigCatalog(300, 200));
    const [b, w] = await Promise.all([engine.drawMany('big', 1_000_000), engine.drawMany('wide', 200_000)]);
    expect(b.firstRequestId + b.count - 1).toBeGreaterThan(0);
    await engine.updateItem('big', 'silver', { quantity: 1000 });
    await engine.drawMany('big', 300);
    const before = await allStates(engine);
    expect(engine.metrics().rotations).toBeGreaterThan(16);
    await engine.close();

    const files = allSegmentFiles(dir);
    expect(files.length).toBeGreaterThan(16);
    for (const f of files) {
      const st = statSync(f);
      expect(st.size).toBe(segmentBytes); // fixed size
      expect(st.blocks * 512).toBeGreaterThanOrEqual(segmentBytes); // preallocated, not sparse
    }

    engine = await open(dir, 2, segmentBytes);
    expect(await allStates(engine)).toEqual(before);
    expect(engine.recovery.segments).toBeGreaterThan(16);
    expect(engine.recovery.drawsReplayed).toBe(1_000_000 + 200_000 + 300);
    expect(engine.recovery.tornTails).toEqual([]);
    const next = await engine.drawMany('wide', 10);
    expect(next.firstRequestId).toBeGreaterThan(Math.max(b.firstRequestId + b.count - 1, w.firstRequestId + w.count - 1));
  });

  it('torn tail: garbage after the last record is dropped and reported once', async () => {
    const dir = tmpDir(`torn-${wal}-${sync}`);
    let engine = await open(dir, 2);
    await workload(engine, 1);
    const before = await allStates(engine);
    await engine.close();

    // The newest segment of a shard that holds records.
    const target = shardDirs(dir)
      .map((k) => segmentFiles(dir, k).at(-1)!)
      .find((f) => readRecords(f).records.length > 0)!;
    expect(target).toBeDefined();
    const { end, buf } = readRecords(target);
    expect(end + 8 + 100).toBeLessThan(buf.length);
    // As the process left it if it died while writing its last record: unsealed, garbage after.
    unsealFile(target);
    const garbage = Buffer.concat([Buffer.from([100, 0, 0, 0]), randomBytes(104)]);
    const fd = openSync(target, 'r+');
    writeSync(fd, garbage, 0, garbage.length, end);
    closeSync(fd);

    engine = await open(dir, 2);
    expect(engine.recovery.tornTails).toEqual([{ file: target, offset: end, reason: expect.any(String) }]);
    expect(await allStates(engine)).toEqual(before);
    expect((await engine.draw('alpha')).requestId).toBeGreaterThan(maxLastRequestId(before));
    const after = await allStates(engine);
    await engine.close();

    engine = await open(dir, 2);
    expect(engine.recovery.tornTails).toEqual([]);
    expect(await allStates(engine)).toEqual(after);
  });

  it('torn tail: a segment cut in the middle of its last record loses exactly that record', async () => {
    const dir = tmpDir(`cut-${wal}-${sync}`);
    let engine = await open(dir, 2);
    await workload(engine, 1);
    const k = await shardOfPool(engine, 'alpha');
    const alphaBefore = await engine.pool('alpha');
    const last = await engine.drawMany('alpha', 1000);
    const all = await allStates(engine);
    await engine.close();

    const file = segmentFiles(dir, k).at(-1)!;
    const { buf, records } = readRecords(file);
    const rec = records.at(-1)!;
    expect([kRecDraw8, kRecDraw16]).toContain(rec.type);
    const draw = decodeDraw(buf, rec);
    expect({ first: draw.firstRequestId, count: draw.count }).toEqual({ first: last.firstRequestId, count: 1000 });
    expect(draw.indices).toEqual(Array.from(last.indices));
    // The process died half-way through writing that record: unsealed, the rest never written.
    unsealFile(file);
    const size = statSync(file).size;
    truncateSync(file, rec.offset + 8 + 500);
    truncateSync(file, size);

    engine = await open(dir, 2);
    expect(engine.recovery.tornTails).toEqual([{ file, offset: rec.offset, reason: expect.any(String) }]);
    const expected = { ...all, alpha: alphaBefore };
    expect(await allStates(engine)).toEqual(expected);
    await engine.close();

    engine = await open(dir, 2);
    expect(engine.recovery.tornTails).toEqual([]);
    expect(await allStates(engine)).toEqual(expected);
  });
});

it('wal mmap, sync interval: reopen gives identical state', async () => {
  const dir = tmpDir('interval');
  let engine = await openEngine({ dir, shards: 2, wal: 'mmap', sync: 'interval', syncIntervalMs: 5, segmentBytes: 64 * KiB });
  await workload(engine, 1);
  await workload(engine, 2);
  const before = await allStates(engine);
  await engine.close();
  engine = await openEngine({ dir, shards: 3, wal: 'mmap', sync: 'interval', segmentBytes: 64 * KiB });
  expect(await allStates(engine)).toEqual(before);
});

describe.each(['mmap', 'file'] as Wal[])('corruption, wal %s', (wal) => {
  const open = (dir: string, segmentBytes = 256 * KiB): Promise<DrawEngine> => openEngine({ dir, shards: 2, wal, segmentBytes });

  /** Open must fail with ERR_CORRUPT_WAL naming file and offset, change nothing on disk, and release the lock. */
  async function expectCorrupt(dir: string, file: string, offset: number): Promise<void> {
    const bytes = readFileSync(file);
    const err = await expectCode(DrawEngine.open({ dir, shards: 2, wal }), 'ERR_CORRUPT_WAL', file, `offset ${offset}`);
    expect(err.details).toMatchObject({ file, offset });
    expect(readFileSync(file).equals(bytes)).toBe(true);
    await expectCode(DrawEngine.open({ dir, shards: 1, wal }), 'ERR_CORRUPT_WAL', file);
  }

  it('a flipped byte in a record followed by valid records (newest segment)', async () => {
    const dir = tmpDir(`flip-${wal}`);
    const engine = await open(dir);
    await workload(engine, 1);
    await engine.close();
    const file = shardDirs(dir)
      .map((k) => segmentFiles(dir, k).at(-1)!)
      .find((f) => readRecords(f).records.some((r, i, all) => i < all.length - 1 && (r.type === kRecDraw8 || r.type === kRecDraw16)))!;
    expect(file).toBeDefined();
    const { records } = readRecords(file);
    const rec = records.find((r, i) => i < records.length - 2 && (r.type === kRecDraw8 || r.type === kRecDraw16)) ?? records[0]!;
    const fd = openSync(file, 'r+');
    const b = Buffer.alloc(1);
    const at = rec.offset + 8 + 20; // first draw index
    const cur = readFileSync(file)[at]!;
    b[0] = cur ^ 0x01;
    writeSync(fd, b, 0, 1, at);
    closeSync(fd);
    await expectCorrupt(dir, file, rec.offset);
  });

  it('a flipped byte in the last record of an older segment is corruption, not a torn tail', async () => {
    const dir = tmpDir(`flip-old-${wal}`);
    const engine = await open(dir, 16 * KiB);
    await workload(engine, 1);
    await engine.drawMany('alpha', 100_000);
    await engine.close();
    const k = shardDirs(dir).find((s) => segmentFiles(dir, s).length >= 3)!;
    expect(k).toBeDefined();
    const file = segmentFiles(dir, k)[0]!;
    const { records, buf } = readRecords(file);
    const rec = records.at(-1)!;
    const at = rec.offset + 8 + Math.floor(rec.len / 2);
    buf[at] = buf[at]! ^ 0x80;
    const fd = openSync(file, 'r+');
    writeSync(fd, buf, at, 1, at);
    closeSync(fd);
    await expectCorrupt(dir, file, rec.offset);
  });

  it('a bad segment header, and a segment missing from the sequence', async () => {
    const dir = tmpDir(`header-${wal}`);
    const engine = await open(dir, 16 * KiB);
    await workload(engine, 1);
    await engine.drawMany('alpha', 100_000);
    await engine.close();
    const k = shardDirs(dir).find((s) => segmentFiles(dir, s).length >= 3)!;
    const files = segmentFiles(dir, k);
    const fd = openSync(files[1]!, 'r+');
    writeSync(fd, Buffer.from([0xee]), 0, 1, 9); // inside the shard field
    closeSync(fd);
    await expectCorrupt(dir, files[1]!, 0);

    // Restore a valid header by moving the bad file away: now seq 2 is missing.
    renameSync(files[1]!, `${files[1]}.bad`);
    const err = await expectCode(DrawEngine.open({ dir, shards: 2, wal }), 'ERR_CORRUPT_WAL', files[1]!);
    expect(err.message).toMatch(/missing/);
  });
});

describe.each(['mmap', 'file'] as Wal[])('snapshots, wal %s', (wal) => {
  it('snapshot() mid-run: reopen starts from it and replays only the WAL after it', async () => {
    const dir = tmpDir(`snap-${wal}`);
    let engine = await openEngine({ dir, shards: 2, wal, segmentBytes: 64 * KiB, snapshotEveryRecords: 0 });
    await workload(engine, 1);
    await engine.drawMany('wide', 100_000);
    await engine.snapshot();
    const atSnapshot = engine.metrics();
    expect(atSnapshot.snapshots).toBeGreaterThanOrEqual(1);
    await workload(engine, 2);
    await engine.updateItem('beta', 'b', { quantity: 1234, weight: 7 });
    await engine.drawMany('beta', 34);
    const before = await allStates(engine);
    const after = engine.metrics();
    await engine.close();

    engine = await openEngine({ dir, shards: 2, wal, segmentBytes: 64 * KiB, snapshotEveryRecords: 0 });
    expect(await allStates(engine)).toEqual(before);
    expect(engine.recovery.snapshotsLoaded).toBeGreaterThanOrEqual(1);
    expect(engine.recovery.drawsReplayed).toBe(after.draws - atSnapshot.draws);
    expect(engine.recovery.records).toBe(after.records - atSnapshot.records);
    expect((await engine.draw('alpha')).requestId).toBeGreaterThan(maxLastRequestId(before));
  });

  it('every open snapshots the recovered state and retires the segments it covers (archive keeps them)', async () => {
    for (const archive of [false, true]) {
      const dir = tmpDir(`retire-${wal}-${archive}`);
      let engine = await openEngine({ dir, shards: 2, wal, segmentBytes: 64 * KiB, archive });
      await workload(engine, 1);
      await engine.drawMany('alpha', 200_000);
      const before = await allStates(engine);
      await engine.close();
      const oldSegments = allSegmentFiles(dir);
      expect(oldSegments.length).toBeGreaterThan(2);

      engine = await openEngine({ dir, shards: 2, wal, segmentBytes: 64 * KiB, archive });
      expect(await allStates(engine)).toEqual(before);
      for (const k of shardDirs(dir)) {
        const snaps = snapshotFiles(dir, k);
        expect(snaps.length).toBeGreaterThanOrEqual(1);
        const base = seqOf(snaps.at(-1)!);
        // No segment below the newest snapshot is left in the shard directory.
        for (const f of segmentFiles(dir, k)) expect(seqOf(f)).toBeGreaterThanOrEqual(base);
      }
      for (const f of oldSegments) {
        expect(existsSync(f)).toBe(false);
        const archived = join(dir, 'archive', f.slice(dir.length + 1));
        expect(existsSync(archived)).toBe(archive);
      }
      await engine.close();
      engine = await openEngine({ dir, shards: 2, wal, segmentBytes: 64 * KiB, archive });
      expect(await allStates(engine)).toEqual(before);
      await engine.close();
    }
  });

  /** Flip one byte near the end (inside the msgpack body) of the newest snapshot of every shard. */
  function damageNewestSnapshots(dir: string): string[] {
    return shardDirs(dir).map((k) => {
      const file = snapshotFiles(dir, k).at(-1)!;
      const buf = readFileSync(file);
      buf[buf.length - 3] = buf[buf.length - 3]! ^ 0xff;
      writeFileSync(file, buf);
      return file;
    });
  }

  it('a damaged newest snapshot: recovery falls back to the previous one and the WAL after it', async () => {
    const dir = tmpDir(`snapfall-${wal}`);
    let engine = await openEngine({ dir, shards: 2, wal, segmentBytes: 64 * KiB, snapshotEveryRecords: 0 });
    await workload(engine, 1);
    await engine.snapshot();
    await workload(engine, 2);
    await engine.snapshot();
    await engine.updateItem('alpha', 'silver', { quantity: 77 });
    await engine.drawMany('alpha', 100);
    const before = await allStates(engine);
    await engine.close();

    const damaged = damageNewestSnapshots(dir);
    engine = await openEngine({ dir, shards: 2, wal, segmentBytes: 64 * KiB });
    expect(await allStates(engine)).toEqual(before);
    expect(engine.recovery.snapshotFallbacks.map((f) => f.file).sort()).toEqual(damaged.sort());
    await engine.close();
    engine = await openEngine({ dir, shards: 2, wal, segmentBytes: 64 * KiB });
    expect(engine.recovery.snapshotFallbacks).toEqual([]);
    expect(await allStates(engine)).toEqual(before);
  });

  it('no valid snapshot and the WAL before it is gone: ERR_CORRUPT_SNAPSHOT, nothing guessed', async () => {
    const dir = tmpDir(`snapgone-${wal}`);
    let engine = await openEngine({ dir, shards: 2, wal, segmentBytes: 64 * KiB });
    await workload(engine, 1);
    await engine.close();
    // The reopen snapshots everything and retires the segments and snapshots before it.
    engine = await openEngine({ dir, shards: 2, wal, segmentBytes: 64 * KiB });
    await engine.close();
    for (const k of shardDirs(dir)) expect(snapshotFiles(dir, k)).toHaveLength(1);
    damageNewestSnapshots(dir);
    const listing = (): string[] => shardDirs(dir).flatMap((k) => readdirSync(join(dir, `shard-${k}`)).map((n) => `${k}/${n}`));
    const files = listing();
    const err = await expectCode(DrawEngine.open({ dir, shards: 2, wal }), 'ERR_CORRUPT_SNAPSHOT', join(dir, 'shard-'));
    expect(err.details).toBeDefined();
    // The lock was released and nothing was repaired or removed: the same answer again.
    expect(listing()).toEqual(files);
    expectUnlocked(dir);
    await expectCode(DrawEngine.open({ dir, shards: 2, wal }), 'ERR_CORRUPT_SNAPSHOT');
  });

  it('automatic snapshots every few records, across reopen with another shard count', async () => {
    const dir = tmpDir(`autosnap-${wal}`);
    let engine = await openEngine({ dir, shards: 2, wal, segmentBytes: 16 * KiB, snapshotEveryRecords: 20 });
    for (let phase = 1; phase <= 4; phase++) await workload(engine, phase);
    await engine.drawMany('wide', 50_000);
    const before = await allStates(engine);
    const m = engine.metrics();
    await engine.close();
    // close() waits for snapshots in flight: at least one automatic snapshot (after the open-time
    // one at segment 1) is on disk.
    const autoSnaps = shardDirs(dir).flatMap((k) => snapshotFiles(dir, k).filter((n) => seqOf(n) > 1));
    expect(autoSnaps.length).toBeGreaterThan(0);

    engine = await openEngine({ dir, shards: 3, wal, segmentBytes: 16 * KiB, snapshotEveryRecords: 20 });
    expect(await allStates(engine)).toEqual(before);
    expect(engine.recovery.drawsReplayed).toBeLessThan(m.draws);
    await workload(engine, 5);
    const again = await allStates(engine);
    await engine.close();
    engine = await openEngine({ dir, shards: 1, wal, segmentBytes: 16 * KiB });
    expect(await allStates(engine)).toEqual(again);
  });
});
