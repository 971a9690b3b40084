/**
 * Regression tests for what an adversarial user found (issue 7, items 2 and 4-9): ids that are
 * not well-formed strings, ids that name Object.prototype members, snapshot() racing close(),
 * synchronous throws from async methods, a caller's getters and Proxies, a full disk when the
 * data directory is created, the message of a missing snapshot, and the cost of one drawMany.
 */
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { FileWalWriter } from '../../dist/src/wal/file-writer.js';
import { realStorage } from '../../dist/src/storage/real-storage.js';
import { pack } from 'msgpackr';
import { allStates, collect, DrawEngine, EngineError, expectCode, KiB, useEngines } from '../helpers/engine.js';
import { tmpDir } from '../helpers/tmp.js';
import { snapshotFiles, writerOptions } from '../helpers/wal-files.js';

const openEngine = useEngines();
const kShardWorkers = Symbol.for('reward-pool-engine.shardWorkers');
const CATALOG = [
  { id: 'gold', weight: 1, quantity: 20 },
  { id: 'mud', weight: 5, quantity: -1 },
];

describe('ids must be well-formed strings (item 2)', () => {
  const lone = ['\uD800', 'a\uDC00b', 'x'.repeat(10) + '\uDBFF'];

  it.each(lone)('a pool id with a lone surrogate (%j) is ERR_INVALID_ARGUMENT and creates nothing', async (id) => {
    const engine = await openEngine({ dir: tmpDir('ids-pool'), shards: 2 });
    const err = await expectCode(engine.createPool(id, CATALOG), 'ERR_INVALID_ARGUMENT', 'well-formed');
    expect(err.details.poolId).toBe(id);
    await expectCode(engine.draw(id), 'ERR_INVALID_ARGUMENT', 'well-formed');
    expect(engine.poolIds()).toEqual([]);
    expect(engine.metrics().records).toBe(0);
  });

  it.each(lone)('an item id with a lone surrogate (%j) is ERR_INVALID_CONFIG naming the item', async (id) => {
    const engine = await openEngine({ dir: tmpDir('ids-item'), shards: 1 });
    await expectCode(engine.createPool('p', [{ id: 'ok', weight: 1, quantity: 1 }, { id, weight: 1, quantity: 1 }]), 'ERR_INVALID_CONFIG', 'items[1].id', 'well-formed');
    expect(engine.poolIds()).toEqual([]);
  });

  it('ids with surrogate pairs (well-formed) survive a reopen unchanged', async () => {
    const dir = tmpDir('ids-pairs');
    const ids = ['🎁', 'prize-😀-x', '\uD83D\uDE00'.repeat(64)];
    let engine = await openEngine({ dir, shards: 2 });
    for (const id of ids) await engine.createPool(id, [{ id: `${id.slice(0, 100)}-item`, weight: 1, quantity: 3 }]);
    for (const id of ids) await engine.drawMany(id, 2);
    const states = await allStates(engine);
    await engine.close();
    engine = await openEngine({ dir, shards: 3 });
    expect(await allStates(engine)).toEqual(states);
    for (const id of ids) expect((await engine.pool(id)).items[0]!.id).toBe(`${id.slice(0, 100)}-item`);
  });

  it('two pools whose ids collapse on disk (written by an older version) fail recovery with a coded error', async () => {
    // What an earlier version could write: the same U+FFFD pool created in two shards.
    const dir = tmpDir('ids-collapse');
    for (const shard of [0, 1]) {
      const w = new FileWalWriter(writerOptions(dir, realStorage, { shard, segmentBytes: 64 * KiB })).start();
      w.registerPool(0, '\uFFFD', 2);
      w.appendCreate(0, pack({ id: '\uFFFD', items: CATALOG }));
      w.appendDraws(0, 1 + shard * 10, new Uint16Array([0, 1, 1]), 0, 3);
      await w.close();
    }
    const err = await expectCode(DrawEngine.open({ dir, shards: 2 }), 'ERR_CORRUPT_WAL');
    expect(err.message).toContain('created twice');
  });
});

describe('ids that name Object.prototype members (item 4)', () => {
  const ids = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf'];

  it('survive a shard restart, then automatic and explicit snapshots, and a reopen', async () => {
    const dir = tmpDir('proto-ids');
    const engine = await openEngine({ dir, shards: 1, segmentBytes: 64 * KiB, snapshotEveryRecords: 0 });
    for (const id of ids) await engine.createPool(id, CATALOG);
    for (const id of ids) await engine.drawMany(id, 5);
    const restarted = once(engine, 'shardRestart');
    await (engine as unknown as Record<symbol, Worker[]>)[kShardWorkers][0]!.terminate();
    await restarted;
    // Only one pool changes after the restart: the others keep the snapshot the shard restarted
    // from, looked up by id (that lookup used to find Object.prototype members).
    await engine.drawMany('valueOf', 3);
    // With automatic snapshots off this used to never settle.
    await engine.snapshot();
    expect(engine.metrics().snapshots).toBe(1);
    const states = await allStates(engine);
    expect(Object.keys(states).sort()).toEqual([...ids].sort());
    await engine.close();
    const again = await openEngine({ dir, shards: 2 });
    expect(await allStates(again)).toEqual(states);
    await again.snapshot();
  });
});

describe('snapshot() racing close() (item 5)', () => {
  it('close() settles a snapshot asked for just before it, idle and under load, 10 times each', async () => {
    for (const load of [false, true]) {
      for (let i = 0; i < 10; i++) {
        const dir = tmpDir('snap-close');
        const engine = await DrawEngine.open({ dir, shards: 2, segmentBytes: 64 * KiB });
        await engine.createPool('a', CATALOG);
        await engine.drawMany('a', 100);
        const draws = load ? Array.from({ length: 500 }, () => engine.draw('a')) : [];
        const snap = engine.snapshot().then(
          () => 'resolved',
          (err: unknown) => (err as EngineError).code,
        );
        await engine.close();
        // Settled one way or the other by the time close() has.
        const outcome = await Promise.race([snap, Promise.resolve('pending')]);
        expect(['resolved', 'ERR_ENGINE_CLOSED']).toContain(outcome);
        expect((await Promise.allSettled(draws)).every((r) => r.status === 'fulfilled')).toBe(true);
        // The directory is free again.
        await (await DrawEngine.open({ dir, shards: 1 })).close();
      }
    }
  });

  it('a script that does `engine.snapshot(); await engine.close()` exits 0 and leaves the directory openable', async () => {
    const dir = tmpDir('snap-close-script');
    const script = join(dir, 'race.mjs');
    const index = new URL('../../dist/src/index.js', import.meta.url).href;
    writeFileSync(
      script,
      `import { DrawEngine } from ${JSON.stringify(index)};
const engine = await DrawEngine.open({ dir: ${JSON.stringify(join(dir, 'data'))}, shards: 2 });
if (!engine.poolIds().includes('a')) await engine.createPool('a', [{ id: 'x', weight: 1, quantity: -1 }]);
await engine.drawMany('a', 10);
engine.snapshot().catch(() => {});
await engine.close();
console.log('closed');
`,
    );
    for (let i = 0; i < 5; i++) {
      const r = await collect(spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe'] }));
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain('closed');
    }
    await (await DrawEngine.open({ dir: join(dir, 'data'), shards: 1 })).close();
  });
});

describe('async methods never throw synchronously (item 6)', () => {
  it('detached methods reject with ERR_INVALID_ARGUMENT', async () => {
    const engine = await openEngine({ dir: tmpDir('detached'), shards: 1 });
    await engine.createPool('p', CATALOG);
    const { draw, drawMany, createPool, updateItem, pool, snapshot, close } = engine;
    const calls: [string, () => Promise<unknown>][] = [
      ['draw', () => draw('p')],
      ['drawMany', () => drawMany('p', 2)],
      ['createPool', () => createPool('q', CATALOG)],
      ['updateItem', () => updateItem('p', 'gold', { weight: 2 })],
      ['pool', () => pool('p')],
      ['snapshot', () => snapshot()],
      ['close', () => close()],
    ];
    for (const [name, call] of calls) {
      let p: Promise<unknown> | undefined;
      expect(() => (p = call()), name).not.toThrow();
      await expectCode(p!, 'ERR_INVALID_ARGUMENT', `${name}()`);
    }
    expect(engine.poolIds()).toEqual(['p']);
  });

  it('arguments whose Proxy traps or getters throw are rejected with EngineErrors, never thrown', async () => {
    const engine = await openEngine({ dir: tmpDir('proxies'), shards: 1 });
    await engine.createPool('p', CATALOG);
    const boom = (): never => {
      throw new Error('trap');
    };
    const hostile = new Proxy({}, { get: boom, has: boom, ownKeys: boom, getOwnPropertyDescriptor: boom, getPrototypeOf: boom });
    const revoked = Proxy.revocable({}, {});
    revoked.revoke();
    const getter = Object.defineProperty({}, 'id', { get: boom, enumerable: true });
    const values: unknown[] = [hostile, revoked.proxy, getter, [hostile], [getter], [{ id: 'a', get weight(): number { return boom(); }, quantity: 1 }]];
    const before = engine.metrics().records;
    let cases = 0;
    for (const v of values) {
      const calls: [string, () => Promise<unknown>][] = [
        ['createPool id', () => engine.createPool(v as string, CATALOG)],
        ['createPool items', () => engine.createPool('q', v as never)],
        ['draw', () => engine.draw(v as string)],
        ['drawMany pool', () => engine.drawMany(v as string, 1)],
        ['drawMany count', () => engine.drawMany('p', v as number)],
        ['updateItem pool', () => engine.updateItem(v as string, 'gold', { weight: 1 })],
        ['updateItem item', () => engine.updateItem('p', v as string, { weight: 1 })],
        ['updateItem patch', () => engine.updateItem('p', 'gold', v as never)],
        ['pool', () => engine.pool(v as string)],
      ];
      for (const [name, call] of calls) {
        let p: Promise<unknown> | undefined;
        expect(() => (p = call()), name).not.toThrow();
        const err = await p!.then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err, name).toBeInstanceOf(EngineError);
        expect(['ERR_INVALID_ARGUMENT', 'ERR_INVALID_CONFIG', 'ERR_UNKNOWN_POOL', 'ERR_UNKNOWN_ITEM']).toContain((err as EngineError).code);
        expect(typeof (err as EngineError).message).toBe('string');
        cases++;
      }
    }
    expect(cases).toBe(54);
    expect(engine.poolIds()).toEqual(['p']);
    expect(engine.metrics().records).toBe(before);
  });
});

describe('a caller cannot hand the engine a value it did not validate (item 7)', () => {
  it('every option is read once: a getter that changes its answer cannot slip past validation', async () => {
    const dir = tmpDir('options-once');
    let reads = 0;
    const options = {
      dir,
      get shards(): number {
        reads++;
        return reads === 1 ? 1 : 0;
      },
      get segmentBytes(): number {
        return reads === 1 ? 64 * KiB : 7;
      },
    };
    const engine = await openEngine(options);
    expect(reads).toBe(1);
    expect(engine.shards).toBe(1);
    expect(engine.options.segmentBytes).toBe(64 * KiB);
    await engine.createPool('p', CATALOG);
    expect((await engine.drawMany('p', 3)).count).toBe(3);
  });

  it('an option getter or Proxy trap that throws is ERR_INVALID_CONFIG naming the option', async () => {
    const throwing = Object.defineProperty({ dir: tmpDir('options-throw') }, 'wal', {
      enumerable: true,
      get(): never {
        throw new Error('nope');
      },
    });
    const err = await expectCode(DrawEngine.open(throwing as never), 'ERR_INVALID_CONFIG', 'options.wal', 'nope');
    expect(err.cause).toBeInstanceOf(Error);
    const proxy = new Proxy({}, { ownKeys: () => { throw new Error('keys'); } });
    await expectCode(DrawEngine.open(proxy as never), 'ERR_INVALID_CONFIG', 'keys');
  });

  it('creating the data directory on a full filesystem is ERR_DISK_FULL', async () => {
    // A tiny tmpfs with few inodes: once they are used up, mkdir fails with ENOSPC.
    const mnt = tmpDir('full-mkdir');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,nr_inodes=16', 'tmpfs', mnt]);
    try {
      let n = 0;
      try {
        for (; n < 64; n++) mkdirSync(join(mnt, `fill-${n}`));
      } catch (err) {
        expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
      }
      expect(n).toBeLessThan(64);
      await expectCode(DrawEngine.open({ dir: join(mnt, 'data', 'deeper') }), 'ERR_DISK_FULL', 'data');
    } finally {
      execFileSync('umount', ['-l', mnt]);
    }
  });
});

describe('messages and bounds (items 8 and 9)', () => {
  it('with the only snapshot deleted, ERR_CORRUPT_SNAPSHOT names the file it expected', async () => {
    const dir = tmpDir('snap-deleted');
    let engine = await DrawEngine.open({ dir, shards: 1, segmentBytes: 64 * KiB });
    await engine.createPool('p', CATALOG);
    await engine.drawMany('p', 10);
    await engine.close();
    // Reopen once, so the WAL no longer starts at segment 1.
    engine = await DrawEngine.open({ dir, shards: 1, segmentBytes: 64 * KiB });
    await engine.close();
    const [snap] = snapshotFiles(dir, 0);
    expect(snapshotFiles(dir, 0)).toHaveLength(1);
    unlinkSync(snap!);
    const err = await expectCode(DrawEngine.open({ dir, shards: 1 }), 'ERR_CORRUPT_SNAPSHOT', snap!);
    expect(err.details.file).toBe(snap);
  });

  it('drawMany takes at most 2^24 draws per call', async () => {
    const engine = await openEngine({ wal: 'none', shards: 1 });
    await engine.createPool('p', [{ id: 'x', weight: 1, quantity: -1 }]);
    for (const count of [2 ** 24 + 1, 2 ** 31 - 1, 2 ** 53]) {
      const err = await expectCode(engine.drawMany('p', count), 'ERR_INVALID_ARGUMENT', '16777216', String(count));
      expect(err.details.count).toBe(count);
    }
    const b = await engine.drawMany('p', 2 ** 24);
    expect(b.count).toBe(2 ** 24);
    expect(engine.metrics().draws).toBe(2 ** 24);
  });
});
