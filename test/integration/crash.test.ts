/**
 * Process death: a child draws under load and prints every acknowledged draw; the parent
 * SIGKILLs it mid-append and recovers the directory. Nothing acknowledged may be missing.
 *
 * The kill moment comes from a seeded PRNG: the seed and the chosen moment are in every
 * assertion message; rerun a failure with RPE_SEED=<seed>.
 */
import { describe, expect, it } from 'vitest';
import { mulberry32, testSeed } from '../helpers/seed.js';
import { tmpDir } from '../helpers/tmp.js';
import { allStates, fixture, KiB, maxLastRequestId, useChildren, useEngines, type Item } from '../helpers/engine.js';
import { seqOf, shardDirs, snapshotFiles } from '../helpers/wal-files.js';

const openEngine = useEngines();
const spawnChild = useChildren();

interface Acked {
  items: Item[];
  /** Acknowledged draws per item index; the last slot counts empty draws. */
  counts: number[];
  acked: number;
  issued: number;
  maxId: number;
}

/** The 'mut' pool's single sequential stream: state after the acknowledged ops, and the op in flight. */
interface Mut {
  quantity: number;
  drawn: number;
  pending: { set: number } | { draw: number } | null;
}

interface Run {
  pools: Map<string, Acked>;
  mut: Mut;
  /** createPool calls acknowledged, and the one in flight. */
  created: string[];
  creating: string | null;
  failures: string[];
  ackLines: number;
  ackedDraws: number;
  /** Acknowledged draws seen when the kill was sent. */
  ackedAtKill: number;
  sawReady: boolean;
}

function parse(line: string, run: Run, ctx: string): void {
  const [kind, pool, a, b, c] = line.split(' ');
  if (kind === 'pool') {
    const items = JSON.parse(line.slice(`pool ${pool} `.length)) as Item[];
    run.pools.set(pool!, { items, counts: new Array(items.length + 1).fill(0), acked: 0, issued: 0, maxId: 0 });
    return;
  }
  if (kind === 'ready') {
    run.sawReady = true;
    return;
  }
  if (kind === 'issue-create') {
    run.creating = pool!;
    return;
  }
  if (kind === 'created') {
    expect(run.creating, ctx).toBe(pool);
    run.created.push(pool!);
    run.creating = null;
    return;
  }
  if (kind === 'issue-set') {
    run.mut.pending = { set: Number(a) };
    return;
  }
  if (kind === 'set') {
    run.mut.quantity = Number(a);
    run.mut.pending = null;
    return;
  }
  if (pool === 'mut' && kind === 'issue') run.mut.pending = { draw: Number(a) };
  if (pool === 'mut' && kind === 'ack') {
    const got = (JSON.parse(c!) as number[])[0]!;
    expect(got, ctx).toBe(Math.min(run.mut.quantity, Number(b)));
    run.mut.quantity -= got;
    run.mut.drawn += got;
    run.mut.pending = null;
  }
  const p = run.pools.get(pool!);
  if (p === undefined) throw new Error(`line for unknown pool: ${line}`);
  if (kind === 'issue') {
    p.issued += Number(a);
  } else if (kind === 'ack') {
    const first = Number(a);
    const count = Number(b);
    const counts = JSON.parse(c!) as number[];
    expect(counts.reduce((x, y) => x + y, 0), ctx).toBe(count);
    counts.forEach((n, i) => (p.counts[i]! += n));
    p.acked += count;
    p.maxId = Math.max(p.maxId, first + count - 1);
    run.ackLines++;
    run.ackedDraws += count;
  } else if (kind === 'd') {
    const id = Number(a);
    const idx = Number(b);
    p.counts[idx === -1 ? p.items.length : idx]!++;
    p.acked++;
    p.maxId = Math.max(p.maxId, id);
    run.ackLines++;
    run.ackedDraws++;
  } else if (kind === 'fail') {
    run.failures.push(line);
  } else {
    throw new Error(`unexpected line: ${line}`);
  }
}

/**
 * Start the child, let it acknowledge `target` draws, SIGKILL it; returns everything it printed.
 * `ctx` (seed and kill moment) goes into every assertion message.
 */
async function drawThenKill(
  dir: string,
  wal: string,
  sync: string,
  segmentBytes: number,
  snapshotEvery: number | undefined,
  target: number,
  ctx: string,
): Promise<Run> {
  const args = [fixture('draw-under-load.mjs'), dir, wal, sync, String(segmentBytes), '2'];
  if (snapshotEvery !== undefined) args.push(String(snapshotEvery));
  const child = spawnChild(process.execPath, args);
  const run: Run = {
    pools: new Map(),
    mut: { quantity: 0, drawn: 0, pending: null },
    created: [],
    creating: null,
    failures: [],
    ackLines: 0,
    ackedDraws: 0,
    ackedAtKill: -1,
    sawReady: false,
  };
  let stderr = '';
  let rest = '';
  let killed = false;
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal })),
  );
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    const lines = (rest + d).split('\n');
    rest = lines.pop()!;
    for (const line of lines) parse(line, run, ctx);
    // Kill in the middle of the stream of acknowledgements, as soon as enough were seen.
    if (!killed && run.ackedDraws >= target && run.ackLines >= 200 && (snapshotEvery === undefined || autoSnapshots(dir).length > 0)) {
      killed = true;
      run.ackedAtKill = run.ackedDraws;
      child.kill('SIGKILL');
    }
  });
  const { code, signal } = await exited;
  ctx = `${ctx}, killed at ${run.ackedAtKill} acknowledged draws`;
  // 'close' fires after stdout ended: every line the child wrote has been parsed.
  expect(rest, ctx).toBe('');
  expect({ code, signal, stderr }, ctx).toEqual({ code: null, signal: 'SIGKILL', stderr: '' });
  expect(run.sawReady, ctx).toBe(true);
  expect(run.failures, ctx).toEqual([]);
  return run;
}

/** Snapshot files written after the open-time one (which is at segment 1 in a fresh dir). */
function autoSnapshots(dir: string): string[] {
  return shardDirs(dir).flatMap((k) => snapshotFiles(dir, k).filter((f) => seqOf(f) > 1));
}

const seed = testSeed(0x5eed_c4a5);
const seedCtx = `seed ${seed} (rerun with RPE_SEED=${seed})`;

const variants: ['mmap' | 'file', 'always' | 'interval', number, number | undefined][] = [
  ['mmap', 'always', 64 * KiB, undefined],
  ['mmap', 'interval', 64 * KiB, undefined],
  ['file', 'always', 64 * KiB, undefined],
  // Automatic snapshots (and the retirement of covered segments) while being killed.
  ['mmap', 'always', 64 * KiB, 40],
];

// One kill point per variant, somewhere after 1-2 million acknowledged draws: drawn in
// variant order from one stream, so a variant's point does not depend on which others run.
const rng = mulberry32(seed);
const killTargets = variants.map(() => 1_000_000 + Math.floor(rng() * 1_000_000));

describe.each(variants)('SIGKILL under load: wal %s, sync %s, segments %i, snapshotEveryRecords %s', (wal, sync, segmentBytes, snapshotEvery) => {
  it('every acknowledged draw is recovered; ids continue above every acked id; recovery is repeatable', async () => {
    const dir = tmpDir(`crash-${wal}-${sync}-${snapshotEvery ?? 'default'}`);
    const v = variants.findIndex(([w, s, b, e]) => w === wal && s === sync && b === segmentBytes && e === snapshotEvery);
    const target = killTargets[v]!;
    const killCtx = `${seedCtx}, variant ${v}, kill after ${target} acknowledged draws`;
    const run = await drawThenKill(dir, wal, sync, segmentBytes, snapshotEvery, target, killCtx);
    const ctx = `${killCtx}, killed at ${run.ackedAtKill}`;

    if (snapshotEvery !== undefined) expect(autoSnapshots(dir).length, ctx).toBeGreaterThan(0);
    const engine = await openEngine({ dir, shards: 2, wal, segmentBytes });
    const rec = engine.recovery;
    // Rotations (and, when asked for, snapshots) happened during the run.
    if (snapshotEvery === undefined) expect(rec.segments, ctx).toBeGreaterThan(4);
    else expect(rec.snapshotsLoaded, ctx).toBeGreaterThan(0);
    expect(rec.snapshotFallbacks, ctx).toEqual([]);
    // Every acknowledged createPool is there; only the one in flight may be there in addition.
    const expectedIds = [...run.pools.keys(), ...run.created];
    const ids = engine.poolIds();
    expect(run.created.length, ctx).toBeGreaterThan(0);
    expect(ids.filter((id) => id !== run.creating).sort(), ctx).toEqual(expectedIds.sort());
    const states = await allStates(engine);
    for (const [n, id] of run.created.entries()) {
      expect(states[id]!.items, ctx).toEqual([{ id: 'only', weight: 1, quantity: Number(id.slice(2)), drawn: 0 }]);
      expect(id, ctx).toBe(`c-${n + 1}`);
    }

    // 'mut': the state after its last acknowledged op, or after the one in flight too.
    const m = run.mut;
    const possible = [{ quantity: m.quantity, drawn: m.drawn }];
    if (m.pending !== null && 'set' in m.pending) possible.push({ quantity: m.pending.set, drawn: m.drawn });
    if (m.pending !== null && 'draw' in m.pending) {
      const got = Math.min(m.quantity, m.pending.draw);
      possible.push({ quantity: m.quantity - got, drawn: m.drawn + got });
    }
    const mutItem = states.mut!.items[0]!;
    expect(possible, ctx).toContainEqual({ quantity: mutItem.quantity, drawn: mutItem.drawn });
    expect(m.drawn, ctx).toBeGreaterThan(0);

    let maxAcked = 0;
    for (const [id, p] of run.pools) {
      const poolCtx = `${ctx}, pool ${id}`;
      const s = states[id]!;
      const inflight = p.issued - p.acked;
      expect(inflight, poolCtx).toBeGreaterThanOrEqual(0);
      const ackedOk = p.acked - p.counts[p.items.length]!;
      const drawn = s.items.reduce((a, i) => a + i.drawn, 0);
      // Everything acknowledged is there, and at most what was in flight on top of it.
      expect(drawn, poolCtx).toBeGreaterThanOrEqual(ackedOk);
      expect(drawn, poolCtx).toBeLessThanOrEqual(ackedOk + inflight);
      p.items.forEach((item, i) => {
        const got = s.items[i]!;
        expect(got.id, poolCtx).toBe(item.id);
        expect(got.drawn, poolCtx).toBeGreaterThanOrEqual(p.counts[i]!);
        expect(got.drawn, poolCtx).toBeLessThanOrEqual(p.counts[i]! + inflight);
        if (item.quantity === -1) expect(got.quantity, poolCtx).toBe(-1);
        else if (id !== 'mut') {
          expect(got.quantity, poolCtx).toBeGreaterThanOrEqual(0);
          expect(got.quantity + got.drawn, poolCtx).toBe(item.quantity);
        }
      });
      expect(s.lastRequestId, poolCtx).toBeGreaterThanOrEqual(p.maxId);
      maxAcked = Math.max(maxAcked, p.maxId);
    }
    expect(maxLastRequestId(states), ctx).toBeGreaterThanOrEqual(maxAcked);
    expect(rec.maxRequestId, ctx).toBeGreaterThanOrEqual(maxAcked);

    // New draws get ids above every acknowledged one, in every pool.
    for (const id of run.pools.keys()) {
      const b = await engine.drawMany(id, 3);
      expect(b.firstRequestId, ctx).toBeGreaterThan(maxAcked);
    }
    const afterNew = await allStates(engine);
    await engine.close();

    // Recovering again gives the same state (the first recovery repaired whatever it dropped).
    const again = await openEngine({ dir, shards: 2, wal, segmentBytes });
    expect(again.recovery.tornTails, ctx).toEqual([]);
    expect(await allStates(again), ctx).toEqual(afterNew);
    await again.close();
    const third = await openEngine({ dir, shards: 3, wal, segmentBytes });
    expect(await allStates(third), ctx).toEqual(afterNew);
  });
});
