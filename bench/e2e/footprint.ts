/**
 * Open time and disk use of an idle engine: default options (64 MiB segments), RPE_SHARDS
 * shard counts, one pool and one draw. Per shard count, median (min..max) of RPE_REPEAT rounds:
 * the first open of an empty directory, a reopen of the same directory, the disk the directory
 * occupies (allocated blocks) while open, once each shard has prepared its next segment, and
 * after close.
 *
 * RPE_BASELINE=<path to another checkout's dist/src/index.js> measures that build in the same
 * run, for a before/after table.
 */
import { readdirSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

interface EngineLike {
  createPool(id: string, items: { id: string; weight: number; quantity: number }[]): Promise<void>;
  draw(id: string): Promise<unknown>;
  close(): Promise<void>;
}
interface EngineModule {
  DrawEngine: { open(options: Record<string, unknown>): Promise<EngineLike> };
}

const shardCounts = (process.env.RPE_SHARDS ?? '1,2,8').split(',').map(Number);
const repeat = Number(process.env.RPE_REPEAT ?? 5);
const root = join(process.cwd(), '_tmp', `bench-footprint-${process.pid}`);

function diskUse(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    const st = statSync(join(dir, name));
    if (st.isFile()) total += st.blocks * 512;
  }
  return total;
}

function spares(dir: string): number {
  return (readdirSync(dir, { recursive: true }) as string[]).filter((n) => n.endsWith('.tmp')).length;
}

function stat(xs: number[], digits: number, scale = 1): string {
  const s = [...xs].sort((a, b) => a - b).map((x) => x / scale);
  return `${s[Math.floor(s.length / 2)]!.toFixed(digits)} (${s[0]!.toFixed(digits)}..${s.at(-1)!.toFixed(digits)})`;
}

async function measure(label: string, mod: EngineModule, shards: number): Promise<Record<string, string>> {
  const first: number[] = [];
  const reopen: number[] = [];
  const open: number[] = [];
  const closed: number[] = [];
  for (let r = 0; r < repeat; r++) {
    const dir = join(root, `${label}-${shards}-${r}`);
    rmSync(dir, { recursive: true, force: true });
    let t0 = performance.now();
    let engine = await mod.DrawEngine.open({ dir, shards });
    first.push(performance.now() - t0);
    await engine.createPool('toy', [{ id: 'a', weight: 1, quantity: -1 }]);
    await engine.draw('toy');
    await engine.close();
    t0 = performance.now();
    engine = await mod.DrawEngine.open({ dir, shards });
    reopen.push(performance.now() - t0);
    await engine.draw('toy');
    // Each shard prepares its next segment in the background: measure once they are there.
    for (let i = 0; i < 500 && spares(dir) < shards; i++) await new Promise((res) => setTimeout(res, 10));
    open.push(diskUse(dir));
    await engine.close();
    closed.push(diskUse(dir));
    rmSync(dir, { recursive: true, force: true });
  }
  const MiB = 2 ** 20;
  return {
    build: label,
    shards: String(shards),
    'first open ms': stat(first, 1),
    'reopen ms': stat(reopen, 1),
    'disk while open MiB': stat(open, 1, MiB),
    'disk after close MiB': stat(closed, 1, MiB),
  };
}

const builds: [string, string][] = [['this build', new URL('../../src/index.js', import.meta.url).href]];
if (process.env.RPE_BASELINE) builds.unshift(['baseline', pathToFileURL(process.env.RPE_BASELINE).href]);
const rows: Record<string, string>[] = [];
for (const [label, url] of builds) {
  const mod = (await import(url)) as EngineModule;
  for (const shards of shardCounts) rows.push(await measure(label, mod, shards));
}
rmSync(root, { recursive: true, force: true });
console.log(`machine: ${cpus()[0]?.model.trim() ?? 'unknown'}, ${availableParallelism()} cores, Node ${process.version}; default options (64 MiB segments), one pool, one draw; median (min..max) of ${repeat}`);
console.table(rows);
