/**
 * Disk footprint and the native layer's absence (issue 8): segments start small and double up
 * to segmentBytes, reserved with fallocate (real blocks, never sparse); an idle engine holds a
 * few MiB per shard; without the addon, wal 'mmap' is refused at open() with the way out
 * (wal 'file'), which works, lock included.
 */
import { spawn } from 'node:child_process';
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileWalWriter } from '../../dist/src/wal/file-writer.js';
import { MmapWalWriter } from '../../dist/src/wal/mmap-writer.js';
import { realStorage } from '../../dist/src/storage/real-storage.js';
import { pack } from 'msgpackr';
import { collect, DrawEngine, KiB, MiB, useEngines } from '../helpers/engine.js';
import { tmpDir } from '../helpers/tmp.js';
import { segmentFiles, writerOptions } from '../helpers/wal-files.js';

const openEngine = useEngines();

/** Bytes the files under dir really occupy (allocated blocks, not apparent sizes). */
function diskUse(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    const st = statSync(join(dir, name));
    if (st.isFile()) total += st.blocks * 512;
  }
  return total;
}

describe('growing segments', () => {
  it.each(['mmap', 'file'] as const)('%s: 1, 2, 4, 8, 8 MiB as they fill, each reserved in full (never sparse)', async (kind) => {
    const dir = tmpDir(`grow-${kind}`);
    const opts = writerOptions(dir, realStorage, { segmentBytes: 8 * MiB });
    const w = kind === 'mmap' ? new MmapWalWriter(opts).start() : new FileWalWriter(opts).start();
    w.registerPool(0, 'p', 6);
    const idx = new Uint16Array(1_000_000).map((_, i) => i % 6);
    let first = 1;
    for (let k = 0; k < 24; k++) {
      w.appendDraws(0, first, idx, 0, idx.length);
      first += idx.length;
    }
    await w.close();
    const sizes = segmentFiles(dir).map((f) => statSync(f).size);
    expect(sizes.slice(0, 5)).toEqual([1, 2, 4, 8, 8].map((m) => m * MiB));
    for (const f of segmentFiles(dir)) expect(statSync(f).blocks * 512, f).toBeGreaterThanOrEqual(statSync(f).size);
  });

  it('a record larger than the next size gets a segment large enough', async () => {
    const dir = tmpDir('grow-big-record');
    const w = new MmapWalWriter(writerOptions(dir, realStorage, { segmentBytes: 16 * MiB })).start();
    const items = Array.from({ length: 60_000 }, (_, i) => ({ id: `item-${'x'.repeat(40)}-${i}`, weight: 1, quantity: -1 }));
    const packed = pack({ id: 'big', items });
    expect(packed.length).toBeGreaterThan(2 * MiB);
    w.registerPool(0, 'big', items.length);
    w.appendCreate(0, packed);
    await w.close();
    const sizes = segmentFiles(dir).map((f) => statSync(f).size);
    expect(sizes[0]).toBe(MiB);
    // The smallest doubling of 1 MiB that holds header, frame and body.
    let fits = MiB;
    while (fits < packed.length + 64 + 16) fits *= 2;
    expect(sizes.at(-1)!).toBe(fits);
  });
});

describe('an idle engine', () => {
  it('8 shards, default segmentBytes (64 MiB), one pool, one draw: a few MiB per shard while open and after close', async () => {
    const dir = tmpDir('idle-8');
    const engine = await openEngine({ dir, shards: 8 });
    await engine.createPool('toy', [{ id: 'a', weight: 1, quantity: -1 }]);
    await engine.draw('toy');
    // Each shard prepares one spare after it starts: wait (bounded) until all 8 exist.
    for (let i = 0; i < 100 && readdirSync(dir, { recursive: true }).filter((n) => String(n).endsWith('.tmp')).length < 8; i++) await new Promise((r) => setTimeout(r, 20));
    const open = diskUse(dir);
    await engine.close();
    const closed = diskUse(dir);
    expect(open).toBeLessThanOrEqual(8 * 4 * MiB);
    expect(closed).toBeLessThanOrEqual(8 * 1.2 * MiB);
    expect(closed).toBeGreaterThanOrEqual(8 * MiB); // the first segments are reserved, not sparse
  });
});

describe('without the native addon (RPE_DISABLE_NATIVE=1, as where no prebuild fits)', () => {
  const index = new URL('../../dist/src/index.js', import.meta.url).href;

  /** Run an ES module in a child without the addon (a file: workers inherit execArgv, so no --eval). */
  function script(source: string): string {
    const file = join(tmpDir('no-native-script'), 'main.mjs');
    writeFileSync(file, `import { DrawEngine } from ${JSON.stringify(index)};\n${source}`);
    return file;
  }

  function run(source: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const child = spawn(process.execPath, [script(source)], { env: { ...process.env, RPE_DISABLE_NATIVE: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    return collect(child);
  }

  it("wal 'mmap' is refused at open() with ERR_INVALID_CONFIG naming the cause and wal 'file'", async () => {
    const dir = tmpDir('no-native-mmap');
    const r = await run(`
      try { await DrawEngine.open({ dir: ${JSON.stringify(dir)} }); console.log('opened'); }
      catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message, cause: e.cause?.code })); }`);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { code: string; message: string; cause: string };
    expect(out.code).toBe('ERR_INVALID_CONFIG');
    expect(out.message).toContain("wal: 'file'");
    expect(out.message).toContain('RPE_DISABLE_NATIVE');
    expect(out.cause).toBe('ERR_NATIVE_ADDON');
  });

  it("wal 'file' works: draws, reopen, and the lock still keeps a second engine out", async () => {
    const dir = tmpDir('no-native-file');
    const r = await run(`
      const opts = { dir: ${JSON.stringify(dir)}, wal: 'file', shards: 2, segmentBytes: 65536 };
      const e = await DrawEngine.open(opts);
      await e.createPool('p', [{ id: 'a', weight: 1, quantity: 50 }, { id: 'b', weight: 1, quantity: -1 }]);
      await e.drawMany('p', 1000);
      let second = 'opened';
      try { await DrawEngine.open(opts); } catch (err) { second = err.code; }
      await e.close();
      const again = await DrawEngine.open(opts);
      const s = await again.pool('p');
      await again.close();
      console.log(JSON.stringify({ second, drawn: s.items.map((i) => i.drawn), last: s.lastRequestId }));`);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { second: string; drawn: number[]; last: number };
    expect(out.second).toBe('ERR_DIR_LOCKED');
    expect(out.drawn[0]! + out.drawn[1]!).toBe(1000);
    expect(out.last).toBe(1000);
    // The segments are real zeros, not holes, also without fallocate.
    for (const f of segmentFiles(dir, 0)) expect(statSync(f).blocks * 512).toBeGreaterThanOrEqual(statSync(f).size);
  });

  it('the lock of a process without the addon also keeps out a process with it (and the other way round)', async () => {
    const dir = tmpDir('no-native-lock');
    const holder = spawn(process.execPath, [script(`await DrawEngine.open({ dir: ${JSON.stringify(dir)}, wal: 'file', shards: 1 }); console.log('held'); setTimeout(() => {}, 20000);`)], {
      env: { ...process.env, RPE_DISABLE_NATIVE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout!.on('data', (d: Buffer) => d.toString().includes('held') && resolve());
        holder.once('exit', (c) => reject(new Error(`holder exited ${c}`)));
      });
      // This process has the addon: flock. The holder has the socket lock. They must still exclude each other.
      const err = await DrawEngine.open({ dir, wal: 'file', shards: 1 }).then(
        (e) => e.close().then(() => 'opened'),
        (e: { code?: string }) => e.code,
      );
      expect(err).toBe('ERR_DIR_LOCKED');
    } finally {
      holder.kill('SIGKILL');
      await new Promise((r) => (holder.exitCode === null && holder.signalCode === null ? holder.once('exit', r) : r(null)));
    }
    // The other way round: this process (flock and socket) holds it, one without the addon tries.
    const engine = await openEngine({ dir, wal: 'file', shards: 1 });
    const r = await run(`try { await DrawEngine.open({ dir: ${JSON.stringify(dir)}, wal: 'file', shards: 1 }); console.log('opened'); } catch (e) { console.log(e.code); }`);
    expect(r.stdout.trim(), r.stderr).toBe('ERR_DIR_LOCKED');
    await engine.close();
  });
});
