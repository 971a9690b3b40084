/**
 * Engine throughput, one run, every figure from the same process:
 *   drawMany with wal none / mmap / file (sync 'never') at 1 and 2 shards,
 *   draw() with RPE_IN_FLIGHT (10,000) calls in flight, WAL bytes per draw.
 * Env knobs: RPE_SECONDS (per scenario, default 2), RPE_IN_FLIGHT, RPE_BATCH (drawMany size).
 */
import { rmSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { DrawEngine, type DrawEngineOptions } from '../../src/index.js';
import { WeightedSelector } from '../../src/selector.js';
import { Sfc32 } from '../../src/prng.js';

const seconds = Number(process.env.RPE_SECONDS ?? 2);
const inFlight = Number(process.env.RPE_IN_FLIGHT ?? 10_000);
const batch = Number(process.env.RPE_BATCH ?? 65_536);
const root = join(process.cwd(), '_tmp', `bench-${process.pid}`);

const catalog = [
  { id: 'diamond', weight: 10, quantity: -1 },
  { id: 'gold', weight: 20, quantity: -1 },
  { id: 'silver', weight: 30, quantity: -1 },
  { id: 'rock', weight: 40, quantity: -1 },
  { id: 'mud', weight: 70, quantity: -1 },
  { id: 'log', weight: 50, quantity: -1 },
];

interface Row {
  scenario: string;
  shards: number;
  wal: string;
  sync: string;
  drawsPerSec: number;
  walBytesPerDraw: number;
}

let dirCounter = 0;
async function withEngine<T>(opts: Partial<DrawEngineOptions>, fn: (e: DrawEngine, pools: string[]) => Promise<T>): Promise<T> {
  const dir = join(root, String(dirCounter++));
  const engine = await DrawEngine.open({ dir, segmentBytes: 256 * 1024 * 1024, ...opts });
  // Enough pools that every shard gets several.
  const pools: string[] = [];
  for (let i = 0; i < 8 * engine.shards; i++) {
    pools.push(`pool-${i}`);
    await engine.createPool(`pool-${i}`, catalog);
  }
  try {
    return await fn(engine, pools);
  } finally {
    await engine.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function drawManyRate(e: DrawEngine, pools: string[]): Promise<number> {
  let draws = 0;
  const end = performance.now() + seconds * 1000;
  const t0 = performance.now();
  // Two rounds in flight per pool keep every shard busy while replies are handled.
  const loop = async (pool: string): Promise<void> => {
    while (performance.now() < end) {
      const b = await e.drawMany(pool, batch);
      draws += b.count;
    }
  };
  await Promise.all(pools.flatMap((p) => [loop(p), loop(p)]));
  return draws / ((performance.now() - t0) / 1000);
}

async function drawRate(e: DrawEngine, pools: string[]): Promise<number> {
  let draws = 0;
  // A timer flag, not performance.now() per call: the clock read would cost as much as the draw.
  let stop = false;
  setTimeout(() => (stop = true), seconds * 1000);
  const t0 = performance.now();
  const loop = async (pool: string): Promise<void> => {
    while (!stop) {
      await e.draw(pool);
      draws++;
    }
  };
  const loops: Promise<void>[] = [];
  for (let i = 0; i < inFlight; i++) loops.push(loop(pools[i % pools.length]!));
  await Promise.all(loops);
  return draws / ((performance.now() - t0) / 1000);
}

function bareSelection(): number {
  const sel = new WeightedSelector(
    catalog.map((c) => c.weight),
    catalog.map((c) => c.quantity),
  );
  const rng = Sfc32.fromSeed(1);
  const out = new Uint16Array(batch);
  let draws = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  while (performance.now() < end) {
    sel.drawInto(rng, batch, out, 0);
    draws += batch;
  }
  return draws / ((performance.now() - t0) / 1000);
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  const cores = availableParallelism();
  rows.push({ scenario: 'bare selection loop (1 thread)', shards: 0, wal: '-', sync: '-', drawsPerSec: bareSelection(), walBytesPerDraw: 0 });
  for (const shards of [1, Math.max(2, Math.min(cores, 2))]) {
    for (const wal of ['none', 'mmap', 'file'] as const) {
      const opts = { shards, wal, sync: 'never' as const };
      await withEngine(opts, async (e, pools) => {
        const rate = await drawManyRate(e, pools);
        rows.push({ scenario: 'drawMany', shards, wal, sync: 'never', drawsPerSec: rate, walBytesPerDraw: e.metrics().walBytesPerDraw });
      });
    }
  }
  for (const [wal, sync] of [['mmap', 'never'], ['mmap', 'always'], ['none', 'never']] as const) {
    await withEngine({ shards: 2, wal, sync }, async (e, pools) => {
      const rate = await drawRate(e, pools);
      rows.push({ scenario: `draw() x${inFlight} in flight`, shards: 2, wal, sync, drawsPerSec: rate, walBytesPerDraw: e.metrics().walBytesPerDraw });
      const m = e.metrics();
      console.log(`${wal}/${sync}: ${m.batches} batches, ${m.syncs} syncs, ${(m.syncTimeMs / Math.max(1, m.syncs)).toFixed(3)} ms/sync, ${(m.draws / m.batches).toFixed(0)} draws/batch`);
    });
  }
  console.log(`machine: ${cpus()[0]?.model ?? 'unknown'}, ${cores} cores, Node ${process.version}, ${seconds}s per scenario`);
  console.table(
    rows.map((r) => ({
      scenario: r.scenario,
      shards: r.shards,
      wal: r.wal,
      sync: r.sync,
      'draws/s': Math.round(r.drawsPerSec).toLocaleString('en-US'),
      'wal bytes/draw': r.walBytesPerDraw.toFixed(3),
    })),
  );
  const get = (s: string, shards: number, wal: string) => rows.find((r) => r.scenario === s && r.shards === shards && r.wal === wal)!.drawsPerSec;
  const two = Math.max(2, Math.min(cores, 2));
  console.log(`mmap / none (drawMany, ${two} shards): ${(get('drawMany', two, 'mmap') / get('drawMany', two, 'none')).toFixed(3)}`);
  console.log(`file / none (drawMany, ${two} shards): ${(get('drawMany', two, 'file') / get('drawMany', two, 'none')).toFixed(3)}`);
  console.log(`mmap ${two} shards / 1 shard (drawMany): ${(get('drawMany', two, 'mmap') / get('drawMany', 1, 'mmap')).toFixed(3)}`);
  rmSync(root, { recursive: true, force: true });
}

await main();
