import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { NodePosition } from '../../src/replication/log.js';
import { freshWindowMs, kPositionEveryMs, PositionReporter, trimPoint } from '../../src/replication/positions.js';
import { MemoryLog, overriding } from '../helpers/memory-log.js';

/* positions.ts: how far a leader may trim a subject, and a node's reports of where it stands. */

const kFresh = 30_000;

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(1_000_000_000);
});

afterEach(() => {
  vi.useRealTimers();
});

describe('freshWindowMs', () => {
  it('is 30 s, or 10 leases when that is longer', () => {
    expect(freshWindowMs(200)).toBe(30_000);
    expect(freshWindowMs(3000)).toBe(30_000);
    expect(freshWindowMs(3001)).toBe(30_010);
    expect(freshWindowMs(60_000)).toBe(600_000);
  });
});

describe('trimPoint', () => {
  it('records its own position first, then trims up to keepFrom when no other node is behind', async () => {
    const log = new MemoryLog();
    expect(await trimPoint(log, 'leader', [40, 7], 0, 31, kFresh)).toBe(31);
    expect(log.calls).toEqual(['positionPut:leader:40,7', 'positions']);
    expect((await log.positions()).map((p) => [p.node, p.seqs])).toEqual([['leader', [40, 7]]]);
  });

  it('keeps every message a fresh node has yet to apply (its position + 1), per shard', async () => {
    const log = new MemoryLog();
    const now = Date.now();
    log.setPosition('f1', [12, 3], now - 1000);
    log.setPosition('f2', [20, 1], now);
    expect(await trimPoint(log, 'leader', [40, 7], 0, 31, kFresh)).toBe(13);
    expect(await trimPoint(log, 'leader', [40, 7], 1, 5, kFresh)).toBe(2);
    // A node ahead of keepFrom does not move it.
    log.setPosition('f1', [35, 9], now);
    log.setPosition('f2', [36, 9], now);
    expect(await trimPoint(log, 'leader', [40, 9], 0, 31, kFresh)).toBe(31);
  });

  it('a node with no position for the shard (0 or missing) holds the whole subject', async () => {
    const log = new MemoryLog();
    log.setPosition('new', [0], Date.now());
    expect(await trimPoint(log, 'leader', [40, 7], 0, 31, kFresh)).toBe(1);
    expect(await trimPoint(log, 'leader', [40, 7], 1, 5, kFresh)).toBe(1); // seqs[1] missing
  });

  it('ignores a node whose position is older than the window (by the store clock), counts one exactly at its edge', async () => {
    const log = new MemoryLog();
    const now = Date.now();
    log.setPosition('gone', [2], now - kFresh - 1);
    expect(await trimPoint(log, 'leader', [40], 0, 31, kFresh)).toBe(31);
    log.setPosition('edge', [5], now - kFresh);
    expect(await trimPoint(log, 'leader', [40], 0, 31, kFresh)).toBe(6);
  });

  it('the window is measured from its own record, not the local clock', async () => {
    const log = new MemoryLog();
    const now = Date.now();
    log.setPosition('f', [2], now - 10_000);
    // The store's clock: the leader's own position is recorded "later" than the local now.
    const skewed = overriding(log, {
      positions: async (): Promise<NodePosition[]> => (await log.positions()).map((p) => (p.node === 'leader' ? { ...p, at: p.at + 25_000 } : p)),
    });
    expect(await trimPoint(skewed, 'leader', [40], 0, 31, kFresh)).toBe(31); // 35 s behind the leader's record: stale
    expect(await trimPoint(log, 'leader', [40], 0, 31, kFresh)).toBe(3);
  });

  it('ignores its own position, however low', async () => {
    const log = new MemoryLog();
    expect(await trimPoint(log, 'leader', [0], 0, 31, kFresh)).toBe(31);
  });

  it('returns 0 (trim nothing) when it cannot see its own position', async () => {
    const log = new MemoryLog();
    const blind = overriding(log, {
      positions: async (): Promise<NodePosition[]> => (await log.positions()).filter((p) => p.node !== 'leader'),
    });
    expect(await trimPoint(blind, 'leader', [40], 0, 31, kFresh)).toBe(0);
    log.setPosition('f', [50], Date.now());
    expect(await trimPoint(blind, 'leader', [40], 0, 31, kFresh)).toBe(0);
  });
});

describe('PositionReporter', () => {
  function reporter(log: MemoryLog, seqs: { v: number[] }): PositionReporter {
    return new PositionReporter(log, 'node-a', () => seqs.v);
  }
  const puts = (log: MemoryLog): string[] => log.calls.filter((c) => c.startsWith('positionPut'));

  it('reports a position once, then again only when it moved', async () => {
    const log = new MemoryLog();
    const seqs = { v: [1, 2] };
    const r = reporter(log, seqs);
    await r.report(false);
    await r.report(false);
    expect(puts(log)).toEqual(['positionPut:node-a:1,2']);
    seqs.v = [1, 3];
    await r.report(false);
    await r.report(false);
    expect(puts(log)).toEqual(['positionPut:node-a:1,2', 'positionPut:node-a:1,3']);
    expect((await log.positions())[0]).toMatchObject({ node: 'node-a', seqs: [1, 3] });
  });

  it('reports an unchanged position again after 10 s, so it stays fresh; force reports at once', async () => {
    const log = new MemoryLog();
    const r = reporter(log, { v: [4] });
    await r.report(false);
    await vi.advanceTimersByTimeAsync(9_999);
    await r.report(false);
    expect(puts(log)).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    await r.report(false);
    expect(puts(log)).toHaveLength(2);
    await r.report(true);
    expect(puts(log)).toHaveLength(3);
  });

  it('never throws: a failed report resolves, and the next tick tries again', async () => {
    const log = new MemoryLog();
    const r = reporter(log, { v: [4] });
    log.failNext('positionPut');
    await expect(r.report(false)).resolves.toBeUndefined();
    expect(await log.positions()).toEqual([]);
    await r.report(false); // the same position: not yet recorded, so it goes again
    expect((await log.positions()).map((p) => p.seqs)).toEqual([[4]]);
    log.setUnavailable(true);
    await expect(r.report(true)).resolves.toBeUndefined();
  });

  it('start() reports every second while the position moves, stop() ends it', async () => {
    const log = new MemoryLog();
    const seqs = { v: [1] };
    const r = reporter(log, seqs);
    r.start();
    await vi.advanceTimersByTimeAsync(kPositionEveryMs);
    seqs.v = [2];
    await vi.advanceTimersByTimeAsync(kPositionEveryMs);
    await vi.advanceTimersByTimeAsync(kPositionEveryMs); // unchanged: nothing
    expect(puts(log)).toEqual(['positionPut:node-a:1', 'positionPut:node-a:2']);
    r.stop();
    seqs.v = [3];
    await vi.advanceTimersByTimeAsync(5 * kPositionEveryMs);
    expect(puts(log)).toHaveLength(2);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('one report at a time: a call while one is in flight returns without writing', async () => {
    const log = new MemoryLog();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow = overriding(log, {
      positionPut: async (node: string, seqs: number[]): Promise<void> => {
        await gate;
        await log.positionPut(node, seqs);
      },
    });
    const r = new PositionReporter(slow, 'node-a', () => [9]);
    const first = r.report(true);
    await r.report(true);
    release();
    await first;
    expect(puts(log)).toEqual(['positionPut:node-a:9']);
  });
});
