import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EngineError } from '../../src/errors.js';
import { chooseSnapshotSet, planReplay, type ShardListing, type SnapshotChoice } from '../../src/recovery/plan.js';
import type { ChainLoad, LoadedSnapshot } from '../../src/snapshot/chain.js';
import { kSealClosed, kSealNone, kSealRotated, type SealKind, type SegmentHeader } from '../../src/wal/format.js';
import type { SegmentPeek } from '../../src/wal/segment-peek.js';

/*
 * Recovery planning with no disk: listings, snapshot chains, segment headers and "is this file
 * all zeros" are all given as data, as recover.ts would read them.
 */

const dir = '/data/rpe';

function wal(shard: number, seq: number): string {
  return join(dir, `shard-${shard}`, `${String(seq).padStart(10, '0')}.wal`);
}

function snap(shard: number, seq: number): string {
  return join(dir, `shard-${shard}`, `${String(seq).padStart(10, '0')}.snap`);
}

function header(shard: number, seq: number, epoch: number, seal: SealKind = kSealNone, sealedEnd = 0): SegmentHeader {
  return { version: 1, shard, seq, epoch, segmentBytes: 65536, createdAt: 1_700_000_000_000, sealedEnd, seal };
}

/** A fake disk: segment headers by (shard, seq), and which files are all zeros. */
class FakeDisk {
  readonly peeks = new Map<string, SegmentPeek>();
  readonly zero = new Set<string>();
  readonly peeked: string[] = [];

  /** Segments `seqs` of `shard`, written under `epoch`; sealed as rotated except the last (unsealed). */
  segments(shard: number, epoch: number, seqs: number[], hasRecords = true): this {
    seqs.forEach((seq, i) => {
      const last = i === seqs.length - 1;
      this.set(shard, seq, { head: last ? header(shard, seq, epoch) : header(shard, seq, epoch, kSealRotated, 4096), hasRecords });
    });
    return this;
  }

  set(shard: number, seq: number, peek: SegmentPeek): this {
    this.peeks.set(wal(shard, seq), peek);
    return this;
  }

  /** A segment whose header is 64 zero bytes; `allZero` says whether the rest is zeros too. */
  zeroed(shard: number, seq: number, allZero: boolean): this {
    this.set(shard, seq, { head: 'empty', hasRecords: false });
    if (allZero) this.zero.add(wal(shard, seq));
    return this;
  }

  readonly peek = (file: string): SegmentPeek => {
    this.peeked.push(file);
    const p = this.peeks.get(file);
    if (p === undefined) throw new Error(`test peeked a file it did not set up: ${file}`);
    return p;
  };

  readonly allZero = (file: string): boolean => {
    if (!this.peeks.has(file)) throw new Error(`test asked allZero of a file it did not set up: ${file}`);
    return this.zero.has(file);
  };

  listings(): ShardListing[] {
    const by = new Map<number, number[]>();
    for (const file of this.peeks.keys()) {
      const m = /shard-(\d+)\/(\d+)\.wal$/.exec(file)!;
      const k = Number(m[1]);
      if (!by.has(k)) by.set(k, []);
      by.get(k)!.push(Number(m[2]));
    }
    return [...by.entries()].sort((a, b) => a[0] - b[0]).map(([shard, segs]) => ({ shard, segments: segs.sort((a, b) => a - b) }));
  }
}

function loaded(shard: number, epoch: number, shards: number, coversBelow: number, files: number[] = [coversBelow]): LoadedSnapshot {
  return { shard, epoch, shards, coversBelow, maxRequestId: 100 * coversBelow, pools: new Map(), manifest: { poolIds: [], at: [] }, files };
}

/**
 * Fake snapshot chains: per shard, the valid snapshots (newest last). loadChain(shard, maxEpoch)
 * gives the newest one of epoch <= maxEpoch, as loadNewestSnapshot does; calls are recorded.
 */
class FakeChains {
  readonly byShard = new Map<number, LoadedSnapshot[]>();
  readonly fallbacks = new Map<number, ChainLoad['fallbacks']>();
  readonly calls: [number, number][] = [];

  add(s: LoadedSnapshot): this {
    if (!this.byShard.has(s.shard)) this.byShard.set(s.shard, []);
    this.byShard.get(s.shard)!.push(s);
    return this;
  }

  readonly load = (shard: number, maxEpoch: number): ChainLoad => {
    this.calls.push([shard, maxEpoch]);
    const list = (this.byShard.get(shard) ?? []).filter((s) => s.epoch <= maxEpoch);
    const l = list[list.length - 1];
    return { loaded: l, fallbacks: this.fallbacks.get(shard) ?? [], filesRead: l === undefined ? 0 : l.files.length };
  };
}

function thrown(fn: () => unknown): EngineError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(EngineError);
    return err as EngineError;
  }
  throw new Error('expected an EngineError, nothing was thrown');
}

function choice(bases: LoadedSnapshot[], shards: number, fallbacks: SnapshotChoice['fallbacks'] = []): SnapshotChoice {
  return { bases: new Map(bases.map((b) => [b.shard, b])), shards, snapshotsLoaded: bases.reduce((a, b) => a + b.files.length, 0), fallbacks };
}

describe('chooseSnapshotSet', () => {
  it('takes the newest set when it is complete: every shard of that run has its snapshot', () => {
    const disk = new FakeDisk().segments(0, 3, [5, 6]).segments(1, 3, [4]);
    const chains = new FakeChains()
      .add(loaded(0, 2, 2, 2))
      .add(loaded(0, 3, 2, 5, [3, 5]))
      .add(loaded(1, 2, 2, 1))
      .add(loaded(1, 3, 2, 4));
    chains.fallbacks.set(1, [{ file: snap(1, 6), reason: 'checksum mismatch' }]);
    const c = chooseSnapshotSet(dir, disk.listings(), chains.load, disk.peek, undefined);
    expect(c.shards).toBe(2);
    expect([...c.bases.keys()]).toEqual([0, 1]);
    expect(c.bases.get(0)).toMatchObject({ epoch: 3, coversBelow: 5 });
    expect(c.bases.get(1)).toMatchObject({ epoch: 3, coversBelow: 4 });
    expect(c.snapshotsLoaded).toBe(3);
    expect(c.fallbacks).toEqual([{ file: snap(1, 6), reason: 'checksum mismatch' }]);
    expect(chains.calls).toEqual([
      [0, Infinity],
      [1, Infinity],
    ]);
  });

  it('with no snapshot at all: no bases and shard count 0', () => {
    const disk = new FakeDisk().segments(0, 1, [1, 2]);
    const c = chooseSnapshotSet(dir, disk.listings(), new FakeChains().load, disk.peek, undefined);
    expect(c).toEqual({ bases: new Map(), shards: 0, snapshotsLoaded: 0, fallbacks: [] });
  });

  it('passes over an incomplete newest set with no record logged since (a crash while open() wrote it) for the previous epoch', () => {
    // Epoch 4 wrote shard 0's snapshot at 7 and crashed before shard 1's; its segments hold nothing.
    const disk = new FakeDisk().segments(0, 3, [5, 6]).set(0, 7, { head: header(0, 7, 4), hasRecords: false }).segments(1, 3, [3, 4]);
    const chains = new FakeChains()
      .add(loaded(0, 3, 2, 5))
      .add(loaded(0, 4, 2, 7))
      .add(loaded(1, 3, 2, 3));
    const c = chooseSnapshotSet(dir, disk.listings(), chains.load, disk.peek, undefined);
    expect(c.shards).toBe(2);
    expect(c.bases.get(0)).toMatchObject({ epoch: 3, coversBelow: 5 });
    expect(c.bases.get(1)).toMatchObject({ epoch: 3, coversBelow: 3 });
    expect(chains.calls).toEqual([
      [0, Infinity],
      [1, Infinity],
      [0, 3],
      [1, 3],
    ]);
  });

  it('passes over several incomplete sets in a row while nothing was logged under them', () => {
    const disk = new FakeDisk()
      .segments(0, 2, [2])
      .set(0, 3, { head: header(0, 3, 3), hasRecords: false })
      .set(0, 4, { head: header(0, 4, 4), hasRecords: false })
      .segments(1, 2, [1]);
    const chains = new FakeChains()
      .add(loaded(0, 2, 2, 2))
      .add(loaded(0, 3, 2, 3))
      .add(loaded(0, 4, 2, 4))
      .add(loaded(1, 2, 2, 1));
    const c = chooseSnapshotSet(dir, disk.listings(), chains.load, disk.peek, undefined);
    expect(c.bases.get(0)).toMatchObject({ epoch: 2, coversBelow: 2 });
    expect(chains.calls.map(([, e]) => e)).toEqual([Infinity, Infinity, 3, 3, 2, 2]);
  });

  it('an incomplete newest set with records logged since is ERR_CORRUPT_SNAPSHOT naming the expected files', () => {
    // Epoch 4 ran with 3 shards; shard 1's and shard 2's snapshots of epoch 4 are gone, and
    // shard 0 logged records under epoch 4.
    const disk = new FakeDisk()
      .segments(0, 4, [7, 8])
      .segments(1, 3, [3])
      .set(1, 4, { head: header(1, 4, 4), hasRecords: false })
      .set(1, 5, { head: header(1, 5, 4), hasRecords: false });
    const chains = new FakeChains()
      .add(loaded(0, 3, 2, 5))
      .add(loaded(0, 4, 3, 7))
      .add(loaded(1, 3, 2, 3));
    chains.fallbacks.set(1, [{ file: snap(1, 4), reason: 'bad magic' }]);
    const err = thrown(() => chooseSnapshotSet(dir, disk.listings(), chains.load, disk.peek, undefined));
    expect(err.code).toBe('ERR_CORRUPT_SNAPSHOT');
    // Shard 1's first segment of epoch 4 is 4; shard 2 has no directory at all.
    const expected = [snap(1, 4), join(dir, 'shard-2', '<seq>.snap')];
    expect(err.message).toBe(
      `${dir}: no valid snapshot of epoch 4 for shard 1, 2 (expected ${expected.join(', ')}) and the WAL before it is gone (${snap(1, 4)}: bad magic)`,
    );
    expect(err.details).toMatchObject({ dir, epoch: 4, shards: [1, 2], files: expected });
  });

  it('with onlyShard (a one-shard inspection) takes the newest snapshot even when its set is incomplete', () => {
    const disk = new FakeDisk().segments(0, 4, [7, 8]).segments(1, 3, [3]);
    const chains = new FakeChains().add(loaded(0, 4, 2, 7)).add(loaded(1, 3, 2, 3));
    const c = chooseSnapshotSet(dir, disk.listings(), chains.load, disk.peek, 0);
    expect(c.shards).toBe(2);
    expect(c.bases.get(0)).toMatchObject({ epoch: 4 });
    expect(chains.calls).toEqual([
      [0, Infinity],
      [1, Infinity],
    ]);
  });

  it('the shard count is that of the newest epoch: a complete smaller run after a larger one is complete', () => {
    // Epoch 2 ran with 3 shards, epoch 3 with 2: shard 2's epoch-2 snapshot is not needed.
    const disk = new FakeDisk().segments(0, 3, [4]).segments(1, 3, [4]).segments(2, 2, [2]);
    const chains = new FakeChains()
      .add(loaded(0, 3, 2, 4))
      .add(loaded(1, 3, 2, 4))
      .add(loaded(2, 2, 3, 2));
    const c = chooseSnapshotSet(dir, disk.listings(), chains.load, disk.peek, undefined);
    expect(c.shards).toBe(2);
    expect(c.bases.size).toBe(3);
    expect(chains.calls).toHaveLength(3);
  });
});

describe('planReplay', () => {
  it('plans from each snapshot seq to the newest segment, in (shard, seq) order, newest only on the last', () => {
    const disk = new FakeDisk().segments(0, 3, [3, 4, 5, 6]).segments(1, 3, [1, 2]);
    const plan = planReplay(dir, disk.listings(), choice([loaded(0, 3, 2, 4), loaded(1, 3, 2, 1)], 2), disk.peek, disk.allZero);
    expect(plan).toEqual({
      tasks: [
        { file: wal(0, 4), shard: 0, seq: 4, newest: false },
        { file: wal(0, 5), shard: 0, seq: 5, newest: false },
        { file: wal(0, 6), shard: 0, seq: 6, newest: true },
        { file: wal(1, 1), shard: 1, seq: 1, newest: false },
        { file: wal(1, 2), shard: 1, seq: 2, newest: true },
      ],
      unwritten: [],
    });
    // Segments below a snapshot are not even looked at.
    expect(disk.peeked).not.toContain(wal(0, 3));
  });

  it('without any snapshot, replays every shard from segment 1', () => {
    const disk = new FakeDisk().segments(0, 1, [1, 2, 3]).segments(1, 1, [1]);
    const plan = planReplay(dir, disk.listings(), choice([], 0), disk.peek, disk.allZero);
    expect(plan.tasks.map((t) => [t.shard, t.seq, t.newest])).toEqual([
      [0, 1, false],
      [0, 2, false],
      [0, 3, true],
      [1, 1, true],
    ]);
    expect(plan.unwritten).toEqual([]);
  });

  it('a shard directory with no segment and no snapshot plans nothing', () => {
    const plan = planReplay(dir, [{ shard: 0, segments: [] }], choice([], 0), new FakeDisk().peek, new FakeDisk().allZero);
    expect(plan).toEqual({ tasks: [], unwritten: [] });
  });

  it('a gap in the sequence is ERR_CORRUPT_WAL naming the missing segment', () => {
    const disk = new FakeDisk().segments(0, 3, [4, 5, 7, 8]);
    const err = thrown(() => planReplay(dir, disk.listings(), choice([loaded(0, 3, 1, 4)], 1), disk.peek, disk.allZero));
    expect(err.code).toBe('ERR_CORRUPT_WAL');
    expect(err.message).toBe(`${wal(0, 6)} at offset 0: segment missing from the sequence`);
    expect(err.details).toEqual({ file: wal(0, 6), offset: 0, reason: 'segment missing from the sequence' });
  });

  it('a gap without any snapshot is ERR_CORRUPT_WAL too', () => {
    const disk = new FakeDisk().segments(0, 1, [1, 3]);
    const err = thrown(() => planReplay(dir, disk.listings(), choice([], 0), disk.peek, disk.allZero));
    expect(err.code).toBe('ERR_CORRUPT_WAL');
    expect(err.details.file).toBe(wal(0, 2));
  });

  it('snapshot S without segment S is ERR_CORRUPT_WAL naming segment S', () => {
    const disk = new FakeDisk().segments(0, 3, [5, 6]);
    const err = thrown(() => planReplay(dir, disk.listings(), choice([loaded(0, 3, 1, 4)], 1), disk.peek, disk.allZero));
    expect(err.code).toBe('ERR_CORRUPT_WAL');
    expect(err.message).toBe(`${wal(0, 4)} at offset 0: segment missing: snapshot 0000000004.snap continues with it`);
    expect(err.details.file).toBe(wal(0, 4));
  });

  it('snapshot S with only older segments left is ERR_CORRUPT_WAL naming segment S', () => {
    const disk = new FakeDisk().segments(0, 3, [2, 3]);
    const err = thrown(() => planReplay(dir, disk.listings(), choice([loaded(0, 3, 1, 4)], 1), disk.peek, disk.allZero));
    expect(err.code).toBe('ERR_CORRUPT_WAL');
    expect(err.details.file).toBe(wal(0, 4));
  });

  it('segment S missing after a fallback to an older snapshot is ERR_CORRUPT_SNAPSHOT (the newer one was bad, its WAL retired)', () => {
    const disk = new FakeDisk().segments(0, 3, [6, 7]);
    const fallbacks = [{ file: snap(0, 6), reason: 'checksum mismatch' }];
    const err = thrown(() => planReplay(dir, disk.listings(), choice([loaded(0, 3, 1, 4)], 1, fallbacks), disk.peek, disk.allZero));
    expect(err.code).toBe('ERR_CORRUPT_SNAPSHOT');
    expect(err.message).toBe(`${join(dir, 'shard-0')}: newest snapshot invalid (${snap(0, 6)}: checksum mismatch) and the WAL after the previous one (from ${wal(0, 4)}) is gone`);
    expect(err.details).toMatchObject({ dir: join(dir, 'shard-0'), from: 4, file: snap(0, 6), files: [snap(0, 6)], fallbacks });
  });

  it('a segment missing after its shard snapshot is ERR_CORRUPT_WAL naming it, even when another shard fell back from a bad snapshot', () => {
    // Found by damage-fuzz: shard 1's newest snapshot was bad (it fell back), shard 0's first
    // segment after its valid snapshot was deleted, and the refusal said "shard-0: newest
    // snapshot invalid", naming no file.
    const disk = new FakeDisk().segments(0, 3, [5]).segments(1, 3, [3, 4]);
    const fallbacks = [{ file: snap(1, 4), reason: 'checksum mismatch' }];
    const err = thrown(() => planReplay(dir, disk.listings(), choice([loaded(0, 3, 2, 4), loaded(1, 3, 2, 3)], 2, fallbacks), disk.peek, disk.allZero));
    expect(err.code).toBe('ERR_CORRUPT_WAL');
    expect(err.message).toBe(`${wal(0, 4)} at offset 0: segment missing: snapshot 0000000004.snap continues with it`);
  });

  it('a newest segment sealed as rotated without its successor is ERR_CORRUPT_WAL naming seq + 1', () => {
    const disk = new FakeDisk().segments(0, 3, [4, 5]).set(0, 6, { head: header(0, 6, 3, kSealRotated, 9000), hasRecords: true });
    const err = thrown(() => planReplay(dir, disk.listings(), choice([loaded(0, 3, 1, 4)], 1), disk.peek, disk.allZero));
    expect(err.code).toBe('ERR_CORRUPT_WAL');
    expect(err.message).toBe(`${wal(0, 7)} at offset 0: segment missing: 0000000006.wal was sealed when its writer moved on to it`);
    expect(err.details.file).toBe(wal(0, 7));
  });

  it('the newest segment swapped with an older one is refused naming the newest, not a missing successor', () => {
    // Found by damage-fuzz: 0000000006.wal holds segment 4's content (sealed as rotated). Its
    // seal says nothing about segment 7: the header is not this file's.
    const disk = new FakeDisk().segments(0, 3, [4, 5]).set(0, 6, { head: header(0, 4, 3, kSealRotated, 9000), hasRecords: true });
    const err = thrown(() => planReplay(dir, disk.listings(), choice([loaded(0, 3, 1, 4)], 1), disk.peek, disk.allZero));
    expect(err.code).toBe('ERR_CORRUPT_WAL');
    expect(err.message).toBe(`${wal(0, 6)} at offset 0: header says shard 0 seq 4`);
    expect(err.details).toEqual({ file: wal(0, 6), offset: 0, reason: 'header does not match file name' });
    // Another shard's segment under this name: the same.
    disk.set(0, 6, { head: header(1, 6, 3, kSealClosed, 9000), hasRecords: true });
    expect(thrown(() => planReplay(dir, disk.listings(), choice([loaded(0, 3, 1, 4)], 1), disk.peek, disk.allZero)).message).toBe(`${wal(0, 6)} at offset 0: header says shard 1 seq 6`);
  });

  it('a newest segment sealed as closed, unsealed, or sealed before the seal byte existed is fine', () => {
    for (const head of [header(0, 5, 3, kSealClosed, 9000), header(0, 5, 3), header(0, 5, 3, kSealNone, 9000)]) {
      const disk = new FakeDisk().segments(0, 3, [4]).set(0, 5, { head, hasRecords: true });
      const plan = planReplay(dir, disk.listings(), choice([loaded(0, 3, 1, 4)], 1), disk.peek, disk.allZero);
      expect(plan.tasks.map((t) => [t.seq, t.newest]), JSON.stringify(head)).toEqual([
        [4, false],
        [5, true],
      ]);
    }
  });

  it('reports trailing all-zero segments as unwritten, does not replay them, and marks the last written one newest', () => {
    const disk = new FakeDisk().segments(0, 3, [4, 5, 6]).zeroed(0, 7, true).zeroed(0, 8, true);
    // What an older version left: 6 sealed before the seal byte existed (a sealed end, no
    // kind), and a crash while it created 7 (and 8).
    disk.set(0, 6, { head: header(0, 6, 3, kSealNone, 5000), hasRecords: true });
    const plan = planReplay(dir, disk.listings(), choice([loaded(0, 3, 1, 4)], 1), disk.peek, disk.allZero);
    expect(plan.tasks.map((t) => [t.seq, t.newest])).toEqual([
      [4, false],
      [5, false],
      [6, true],
    ]);
    expect(plan.unwritten).toEqual([wal(0, 8), wal(0, 7)]);
  });

  it('an all-zero segment after one sealed as rotated or closed is ERR_CORRUPT_WAL naming it, not passed over as never written', () => {
    // Found by damage-fuzz: the newest segment of a cleanly closed directory, its records all in
    // its first 512 bytes, zeroed: open passed it over as "nothing written" and lost its draws.
    // A rotated or closed seal is written only by versions that name a segment with its header.
    for (const seal of [kSealRotated, kSealClosed]) {
      const disk = new FakeDisk().segments(0, 3, [4, 5]).set(0, 6, { head: header(0, 6, 3, seal, 5000), hasRecords: true }).zeroed(0, 7, true).zeroed(0, 8, true);
      const err = thrown(() => planReplay(dir, disk.listings(), choice([loaded(0, 3, 1, 4)], 1), disk.peek, disk.allZero));
      expect(err.code).toBe('ERR_CORRUPT_WAL');
      expect(err.message).toBe(`${wal(0, 7)} at offset 0: segment is all zeros, but 0000000006.wal before it was sealed ${seal === kSealRotated ? 'rotated' : 'closed'}, so it was named with its header`);
      expect(err.details.file).toBe(wal(0, 7));
    }
    // Also when the zeroed segment is the one the snapshot continues with (its predecessor is
    // below the snapshot, and still on disk).
    const disk = new FakeDisk().segments(0, 3, [3]).set(0, 3, { head: header(0, 3, 3, kSealRotated, 5000), hasRecords: true }).zeroed(0, 4, true);
    expect(thrown(() => planReplay(dir, disk.listings(), choice([loaded(0, 3, 1, 4)], 1), disk.peek, disk.allZero)).details.file).toBe(wal(0, 4));
  });

  it("the segment a snapshot continues with, all zeros, is ERR_CORRUPT_WAL when the snapshot says it was written after that segment was named", () => {
    // Found by damage-fuzz too: after a reopen retired the older segments, the only segment
    // (the first of the run) zeroed whole was passed over, with every draw of the run.
    const disk = new FakeDisk().zeroed(0, 4, true);
    const base = { ...loaded(0, 3, 1, 4), segmentCreated: true };
    const err = thrown(() => planReplay(dir, disk.listings(), choice([base], 1), disk.peek, disk.allZero));
    expect(err.code).toBe('ERR_CORRUPT_WAL');
    expect(err.message).toBe(`${wal(0, 4)} at offset 0: segment is all zeros, but snapshot 0000000004.snap was written after it was named with its header`);
    // A later all-zero segment after a segment with records and no such seal: still an older
    // version's leftover.
    const later = new FakeDisk().set(0, 4, { head: header(0, 4, 3), hasRecords: true }).zeroed(0, 5, true);
    expect(planReplay(dir, later.listings(), choice([base], 1), later.peek, later.allZero).unwritten).toEqual([wal(0, 5)]);
  });

  it('a shard whose only segments are all-zero plans no task (a snapshot of an older version)', () => {
    const disk = new FakeDisk().zeroed(0, 4, true);
    const plan = planReplay(dir, disk.listings(), choice([loaded(0, 3, 1, 4)], 1), disk.peek, disk.allZero);
    expect(plan).toEqual({ tasks: [], unwritten: [wal(0, 4)] });
  });

  it('a trailing segment with a zeroed header but data after it is ERR_CORRUPT_WAL', () => {
    const disk = new FakeDisk().segments(0, 3, [4, 5]).zeroed(0, 6, false);
    const err = thrown(() => planReplay(dir, disk.listings(), choice([loaded(0, 3, 1, 4)], 1), disk.peek, disk.allZero));
    expect(err.code).toBe('ERR_CORRUPT_WAL');
    expect(err.message).toBe(`${wal(0, 6)} at offset 0: segment header is zeroed but records follow it`);
    expect(err.details.file).toBe(wal(0, 6));
  });

  it('an all-zero segment before a zeroed one with data is still damage (checked newest first)', () => {
    const disk = new FakeDisk().segments(0, 3, [4]).zeroed(0, 5, false).zeroed(0, 6, true);
    const err = thrown(() => planReplay(dir, disk.listings(), choice([loaded(0, 3, 1, 4)], 1), disk.peek, disk.allZero));
    expect(err.code).toBe('ERR_CORRUPT_WAL');
    expect(err.details.file).toBe(wal(0, 5));
  });

  it('no snapshot and a WAL that does not start at 1 is ERR_CORRUPT_SNAPSHOT naming the expected .snap file', () => {
    const disk = new FakeDisk().segments(0, 1, [1, 2]).segments(1, 2, [3, 4]);
    const fallbacks = [{ file: snap(1, 3), reason: 'bad magic' }];
    const err = thrown(() => planReplay(dir, disk.listings(), choice([], 0, fallbacks), disk.peek, disk.allZero));
    expect(err.code).toBe('ERR_CORRUPT_SNAPSHOT');
    const shardDir = join(dir, 'shard-1');
    expect(err.message).toBe(`${shardDir}: no valid snapshot (expected ${snap(1, 3)}; passed over ${snap(1, 3)}: bad magic), and the WAL starts at segment 3, not 1`);
    expect(err.details).toEqual({ dir: shardDir, file: snap(1, 3), firstSegment: 3, fallbacks });
  });

  it('skips shard directories at or above the chosen set shard count, and those without a base', () => {
    // The chosen set (epoch 3) has 2 shards; shard 2 is from an older 3-shard run (its base is
    // older), shard 3 has no snapshot at all and would otherwise fail the "starts at 1" check.
    const disk = new FakeDisk()
      .segments(0, 3, [5])
      .segments(1, 3, [5])
      .segments(2, 2, [3, 4])
      .segments(3, 2, [3, 4]);
    const bases = [loaded(0, 3, 2, 5), loaded(1, 3, 2, 5), loaded(2, 2, 3, 3)];
    const plan = planReplay(dir, disk.listings(), choice(bases, 2), disk.peek, disk.allZero);
    expect(plan.tasks.map((t) => [t.shard, t.seq, t.newest])).toEqual([
      [0, 5, true],
      [1, 5, true],
    ]);
    expect(disk.peeked.some((f) => f.includes('shard-2') || f.includes('shard-3'))).toBe(false);
  });
});
