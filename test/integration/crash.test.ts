/**
 * Process death: a child draws under load and prints every acknowledged draw; the parent
 * SIGKILLs it mid-append and recovers the directory. Nothing acknowledged may be missing.
 */
import { describe, expect, it } from 'vitest';
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
  sawReady: boolean;
}

function parse(line: string, run: Run): void {
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
    expect(run.creating).toBe(pool);
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
    expect(got).toBe(Math.min(run.mut.quantity, Number(b)));
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
    expect(counts.reduce((x, y) => x + y, 0)).toBe(count);
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

/** Start the child, let it acknowledge `target` draws, SIGKILL it; returns everything it printed. */
async function drawThenKill(
  dir: string,
  wal: string,
  sync: string,
  segmentBytes: number,
  snapshotEvery: number | undefined,
  target: number,
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
    for (const line of lines) parse(line, run);
    // Kill in the middle of the stream of acknowledgements, as soon as enough were seen.
    if (!killed && run.ackedDraws >= target && run.ackLines >= 200 && (snapshotEvery === undefined || autoSnapshots(dir).length > 0)) {
      killed = true;
      child.kill('SIGKILL');
    }
  });
  const { code, signal } = await exited;
  // 'close' fires after stdout ended: every line the child wrote has been parsed.
  expect(rest).toBe('');
  expect({ code, signal, stderr }).toEqual({ code: null, signal: 'SIGKILL', stderr: '' });
  expect(run.sawReady).toBe(true);
  expect(run.failures).toEqual([]);
  return run;
}

/** Snapshot files written after the open-time one (which is at segment 1 in a fresh dir). */
function autoSnapshots(dir: string): string[] {
  return shardDirs(dir).flatMap((k) => snapshotFiles(dir, k).filter((f) => seqOf(f) > 1));
}

const variants: ['mmap' | 'file', 'always' | 'interval', number, number | undefined][] = [
  ['mmap', 'always', 64 * KiB, undefined],
  ['mmap', 'interval', 64 * KiB, undefined],
  ['file', 'always', 64 * KiB, undefined],
  // Automatic snapshots (and the retirement of covered segments) while being killed.
  ['mmap', 'always', 64 * KiB, 40],
];

describe.each(variants)('SIGKILL under load: wal %s, sync %s, segments %i, snapshotEveryRecords %s', (wal, sync, segmentBytes, snapshotEvery) => {
  it('every acknowledged draw is recovered; ids continue above every acked id; recovery is repeatable', async () => {
    const dir = tmpDir(`crash-${wal}-${sync}-${snapshotEvery ?? 'default'}`);
    // A different kill point each run: somewhere after 1-2 million acknowledged draws.
    const run = await drawThenKill(dir, wal, sync, segmentBytes, snapshotEvery, 1_000_000 + Math.floor(Math.random() * 1_000_000));

    if (snapshotEvery !== undefined) expect(autoSnapshots(dir).length).toBeGreaterThan(0);
    const engine = await openEngine({ dir, shards: 2, wal, segmentBytes });
    const rec = engine.recovery;
    // Rotations (and, when asked for, snapshots) happened during the run.
    if (snapshotEvery === undefined) expect(rec.segments).toBeGreaterThan(4);
    else expect(rec.snapshotsLoaded).toBeGreaterThan(0);
    expect(rec.snapshotFallbacks).toEqual([]);
    // Every acknowledged createPool is there; only the one in flight may be there in addition.
    const expectedIds = [...run.pools.keys(), ...run.created];
    const ids = engine.poolIds();
    expect(run.created.length).toBeGreaterThan(0);
    expect(ids.filter((id) => id !== run.creating).sort()).toEqual(expectedIds.sort());
    const states = await allStates(engine);
    for (const [n, id] of run.created.entries()) {
      expect(states[id]!.items).toEqual([{ id: 'only', weight: 1, quantity: Number(id.slice(2)), drawn: 0 }]);
      expect(id).toBe(`c-${n + 1}`);
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
    expect(possible).toContainEqual({ quantity: mutItem.quantity, drawn: mutItem.drawn });
    expect(m.drawn).toBeGreaterThan(0);

    let maxAcked = 0;
    for (const [id, p] of run.pools) {
      const s = states[id]!;
      const inflight = p.issued - p.acked;
      expect(inflight).toBeGreaterThanOrEqual(0);
      const ackedOk = p.acked - p.counts[p.items.length]!;
      const drawn = s.items.reduce((a, i) => a + i.drawn, 0);
      // Everything acknowledged is there, and at most what was in flight on top of it.
      expect(drawn).toBeGreaterThanOrEqual(ackedOk);
      expect(drawn).toBeLessThanOrEqual(ackedOk + inflight);
      p.items.forEach((item, i) => {
        const got = s.items[i]!;
        expect(got.id).toBe(item.id);
        expect(got.drawn).toBeGreaterThanOrEqual(p.counts[i]!);
        expect(got.drawn).toBeLessThanOrEqual(p.counts[i]! + inflight);
        if (item.quantity === -1) expect(got.quantity).toBe(-1);
        else if (id !== 'mut') {
          expect(got.quantity).toBeGreaterThanOrEqual(0);
          expect(got.quantity + got.drawn).toBe(item.quantity);
        }
      });
      expect(s.lastRequestId).toBeGreaterThanOrEqual(p.maxId);
      maxAcked = Math.max(maxAcked, p.maxId);
    }
    expect(maxLastRequestId(states)).toBeGreaterThanOrEqual(maxAcked);
    expect(rec.maxRequestId).toBeGreaterThanOrEqual(maxAcked);

    // New draws get ids above every acknowledged one, in every pool.
    for (const id of run.pools.keys()) {
      const b = await engine.drawMany(id, 3);
      expect(b.firstRequestId).toBeGreaterThan(maxAcked);
    }
    const afterNew = await allStates(engine);
    await engine.close();

    // Recovering again gives the same state (the first recovery repaired whatever it dropped).
    const again = await openEngine({ dir, shards: 2, wal, segmentBytes });
    expect(again.recovery.tornTails).toEqual([]);
    expect(await allStates(again)).toEqual(afterNew);
    await again.close();
    const third = await openEngine({ dir, shards: 3, wal, segmentBytes });
    expect(await allStates(third)).toEqual(afterNew);
  });
});
