/**
 * A shard worker dies (terminated from outside, as a crash would): what was in flight on it is
 * rejected with ERR_SHARD_FAILED, the engine recovers that shard from its snapshot and WAL and
 * starts a new worker (new threadId); acknowledged draws are all there; other shards never notice.
 */
import { once } from 'node:events';
import type { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { tmpDir } from '../helpers/tmp.js';
import { allStates, EngineError, KiB, shardOfPool, useEngines, type DrawEngine } from '../helpers/engine.js';

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
