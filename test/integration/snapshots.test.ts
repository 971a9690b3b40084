/**
 * Snapshots and the WAL around them: manual and automatic snapshots, incremental snapshots with
 * a manifest, retirement (deletion or archive) of covered segments, falling back to the previous
 * snapshot when the newest is damaged, refusing to open when nothing valid covers the state,
 * and the WAL damage rules that interact with them (older record, newest header, missing
 * segment). Snapshot file: 44-byte header [u32 magic, u16 version, u16 reserved, u32 bodyLen,
 * sha256(body)] + msgpackr body, named dir/shard-<k>/<10-digit seq>.snap.
 */
import { existsSync, readdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSnapshotFile as readSnapshotWith, type SnapshotBody } from '../../dist/src/snapshot/format.js';
import { realStorage } from '../../dist/src/storage/real-storage.js';

const readSnapshotFile = (path: string): SnapshotBody | string => readSnapshotWith(realStorage, path);
import { allStates, DrawEngine, expectCode, KiB, useEngines } from '../helpers/engine.js';
import { copyToTmp, tmpDir } from '../helpers/tmp.js';
import { legacySealFile, readRecords, segmentFiles, seqOf, sha256File, shardDir, snapshotFiles } from '../helpers/wal-files.js';

const kSnapHeaderBytes = 44;

const openEngine = useEngines();

// ---- files ----

function seqsOf(dir: string, k: number, ext: 'wal' | 'snap'): number[] {
  if (!existsSync(shardDir(dir, k))) return [];
  return (ext === 'wal' ? segmentFiles(dir, k) : snapshotFiles(dir, k)).map(seqOf);
}

function walPath(dir: string, k: number, seq: number): string {
  return join(shardDir(dir, k), `${String(seq).padStart(10, '0')}.wal`);
}

function snapPath(dir: string, k: number, seq: number): string {
  return join(shardDir(dir, k), `${String(seq).padStart(10, '0')}.snap`);
}

function readSnap(path: string): SnapshotBody {
  const body = readSnapshotFile(path);
  if (typeof body === 'string') throw new Error(`${path}: ${body}`);
  return body;
}

/** Flip one bit of a file at `offset`; returns a function that flips it back. */
function flipByte(path: string, offset: number): () => void {
  const flip = (): void => {
    const buf = readFileSync(path);
    buf[offset]! ^= 0x10;
    writeFileSync(path, buf);
  };
  flip();
  return flip;
}

const catalog = (q: number) => [
  { id: 'gold', weight: 1, quantity: q },
  { id: 'silver', weight: 3, quantity: 10 * q },
  { id: 'mud', weight: 8, quantity: -1 },
];

async function createPools(engine: DrawEngine, n: number, prefix = 'p'): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    await engine.createPool(`${prefix}${i}`, catalog(1000 + i));
    ids.push(`${prefix}${i}`);
  }
  return ids;
}

/** drawMany on every pool; returns the number of draws made. */
async function drawAll(engine: DrawEngine, pools: string[], each: number): Promise<number> {
  await Promise.all(pools.map((id) => engine.drawMany(id, each)));
  return pools.length * each;
}

// ---- tests ----

describe.each(['mmap', 'file'] as const)('snapshot(), wal %s', (wal) => {
  it('writes .snap files; later opens load them and replay only the draws after them', async () => {
    const dir = tmpDir(`snap-${wal}`);
    const opts = { dir, wal, shards: 2, segmentBytes: 64 * KiB, snapshotEveryRecords: 0 };
    const engine = await openEngine(opts);
    const pools = await createPools(engine, 6);
    await drawAll(engine, pools, 30_000);
    await engine.updateItem('p1', 'gold', { weight: 5, quantity: 7 });
    const before = [0, 1].map((k) => seqsOf(dir, k, 'snap').at(-1) ?? 0);
    await engine.snapshot();
    for (const k of [0, 1]) {
      const newest = seqsOf(dir, k, 'snap').at(-1)!;
      expect(newest, `shard ${k} has a new snapshot`).toBeGreaterThan(before[k]!);
      const body = readSnap(snapPath(dir, k, newest));
      expect(body.shard).toBe(k);
      expect(body.coversBelow).toBe(newest);
      expect(body.epoch).toBe(engine.recovery.epoch);
    }

    // After the snapshot: these, and only these, are replayed next time.
    let after = await drawAll(engine, pools, 7_000);
    for (let i = 0; i < 10; i++) await engine.draw(pools[i % 6]!);
    after += 10;
    const states = await allStates(engine);
    await engine.close();
    // One snapshot per shard (read after close: the worker counts it when told it is written).
    expect(engine.metrics().snapshots).toBe(2);

    const reopened = await openEngine(opts);
    expect(reopened.recovery.snapshotsLoaded).toBeGreaterThanOrEqual(2);
    expect(reopened.recovery.drawsReplayed).toBe(after);
    expect(reopened.recovery.snapshotFallbacks).toEqual([]);
    expect(await allStates(reopened)).toEqual(states);
    await reopened.close();

    // That open snapshotted what it recovered: nothing is left to replay.
    const third = await openEngine(opts);
    expect(third.recovery.drawsReplayed).toBe(0);
    expect(third.recovery.snapshotsLoaded).toBeGreaterThanOrEqual(2);
    expect(await allStates(third)).toEqual(states);
  });
});

describe('snapshots', () => {
  it('automatic snapshots every snapshotEveryRecords records', async () => {
    const dir = tmpDir('snap-auto');
    const opts = { dir, shards: 1, segmentBytes: 64 * KiB, snapshotEveryRecords: 20 };
    const engine = await openEngine(opts);
    const [pool] = await createPools(engine, 1);
    expect(engine.metrics().snapshots).toBe(0);
    // Snapshots are written off the draw path: keep logging records until three are done.
    let draws = 0;
    for (let i = 0; i < 5_000 && engine.metrics().snapshots < 3; i++) {
      await engine.drawMany(pool!, 50);
      draws += 50;
    }
    expect(engine.metrics().snapshots).toBeGreaterThanOrEqual(3);
    expect(engine.metrics().shards[0]!.snapshots).toBe(engine.metrics().snapshots);
    const snaps = seqsOf(dir, 0, 'snap');
    expect(snaps.at(-1)!).toBeGreaterThan(1);
    for (const seq of snaps) expect(readSnap(snapPath(dir, 0, seq)).coversBelow).toBe(seq);
    const states = await allStates(engine);
    await engine.close();

    const reopened = await openEngine(opts);
    expect(reopened.recovery.snapshotsLoaded).toBeGreaterThanOrEqual(1);
    expect(reopened.recovery.drawsReplayed).toBeLessThan(draws);
    expect(await allStates(reopened)).toEqual(states);
  });

  it('metrics().snapshots counts a snapshot once snapshot() has resolved', async () => {
    // snapshot() resolves once the snapshot is durable; the shared counter must say so by then
    // (five in a row, so a counter that is bumped later, by a message, cannot pass by luck).
    const dir = tmpDir('snap-metrics');
    const engine = await openEngine({ dir, shards: 1, segmentBytes: 64 * KiB, snapshotEveryRecords: 0 });
    const [pool] = await createPools(engine, 1);
    const seen: number[] = [];
    for (let i = 1; i <= 5; i++) {
      await engine.drawMany(pool!, 1_000);
      await engine.snapshot();
      seen.push(engine.metrics().snapshots);
    }
    expect(seen).toEqual([1, 2, 3, 4, 5]);
  });

  it('incremental snapshots hold only the changed pools; the manifest lists all; recovery is exact', async () => {
    const dir = tmpDir('snap-incremental');
    const opts = { dir, shards: 1, segmentBytes: 64 * KiB, snapshotEveryRecords: 0 };
    const engine = await openEngine(opts);
    const pools = await createPools(engine, 40);
    await drawAll(engine, pools, 500);
    await engine.snapshot();
    const first = seqsOf(dir, 0, 'snap').at(-1)!;

    const changed = ['p3', 'p17', 'p31'];
    await drawAll(engine, changed, 2_000);
    await engine.updateItem('p17', 'silver', { weight: 9 });
    await engine.snapshot();
    const second = seqsOf(dir, 0, 'snap').at(-1)!;
    expect(second).toBeGreaterThan(first);

    const body = readSnap(snapPath(dir, 0, second));
    expect(body.kind).toBe('incremental');
    expect(body.pools.map((p) => p.id).sort()).toEqual([...changed].sort());
    expect([...body.manifest.poolIds].sort()).toEqual([...pools].sort());
    body.manifest.poolIds.forEach((id, i) => {
      if (changed.includes(id)) expect(body.manifest.at[i], id).toBe(second);
      else expect(body.manifest.at[i], id).toBeLessThan(second);
    });
    // The older file of the chain is still there and valid.
    for (const seq of new Set(body.manifest.at)) expect(typeof readSnapshotFile(snapPath(dir, 0, seq))).toBe('object');
    const newFile = statSync(snapPath(dir, 0, second)).size;
    const oldFile = statSync(snapPath(dir, 0, first)).size;
    expect(newFile).toBeLessThan(oldFile / 4);

    // Draws after the incremental snapshot, then recovery through the chain.
    const after = await drawAll(engine, ['p3', 'p4'], 300);
    const states = await allStates(engine);
    await engine.close();
    // One snapshot per shard (read after close: the worker counts it when told it is written).
    expect(engine.metrics().snapshots).toBe(2);

    const reopened = await openEngine(opts);
    expect(reopened.recovery.snapshotsLoaded).toBeGreaterThanOrEqual(2);
    expect(reopened.recovery.drawsReplayed).toBe(after);
    expect(await allStates(reopened)).toEqual(states);
    await reopened.close();

    const twoShards = await openEngine({ ...opts, shards: 2 });
    expect(await allStates(twoShards)).toEqual(states);
  });

  describe.each([false, true])('covered segments, archive %s', (archive) => {
    it(`are ${archive ? 'moved to archive/shard-<k>/' : 'deleted'} once a newer snapshot supersedes their snapshot`, async () => {
      const dir = tmpDir(`snap-retire-${archive}`);
      const opts = { dir, shards: 1, segmentBytes: 64 * KiB, snapshotEveryRecords: 0, archive };
      const engine = await openEngine(opts);
      const pools = await createPools(engine, 2);
      await drawAll(engine, pools, 100_000); // about 3 segments
      await engine.snapshot();
      const s1 = seqsOf(dir, 0, 'snap').at(-1)!;
      const walBefore = seqsOf(dir, 0, 'wal');
      const covered = walBefore.filter((seq) => seq < s1);
      expect(covered.length).toBeGreaterThanOrEqual(3);
      // The previous snapshot's fallback: nothing is retired by the first snapshot of a run.
      expect(walBefore[0]).toBe(1);
      const hashes = new Map(covered.map((seq) => [seq, sha256File(walPath(dir, 0, seq))]));

      await drawAll(engine, pools, 100_000);
      await engine.snapshot();
      const s2 = seqsOf(dir, 0, 'snap').at(-1)!;
      expect(s2).toBeGreaterThan(s1);
      const walAfter = seqsOf(dir, 0, 'wal');
      // Kept: the WAL from the previous snapshot on (the fallback); gone: what it covers.
      expect(walAfter.filter((seq) => seq < s1)).toEqual([]);
      expect(walAfter[0]).toBe(s1);
      expect(walAfter.at(-1)!).toBeGreaterThanOrEqual(s2);
      expect(seqsOf(dir, 0, 'snap')).toContain(s1);

      const archived = join(dir, 'archive', 'shard-0');
      if (archive) {
        const names = readdirSync(archived).filter((n) => n.endsWith('.wal')).sort();
        expect(names).toEqual(covered.map((seq) => `${String(seq).padStart(10, '0')}.wal`));
        for (const [seq, hash] of hashes) expect(sha256File(join(archived, `${String(seq).padStart(10, '0')}.wal`)), `archived ${seq}`).toBe(hash);
      } else {
        expect(existsSync(archived)).toBe(false);
      }
      const states = await allStates(engine);
      await engine.close();
      const reopened = await openEngine(opts);
      expect(await allStates(reopened)).toEqual(states);
    });
  });

  it('a corrupt newest snapshot falls back to the previous one plus the longer WAL', async () => {
    const dir = tmpDir('snap-fallback');
    const opts = { dir, shards: 2, segmentBytes: 64 * KiB, snapshotEveryRecords: 0 };
    const engine = await openEngine(opts);
    const pools = await createPools(engine, 8);
    await drawAll(engine, pools, 20_000);
    await engine.snapshot();
    const d2 = await drawAll(engine, pools, 20_000);
    await engine.updateItem('p2', 'gold', { quantity: 3 });
    await engine.snapshot();
    const d3 = await drawAll(engine, pools, 5_000);
    const states = await allStates(engine);
    await engine.close();

    const snaps0 = seqsOf(dir, 0, 'snap');
    expect(snaps0.length).toBeGreaterThanOrEqual(2);
    const newest = snapPath(dir, 0, snaps0.at(-1)!);
    flipByte(newest, kSnapHeaderBytes + 20);

    const reopened = await openEngine(opts);
    expect(reopened.recovery.snapshotFallbacks).toEqual([{ file: newest, reason: expect.stringContaining('checksum') }]);
    expect(await allStates(reopened)).toEqual(states);
    // Shard 0 replayed from the previous snapshot: more than the draws after the newest one.
    expect(reopened.recovery.drawsReplayed).toBeGreaterThan(d3);
    expect(reopened.recovery.drawsReplayed).toBeLessThanOrEqual(d2 + d3);
    await reopened.close();

    const again = await openEngine(opts);
    expect(again.recovery.snapshotFallbacks).toEqual([]);
    expect(await allStates(again)).toEqual(states);
  });

  it.each([
    ['with WAL written after it', true],
    ['with only the empty segment after it', false],
  ])('no valid snapshot and no WAL covering the state (%s): ERR_CORRUPT_SNAPSHOT', async (_label, drawAfter) => {
    const dir = tmpDir('snap-nocover');
    const opts = { dir, shards: 2, segmentBytes: 64 * KiB, snapshotEveryRecords: 0 };
    const engine = await openEngine(opts);
    const pools = await createPools(engine, 6);
    await drawAll(engine, pools, 20_000);
    await engine.close();
    // This open snapshots everything and retires the segments the snapshots cover.
    const second = await openEngine(opts);
    if (drawAfter) await drawAll(second, pools, 1_000);
    const states = await allStates(second);
    await second.close();
    const only = seqsOf(dir, 0, 'snap');
    expect(only).toHaveLength(1);
    expect(seqsOf(dir, 0, 'wal')[0]).toBeGreaterThanOrEqual(only[0]!);
    expect(seqsOf(dir, 0, 'wal')).not.toContain(1);

    const file = snapPath(dir, 0, only[0]!);
    const restore = flipByte(file, kSnapHeaderBytes + 7);
    const err = await expectCode(DrawEngine.open(opts), 'ERR_CORRUPT_SNAPSHOT');
    expect(err.message).toContain(file);
    // A refused open changes nothing and releases the lock: repaired, the directory opens.
    restore();
    const repaired = await openEngine(opts);
    expect(await allStates(repaired)).toEqual(states);
  });

  it('a flipped byte in an older record (valid records after it) is ERR_CORRUPT_WAL naming file and offset', async () => {
    const dir = tmpDir('snap-older-record');
    const opts = { dir, shards: 1, segmentBytes: 64 * KiB, snapshotEveryRecords: 0 };
    const engine = await openEngine(opts);
    const pools = await createPools(engine, 3);
    for (let i = 0; i < 30; i++) await drawAll(engine, pools, 2_000);
    const states = await allStates(engine);
    await engine.close();

    const segs = seqsOf(dir, 0, 'wal');
    expect(segs.length).toBeGreaterThanOrEqual(3);
    const file = walPath(dir, 0, segs[1]!);
    const recs = readRecords(file).records;
    expect(recs.length).toBeGreaterThan(4);
    const victim = recs[3]!;
    const restore = flipByte(file, victim.offset + 8 + 10);

    const err = await expectCode(DrawEngine.open(opts), 'ERR_CORRUPT_WAL');
    expect(err.message).toContain(file);
    expect(err.message).toContain(`offset ${victim.offset}`);
    expect(err.details).toMatchObject({ file, offset: victim.offset });
    restore();
    const repaired = await openEngine(opts);
    expect(await allStates(repaired)).toEqual(states);
  });

  // Segments are now created whole (header included) before they are named. Versions before
  // that could leave, after a crash while creating the next segment, a newest file with nothing
  // written: zeros, or an empty file. Such a file is passed over and reported. Those versions
  // did not say why a segment was sealed (rotated, closed): after a segment sealed that way, an
  // all-zero successor can only be damage (see damage-fuzz.test.ts), so the tests below make
  // the segment before it look as an older version left it.
  const unwrittenHeads: [string, (file: string, prev: Buffer, size: number) => void][] = [
    ['all zeros', (file, _prev, size) => writeFileSync(file, Buffer.alloc(size))],
    ['empty file', (file) => writeFileSync(file, Buffer.alloc(0))],
  ];
  // A header only partly there cannot come from a crash any more: it is damage.
  const damagedHeads: [string, (file: string, prev: Buffer, size: number) => void][] = [
    ['cut inside the header', (file, prev) => writeFileSync(file, prev.subarray(0, 40))],
    ['first 24 header bytes, then zeros', (file, prev, size) => {
      const buf = Buffer.alloc(size);
      prev.copy(buf, 0, 0, 24);
      writeFileSync(file, buf);
    }],
  ];
  it.each(damagedHeads)('a newest segment with a damaged header (%s) is ERR_CORRUPT_WAL naming it', async (_label, make) => {
    const dir = tmpDir('snap-newest-damaged-header');
    const opts = { dir, shards: 1, segmentBytes: 64 * KiB, snapshotEveryRecords: 0 };
    const engine = await openEngine(opts);
    const pools = await createPools(engine, 2);
    await drawAll(engine, pools, 70_000);
    await engine.close();
    const last = seqsOf(dir, 0, 'wal').at(-1)!;
    const file = walPath(dir, 0, last + 1);
    make(file, readFileSync(walPath(dir, 0, last)), 64 * KiB);
    const err = await expectCode(DrawEngine.open(opts), 'ERR_CORRUPT_WAL');
    expect(err.message).toContain(file);
    expect(existsSync(file)).toBe(true);
  });

  it.each(unwrittenHeads)('a newest segment with nothing written (%s) is passed over and reported', async (_label, make) => {
    const dir = tmpDir('snap-newest-header');
    const opts = { dir, shards: 1, segmentBytes: 64 * KiB, snapshotEveryRecords: 0 };
    const engine = await openEngine(opts);
    const pools = await createPools(engine, 2);
    await drawAll(engine, pools, 70_000);
    const states = await allStates(engine);
    await engine.close();

    const segs = seqsOf(dir, 0, 'wal');
    const last = segs.at(-1)!;
    legacySealFile(walPath(dir, 0, last));
    const prev = readFileSync(walPath(dir, 0, last));
    const file = walPath(dir, 0, last + 1);
    make(file, prev, 64 * KiB);

    const reopened = await openEngine(opts);
    expect(reopened.recovery.removedSegments).toEqual([file]);
    expect(reopened.recovery.tornTails).toEqual([]);
    expect(await allStates(reopened)).toEqual(states);
    // The engine goes on writing after it, and the next open is clean.
    const r = await reopened.draw('p0');
    expect(r.requestId).toBeGreaterThan(states.p0!.lastRequestId);
    const after = await allStates(reopened);
    await reopened.close();
    const again = await openEngine(opts);
    expect(again.recovery.removedSegments).toEqual([]);
    expect(await allStates(again)).toEqual(after);
  });

  it('a segment missing from the middle of a sequence is ERR_CORRUPT_WAL naming the missing file', async () => {
    const dir = tmpDir('snap-missing');
    const opts = { dir, shards: 1, segmentBytes: 64 * KiB, snapshotEveryRecords: 0 };
    const engine = await openEngine(opts);
    const pools = await createPools(engine, 2);
    await drawAll(engine, pools, 40_000);
    await engine.snapshot();
    const s1 = seqsOf(dir, 0, 'snap').at(-1)!;
    await drawAll(engine, pools, 100_000);
    const states = await allStates(engine);
    await engine.close();
    expect(seqsOf(dir, 0, 'wal').at(-1)!).toBeGreaterThanOrEqual(s1 + 2);

    // After the newest snapshot: always needed.
    const after = walPath(dir, 0, s1 + 1);
    const savedAfter = readFileSync(after);
    unlinkSync(after);
    let err = await expectCode(DrawEngine.open(opts), 'ERR_CORRUPT_WAL');
    expect(err.message).toContain(after);
    expect(err.details).toMatchObject({ file: after });
    writeFileSync(after, savedAfter);

    // Before it (segment 2): covered by the valid newest snapshot, so not needed...
    const before = walPath(dir, 0, 2);
    expect(s1).toBeGreaterThanOrEqual(3); // segments 1 and 3 stay, 2 goes
    const savedBefore = readFileSync(before);
    unlinkSync(before);
    const copy = copyToTmp(dir);
    const ok = await openEngine({ ...opts, dir: copy });
    expect(await allStates(ok)).toEqual(states);
    await ok.close();
    // ...until that snapshot is damaged: the fallback needs segment 2, and says so.
    const restoreSnap = flipByte(snapPath(dir, 0, s1), kSnapHeaderBytes + 3);
    err = await expectCode(DrawEngine.open(opts), 'ERR_CORRUPT_WAL');
    expect(err.message).toContain(before);
    restoreSnap();
    writeFileSync(before, savedBefore);

    const repaired = await openEngine(opts);
    expect(repaired.recovery.snapshotFallbacks).toEqual([]);
    expect(await allStates(repaired)).toEqual(states);
  });

  it('reopening with a different shard count after snapshots gives the same state', async () => {
    const dir = tmpDir('snap-reshard');
    const base = { dir, segmentBytes: 64 * KiB, snapshotEveryRecords: 20 };
    const engine = await openEngine({ ...base, shards: 2 });
    const pools = await createPools(engine, 10);
    for (let i = 0; i < 20; i++) await drawAll(engine, pools, 500);
    await engine.updateItem('p5', 'silver', { weight: 11, quantity: 4 });
    await engine.snapshot();
    await drawAll(engine, pools, 300);
    const states = await allStates(engine);
    await engine.close();

    const three = await openEngine({ ...base, shards: 3 });
    expect(await allStates(three)).toEqual(states);
    await three.snapshot();
    await three.close();

    const one = await openEngine({ ...base, shards: 1 });
    expect(await allStates(one)).toEqual(states);
    // The layout is now one shard: the other shard directories are retired.
    expect(existsSync(shardDir(dir, 1))).toBe(false);
    expect(existsSync(shardDir(dir, 2))).toBe(false);
    const maxId = Math.max(...Object.values(states).map((s) => s.lastRequestId));
    expect((await one.draw('p9')).requestId).toBeGreaterThan(maxId);
    const final = await allStates(one);
    await one.close();

    const two = await openEngine({ ...base, shards: 2 });
    expect(await allStates(two)).toEqual(final);
  });
});
