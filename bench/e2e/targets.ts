/**
 * The targets of issue 4, as ratios measured in one run, with pass/miss and a note on what
 * bounds each figure and what would move it. The notes interpolate this run's numbers; what
 * they say about where the time goes comes from CPU profiles (see "Profiles" in RESULTS.md).
 */
import type { PromiseCosts } from '../lib/heap-probe.js';
import { binary, duration, int, pct, si, sig3, type Table } from '../lib/format.js';
import type { Profile } from './config.js';
import { resolve, type Result, type Summary, type Target } from './results.js';

interface Ctx {
  s: (id: string) => Summary | undefined;
  /** segmentBytes in force in a scenario (engine.options). */
  segmentBytes: (id: string) => number;
  p: Profile;
  cores: number;
  promises: PromiseCosts | undefined;
}

function target(
  id: string,
  what: string,
  value: number,
  op: '>=' | '<=',
  goal: number,
  fmt: (n: number) => string,
  note: (pass: boolean) => string,
  inputs: (Summary | undefined)[] = [],
  overheadLike = false,
): Target {
  if (!Number.isFinite(value)) {
    return { id, what, value, op, goal, measured: '-', target: `${op} ${fmt(goal)}`, pass: null, margin: 'not measured in this run', note: '' };
  }
  const pass = op === '>=' ? value >= goal : value <= goal;
  // Relative distance to the goal: headroom when it passes, shortfall when it misses.
  const rel = op === '>=' ? (value - goal) / goal : (goal - value) / goal;
  // A ratio of rates moves by about the sum of its inputs' relative spreads (half-ranges over
  // medians); an overhead (b / a - 1) moves by that times (1 + overhead). Within that, another
  // run could land on the other side of the goal.
  const spread = inputs.reduce((a, s) => a + (s && s.samples > 1 ? s.spreadPct : 0), 0) / 100;
  const uncertainty = (overheadLike ? 1 + value : value) * spread;
  const within = spread > 0 && Math.abs(value - goal) < uncertainty ? ` (within the ±${sig3(spread * 100)}% spread)` : '';
  const margin = (pass ? `passes with ${pct(rel * 100)} to spare` : `misses by ${pct(-rel * 100)}`) + within;
  return { id, what, value, op, goal, measured: fmt(value), target: `${op} ${fmt(goal)}`, pass, margin, note: note(pass) };
}

const x = (n: number): string => `${sig3(n)}x`;
const percent = (n: number): string => pct(n * 100);
const rate = (n: number): string => `${si(n)} draws/s`;
const b = (n: number): string => `${sig3(n)} B`;

/** ns/op overhead of `id` over `base`: rate(base) / rate(id) - 1. */
function overhead(c: Ctx, id: string, base: string): number {
  const a = c.s(id);
  const z = c.s(base);
  return a && z ? z.drawsPerSec / a.drawsPerSec - 1 : Number.NaN;
}

function maxOf(c: Ctx, ids: string[], f: (s: Summary) => number): number {
  const v = ids
    .map((id) => c.s(id))
    .filter((s): s is Summary => s !== undefined)
    .map(f)
    .filter(Number.isFinite);
  return v.length === 0 ? Number.NaN : Math.max(...v);
}

export function computeTargets(results: Map<string, Result>, p: Profile, cores: number, promises?: PromiseCosts): Target[] {
  const c: Ctx = {
    s: (id) => resolve(results, id)?.summary,
    segmentBytes: (id) => Number(resolve(results, id)?.options?.segmentBytes ?? 64 * 1024 * 1024),
    p,
    cores,
    promises,
  };
  const sel = c.s('ref/selection');
  const prom = c.s('ref/promise');
  const dmMmap = c.s('main/drawMany/mmap');
  const always = c.s('sync/always');
  const dMmap = c.s('main/draw/mmap');
  const inFlight = p.inFlight.toLocaleString('en-US');
  return [
    target(
      'drawMany-vs-selection',
      `drawMany, mmap WAL, sync never, ${cores} shards / bare selection loop (1 thread)`,
      dmMmap && sel ? dmMmap.drawsPerSec / sel.drawsPerSec : Number.NaN,
      '>=',
      1.5,
      x,
      () => notes.drawManyVsSelection(c),
      [dmMmap, sel],
    ),
    target(
      'mmap-overhead',
      'mmap WAL cost over no WAL, drawMany (ns/op, same run)',
      overhead(c, 'main/drawMany/mmap', 'main/drawMany/none'),
      '<=',
      0.15,
      percent,
      () => notes.walOverhead(c, 'mmap'),
      [dmMmap, c.s('main/drawMany/none')],
      true,
    ),
    target(
      'file-overhead',
      'file WAL cost over no WAL, drawMany (ns/op, same run)',
      overhead(c, 'main/drawMany/file', 'main/drawMany/none'),
      '<=',
      0.3,
      percent,
      () => notes.walOverhead(c, 'file'),
      [c.s('main/drawMany/file'), c.s('main/drawMany/none')],
      true,
    ),
    target('draw-rate', `draw() x${inFlight} in flight, mmap WAL, sync never`, dMmap?.drawsPerSec ?? Number.NaN, '>=', 2e6, rate, () => notes.drawRate(c), [dMmap]),
    target(
      'draw-vs-promise',
      `draw() x${inFlight} in flight, mmap WAL / bare promise per call`,
      dMmap && prom ? dMmap.drawsPerSec / prom.drawsPerSec : Number.NaN,
      '>=',
      0.7,
      percent,
      () => notes.drawVsPromise(c),
      [dMmap, prom],
    ),
    target('sync-always', `draw() x${inFlight} in flight, mmap WAL, sync always`, always?.drawsPerSec ?? Number.NaN, '>=', 1e6, rate, () => notes.syncAlways(c), [always]),
    target(
      'wal-bytes',
      'WAL bytes per draw, worst main WAL row',
      maxOf(c, ['main/draw/mmap', 'main/draw/file', 'main/drawMany/mmap', 'main/drawMany/file'], (s) => s.walBytesPerDraw),
      '<=',
      1.1,
      (n) => sig3(n),
      () => notes.walBytes(c),
    ),
    target(
      'heap-drawMany',
      'coordinator heap bytes per draw, drawMany, worst main row',
      maxOf(c, ['main/drawMany/none', 'main/drawMany/mmap', 'main/drawMany/file'], (s) => s.bytesPerDraw),
      '<=',
      4,
      b,
      () => notes.heapDrawMany(c),
    ),
    target(
      'heap-draw',
      'coordinator heap bytes per draw, draw(), worst main row',
      maxOf(c, ['main/draw/none', 'main/draw/mmap', 'main/draw/file'], (s) => s.bytesPerDraw),
      '<=',
      150,
      b,
      () => notes.heapDraw(c),
    ),
  ];
}

export function targetsTable(targets: Target[]): Table {
  return {
    id: 'targets',
    title: 'Targets: ratios measured in this run',
    columns: ['target', 'measured', 'goal', 'result', 'margin'],
    rows: targets.map((t) => ({ id: t.id, cells: [t.what, t.measured, t.target, t.pass === null ? '-' : t.pass ? 'pass' : 'MISS', t.margin] })),
  };
}

/** What bounds each figure in this run, and what would move it. */
const notes = {
  drawManyVsSelection(c: Ctx): string {
    const sel = c.s('ref/selection');
    const dm = c.s('main/drawMany/mmap');
    const none = c.s('main/drawMany/none');
    const one = c.s('shards/1');
    if (!dm || !sel) return '';
    const goal = 1.5;
    const noneRatio = none ? none.drawsPerSec / sel.drawsPerSec : Number.NaN;
    return (
      `Each shard draws ${si(dm.drawsPerSec / c.cores)}/s against ${si(sel.drawsPerSec)}/s for the bare loop on one core` +
      (one ? ` (one shard alone: ${si(one.drawsPerSec)}/s)` : '') +
      `: to reach ${goal}x with ${c.cores} shards each must keep ${pct((goal / c.cores) * 100)} of the bare loop's rate while sharing its core with the WAL, its messages and the kernel. ` +
      (none
        ? `Without the WAL the ${c.cores} shards reach ${si(none.drawsPerSec)}/s (${x(noneRatio)})` +
          (noneRatio >= goal ? ', so the WAL append is most of the gap. ' : ', so even without the WAL the selection loop on shared cores is short of the goal. ')
        : '') +
      'The bare loop is the same WeightedSelector.drawInto the shards run, so a faster selection loop (the padded Fenwick tree and the inlined sfc32) speeds up both sides of this ratio, and the WAL, messages and segment preparation become a larger share of a shard. ' +
      `The coordinator is idle (it handles one reply per ${c.p.batch.toLocaleString('en-US')} draws); a shard spends most of its time in drawInto, and the WAL append ` +
      '(one native typed-array set that narrows the u16 indices to bytes, a CRC-32 per record) and batch handling, messages and segment preparation take the rest: ' +
      'the selection loop itself is the ceiling, shared by the shards with the OS on the cores they have.'
    );
  },
  walOverhead(c: Ctx, wal: 'mmap' | 'file'): string {
    const w = c.s(`main/drawMany/${wal}`);
    const none = c.s('main/drawMany/none');
    if (!w || !none) return '';
    const extraNs = w.nsPerOp - none.nsPerOp;
    const seg = c.segmentBytes(`main/drawMany/${wal}`);
    const fillSec = seg / ((w.walBytesPerDraw * w.drawsPerSec) / c.cores);
    return (
      `${extraNs > 0 ? `${duration(extraNs)} more per draw` : `No cost measurable (${duration(-extraNs)} less per draw, within the spread)`} (wall clock, all shards). ` +
      `A shard pays for the WAL in one native typed-array set per record that narrows the draws' u16 indices to bytes in the ${wal === 'mmap' ? 'mapped segment (plus a page fault per 4 KiB touched)' : 'staging buffer, then a pwrite per batch'}, ` +
      `a CRC-32 per record (native, small), and the preparation of the next segment: ${binary(seg)} of zeros written and fsynced on the libuv pool every ~${sig3(fillSec)} s per shard at this rate, ` +
      `off the draw path but on the same ${c.cores} cores, unless a shard fills its segment before the spare is ready and zero-fills the next one in line (one shard did once in the 3 s drawMany CPU profile below). fallocate(2) instead of writing zeros (not exposed by Node's fs) would remove most of the preparation.`
    );
  },
  drawRate(c: Ctx): string {
    const d = c.s('main/draw/mmap');
    const none = c.s('main/draw/none');
    const big = c.s('gc/semi-space-32mb');
    if (!d) return '';
    return (
      `Bound by the coordinator thread, not by the WAL or the shards: the process used ${sig3((d.ownCpuPct * c.cores) / 100)} of ${c.cores} cores` +
      (none ? `, and with no WAL at all draw() does ${si(none.drawsPerSec)}/s` : '') +
      `. GC pauses took ${sig3(d.gcPausePct)}% of the coordinator's window (${int(d.gcCount)} collections): each call's promise, resolver and result stay alive until its shard replies, so the ${c.p.inFlight.toLocaleString('en-US')} calls in flight are copied at every scavenge. ` +
      'A larger young generation means fewer scavenges' +
      (big ? ` (node --max-semi-space-size=32: ${si(big.drawsPerSec)}/s in this run, the "Young generation" rows)` : ' (node --max-semi-space-size=32)') +
      '; the next row says where the rest goes.'
    );
  },
  drawVsPromise(c: Ctx): string {
    const d = c.s('main/draw/mmap');
    const prom = c.s('ref/promise');
    const promRes = c.s('ref/promise-result');
    if (!d || !prom) return '';
    const resultNs = promRes ? promRes.nsPerOp - prom.nsPerOp : Number.NaN;
    return (
      `draw() costs ${duration(d.nsPerOp)} per call against ${duration(prom.nsPerOp)} for the bare promise loop` +
      (Number.isFinite(resultNs) && resultNs > 0 ? ` (${duration(resultNs)} more with the { requestId, itemId } object the API must build, second reference row)` : '') +
      `. Both spend about a third of their time in GC (${sig3(d.gcPausePct)}% and ${sig3(prom.gcPausePct)}% of the window), but draw() allocates ${sig3(d.bytesPerDraw - prom.bytesPerDraw)} B more per call and keeps every call alive for a round trip to a worker, so each scavenge copies more. ` +
      'On top, per call: the reply handler\'s resolve loop (a tenth of the coordinator or a little more in a CPU profile), one structured-clone message per shard per turn each way, and validation and routing (DrawEngine.draw with the pool lookup, about 4%). ' +
      'Each run of draws on a pool already keeps a single resolver array (rejections are delivered through resolve) and the lookup no longer runs instanceof per call, so what remains is mostly the cost of a promise per call kept alive across a round trip: ' +
      'a larger young generation narrows it (the "Young generation" rows), and only a call shape without a promise per draw (drawMany) avoids it.'
    );
  },
  syncAlways(c: Ctx): string {
    const a = c.s('sync/always');
    const never = c.s('sync/never');
    if (!a) return '';
    return (
      `Group commit: one msync(MS_SYNC) per shard batch, ${sig3(a.syncsPerSec)} syncs/s of ${sig3(a.msPerSync)} ms each, each acknowledging ${si(a.drawsPerBatch)} draws` +
      (never ? ` (sync never: ${si(never.drawsPerSec)}/s)` : '') +
      '. The rate is syncs/s times draws per sync: while a shard syncs its callers wait, and the other shard and the coordinator keep working. ' +
      'More draws in flight per sync raise it; a device with a faster flush lowers ms/sync.'
    );
  },
  walBytes(c: Ctx): string {
    const d = c.s('main/draw/mmap');
    const dm = c.s('main/drawMany/mmap');
    const snap = c.s('snapshot/off');
    if (!d || !dm) return '';
    return (
      `One byte per draw plus a 28-byte frame and header per record (one record per pool per batch): ${sig3(dm.walBytesPerDraw)} B/draw with drawMany(${c.p.batch}), ` +
      `${sig3(d.walBytesPerDraw)} with draw() (${si(d.drawsPerBatch)} draws per batch over ${c.p.poolsPerShard} pools per shard). ` +
      (snap ? `With ${c.p.snapshotPoolsPerShard * c.cores} pools sharing the same ${c.p.inFlight.toLocaleString('en-US')} calls (the snapshot rows) a record carries few draws and it is ${sig3(snap.walBytesPerDraw)} B/draw. ` : '') +
      'Only fewer records per draw would lower it (batches that gather a pool\'s draws over several turns).'
    );
  },
  heapDrawMany(c: Ctx): string {
    const dm = c.s('main/drawMany/mmap');
    return (
      `A handful of objects per call (the op, its promise, the batch message, the DrawBatch) spread over ${c.p.batch.toLocaleString('en-US')} draws` +
      (dm ? `: ${sig3(dm.bytesPerDraw * c.p.batch)} B per call` : '') +
      '. The indices themselves (2 B per draw) arrive in a transferred ArrayBuffer, outside the V8 heap.'
    );
  },
  heapDraw(c: Ctx): string {
    const d = c.s('main/draw/mmap');
    const prom = c.s('ref/promise');
    const promRes = c.s('ref/promise-result');
    if (!d || !prom) return '';
    const pc = c.promises;
    return (
      `Out of reach for an API that returns one promise per draw on Node 20: the bare promise loop beside it allocates ${sig3(prom.bytesPerDraw)} B per call` +
      (pc ? ` (measured in this run: ${sig3(pc.newPromiseBytes)} B for new Promise(executor), the promise and its two resolving functions, and ${sig3(pc.awaitBytes)} B for the caller's await)` : '') +
      `. The engine's own share is ${sig3(d.bytesPerDraw - prom.bytesPerDraw)} B per call: the result object` +
      (promRes
        ? ` (${sig3(promRes.bytesPerDraw - prom.bytesPerDraw)} B), and ` +
          (d.bytesPerDraw >= promRes.bytesPerDraw
            ? `${sig3(d.bytesPerDraw - promRes.bytesPerDraw)} B more than the second reference row, which also pushes each resolver into an array: what the engine's per-run resolver array, the op per run and the batch messages cost beyond that`
            : `nothing measurable beyond the second reference row (${sig3(promRes.bytesPerDraw - d.bytesPerDraw)} B less), which also pushes each resolver into an array: the engine's per-run resolver array, op per run and batch messages cost about what that array does`)
        : ' and the per-run resolver array') +
      '. Only a call shape without a promise per draw (drawMany, or a callback form) gets under 150 B.'
    );
  },
};
