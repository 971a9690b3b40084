/**
 * Every error code the engine produces through its public API: the code, the class, a message
 * naming the offending value, and that a rejected call created or changed nothing.
 */
import { fork, execFileSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, openSync, closeSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tmpDir } from '../helpers/tmp.js';
import {
  allStates,
  expectUnlocked,
  collect,
  DrawEngine,
  EngineError,
  expectCode,
  fixture,
  KiB,
  MiB,
  shardOfPool,
  useChildren,
  useEngines,
  type Item,
} from '../helpers/engine.js';

const openEngine = useEngines();
const spawnChild = useChildren();

const CATALOG: Item[] = [
  { id: 'gold', weight: 1, quantity: 30 },
  { id: 'silver', weight: 3, quantity: 50 },
  { id: 'mud', weight: 6, quantity: -1 },
];

async function openWithPool(extra: Record<string, unknown> = {}): Promise<{ engine: DrawEngine; dir: string }> {
  const dir = tmpDir('errors');
  const engine = await openEngine({ dir, shards: 2, segmentBytes: 256 * KiB, ...extra });
  await engine.createPool('p', CATALOG);
  await engine.drawMany('p', 40);
  await engine.updateItem('p', 'gold', { weight: 2 });
  return { engine, dir };
}

/** Everything observable that a rejected call must leave alone. */
async function observe(engine: DrawEngine): Promise<unknown> {
  const m = engine.metrics();
  return { ids: engine.poolIds().sort(), states: await allStates(engine), draws: m.draws, records: m.records, walBytes: m.walBytes };
}

describe('ERR_INVALID_CONFIG: options', () => {
  const cases: [string, (dir: string) => Record<string, unknown>, string[]][] = [
    ['shards 0', (dir) => ({ dir, shards: 0 }), ['shards', '0']],
    ['shards 1.5', (dir) => ({ dir, shards: 1.5 }), ['shards', '1.5']],
    ["wal 'x'", (dir) => ({ dir, wal: 'x' }), ['wal', '"x"']],
    ["sync 'sometimes'", (dir) => ({ dir, sync: 'sometimes' }), ['sync', '"sometimes"']],
    ['missing dir', () => ({ shards: 2 }), ['dir']],
    ['empty dir', () => ({ dir: '' }), ['dir', '""']],
    ['segmentBytes 10', (dir) => ({ dir, segmentBytes: 10 }), ['segmentBytes', '10']],
    ['maxPending 0', (dir) => ({ dir, maxPending: 0 }), ['maxPending', '0']],
    ['seed "abc"', (dir) => ({ dir, seed: 'abc' }), ['seed', '"abc"']],
    ['unknown option', (dir) => ({ dir, shardz: 2 }), ['shardz']],
  ];
  it.each(cases)('%s', async (_name, make, contains) => {
    const dir = join(tmpDir('cfg'), 'data');
    await expectCode(DrawEngine.open(make(dir) as never), 'ERR_INVALID_CONFIG', ...contains);
    expect(existsSync(dir)).toBe(false); // nothing was created, no lock taken
  });

  it('a dir that cannot be created', async () => {
    const base = tmpDir('cfg');
    writeFileSync(join(base, 'file'), 'x');
    const dir = join(base, 'file', 'data');
    await expectCode(DrawEngine.open({ dir, shards: 1 }), 'ERR_INVALID_CONFIG', dir);
  });
});

describe('ERR_INVALID_CONFIG: catalogs', () => {
  const cases: [string, unknown, string[]][] = [
    ['zero weight', [{ id: 'a', weight: 0, quantity: 1 }], ['weight', 'got 0']],
    ['fractional weight', [{ id: 'a', weight: 1.5, quantity: 1 }], ['weight', '1.5']],
    [
      'duplicate item id',
      [
        { id: 'a', weight: 1, quantity: 1 },
        { id: 'a', weight: 2, quantity: 1 },
      ],
      ['duplicate', '"a"'],
    ],
    ['quantity -2', [{ id: 'a', weight: 1, quantity: -2 }], ['quantity', '-2']],
    ['no items', [], ['items', '0']],
    ['not an array', { id: 'a' }, ['items']],
    ['empty item id', [{ id: '', weight: 1, quantity: 1 }], ['id', '""']],
    [
      'total weight above 2^48',
      [
        { id: 'a', weight: 2 ** 47, quantity: 1 },
        { id: 'b', weight: 2 ** 47 + 1, quantity: 1 },
      ],
      ['total weight', String(2 ** 48 + 1)],
    ],
  ];
  it.each(cases)('%s: rejected, nothing created, the id stays free', async (_name, items, contains) => {
    const { engine } = await openWithPool();
    const before = await observe(engine);
    const err = await expectCode(engine.createPool('bad', items as Item[]), 'ERR_INVALID_CONFIG', '"bad"', ...contains);
    expect(err.name).toBe('EngineError');
    expect(await observe(engine)).toEqual(before);
    await expectCode(engine.draw('bad'), 'ERR_UNKNOWN_POOL', '"bad"');
    await engine.createPool('bad', [{ id: 'fine', weight: 1, quantity: 2 }]);
    expect((await engine.pool('bad')).items).toEqual([{ id: 'fine', weight: 1, quantity: 2, drawn: 0 }]);
  });
});

describe('ERR_INVALID_ARGUMENT', () => {
  it('bad counts, patches and pool ids change nothing', async () => {
    const { engine } = await openWithPool();
    const before = await observe(engine);
    const long = 'x'.repeat(129);
    const cases: [() => Promise<unknown>, string[]][] = [
      [() => engine.drawMany('p', 0), ['count', 'got 0']],
      [() => engine.drawMany('p', 1.5), ['count', '1.5']],
      [() => engine.drawMany('p', '3' as unknown as number), ['count', '"3"']],
      [() => engine.drawMany('p', -4), ['count', '-4']],
      [() => engine.drawMany('p', Number.NaN), ['count']],
      [() => engine.updateItem('p', 'gold', {}), ['gold', '{}']],
      [() => engine.updateItem('p', 'gold', { weight: 0 }), ['weight', 'got 0']],
      [() => engine.updateItem('p', 'gold', { quantity: -2 }), ['quantity', '-2']],
      [() => engine.updateItem('p', 'gold', { quantity: 2.5 }), ['quantity', '2.5']],
      [() => engine.updateItem('p', 'gold', null as never), ['null']],
      [() => engine.draw(''), ['poolId', '""']],
      [() => engine.drawMany('', 1), ['poolId', '""']],
      [() => engine.pool(''), ['poolId', '""']],
      [() => engine.updateItem('', 'gold', { quantity: 1 }), ['poolId', '""']],
      [() => engine.createPool('', CATALOG), ['poolId', '""']],
      [() => engine.createPool(long, CATALOG), ['poolId', 'xxxxxxxx']],
      [() => engine.draw(42 as unknown as string), ['poolId', '42']],
    ];
    for (const [call, contains] of cases) await expectCode(call(), 'ERR_INVALID_ARGUMENT', ...contains);
    expect(await observe(engine)).toEqual(before);
  });

  it('a weight update that would push the total weight above 2^48 is refused by the shard', async () => {
    const { engine } = await openWithPool();
    await engine.createPool('heavy', [
      { id: 'a', weight: 2 ** 47, quantity: -1 },
      { id: 'b', weight: 2 ** 46, quantity: -1 },
    ]);
    const before = await observe(engine);
    await expectCode(engine.updateItem('heavy', 'b', { weight: 2 ** 48 }), 'ERR_INVALID_ARGUMENT', String(2 ** 48));
    expect(await observe(engine)).toEqual(before);
    // The shard is still healthy.
    expect((await engine.drawMany('heavy', 10)).count).toBe(10);
  });
});

describe('ERR_UNKNOWN_POOL, ERR_UNKNOWN_ITEM, ERR_POOL_EXISTS', () => {
  it('unknown pool on every pool method', async () => {
    const { engine } = await openWithPool();
    const before = await observe(engine);
    await expectCode(engine.draw('nope'), 'ERR_UNKNOWN_POOL', '"nope"');
    await expectCode(engine.drawMany('nope', 5), 'ERR_UNKNOWN_POOL', '"nope"');
    await expectCode(engine.updateItem('nope', 'gold', { quantity: 1 }), 'ERR_UNKNOWN_POOL', '"nope"');
    await expectCode(engine.pool('nope'), 'ERR_UNKNOWN_POOL', '"nope"');
    expect(await observe(engine)).toEqual(before);
  });

  it('unknown item', async () => {
    const { engine } = await openWithPool();
    const before = await observe(engine);
    await expectCode(engine.updateItem('p', 'ghost', { quantity: 1 }), 'ERR_UNKNOWN_ITEM', '"ghost"', '"p"');
    expect(await observe(engine)).toEqual(before);
  });

  it('creating an existing pool, also after a restart', async () => {
    const { engine, dir } = await openWithPool();
    const before = await observe(engine);
    await expectCode(engine.createPool('p', [{ id: 'other', weight: 1, quantity: 1 }]), 'ERR_POOL_EXISTS', '"p"');
    expect(await observe(engine)).toEqual(before);
    await engine.close();
    const again = await openEngine({ dir, shards: 2, segmentBytes: 256 * KiB });
    const after = await allStates(again);
    await expectCode(again.createPool('p', CATALOG), 'ERR_POOL_EXISTS', '"p"');
    expect(await allStates(again)).toEqual(after);
  });

  it('two concurrent createPool calls with the same id: exactly one succeeds', async () => {
    const { engine } = await openWithPool();
    const a: Item[] = [{ id: 'a', weight: 1, quantity: 5 }];
    const b: Item[] = [{ id: 'b', weight: 2, quantity: 7 }];
    const results = await Promise.allSettled([engine.createPool('twin', a), engine.createPool('twin', b)]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(rejected).toHaveLength(1);
    expect(rejected[0]!.reason).toBeInstanceOf(EngineError);
    expect(rejected[0]!.reason.code).toBe('ERR_POOL_EXISTS');
    const winner = results[0]!.status === 'fulfilled' ? a : b;
    expect((await engine.pool('twin')).items).toEqual(winner.map((i) => ({ ...i, drawn: 0 })));
    expect(engine.poolIds().filter((id) => id === 'twin')).toHaveLength(1);
  });
});

describe('ERR_ENGINE_CLOSED and close()', () => {
  it('every method rejects after close(); close() is idempotent; the rejected calls changed nothing', async () => {
    const { engine, dir } = await openWithPool();
    const before = await allStates(engine);
    const c1 = engine.close();
    const c2 = engine.close();
    await Promise.all([c1, c2]);
    await engine.close();
    await expectCode(engine.draw('p'), 'ERR_ENGINE_CLOSED', 'closed');
    await expectCode(engine.drawMany('p', 3), 'ERR_ENGINE_CLOSED', 'closed');
    await expectCode(engine.updateItem('p', 'gold', { quantity: 3 }), 'ERR_ENGINE_CLOSED', 'closed');
    await expectCode(engine.pool('p'), 'ERR_ENGINE_CLOSED', 'closed');
    await expectCode(engine.createPool('new', CATALOG), 'ERR_ENGINE_CLOSED', 'closed');
    await expectCode(engine.snapshot(), 'ERR_ENGINE_CLOSED', 'closed');
    // Closed before validation: even invalid calls report the closed engine.
    await expectCode(engine.drawMany('nope', 0), 'ERR_ENGINE_CLOSED');
    const reopened = await openEngine({ dir, shards: 2, segmentBytes: 256 * KiB });
    expect(await allStates(reopened)).toEqual(before);
  });

  it('close() drains in-flight work: 10,000 draw() calls issued just before it all resolve, and are durable', async () => {
    const dir = tmpDir('drain');
    const engine = await openEngine({ dir, shards: 2, segmentBytes: 256 * KiB });
    await engine.createPool('d', [
      { id: 'few', weight: 1, quantity: 2500 },
      { id: 'many', weight: 1, quantity: -1 },
    ]);
    await engine.createPool('e', [{ id: 'x', weight: 1, quantity: 100 }]);
    let settled = 0;
    const count = <T>(p: Promise<T>): Promise<T> => p.finally(() => settled++);
    const draws = Array.from({ length: 10_000 }, () => count(engine.draw('d')));
    const many = count(engine.drawMany('e', 150));
    const upd = count(engine.updateItem('e', 'x', { quantity: 1000 }));
    const state = count(engine.pool('e'));
    await engine.close();
    expect(settled).toBe(10_003); // close() resolved only after everything before it settled
    const results = await Promise.all(draws);
    const batch = await many;
    await upd;
    expect((await state).items[0]).toEqual({ id: 'x', weight: 1, quantity: 1000, drawn: 100 });
    const ids = new Set(results.map((r) => r.requestId));
    expect(ids.size).toBe(10_000);
    expect(batch.counts().get(null)).toBe(50);
    const few = results.filter((r) => r.itemId === 'few').length;
    expect(few).toBeLessThanOrEqual(2500);
    expect(results.every((r) => r.itemId !== null)).toBe(true);

    const reopened = await openEngine({ dir, shards: 2, segmentBytes: 256 * KiB });
    const d = await reopened.pool('d');
    expect(d.items.map((i) => i.drawn)).toEqual([few, 10_000 - few]);
    expect(d.lastRequestId).toBe(Math.max(...ids));
    expect((await reopened.pool('e')).items[0]).toEqual({ id: 'x', weight: 1, quantity: 1000, drawn: 100 });
  });
});

describe('ERR_DIR_LOCKED', () => {
  const forked: ChildProcess[] = [];
  afterEach(() => {
    for (const c of forked.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });

  function forkHolder(dir: string): ChildProcess {
    const child = fork(fixture('open-and-hold.mjs'), [dir], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    forked.push(child);
    return child;
  }

  function nextMessage(child: ChildProcess): Promise<{ type: string; [k: string]: unknown }> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null): void => reject(new Error(`child exited (${code}) before sending a message`));
      child.once('exit', onExit);
      child.once('message', (m) => {
        child.off('exit', onExit);
        resolve(m as { type: string });
      });
    });
  }

  it('a second engine in the same process is refused; the first keeps working', async () => {
    const { engine, dir } = await openWithPool();
    const err = await expectCode(DrawEngine.open({ dir, shards: 2 }), 'ERR_DIR_LOCKED', dir, String(process.pid));
    expect(err).toBeInstanceOf(EngineError);
    expect((await engine.draw('p')).requestId).toBeGreaterThan(0);
    await engine.close();
    const again = await openEngine({ dir, shards: 2, segmentBytes: 256 * KiB });
    expect(again.poolIds()).toEqual(['p']);
  });

  it('another process cannot open a directory this process holds', async () => {
    const { dir } = await openWithPool();
    const child = forkHolder(dir);
    const msg = await nextMessage(child);
    expect(msg).toMatchObject({ type: 'error', code: 'ERR_DIR_LOCKED', isEngineError: true });
    expect(msg.message).toContain(String(process.pid));
  });

  it('this process cannot open a directory another process holds, until it closes', async () => {
    const dir = tmpDir('locked');
    const child = forkHolder(dir);
    const opened = await nextMessage(child);
    expect(opened.type).toBe('opened');
    expect(readFileSync(join(dir, 'LOCK'), 'utf8')).toBe(String(child.pid));
    await expectCode(DrawEngine.open({ dir, shards: 1 }), 'ERR_DIR_LOCKED', dir, String(child.pid));
    const closing = nextMessage(child);
    child.send({ type: 'close' });
    expect((await closing).type).toBe('closed');
    const engine = await openEngine({ dir, shards: 1, segmentBytes: 64 * KiB });
    expect(engine.poolIds()).toEqual([]);
  });

  it('a LOCK file left by a dead process (its pid, empty, garbage) does not block: the kernel dropped its lock', async () => {
    const { engine, dir } = await openWithPool();
    const state = await allStates(engine);
    await engine.close();
    expectUnlocked(dir);

    const dead = spawnChild(process.execPath, ['-e', '']);
    await collect(dead);
    expect(dead.pid).toBeGreaterThan(0);
    for (const content of [String(dead.pid), '', 'garbage', String(process.pid)]) {
      writeFileSync(join(dir, 'LOCK'), content);
      const e = await openEngine({ dir, shards: 2, segmentBytes: 256 * KiB });
      expect(readFileSync(join(dir, 'LOCK'), 'utf8')).toBe(String(process.pid));
      expect(await allStates(e)).toEqual(state);
      await e.close();
      expectUnlocked(dir);
    }
  });

  it('a holder killed with SIGKILL leaves no lock behind', async () => {
    const dir = tmpDir('locked-killed');
    const child = forkHolder(dir);
    expect((await nextMessage(child)).type).toBe('opened');
    await expectCode(DrawEngine.open({ dir, shards: 1 }), 'ERR_DIR_LOCKED', String(child.pid));
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    const engine = await openEngine({ dir, shards: 1, segmentBytes: 64 * KiB });
    expect(engine.poolIds()).toEqual([]);
  });
});

describe('ERR_DISK_FULL (real full tmpfs)', () => {
  const isRoot = process.getuid?.() === 0;

  /** Mount an 8 MiB tmpfs on a fresh directory for the duration of fn. */
  async function withTmpfs(fn: (mnt: string) => Promise<void>): Promise<void> {
    const mnt = tmpDir('tmpfs');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mnt]);
    try {
      await fn(mnt);
    } finally {
      try {
        execFileSync('umount', [mnt], { stdio: 'ignore' });
      } catch {
        execFileSync('umount', ['-l', mnt], { stdio: 'ignore' });
      }
    }
  }

  function fill(mnt: string, leave: number): void {
    const file = join(mnt, 'filler');
    const fd = openSync(file, 'w');
    const chunk = Buffer.alloc(64 * KiB, 0xaa);
    let code = '';
    try {
      for (;;) writeSync(fd, chunk);
    } catch (err) {
      code = (err as NodeJS.ErrnoException).code!;
    }
    try {
      for (;;) writeSync(fd, chunk, 0, 1);
    } catch {
      // completely full
    }
    closeSync(fd);
    expect(code).toBe('ENOSPC');
    if (leave > 0) truncateSync(file, statSync(file).size - leave);
  }

  /** Without root: the same scenario inside a user + mount namespace, in a child. */
  async function inNamespace(leave: number): Promise<Record<string, unknown>> {
    expect(process.getuid?.()).not.toBe(0);
    const mnt = tmpDir('ns');
    const child = spawnChild('unshare', ['-rm', 'sh', '-c', 'mount -t tmpfs -o size=8m tmpfs "$0" && exec "$1" "$2" "$0" "$3"', mnt, process.execPath, fixture('fill-then-open.mjs'), String(leave)]);
    const { code, stdout, stderr } = await collect(child);
    expect(code, stderr).toBe(0);
    return JSON.parse(stdout.trim()) as Record<string, unknown>;
  }

  it('segment creation at rotation fails: ERR_DISK_FULL, that shard fail-stops, acknowledged draws survive', async () => {
    if (!isRoot) {
      const r = await inNamespace(256 * KiB);
      expect(r).toMatchObject({ filled: 'ENOSPC', opened: false, code: 'ERR_DISK_FULL', isEngineError: true });
      return;
    }
    const copy = tmpDir('full-copy');
    let acked = 0;
    let maxAckedId = 0;
    let inflightAtFailure = 0;
    let ackedOther = 0;
    let full = '';
    let other = '';
    await withTmpfs(async (mnt) => {
      const engine = await openEngine({ dir: join(mnt, 'eng'), shards: 2, wal: 'mmap', sync: 'always', segmentBytes: 1 * MiB });
      // One pool on each shard.
      const byShard = new Map<number, string>();
      for (let i = 0; byShard.size < 2 && i < 64; i++) {
        const id = `full-${i}`;
        await engine.createPool(id, [{ id: 'x', weight: 1, quantity: -1 }]);
        const k = await shardOfPool(engine, id);
        if (k === 0 && byShard.get(0) === undefined) byShard.set(0, id);
        if (k === 1 && byShard.get(1) === undefined) byShard.set(1, id);
      }
      full = byShard.get(0)!;
      other = byShard.get(1)!;
      acked = 1; // the probe draw
      ackedOther = 1;
      const failures: EngineError[] = [];
      for (let round = 0; round < 200 && failures.length === 0; round++) {
        const results = await Promise.allSettled(Array.from({ length: 4 }, () => engine.drawMany(full, 60_000)));
        for (const r of results) {
          if (r.status === 'fulfilled') {
            acked += r.value.count;
            maxAckedId = Math.max(maxAckedId, r.value.firstRequestId + r.value.count - 1);
          } else {
            failures.push(r.reason as EngineError);
            inflightAtFailure += 60_000;
          }
        }
      }
      expect(failures.length).toBeGreaterThan(0);
      for (const f of failures) {
        expect(f).toBeInstanceOf(EngineError);
        expect(f.code).toBe('ERR_DISK_FULL');
        expect(f.message).toContain('segment');
      }
      // Fail-stop: that shard acknowledges nothing more, whatever the call.
      await expectCode(engine.draw(full), 'ERR_DISK_FULL');
      await expectCode(engine.drawMany(full, 1), 'ERR_DISK_FULL');
      await expectCode(engine.updateItem(full, 'x', { weight: 3 }), 'ERR_DISK_FULL');
      await expectCode(engine.pool(full), 'ERR_DISK_FULL');
      await expectCode(engine.snapshot(), 'ERR_DISK_FULL');
      const m = engine.metrics();
      expect(m.shards[0]!.failed).toBe(true);
      expect(m.shards[1]!.failed).toBe(false);
      // The other shard is not affected.
      const r = await engine.draw(other);
      expect(r.itemId).toBe('x');
      ackedOther++;
      await engine.close();
      cpSync(join(mnt, 'eng'), copy, { recursive: true });
    });

    const engine = await openEngine({ dir: copy, shards: 2, segmentBytes: 1 * MiB });
    const s = await engine.pool(full);
    const drawn = s.items[0]!.drawn;
    expect(drawn).toBeGreaterThanOrEqual(acked);
    expect(drawn).toBeLessThanOrEqual(acked + inflightAtFailure);
    expect(s.lastRequestId).toBeGreaterThanOrEqual(maxAckedId);
    expect((await engine.pool(other)).items[0]!.drawn).toBe(ackedOther);
    expect((await engine.draw(full)).requestId).toBeGreaterThan(maxAckedId);
  });

  it('opening on a full filesystem with room for the LOCK but not a segment: ERR_DISK_FULL, lock released', async () => {
    if (!isRoot) {
      const r = await inNamespace(256 * KiB);
      expect(r).toMatchObject({ opened: false, code: 'ERR_DISK_FULL', isEngineError: true });
      return;
    }
    await withTmpfs(async (mnt) => {
      fill(mnt, 256 * KiB);
      const dir = join(mnt, 'eng');
      await expectCode(DrawEngine.open({ dir, shards: 2, segmentBytes: 1 * MiB }), 'ERR_DISK_FULL', 'segment', dir);
      expectUnlocked(dir);
      rmSync(join(mnt, 'filler'));
      const engine = await openEngine({ dir, shards: 2, segmentBytes: 1 * MiB });
      await engine.createPool('ok', CATALOG);
      expect((await engine.drawMany('ok', 10)).count).toBe(10);
      await engine.close();
    });
  });

  it('opening on a completely full filesystem: ERR_DISK_FULL', async () => {
    if (!isRoot) {
      const r = await inNamespace(0);
      expect(r).toMatchObject({ opened: false, code: 'ERR_DISK_FULL', isEngineError: true });
      return;
    }
    await withTmpfs(async (mnt) => {
      fill(mnt, 0);
      const dir = join(mnt, 'eng');
      mkdirSync(dir);
      await expectCode(DrawEngine.open({ dir, shards: 2, segmentBytes: 1 * MiB }), 'ERR_DISK_FULL', dir);
      rmSync(join(mnt, 'filler'));
      // Whatever the failed open left behind, the directory opens once there is room.
      const engine = await openEngine({ dir, shards: 2, segmentBytes: 1 * MiB });
      expect(engine.poolIds()).toEqual([]);
      await engine.close();
    });
  });
});
