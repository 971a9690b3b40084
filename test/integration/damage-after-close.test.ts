/**
 * Damage to a shard's newest segment is refused, never taken for a torn write (issue 7, item 3).
 * A torn tail exists only where the process died while writing; after a clean close the
 * newest segment is sealed, and a shard's sequence must continue from its snapshot. So a
 * deleted, truncated or zeroed newest segment, or a zeroed header, is ERR_CORRUPT_WAL naming the
 * file, and nothing on disk is changed by the refusal.
 */
import { existsSync, readFileSync, statSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { allStates, DrawEngine, expectCode, KiB, useEngines, type States } from '../helpers/engine.js';
import { copyToTmp, tmpDir } from '../helpers/tmp.js';
import { fingerprint, readRecords, segmentFiles, snapshotFiles, unsealFile } from '../helpers/wal-files.js';

const openEngine = useEngines();
const kSegment = 64 * KiB;

/** A cleanly closed one-shard directory; `rotations` says whether the newest segment follows others. */
async function closedDir(rotations: boolean): Promise<{ dir: string; states: States }> {
  const dir = tmpDir(rotations ? 'damage-multi' : 'damage-single');
  const engine = await openEngine({ dir, shards: 1, segmentBytes: kSegment, snapshotEveryRecords: 0 });
  await engine.createPool('p', [
    { id: 'rare', weight: 1, quantity: 50_000 },
    { id: 'mud', weight: 4, quantity: -1 },
  ]);
  if (rotations) await engine.drawMany('p', 200_000);
  for (let i = 0; i < 12; i++) await engine.drawMany('p', 500 + i);
  await engine.updateItem('p', 'rare', { weight: 3 });
  await engine.drawMany('p', 77);
  const states = await allStates(engine);
  await engine.close();
  const segs = segmentFiles(dir, 0);
  expect(segs.length > 1).toBe(rotations);
  return { dir, states };
}

/** Open must refuse with ERR_CORRUPT_WAL naming `file`, and leave every file as it was. */
async function expectRefused(dir: string, file: string): Promise<void> {
  const before = fingerprint(dir);
  const err = await expectCode(DrawEngine.open({ dir, shards: 1, segmentBytes: kSegment }), 'ERR_CORRUPT_WAL', file);
  expect(err.details.file).toBe(file);
  const after = fingerprint(dir);
  delete after.LOCK;
  delete before.LOCK;
  expect(after).toEqual(before);
}

describe.each([false, true])('after a clean close (rotations: %s)', (rotations) => {
  it('the untouched directory reopens with identical state (control)', async () => {
    const { dir, states } = await closedDir(rotations);
    const engine = await openEngine({ dir, shards: 1, segmentBytes: kSegment });
    expect(await allStates(engine)).toEqual(states);
  });

  it('deleting the newest segment is refused', async () => {
    const { dir } = await closedDir(rotations);
    const newest = segmentFiles(dir, 0).at(-1)!;
    unlinkSync(newest);
    await expectRefused(dir, newest);
  });

  it('truncating the newest segment at any record boundary is refused', async () => {
    const { dir } = await closedDir(rotations);
    const newest = segmentFiles(dir, 0).at(-1)!;
    const { records } = readRecords(newest);
    expect(records.length).toBeGreaterThan(5);
    for (const rec of records) {
      const copy = copyToTmp(dir, 'damage-cut');
      const file = newest.replace(dir, copy);
      truncateSync(file, rec.offset);
      await expectRefused(copy, file);
    }
  });

  it('zeroing the newest segment from any record boundary to its end is refused', async () => {
    const { dir } = await closedDir(rotations);
    const newest = segmentFiles(dir, 0).at(-1)!;
    const { records, buf } = readRecords(newest);
    for (const rec of records) {
      const copy = copyToTmp(dir, 'damage-zero');
      const file = newest.replace(dir, copy);
      const zeroed = Buffer.from(buf);
      zeroed.fill(0, rec.offset);
      writeFileSync(file, zeroed);
      await expectRefused(copy, file);
    }
  });

  it('zeroing the newest segment header is refused, and the file with its records is kept', async () => {
    const { dir } = await closedDir(rotations);
    const newest = segmentFiles(dir, 0).at(-1)!;
    const buf = readFileSync(newest);
    buf.fill(0, 0, 64);
    writeFileSync(newest, buf);
    await expectRefused(dir, newest);
    expect(existsSync(newest)).toBe(true);
    expect(statSync(newest).size).toBe(kSegment);
  });
});

describe('after a crash', () => {
  it('deleting the newest segment is still refused when the one before it was sealed for rotation', async () => {
    const { dir } = await closedDir(true);
    const segs = segmentFiles(dir, 0);
    const newest = segs.at(-1)!;
    // As a crash leaves it: the newest unsealed; the one before sealed when the writer rotated.
    unsealFile(newest);
    unlinkSync(newest);
    await expectRefused(dir, newest);
  });

  it('a newest segment left unsealed by a crash still opens, and its tail counts as torn (control)', async () => {
    const { dir, states } = await closedDir(true);
    unsealFile(segmentFiles(dir, 0).at(-1)!);
    const engine = await openEngine({ dir, shards: 1, segmentBytes: kSegment });
    expect(await allStates(engine)).toEqual(states);
    expect(engine.recovery.tornTails).toEqual([]);
  });
});

it('the snapshot a shard starts from names the segment that must follow it', async () => {
  const { dir } = await closedDir(false);
  // The open-time snapshot sits at the first segment of the run; that segment is the newest.
  const snap = snapshotFiles(dir, 0).at(-1)!;
  const newest = segmentFiles(dir, 0).at(-1)!;
  expect(newest.replace(/\.wal$/, '')).toBe(snap.replace(/\.snap$/, ''));
  unlinkSync(newest);
  const err = await expectCode(DrawEngine.open({ dir, shards: 1 }), 'ERR_CORRUPT_WAL', newest);
  expect(err.message).toContain('snapshot');
});
