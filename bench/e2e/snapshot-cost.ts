/**
 * Snapshot cost for many pools of which few changed: 10,000 pools (RPE_POOLS) over 2 shards,
 * then snapshots after touching all of them (every pool in the file: the size of a full
 * snapshot) and after touching 1% (RPE_CHANGED_PERCENT) of them (incremental). Reports the wall
 * time of engine.snapshot() (copy in the shard, encode and fsync on a pool thread, retire) and
 * the bytes written, median of RPE_REPEAT rounds.
 */
import { readdirSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { DrawEngine } from '../../src/index.js';
import { readSnapshotFile } from '../../src/snapshot/format.js';
import { realStorage } from '../../src/storage/real-storage.js';

const poolCount = Number(process.env.RPE_POOLS ?? 10_000);
const changedPercent = Number(process.env.RPE_CHANGED_PERCENT ?? 1);
const repeat = Number(process.env.RPE_REPEAT ?? 5);
const dir = join(process.cwd(), '_tmp', `bench-snapshot-${process.pid}`);
const catalog = ['diamond', 'gold', 'silver', 'rock', 'mud', 'log'].map((id, i) => ({ id, weight: 10 * (i + 1), quantity: 1_000_000 }));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** The newest .snap file of each shard: kind, pools held, bytes. */
function newestSnapshots(): { kind: string; pools: number; bytes: number }[] {
  const out = [];
  for (const shard of readdirSync(dir).filter((n) => n.startsWith('shard-'))) {
    const snaps = readdirSync(join(dir, shard)).filter((n) => n.endsWith('.snap')).sort();
    const path = join(dir, shard, snaps.at(-1)!);
    const body = readSnapshotFile(realStorage, path);
    if (typeof body === 'string') throw new Error(`${path}: ${body}`);
    out.push({ kind: body.kind, pools: body.pools.length, bytes: statSync(path).size });
  }
  return out;
}

async function main(): Promise<void> {
  rmSync(dir, { recursive: true, force: true });
  const engine = await DrawEngine.open({ dir, shards: 2, snapshotEveryRecords: 0, segmentBytes: 16 << 20 });
  const pools = Array.from({ length: poolCount }, (_, i) => `pool-${i}`);
  await Promise.all(pools.map((p) => engine.createPool(p, catalog)));
  const changed = pools.slice(0, Math.max(1, Math.round((poolCount * changedPercent) / 100)));
  const rows: Record<string, string | number>[] = [];
  for (const [label, touched] of [
    ['all pools changed (full size)', pools],
    [`${changedPercent}% changed (incremental)`, changed],
  ] as const) {
    const ms: number[] = [];
    let files: { kind: string; pools: number; bytes: number }[] = [];
    for (let r = 0; r < repeat; r++) {
      await Promise.all(touched.map((p) => engine.drawMany(p, 10)));
      const t0 = performance.now();
      await engine.snapshot();
      ms.push(performance.now() - t0);
      files = newestSnapshots();
    }
    rows.push({
      snapshot: label,
      'pools written': files.reduce((a, f) => a + f.pools, 0),
      kinds: [...new Set(files.map((f) => f.kind))].join('/'),
      bytes: files.reduce((a, f) => a + f.bytes, 0).toLocaleString('en-US'),
      'ms (median)': median(ms).toFixed(1),
      'ms min..max': `${Math.min(...ms).toFixed(1)}..${Math.max(...ms).toFixed(1)}`,
    });
  }
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
  console.log(`machine: ${cpus()[0]?.model ?? 'unknown'}, ${availableParallelism()} cores, Node ${process.version}; ${poolCount.toLocaleString('en-US')} pools of 6 items over 2 shards, ${repeat} snapshots each`);
  console.table(rows);
}

await main();
