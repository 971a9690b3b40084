/**
 * A shard worker dies (terminated from outside, as a crash would): what was in flight on it is
 * rejected with ERR_SHARD_FAILED, the engine recovers that shard from its snapshot and WAL and
 * starts a new worker (new threadId); acknowledged draws are all there; other shards never notice.
 */
import { once } from 'node:events';
import type { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { tmpDir } from '../helpers/tmp.js';
import { allStates, EngineError, KiB, shardOfPool, useEngines, type DrawEngine, type PoolState } from '../helpers/engine.js';

const openEngine = useEngines();
const kShardWorkers = Symbol.for('reward-pool-engine.shardWorkers');

function workers(engine: DrawEngine): Worker[] {
  return (engine as unknown as Record<symbol, Worker[]>)[kShardWorkers];
}

/** One pool on each of the two shards. */
async function poolsOnBothShards(engine: DrawEngine): Promise<[string, string]> {
  const byShard: (string | undefined)[] = [undefined, undefined];
  for (let i = 0; byShard.includes(undefined) && i < 64; i++) {
    const id = `r-${i}`;
    await engine.createPool(id, [
      { id: 'limited', weight: 1, quantity: 50_000 },
      { id: 'free', weight: 3, quantity: -1 },
    ]);
    const k = await shardOfPool(engine, id);
    byShard[k] ??= id;
  }
  return [byShard[0]!, byShard[1]!];
}

describe.each(['mmap', 'file'] as const)('shard restart, wal %s', (wal) => {
  it('in-flight work is rejected, the shard comes back with a new thread and every acknowledged draw', async () => {
    const dir = tmpDir(`restart-${wal}`);
    const engine = await openEngine({ dir, shards: 2, wal, segmentBytes: 64 * KiB });
    const [victim, bystander] = await poolsOnBothShards(engine);
    // Acknowledged before the crash.
    await engine.drawMany(victim, 100_000);
    await engine.updateItem(victim, 'limited', { weight: 2 });
    await Promise.all(Array.from({ length: 100 }, () => engine.draw(victim)));
    const acked = await engine.pool(victim);
    const bystanderBefore = await engine.pool(bystander);

    const oldThread = engine.shardThreadIds[0]!;
    expect(workers(engine)[0]!.threadId).toBe(oldThread);
    const exited = once(engine, 'shardExit');
    const restarted = once(engine, 'shardRestart');

    // Work in flight on the victim's shard when its worker dies.
    const inflight = [engine.drawMany(victim, 5000), ...Array.from({ length: 20 }, () => engine.draw(victim)), engine.pool(victim)];
    const settled = Promise.allSettled(inflight);
    void workers(engine)[0]!.terminate();

    for (const r of await settled) {
      expect(r.status).toBe('rejected');
      const err = (r as PromiseRejectedResult).reason as EngineError;
      expect(err).toBeInstanceOf(EngineError);
      expect(err.code).toBe('ERR_SHARD_FAILED');
      expect(err.message).toContain('shard 0');
    }
    const [exit] = (await exited) as [{ shard: number; error: EngineError }];
    expect(exit.shard).toBe(0);
    expect(exit.error.code).toBe('ERR_SHARD_FAILED');

    // The other shard is unaffected, also while the victim restarts.
    expect((await engine.draw(bystander)).itemId).not.toBeNull();

    const [info] = (await restarted) as [{ shard: number; threadId: number }];
    expect(info.shard).toBe(0);
    expect(info.threadId).not.toBe(oldThread);
    expect(engine.shardThreadIds[0]).toBe(info.threadId);
    expect(engine.metrics().shards[0]!.restarts).toBe(1);
    expect(engine.metrics().shards[1]!.restarts).toBe(0);

    // Everything acknowledged is back; the rejected draws were never acknowledged, so they may
    // or may not have been logged, but nothing beyond them.
    const back = await engine.pool(victim);
    expect(back.items.map((i) => i.weight)).toEqual([2, 3]);
    const ackedDrawn = acked.items.map((i) => i.drawn);
    back.items.forEach((item, i) => {
      expect(item.drawn).toBeGreaterThanOrEqual(ackedDrawn[i]!);
      if (i === 0) expect(item.quantity + item.drawn).toBe(50_000);
    });
    const extra = back.items.reduce((a, i) => a + i.drawn, 0) - ackedDrawn.reduce((a, b) => a + b, 0);
    expect(extra).toBeLessThanOrEqual(5000 + 20);
    expect(back.lastRequestId).toBeGreaterThanOrEqual(acked.lastRequestId);

    // And it works again, with ids above everything issued before.
    const next = await engine.drawMany(victim, 10);
    expect(next.firstRequestId).toBeGreaterThan(back.lastRequestId);
    const single = await engine.draw(victim);
    expect(single.requestId).toBe(next.firstRequestId + 10);
    expect(engine.poolIds().sort()).toEqual([victim, bystander, ...engine.poolIds().filter((id) => id !== victim && id !== bystander)].sort());
    const bystanderAfter = await engine.pool(bystander);
    expect(bystanderAfter.items.reduce((a, i) => a + i.drawn, 0)).toBe(bystanderBefore.items.reduce((a, i) => a + i.drawn, 0) + 1);

    const final = await allStates(engine);
    await engine.close();
    const reopened = await openEngine({ dir, shards: 2, wal, segmentBytes: 64 * KiB });
    expect(await allStates(reopened)).toEqual(final);
  });
});

/**
 * The same under load: streams of draw() and drawMany() calls on several pools of both shards
 * run the whole time; one shard's worker is terminated in the middle of them.
 */
describe.each([
  ['mmap', 'always', 1],
  ['file', 'interval', 0],
] as const)('shard restart under load, wal %s, sync %s, shard %i dies', (wal, sync, victimShard) => {
  it('only the dead shard\'s calls fail; the others keep resolving; nothing acknowledged is lost', async () => {
    const dir = tmpDir(`restart-load-${wal}`);
    const opts = { dir, shards: 2, wal, sync, segmentBytes: 64 * KiB, snapshotEveryRecords: 50, syncIntervalMs: 5 };
    const engine = await openEngine(opts);

    interface Tally {
      shard: number;
      initial: number[];
      /** Acknowledged successful draws per item index. */
      acked: number[];
      ackedCalls: number;
      ackedAfterExit: number;
      requested: number;
      resolvedDraws: number;
      rejected: EngineError[];
      rejectedDraws: number;
    }
    const tallies = new Map<string, Tally>();
    const byShard: string[][] = [[], []];
    for (let i = 0; byShard[0]!.length < 3 || byShard[1]!.length < 3; i++) {
      expect(i).toBeLessThan(64);
      const id = `load-${i}`;
      const initial = [40_000, 100_000, -1];
      await engine.createPool(id, [
        { id: 'rare', weight: 1, quantity: initial[0]! },
        { id: 'common', weight: 4, quantity: initial[1]! },
        { id: 'junk', weight: 6, quantity: initial[2]! },
      ]);
      const k = await shardOfPool(engine, id);
      byShard[k]!.push(id);
      // shardOfPool made one draw: count it as acknowledged.
      const after = await engine.pool(id);
      tallies.set(id, { shard: k, initial, acked: after.items.map((it) => it.drawn), ackedCalls: 0, ackedAfterExit: 0, requested: 0, resolvedDraws: 0, rejected: [], rejectedDraws: 0 });
    }
    const victims = byShard[victimShard]!;
    const bystanders = byShard[1 - victimShard]!;
    const threadsBefore = engine.shardThreadIds.slice();

    // Event-driven coordination: no sleeps.
    let exited = false;
    let stop = false;
    let restartedResolve!: () => void;
    const restartedSignal = new Promise<void>((r) => (restartedResolve = r));
    const restartInfo = once(engine, 'shardRestart') as Promise<[{ shard: number; threadId: number }]>;
    const exitInfo = once(engine, 'shardExit') as Promise<[{ shard: number; error: EngineError }]>;
    void restartInfo.then(() => restartedResolve());
    // Resolved from record(), as acknowledgements arrive.
    const waiters: { done: () => boolean; resolve: () => void }[] = [];
    const progress = (done: () => boolean): Promise<void> =>
      new Promise<void>((resolve) => {
        if (done()) resolve();
        else waiters.push({ done, resolve });
      });
    const wake = (): void => {
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.done()) waiters.splice(i, 1)[0]!.resolve();
      }
    };

    const record = (id: string, counts: number[]): void => {
      const t = tallies.get(id)!;
      counts.forEach((n, i) => (t.acked[i]! += n));
      t.ackedCalls++;
      if (exited) t.ackedAfterExit++;
      wake();
    };
    /** A drawMany result: successful draws per item index (0xffff marks an empty draw). */
    const recordBatch = (id: string, indices: Uint16Array): void => {
      const counts = [0, 0, 0];
      for (const idx of indices) if (idx !== 0xffff) counts[idx]!++;
      record(id, counts);
    };
    const rejected = async (id: string, n: number, err: unknown): Promise<void> => {
      const t = tallies.get(id)!;
      t.rejected.push(err as EngineError);
      t.rejectedDraws += n;
      // Calls on a dead shard fail at once until it is back: wait for that, do not spin.
      await restartedSignal;
    };

    async function manyLoop(id: string, salt: number): Promise<void> {
      for (let round = 1; !stop; round++) {
        const n = 1 + ((round * 7919 + salt * 104_729) % 4_000);
        tallies.get(id)!.requested += n;
        await engine.drawMany(id, n).then(
          (b) => recordBatch(id, b.indices),
          (err: unknown) => rejected(id, n, err),
        );
      }
    }
    async function singlesLoop(id: string): Promise<void> {
      while (!stop) {
        const burst = Array.from({ length: 16 }, () => {
          tallies.get(id)!.requested++;
          return engine.draw(id).then(
            (r) => {
              const counts = [0, 0, 0];
              if (r.itemId !== null) counts[['rare', 'common', 'junk'].indexOf(r.itemId)]!++;
              record(id, counts);
            },
            (err: unknown) => rejected(id, 1, err),
          );
        });
        await Promise.all(burst);
      }
    }
    const loops = [...tallies.keys()].flatMap((id, i) => [manyLoop(id, i), singlesLoop(id)]);

    await progress(() => [...tallies.values()].every((t) => t.ackedCalls >= 5));
    const oldThread = engine.shardThreadIds[victimShard]!;
    void exitInfo.then(() => (exited = true));
    const doomed = [engine.drawMany(victims[0]!, 3_000), ...Array.from({ length: 10 }, () => engine.draw(victims[1]!))];
    tallies.get(victims[0]!)!.requested += 3_000;
    tallies.get(victims[1]!)!.requested += 10;
    const doomedSettled = Promise.allSettled(doomed);
    void workers(engine)[victimShard]!.terminate();

    const [exit] = await exitInfo;
    expect(exit.shard).toBe(victimShard);
    expect(exit.error).toBeInstanceOf(EngineError);
    expect(exit.error.code).toBe('ERR_SHARD_FAILED');
    for (const r of await doomedSettled) {
      expect(r.status).toBe('rejected');
      const err = (r as PromiseRejectedResult).reason as unknown;
      expect(err).toBeInstanceOf(EngineError);
      expect((err as EngineError).code).toBe('ERR_SHARD_FAILED');
    }
    tallies.get(victims[0]!)!.rejectedDraws += 3_000;
    tallies.get(victims[1]!)!.rejectedDraws += 10;

    const [info] = await restartInfo;
    expect(info.shard).toBe(victimShard);
    expect(info.threadId).not.toBe(oldThread);
    expect(engine.shardThreadIds[victimShard]).toBe(info.threadId);
    expect(engine.shardThreadIds[1 - victimShard]).toBe(threadsBefore[1 - victimShard]);
    expect(engine.metrics().restarts).toBe(1);
    expect(engine.metrics().shards[victimShard]!.restarts).toBe(1);

    // The restarted shard serves again: wait (by acknowledgements, not time) for more work on
    // every victim pool, then stop the streams.
    const ackedAtRestart = new Map(victims.map((id) => [id, tallies.get(id)!.ackedCalls]));
    await progress(() => victims.every((id) => tallies.get(id)!.ackedCalls >= ackedAtRestart.get(id)! + 5));
    stop = true;
    await Promise.all(loops);
    const later = await engine.drawMany(victims[2]!, 100);
    tallies.get(victims[2]!)!.requested += 100;
    recordBatch(victims[2]!, later.indices);

    // Who failed: only the victim's pools, only with ERR_SHARD_FAILED.
    for (const id of bystanders) {
      const t = tallies.get(id)!;
      expect(t.rejected, `bystander ${id}`).toEqual([]);
      expect(t.ackedAfterExit, `bystander ${id} kept resolving`).toBeGreaterThan(0);
    }
    let victimRejections = 0;
    for (const id of victims) {
      for (const err of tallies.get(id)!.rejected) {
        expect(err).toBeInstanceOf(EngineError);
        expect(err.code).toBe('ERR_SHARD_FAILED');
      }
      victimRejections += tallies.get(id)!.rejected.length;
    }
    expect(victimRejections).toBeGreaterThan(0);

    const check = (states: Record<string, PoolState>): void => {
      for (const [id, t] of tallies) {
        const s = states[id]!;
        let extra = 0;
        s.items.forEach((item, i) => {
          expect(item.drawn, `${id}/${item.id}`).toBeGreaterThanOrEqual(t.acked[i]!);
          extra += item.drawn - t.acked[i]!;
          if (t.initial[i] === -1) expect(item.quantity).toBe(-1);
          else expect(item.quantity + item.drawn, `${id}/${item.id}`).toBe(t.initial[i]);
        });
        // Beyond the acknowledged draws, at most the rejected ones were logged (bystanders: none).
        expect(extra, id).toBeLessThanOrEqual(t.rejectedDraws);
      }
    };
    const states = await allStates(engine);
    check(states);
    await engine.close();
    const reopened = await openEngine(opts);
    expect(await allStates(reopened)).toEqual(states);
    check(await allStates(reopened));
    await reopened.close();
    // The restarted shard's segments and snapshots also recover in another layout.
    const oneShard = await openEngine({ ...opts, shards: 1 });
    expect(await allStates(oneShard)).toEqual(states);
  });
});
