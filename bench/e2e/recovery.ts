/**
 * Recovery speed: build a directory holding RPE_DRAWS draws (default 10 M) over 2 shards with
 * snapshots off (so every draw is in the WAL), then recover copies of it with replayThreads
 * 1..N, RPE_REPEAT times each (median reported). Also: recovery after a snapshot, to show that
 * cost follows the WAL after the snapshot, not the history.
 */
import { cpSync, rmSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { DrawEngine } from '../../src/index.js';

const draws = Number(process.env.RPE_DRAWS ?? 10_000_000);
const repeat = Number(process.env.RPE_REPEAT ?? 5);
const segmentBytes = Number(process.env.RPE_SEGMENT_BYTES ?? 64 * 1024 * 1024);
const root = join(process.cwd(), '_tmp', `bench-recovery-${process.pid}`);
const catalog = ['diamond', 'gold', 'silver', 'rock', 'mud', 'log'].map((id, i) => ({ id, weight: 10 * (i + 1), quantity: -1 }));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function build(dir: string, total: number): Promise<void> {
  const e = await DrawEngine.open({ dir, shards: 2, sync: 'never', snapshotEveryRecords: 0, segmentBytes });
  const pools = Array.from({ length: 16 }, (_, i) => `pool-${i}`);
  for (const p of pools) await e.createPool(p, catalog);
  const per = 65_536;
  let done = 0;
  while (done < total) {
    const round = pools.map((p) => e.drawMany(p, Math.min(per, Math.max(1, Math.ceil((total - done) / pools.length)))));
    for (const b of await Promise.all(round)) done += b.count;
  }
  await e.close();
}

async function recoverCopy(
  src: string,
  replayThreads: number,
): Promise<{ ms: number; records: number; draws: number; threads: number; threadsUsed: number; segments: number }> {
  const dir = `${src}-copy`;
  rmSync(dir, { recursive: true, force: true });
  cpSync(src, dir, { recursive: true });
  const e = await DrawEngine.open({ dir, shards: 2, replayThreads, segmentBytes });
  const r = e.recovery;
  await e.close();
  rmSync(dir, { recursive: true, force: true });
  return { ms: r.ms, records: r.records, draws: r.drawsReplayed, threads: r.threads, threadsUsed: r.threadsUsed, segments: r.segments };
}

async function main(): Promise<void> {
  rmSync(root, { recursive: true, force: true });
  const src = join(root, 'wal');
  await build(src, draws);
  const rows: Record<string, string | number>[] = [];
  let base = 0;
  for (let t = 1; t <= Math.max(2, availableParallelism()); t++) {
    const runs = [];
    for (let i = 0; i < repeat; i++) runs.push(await recoverCopy(src, t));
    const ms = median(runs.map((r) => r.ms));
    if (t === 1) base = ms;
    rows.push({
      replayThreads: t,
      threads: runs[0]!.threads,
      'threads used': median(runs.map((r) => r.threadsUsed)),
      segments: runs[0]!.segments,
      records: runs[0]!.records,
      'draws replayed': runs[0]!.draws,
      'ms (median)': ms.toFixed(1),
      'ms min..max': `${Math.min(...runs.map((r) => r.ms)).toFixed(1)}..${Math.max(...runs.map((r) => r.ms)).toFixed(1)}`,
      'draws/s': Math.round(runs[0]!.draws / (ms / 1000)).toLocaleString('en-US'),
      speedup: (base / ms).toFixed(2),
    });
  }
  console.log(`machine: ${cpus()[0]?.model ?? 'unknown'}, ${availableParallelism()} cores, Node ${process.version}; ${draws.toLocaleString('en-US')} draws over 2 shards, segments of ${segmentBytes} bytes, ${repeat} runs each`);
  console.table(rows);
  rmSync(root, { recursive: true, force: true });
}

await main();
