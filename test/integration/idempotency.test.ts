/**
 * Idempotent draws (issue 10, item 1): a call repeated with its idempotency key returns the
 * original outcome and draws nothing, concurrently, after close and reopen with another shard
 * count, after snapshots retired the WAL, after a shard restart and after a SIGKILL; a key
 * reused with another pool or count is ERR_IDEMPOTENCY_MISMATCH; keys live in a bounded window.
 */
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { allStates, collect, DrawEngine, expectCode, KiB, useEngines, type States } from '../helpers/engine.js';
import { tmpDir } from '../helpers/tmp.js';

const openEngine = useEngines();
const CATALOG = [
  { id: 'gem', weight: 1, quantity: 1000 },
  { id: 'coin', weight: 5, quantity: -1 },
];
const kShardWorkers = Symbol.for('reward-pool-engine.shardWorkers');

function drawn(states: States): number {
  return Object.values(states).reduce((a, s) => a + s.items.reduce((b, i) => b + i.drawn, 0), 0);
}

describe.each(['mmap', 'file', 'none'] as const)('wal %s', (wal) => {
  const opts = (extra: Record<string, unknown> = {}) => ({ ...(wal === 'none' ? {} : { dir: tmpDir(`idem-${wal}`) }), wal, shards: 2, segmentBytes: 256 * KiB, ...extra });

  it('a repeated key returns the original outcome and draws nothing (draw and drawMany)', async () => {
    const engine = await openEngine(opts());
    await engine.createPool('p', CATALOG);
    const first = await engine.draw('p', { idempotencyKey: 'order-1' });
    const batch = await engine.drawMany('p', 50, { idempotencyKey: 'order-2' });
    const draws = engine.metrics().draws;
    for (let i = 0; i < 3; i++) {
      expect(await engine.draw('p', { idempotencyKey: 'order-1' })).toEqual(first);
      const again = await engine.drawMany('p', 50, { idempotencyKey: 'order-2' });
      expect(again.firstRequestId).toBe(batch.firstRequestId);
      expect(Array.from(again.indices)).toEqual(Array.from(batch.indices));
    }
    expect(engine.metrics().draws).toBe(draws);
    // Another key draws, with later ids; no key draws as always.
    const other = await engine.draw('p', { idempotencyKey: 'order-3' });
    expect(other.requestId).toBeGreaterThan(batch.firstRequestId + 49);
    expect((await engine.draw('p', {})).requestId).toBeGreaterThan(other.requestId);
    expect(engine.metrics().draws).toBe(draws + 2);
  });

  it('a key reused with another pool or another count is ERR_IDEMPOTENCY_MISMATCH and draws nothing', async () => {
    const engine = await openEngine(opts());
    await engine.createPool('a', CATALOG);
    await engine.createPool('b', CATALOG);
    await engine.drawMany('a', 5, { idempotencyKey: 'k' });
    const draws = engine.metrics().draws;
    const err = await expectCode(engine.drawMany('b', 5, { idempotencyKey: 'k' }), 'ERR_IDEMPOTENCY_MISMATCH', '"k"', '"a"', '"b"');
    expect(err.details).toMatchObject({ idempotencyKey: 'k', poolId: 'b', originalPoolId: 'a' });
    await expectCode(engine.drawMany('a', 6, { idempotencyKey: 'k' }), 'ERR_IDEMPOTENCY_MISMATCH', '5', '6');
    await expectCode(engine.draw('a', { idempotencyKey: 'k' }), 'ERR_IDEMPOTENCY_MISMATCH');
    expect(engine.metrics().draws).toBe(draws);
    // draw() is a call of one draw: the same key as drawMany(pool, 1).
    const one = await engine.draw('b', { idempotencyKey: 'single' });
    const asBatch = await engine.drawMany('b', 1, { idempotencyKey: 'single' });
    expect(asBatch.firstRequestId).toBe(one.requestId);
    expect(asBatch.itemIdAt(0)).toBe(one.itemId);
  });

  it('concurrent calls with one key draw once', async () => {
    const engine = await openEngine(opts());
    await engine.createPool('p', CATALOG);
    const results = await Promise.all(Array.from({ length: 40 }, () => engine.drawMany('p', 7, { idempotencyKey: 'same' })));
    expect(new Set(results.map((r) => r.firstRequestId)).size).toBe(1);
    for (const r of results) expect(Array.from(r.indices)).toEqual(Array.from(results[0]!.indices));
    expect(engine.metrics().draws).toBe(7);
    const singles = await Promise.all(Array.from({ length: 40 }, () => engine.draw('p', { idempotencyKey: 'one' })));
    expect(new Set(singles.map((r) => r.requestId)).size).toBe(1);
    expect(engine.metrics().draws).toBe(8);
  });

  it('bad keys and options are ERR_INVALID_ARGUMENT, never thrown', async () => {
    const engine = await openEngine(opts());
    await engine.createPool('p', CATALOG);
    for (const key of ['', 'x'.repeat(129), '\uD800', 42, null]) {
      await expectCode(engine.draw('p', { idempotencyKey: key as string }), 'ERR_INVALID_ARGUMENT', 'idempotencyKey');
    }
    await expectCode(engine.drawMany('p', 2, 'k' as never), 'ERR_INVALID_ARGUMENT', 'options');
    const hostile = Object.defineProperty({}, 'idempotencyKey', {
      get(): never {
        throw new Error('no');
      },
    });
    await expectCode(engine.draw('p', hostile), 'ERR_INVALID_ARGUMENT', 'idempotencyKey', 'no');
    expect(engine.metrics().draws).toBe(0);
  });

  it('the window keeps the newest keys of each pool (idempotencyKeys, idempotencyDraws)', async () => {
    const engine = await openEngine(opts({ idempotencyKeys: 3, idempotencyDraws: 100 }));
    await engine.createPool('p', CATALOG);
    const firsts = [];
    for (let i = 0; i < 4; i++) firsts.push((await engine.drawMany('p', 10, { idempotencyKey: `k${i}` })).firstRequestId);
    // k0 left the window: it draws anew; k1..k3 are still there.
    expect((await engine.drawMany('p', 10, { idempotencyKey: 'k3' })).firstRequestId).toBe(firsts[3]);
    expect((await engine.drawMany('p', 10, { idempotencyKey: 'k0' })).firstRequestId).toBeGreaterThan(firsts[3]!);
    // A 95-draw call keeps only itself within 100 draws: k3 goes too.
    await engine.drawMany('p', 95, { idempotencyKey: 'big' });
    expect((await engine.drawMany('p', 10, { idempotencyKey: 'k3' })).firstRequestId).toBeGreaterThan(firsts[3]!);
  });
});

describe('keys survive', () => {
  it('close and reopen with another shard count, snapshots that retire the WAL, and a shard restart', async () => {
    const dir = tmpDir('idem-reopen');
    let engine = await DrawEngine.open({ dir, shards: 2, segmentBytes: 64 * KiB, snapshotEveryRecords: 0 });
    for (const id of ['a', 'b', 'c']) await engine.createPool(id, CATALOG);
    const before = new Map<string, { first: number; indices: number[] }>();
    for (let i = 0; i < 30; i++) {
      const pool = ['a', 'b', 'c'][i % 3]!;
      const b = await engine.drawMany(pool, 1 + (i % 4), { idempotencyKey: `key-${i}` });
      before.set(`key-${i}`, { first: b.firstRequestId, indices: Array.from(b.indices) });
    }
    const check = async (e: DrawEngine, label: string): Promise<void> => {
      const draws = e.metrics().draws;
      for (let i = 0; i < 30; i++) {
        const pool = ['a', 'b', 'c'][i % 3]!;
        const b = await e.drawMany(pool, 1 + (i % 4), { idempotencyKey: `key-${i}` });
        expect({ first: b.firstRequestId, indices: Array.from(b.indices) }, `${label} key-${i}`).toEqual(before.get(`key-${i}`));
      }
      expect(e.metrics().draws, label).toBe(draws);
      await expectCode(e.drawMany('a', 1, { idempotencyKey: 'key-1' }), 'ERR_IDEMPOTENCY_MISMATCH');
    };
    await engine.close();
    engine = await DrawEngine.open({ dir, shards: 3, segmentBytes: 64 * KiB, snapshotEveryRecords: 0 });
    await check(engine, 'reopened with 3 shards');
    await engine.snapshot();
    await engine.close();
    engine = await DrawEngine.open({ dir, shards: 1, segmentBytes: 64 * KiB });
    expect(engine.recovery.drawsReplayed).toBe(0); // all from snapshots now
    await check(engine, 'from snapshots, 1 shard');
    const restarted = once(engine, 'shardRestart');
    await (engine as unknown as Record<symbol, Worker[]>)[kShardWorkers][0]!.terminate();
    await restarted;
    await check(engine, 'after a shard restart');
    await engine.close();
  });

  it('a SIGKILL: every acknowledged keyed call, repeated, returns its outcome and draws nothing', async () => {
    const dir = tmpDir('idem-kill');
    const script = join(tmpDir('idem-kill-script'), 'child.mjs');
    const index = new URL('../../dist/src/index.js', import.meta.url).href;
    writeFileSync(
      script,
      `import { DrawEngine } from ${JSON.stringify(index)};
import { writeSync } from 'node:fs';
const engine = await DrawEngine.open({ dir: ${JSON.stringify(dir)}, shards: 2, segmentBytes: 65536, snapshotEveryRecords: 40 });
await engine.createPool('p', [{ id: 'gem', weight: 1, quantity: 100000 }, { id: 'coin', weight: 5, quantity: -1 }]);
writeSync(1, 'ready\\n');
for (let i = 0; ; i++) {
  const calls = Array.from({ length: 8 }, (_, j) => engine.drawMany('p', 1 + ((i + j) % 5), { idempotencyKey: 'k' + (i * 8 + j) }).then((b) =>
    writeSync(1, 'ack k' + (i * 8 + j) + ' ' + b.firstRequestId + ' ' + b.count + ' ' + Array.from(b.indices).join(',') + '\\n')));
  await Promise.all(calls);
}
`,
    );
    const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if ((out.match(/\nack /g) ?? []).length >= 300) child.kill('SIGKILL');
    });
    const r = await collect(child);
    expect(r.signal, r.stderr).toBe('SIGKILL');
    const acks = out
      .split('\n')
      .filter((l) => l.startsWith('ack '))
      .map((l) => l.split(' '))
      .map(([, key, first, count, indices]) => ({ key: key!, first: Number(first), count: Number(count), indices: indices!.split(',').map(Number) }));
    expect(acks.length).toBeGreaterThanOrEqual(300);
    const engine = await openEngine({ dir, shards: 1, segmentBytes: 64 * KiB });
    const draws = drawn(await allStates(engine));
    for (const a of acks) {
      const b = await engine.drawMany('p', a.count, { idempotencyKey: a.key });
      expect({ first: b.firstRequestId, indices: Array.from(b.indices) }, a.key).toEqual({ first: a.first, indices: a.indices });
    }
    expect(drawn(await allStates(engine))).toBe(draws);
  });

  it('a keyed call too large for one WAL record is ERR_INVALID_ARGUMENT before anything is drawn', async () => {
    const engine = await openEngine({ dir: tmpDir('idem-large'), shards: 1, segmentBytes: 64 * KiB });
    await engine.createPool('p', CATALOG);
    await expectCode(engine.drawMany('p', 70_000, { idempotencyKey: 'huge' }), 'ERR_INVALID_ARGUMENT', 'segmentBytes');
    expect(engine.metrics().draws).toBe(0);
    // Without a key the same call is fine (it is split across records).
    expect((await engine.drawMany('p', 70_000)).count).toBe(70_000);
    // And a keyed call that fits works in the tiny first segment by growing the next one.
    expect((await engine.drawMany('p', 60_000, { idempotencyKey: 'fits' })).count).toBe(60_000);
  });
});
