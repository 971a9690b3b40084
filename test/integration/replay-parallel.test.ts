/**
 * Parallel replay: decoding segments on a piscina pool must give exactly what decoding them one
 * after the other on the calling thread gives. The directory is built once: two shards, 1 MiB
 * segments (many per shard), no automatic snapshots, creations, weight and quantity updates
 * interleaved with draws (so folding the segments out of order would show), a 300-item pool
 * (two-byte draw records) and about 34 MiB of records. recoverDir is compared with the pool
 * forced on (parallelThreshold: 0); DrawEngine.open uses the default threshold
 * (kParallelReplayBytes), so its thread count is checked against it.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { kParallelReplayBytes, recoverDir, type RecoveredState } from '../../dist/src/recovery/recover.js';
import { allStates, DrawEngine, EngineError, MiB, useEngines, type PoolState, type States } from '../helpers/engine.js';
import { copyToTmp, tmpDir } from '../helpers/tmp.js';
import { fingerprint, segmentFiles, unsealed } from '../helpers/wal-files.js';

const segmentBytes = 1 * MiB;

const openEngine = useEngines();

/** Recovered pools as PoolState records, pool ids sorted. */
function asStates(state: RecoveredState): States {
  const out: States = {};
  for (const id of [...state.pools.keys()].sort()) {
    const p = state.pools.get(id)!;
    out[id] = {
      id,
      lastRequestId: p.lastRequestId,
      items: p.itemIds.map((itemId, i) => ({ id: itemId, weight: p.weights[i]!, quantity: p.quantities[i]!, drawn: p.drawn[i]! })),
    };
  }
  return out;
}

/** A stable serialization: pool ids sorted, fixed key order. */
function stableJson(state: RecoveredState): string {
  return JSON.stringify(
    [...state.pools.keys()].sort().map((id) => {
      const p = state.pools.get(id)!;
      return [id, p.itemIds, Array.from(p.weights), Array.from(p.quantities), Array.from(p.drawn), p.lastRequestId];
    }),
  );
}

let source: string;
let expected: States;
let drawsMade: number;

beforeAll(async () => {
  source = tmpDir('replay-source');
  const engine = await DrawEngine.open({ dir: source, shards: 2, wal: 'mmap', sync: 'never', segmentBytes, snapshotEveryRecords: 0, seed: 7 });
  try {
    const pools: string[] = [];
    drawsMade = 0;
    const create = async (id: string, items: { id: string; weight: number; quantity: number }[]): Promise<void> => {
      await engine.createPool(id, items);
      pools.push(id);
    };
    for (let i = 0; i < 6; i++) {
      await create(`p${i}`, [
        { id: 'rare', weight: 1, quantity: 200_000 + i },
        { id: 'common', weight: 9, quantity: 1_000_000 },
        { id: 'filler', weight: 30, quantity: -1 },
      ]);
    }
    await create('wide', Array.from({ length: 300 }, (_, i) => ({ id: `w${i}`, weight: 1 + (i % 11), quantity: i % 3 === 0 ? -1 : 5_000 })));
    const base = pools.slice();
    // Record bytes per round: 6 x 160k + 60k x 2 bytes = ~1.08 MB; 32 rounds: ~34 MiB.
    for (let round = 0; round < 32; round++) {
      // Even with every pool on one shard, at most 1.02 M draws in flight: below the default
      // maxPending, so no call has to wait.
      const calls: Promise<unknown>[] = base.map((id) => engine.drawMany(id, id === 'wide' ? 60_000 : 160_000));
      for (let k = 0; k < 20; k++) calls.push(engine.draw(base[k % base.length]!));
      await Promise.all(calls);
      drawsMade += 6 * 160_000 + 60_000 + 20;
      // Updates ordered between draws: a replay that folds segments out of order gets these wrong.
      const p = base[round % 6]!;
      await engine.updateItem(p, 'rare', { quantity: 50_000 + round, weight: 1 + (round % 4) });
      await engine.updateItem('wide', `w${(round * 7) % 300}`, { weight: 2 + round });
      if (round === 8 || round === 25) await create(`late${round}`, [{ id: 'only', weight: 1, quantity: 1_000_000 }]);
      if (round > 8 && pools.includes('late8')) {
        await engine.drawMany('late8', 10_000);
        drawsMade += 10_000;
      }
    }
    expected = await allStates(engine);
  } finally {
    await engine.close();
  }
}, 60_000);

describe('parallel replay', () => {
  it('recoverDir with 1 and 2 replay threads gives identical pools; readOnly changes nothing', async () => {
    for (const k of [0, 1]) expect(segmentFiles(source, k).length, `segments of shard ${k}`).toBeGreaterThanOrEqual(8);
    const before = fingerprint(source);

    const serial = await recoverDir(source, { replayThreads: 1, readOnly: true });
    const parallel = await recoverDir(source, { replayThreads: 2, readOnly: true, parallelThreshold: 0 });
    expect(serial.report.threads).toBe(1);
    expect(parallel.report.threads).toBe(2);

    expect(parallel.pools).toEqual(serial.pools);
    expect(stableJson(parallel)).toBe(stableJson(serial));
    expect(asStates(serial)).toEqual(expected);
    expect(parallel.maxRequestId).toBe(serial.maxRequestId);
    expect(parallel.maxRequestId).toBe(Math.max(...Object.values(expected).map((s) => s.lastRequestId)));

    for (const key of ['segments', 'records', 'drawsReplayed', 'bytes', 'maxRequestId', 'pools', 'epoch', 'snapshotsLoaded'] as const) {
      expect(parallel.report[key], key).toBe(serial.report[key]);
    }
    expect(serial.report.segments).toBe(segmentFiles(source, 0).length + segmentFiles(source, 1).length);
    expect(serial.report.drawsReplayed).toBe(drawsMade);
    expect(parallel.report.tornTails).toEqual([]);
    expect(parallel.report.removedSegments).toEqual([]);

    // The default threshold starts replay threads only past kParallelReplayBytes of records.
    const byDefault = await recoverDir(source, { replayThreads: 2, readOnly: true });
    expect(byDefault.report.threads).toBe(byDefault.report.bytes >= kParallelReplayBytes ? 2 : 1);
    expect(stableJson(byDefault)).toBe(stableJson(serial));

    expect(fingerprint(source)).toEqual(before);
  });

  it('DrawEngine.open with replayThreads 1 and 2 on two copies gives identical pool() states', async () => {
    const a = copyToTmp(source, 'replay-a');
    const b = copyToTmp(source, 'replay-b');

    const one = await openEngine({ dir: a, shards: 2, segmentBytes, replayThreads: 1 });
    const two = await openEngine({ dir: b, shards: 2, segmentBytes, replayThreads: 2 });
    expect(one.recovery.threads).toBe(1);
    expect(two.recovery.threads).toBe(two.recovery.bytes >= kParallelReplayBytes ? 2 : 1);
    expect(two.recovery.drawsReplayed).toBe(one.recovery.drawsReplayed);
    const statesOne = await allStates(one);
    const statesTwo = await allStates(two);
    expect(statesTwo).toEqual(statesOne);
    expect(statesOne).toEqual(expected);

    // Both continue from the same place: ids above everything recovered, same ids on both.
    const maxId = Math.max(...Object.values(expected).map((s) => s.lastRequestId));
    const [ra, rb] = [await one.draw('p0'), await two.draw('p0')];
    expect(ra.requestId).toBeGreaterThan(maxId);
    expect(rb.requestId).toBe(ra.requestId);
    await one.close();
    await two.close();

    // And the snapshots they wrote on open recover the same, in another layout.
    const again = await openEngine({ dir: b, shards: 3, segmentBytes, replayThreads: 2 });
    const statesAgain = await allStates(again);
    expect(statesAgain.p0!.lastRequestId).toBe(rb.requestId);
    const drawn = (s: PoolState): number => s.items.reduce((a, i) => a + i.drawn, 0);
    expect(drawn(statesAgain.p0!)).toBe(drawn(expected.p0!) + 1);
    expect({ ...statesAgain, p0: undefined }).toEqual({ ...expected, p0: undefined });
  });

  it('a torn tail and a corrupt older record are reported the same by both paths', async () => {
    const dir = copyToTmp(source, 'replay-damage');

    // Garbage after the last record of shard 1's newest segment: a torn write.
    const newest = segmentFiles(dir, 1).at(-1)!;
    // As the process leaves it when it dies while writing: unsealed, garbage after the records.
    const end = readFileSync(newest).readUInt32LE(32); // sealedEnd
    const buf = unsealed(readFileSync(newest));
    expect(end).toBeGreaterThan(64);
    buf.writeUInt32LE(40, end);
    buf.writeUInt32LE(0xdeadbeef, end + 4);
    buf.fill(0x5a, end + 8, end + 48);
    writeFileSync(newest, buf);

    const serial = await recoverDir(dir, { replayThreads: 1, readOnly: true });
    const parallel = await recoverDir(dir, { replayThreads: 2, readOnly: true, parallelThreshold: 0 });
    expect(parallel.report.threads).toBe(2);
    expect(serial.report.tornTails).toEqual([{ file: newest, offset: end, reason: expect.any(String) }]);
    expect(parallel.report.tornTails).toEqual(serial.report.tornTails);
    expect(stableJson(parallel)).toBe(stableJson(serial));
    expect(asStates(parallel)).toEqual(expected);

    // A flipped byte inside a record of an older segment: corruption, raised from a pool thread
    // with its code, class, file and offset intact.
    const older = segmentFiles(dir, 0)[2]!;
    const obuf = readFileSync(older);
    const recordAt = 64;
    obuf[recordAt + 8 + 12] ^= 0x40; // inside the first record's body
    writeFileSync(older, obuf);
    const errors: unknown[] = [];
    for (const opts of [
      { replayThreads: 1, readOnly: true },
      { replayThreads: 2, readOnly: true, parallelThreshold: 0 },
    ]) {
      errors.push(await recoverDir(dir, opts).then(() => 'resolved', (err: unknown) => err));
    }
    for (const err of errors) {
      expect(err).toBeInstanceOf(EngineError);
      const e = err as EngineError;
      expect(e.code).toBe('ERR_CORRUPT_WAL');
      expect(e.message).toContain(older);
      expect(e.message).toContain(`offset ${recordAt}`);
    }
    expect((errors[1] as EngineError).message).toBe((errors[0] as EngineError).message);
  });
});
