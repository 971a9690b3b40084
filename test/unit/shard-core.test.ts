import { existsSync, readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import type { ItemSpec } from '../../src/catalog.js';
import { EngineError, errorToWire } from '../../src/errors.js';
import {
  createMetricsBuffer,
  kBatchesIndex,
  kDrawsIndex,
  kEmptyDrawsIndex,
  kRecordsIndex,
  kRotationsIndex,
  kStateFailed,
  kStateIndex,
  kStateRunning,
  kSyncsIndex,
  kWalBytesIndex,
  shardBlock,
} from '../../src/layout.js';
import { Sfc32 } from '../../src/prng.js';
import {
  kOpCreate,
  kOpDraw,
  kOpState,
  kOpUpdate,
  type BatchMessage,
  type BatchReply,
  type Control,
  type PoolInit,
  type PoolStateReply,
  type ShardConfig,
  type SnapshotJob,
} from '../../src/protocol.js';
import { SegmentSummarizer } from '../../src/recovery/summary.js';
import { kEmptyDraw, WeightedSelector } from '../../src/selector.js';
import { ShardCore } from '../../src/shard/shard-core.js';
import { segmentPath } from '../../src/storage/data-dir.js';
import { kHeaderBytes, kSealClosed, kSealRotated, readHeader } from '../../src/wal/format.js';
import { scanSegment } from '../../src/wal/reader.js';
import { NullWalWriter } from '../../src/wal/writer.js';
import { tmpDir } from '../helpers/tmp.js';

/*
 * ShardCore driven directly, with no worker thread: batches built by hand, replies read back,
 * the WAL read from its files, the metrics block read slot by slot.
 */

const gemItems: ItemSpec[] = [
  { id: 'ruby', weight: 1, quantity: -1 },
  { id: 'opal', weight: 2, quantity: 5 },
  { id: 'jade', weight: 3, quantity: 0 },
];
const coinItems: ItemSpec[] = [
  { id: 'copper', weight: 5, quantity: -1 },
  { id: 'silver', weight: 1, quantity: -1 },
];

function config(over: Partial<ShardConfig> = {}): ShardConfig {
  return {
    shard: 0,
    wal: 'none',
    dir: undefined,
    sync: 'never',
    syncIntervalMs: 10,
    segmentBytes: 64 * 1024,
    epoch: 1,
    firstSeq: 1,
    seed: 42,
    shards: 1,
    snapshotEveryRecords: 0,
    idempotency: { keys: 1000, draws: 100_000 },
    maxRequestId: 0,
    chain: null,
    ...over,
  };
}

/** Builds one batch the way Batcher.pack() lays it out. */
class Batch {
  readonly ops: number[] = [];
  readonly controls: Control[] = [];

  create(ref: number, id: string, items: ItemSpec[]): this {
    this.ops.push(kOpCreate, ref, 0, 0);
    this.controls.push({ type: 'create', id, items });
    return this;
  }

  draw(ref: number, count: number, firstId: number): this {
    this.ops.push(kOpDraw, ref, count, firstId);
    return this;
  }

  update(ref: number, itemIndex: number, weight: number, quantity: number): this {
    this.ops.push(kOpUpdate, ref, 0, 0);
    this.controls.push({ type: 'update', itemIndex, weight, quantity });
    return this;
  }

  state(ref: number): this {
    this.ops.push(kOpState, ref, 0, 0);
    this.controls.push({ type: 'state' });
    return this;
  }

  message(id: number): BatchMessage {
    return { type: 'batch', id, ops: Float64Array.from(this.ops), controls: this.controls, keys: [] };
  }
}

const cores: ShardCore[] = [];

afterEach(async () => {
  for (const c of cores.splice(0)) await c.close().catch(() => {});
});

function open(cfg: ShardConfig, pools: PoolInit[] = [], wal?: NullWalWriter): { core: ShardCore; metrics: BigInt64Array } {
  const metrics = shardBlock(createMetricsBuffer(1), 0);
  const core = new ShardCore(cfg, pools, metrics, wal);
  cores.push(core);
  return { core, metrics };
}

function walConfig(wal: 'mmap' | 'file', over: Partial<ShardConfig> = {}): ShardConfig {
  return config({ wal, dir: tmpDir(`shard-core-${wal}`), ...over });
}

/** Draws per item index (the last slot counts empty draws). */
function tally(indices: ArrayLike<number>, items: number): number[] {
  const out = new Array<number>(items + 1).fill(0);
  for (let i = 0; i < indices.length; i++) out[indices[i] === kEmptyDraw ? items : indices[i]!]!++;
  return out;
}

function stateOf(core: ShardCore, ref: number, id = 1000): PoolStateReply {
  const r = core.apply(new Batch().state(ref).message(id));
  expect(r.error).toBeNull();
  expect(r.opErrors).toBeNull();
  return r.controlResults[0]!;
}

function plainState(s: PoolStateReply): unknown {
  return { id: s.id, itemIds: s.itemIds, weights: Array.from(s.weights), quantities: Array.from(s.quantities), drawn: Array.from(s.drawn), lastRequestId: s.lastRequestId };
}

function scanWal(file: string, newest: boolean): { records: number; end: number; summary: SegmentSummarizer; seal: number } {
  const summary = new SegmentSummarizer();
  const buf = readFileSync(file);
  const res = scanSegment(buf, { file, newest }, summary.visit);
  const head = readHeader(buf);
  return { records: res.records, end: res.end, summary, seal: typeof head === 'object' ? head.seal : -1 };
}

function job(j: SnapshotJob | 'skipped' | 'queued' | undefined): SnapshotJob {
  if (j === undefined || typeof j === 'string') throw new Error(`expected a snapshot job, got ${String(j)}`);
  return j;
}

describe('ShardCore.apply', () => {
  it('applies creates, draws, updates and state reads in op order, as the seeded selector would', () => {
    const { core } = open(config({ seed: 7 }));
    const r = core.apply(
      new Batch()
        .create(0, 'gems', gemItems)
        .draw(0, 50, 1)
        .update(0, 2, NaN, 10) // jade becomes available
        .state(0)
        .draw(0, 20, 51)
        .state(0)
        .message(1),
    );
    expect(r.type).toBe('done');
    expect(r.id).toBe(1);
    expect(r.error).toBeNull();
    expect(r.opErrors).toBeNull();
    expect(r.indices).toBeInstanceOf(Uint16Array);
    expect(r.indices.length).toBe(70);

    // The same draws from a WeightedSelector and the shard's stream of the seed.
    const sel = new WeightedSelector(
      gemItems.map((i) => i.weight),
      gemItems.map((i) => i.quantity),
    );
    const rng = Sfc32.fromSeed(7, 0);
    const expected = new Uint16Array(70);
    sel.drawInto(rng, 50, expected, 0);
    sel.update(2, NaN, 10);
    sel.drawInto(rng, 20, expected, 50);
    expect(Array.from(r.indices)).toEqual(Array.from(expected));

    const first = tally(r.indices.subarray(0, 50), 3);
    expect(first[2]).toBe(0); // jade had quantity 0
    expect(first[1]).toBeLessThanOrEqual(5);
    expect(first[3]).toBe(0); // ruby is unlimited: never empty
    const all = tally(r.indices, 3);

    expect(r.controlResults).toHaveLength(4);
    expect(r.controlResults[0]).toBeNull();
    expect(r.controlResults[1]).toBeNull();
    expect(plainState(r.controlResults[2]!)).toEqual({
      id: 'gems',
      itemIds: ['ruby', 'opal', 'jade'],
      weights: [1, 2, 3],
      quantities: [-1, 5 - first[1]!, 10],
      drawn: first.slice(0, 3),
      lastRequestId: 50,
    });
    expect(plainState(r.controlResults[3]!)).toEqual({
      id: 'gems',
      itemIds: ['ruby', 'opal', 'jade'],
      weights: [1, 2, 3],
      quantities: [-1, 5 - all[1]!, 10 - all[2]!],
      drawn: all.slice(0, 3),
      lastRequestId: 70,
    });
    // State replies are copies: later draws do not change them.
    const before = plainState(r.controlResults[3]!);
    core.apply(new Batch().draw(0, 10, 71).message(2));
    expect(plainState(r.controlResults[3]!)).toEqual(before);
  });

  it('starts from the pools it is given (PoolInit) and continues their counts', () => {
    const init: PoolInit = { ref: 3, id: 'coins', itemIds: ['copper', 'silver'], weights: [5, 1], quantities: [-1, 2], drawn: [10, 4], lastRequestId: 77 };
    const { core } = open(config(), [init]);
    expect(plainState(stateOf(core, 3))).toEqual({ id: 'coins', itemIds: ['copper', 'silver'], weights: [5, 1], quantities: [-1, 2], drawn: [10, 4], lastRequestId: 77 });
    const r = core.apply(new Batch().draw(3, 40, 100).message(1));
    const t = tally(r.indices, 2);
    expect(t[0]! + t[1]!).toBe(40);
    expect(t[1]).toBeLessThanOrEqual(2);
    expect(plainState(stateOf(core, 3))).toMatchObject({ drawn: [10 + t[0]!, 4 + t[1]!], quantities: [-1, 2 - t[1]!], lastRequestId: 139 });
  });

  it('moves the draw, empty-draw and batch counters with each batch', () => {
    const { core, metrics } = open(config());
    core.apply(new Batch().create(0, 'few', [{ id: 'x', weight: 1, quantity: 3 }]).draw(0, 5, 1).message(1));
    expect(metrics[kDrawsIndex]).toBe(5n);
    expect(metrics[kEmptyDrawsIndex]).toBe(2n);
    expect(metrics[kBatchesIndex]).toBe(1n);
    core.apply(new Batch().draw(0, 4, 6).state(0).message(2));
    expect(metrics[kDrawsIndex]).toBe(9n);
    expect(metrics[kEmptyDrawsIndex]).toBe(6n);
    expect(metrics[kBatchesIndex]).toBe(2n);
    expect(metrics[kStateIndex]).toBe(BigInt(kStateRunning));
  });

  it('a draw on an unknown ref is an op error (ERR_UNKNOWN_POOL); the other ops of the batch go through', () => {
    const { core, metrics } = open(config());
    const r = core.apply(new Batch().create(0, 'gems', gemItems).draw(0, 3, 1).draw(9, 4, 4).draw(0, 2, 8).update(5, 0, 2, NaN).state(6).message(1));
    expect(r.error).toBeNull();
    expect(r.opErrors).toEqual([
      [2, expect.objectContaining({ code: 'ERR_UNKNOWN_POOL', message: 'pool ref 9 is not known to this shard (its creation failed)' })],
      [4, expect.objectContaining({ code: 'ERR_UNKNOWN_POOL', message: 'pool ref 5 is not known to this shard (its creation failed)' })],
      [5, expect.objectContaining({ code: 'ERR_UNKNOWN_POOL', message: 'pool ref 6 is not known to this shard (its creation failed)' })],
    ]);
    expect(r.indices.length).toBe(9);
    expect(Array.from(r.indices.subarray(3, 7))).toEqual([kEmptyDraw, kEmptyDraw, kEmptyDraw, kEmptyDraw]);
    expect(r.controlResults).toEqual([null, null, null]);
    expect(stateOf(core, 0).lastRequestId).toBe(9);
    // Only the draws that were made count.
    expect(metrics[kDrawsIndex]).toBe(5n);
  });

  it('a duplicate create is ERR_POOL_EXISTS and leaves the pool as it was', () => {
    const { core } = open(config());
    core.apply(new Batch().create(0, 'gems', gemItems).draw(0, 4, 1).message(1));
    const before = plainState(stateOf(core, 0));
    const r = core.apply(
      new Batch()
        .create(0, 'gems', coinItems)
        .create(1, 'coins', coinItems)
        .create(1, 'coins', gemItems) // twice in one batch
        .message(2),
    );
    expect(r.error).toBeNull();
    expect(r.opErrors).toEqual([
      [0, expect.objectContaining({ code: 'ERR_POOL_EXISTS', message: 'pool "gems" already exists' })],
      [2, expect.objectContaining({ code: 'ERR_POOL_EXISTS', message: 'pool "coins" already exists' })],
    ]);
    expect(r.controlResults).toEqual([null, null, null]);
    expect(plainState(stateOf(core, 0))).toEqual(before);
    expect(stateOf(core, 1).itemIds).toEqual(['copper', 'silver']);
  });

  it('a weight update that would take the total past 2^48 is ERR_INVALID_ARGUMENT, applied and logged not at all', () => {
    const { core, metrics } = open(walConfig('mmap'));
    const big: ItemSpec[] = [
      { id: 'a', weight: 2 ** 47, quantity: -1 },
      { id: 'b', weight: 2 ** 47 - 10, quantity: 7 },
    ];
    core.apply(new Batch().create(0, 'big', big).message(1));
    core.commit();
    const records = metrics[kRecordsIndex];
    const r = core.apply(new Batch().update(0, 1, 2 ** 47 + 1, 3).state(0).message(2));
    expect(r.error).toBeNull();
    expect(r.opErrors).toHaveLength(1);
    const [at, err] = r.opErrors![0]!;
    expect(at).toBe(0);
    expect(err.code).toBe('ERR_INVALID_ARGUMENT');
    expect(err.message).toBe(`updateItem("big"): weight ${2 ** 47 + 1} would make the pool's total weight ${2 ** 48 + 1} > 2^48`);
    expect(err.details).toEqual({ poolId: 'big', value: 2 ** 47 + 1 });
    // Neither the weight nor the quantity of the refused update was applied.
    expect(plainState(r.controlResults[1]!)).toMatchObject({ weights: [2 ** 47, 2 ** 47 - 10], quantities: [-1, 7] });
    core.commit();
    expect(metrics[kRecordsIndex]).toBe(records);
    // Up to exactly 2^48 is allowed, and then the shard keeps the new total.
    const ok = core.apply(new Batch().update(0, 1, 2 ** 47, NaN).update(0, 0, 2 ** 47 + 1, NaN).state(0).message(3));
    expect(ok.opErrors).toEqual([[1, expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' })]]);
    expect(Array.from(ok.controlResults[2]!.weights)).toEqual([2 ** 47, 2 ** 47]);
  });

  it('a create too large for a segment is an op error; the shard stays healthy and the ref stays unknown', () => {
    const { core } = open(walConfig('file', { segmentBytes: 4096 }));
    const huge: ItemSpec[] = Array.from({ length: 400 }, (_, i) => ({ id: `item-${i}-${'x'.repeat(10)}`, weight: 1, quantity: -1 }));
    const r = core.apply(new Batch().create(0, 'huge', huge).draw(0, 2, 1).create(1, 'gems', gemItems).draw(1, 2, 3).message(1));
    expect(r.error).toBeNull();
    expect(r.opErrors).toEqual([
      [0, expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' })],
      [1, expect.objectContaining({ code: 'ERR_UNKNOWN_POOL' })],
    ]);
    expect(r.opErrors![0]![1].message).toMatch(/does not fit in a segment of 4096 bytes/);
    expect(core.failure).toBeUndefined();
    core.commit();
    expect(stateOf(core, 1).lastRequestId).toBe(4);
  });

  it('seeded draws are reproducible across two cores; another seed or shard gives another stream', () => {
    const run = (cfg: ShardConfig): number[] => {
      const { core } = open(cfg);
      const r1 = core.apply(new Batch().create(0, 'gems', gemItems).create(1, 'coins', coinItems).draw(0, 300, 1).draw(1, 500, 301).message(1));
      const r2 = core.apply(new Batch().update(0, 1, NaN, 20).draw(0, 200, 801).draw(1, 1, 1001).message(2));
      return [...r1.indices, ...r2.indices];
    };
    const a = run(config({ seed: 1234 }));
    const b = run(config({ seed: 1234 }));
    expect(a).toHaveLength(1001);
    expect(b).toEqual(a);
    expect(run(config({ seed: 1235 }))).not.toEqual(a);
    expect(run(config({ seed: 1234, shard: 1 }))).not.toEqual(a);
  });
});

describe.each(['mmap', 'file'] as const)('ShardCore with wal %s', (wal) => {
  it('commit() makes the records readable by scanSegment and SegmentSummarizer, and moves the WAL counters', async () => {
    const cfg = walConfig(wal, { sync: 'always' });
    const { core, metrics } = open(cfg);
    const r = core.apply(new Batch().create(0, 'gems', gemItems).draw(0, 30, 1).update(0, 1, 9, 2).draw(0, 10, 31).message(1));
    expect(r.opErrors).toBeNull();
    const file = segmentPath(cfg.dir!, 0, 1);
    expect(existsSync(file)).toBe(true);
    if (wal === 'file') {
      // Staged in memory until the commit.
      expect(scanWal(file, true).records).toBe(0);
    }
    expect(metrics[kRecordsIndex]).toBe(0n);
    core.commit();

    const scan = scanWal(file, true);
    expect(scan.records).toBe(4); // the CreatePool record defines the ref: no PoolRef needed
    const span = scan.summary.span;
    const p = span.pools.get('gems')!;
    expect(p.created).toEqual(gemItems);
    const t = tally(r.indices, 3);
    expect(Array.from(p.draws)).toEqual(t.slice(0, 3));
    expect(p.emptyDraws).toBe(t[3]);
    expect(p.lastRequestId).toBe(40);
    expect(Array.from(p.setW)).toEqual([NaN, 9, NaN]);
    expect(Array.from(p.setQ)).toEqual([NaN, 2, NaN]);
    expect(span.draws).toBe(40);
    expect(span.maxRequestId).toBe(40);

    expect(metrics[kRecordsIndex]).toBe(4n);
    expect(metrics[kWalBytesIndex]).toBe(BigInt(scan.end - kHeaderBytes));
    expect(metrics[kSyncsIndex]).toBeGreaterThanOrEqual(1n);
    expect(metrics[kDrawsIndex]).toBe(40n);

    // Closing seals the segment as closed; its records are unchanged.
    await core.close();
    const closed = scanWal(file, false);
    expect(closed.seal).toBe(kSealClosed);
    expect(closed.records).toBe(4);
  });

  it('snapshot flow: full first, queued while in flight, then incremental with only the changed pool', () => {
    const cfg = walConfig(wal, { epoch: 3, shard: 0, shards: 2, maxRequestId: 5 });
    const { core, metrics } = open(cfg);
    core.apply(new Batch().create(0, 'gems', gemItems).create(1, 'coins', coinItems).draw(0, 5, 6).draw(1, 5, 11).message(1));
    core.commit();

    const j1 = job(core.requestSnapshot(1));
    expect(j1.type).toBe('snapshotJob');
    expect(j1.reqIds).toEqual([1]);
    // The current segment held records: the boundary rotated to segment 2.
    expect(j1.body).toMatchObject({ epoch: 3, shard: 0, shards: 2, coversBelow: 2, maxRequestId: 15, kind: 'full' });
    expect(j1.body.manifest).toEqual({ poolIds: ['gems', 'coins'], at: [2, 2] });
    expect(j1.body.pools.map((p) => p.id)).toEqual(['gems', 'coins']);
    expect(j1.body.pools[0]).toMatchObject({ itemIds: ['ruby', 'opal', 'jade'], lastRequestId: 10 });
    expect(Array.from(j1.body.pools[0]!.drawn)).toEqual(Array.from(stateOf(core, 0).drawn));
    expect(j1.retention).toEqual({ keepSnapshots: [2], deleteSegmentsBelow: 0, snapshotsBelow: 2 });
    expect(metrics[kRotationsIndex]).toBe(1n);
    expect(existsSync(segmentPath(cfg.dir!, 0, 2))).toBe(true);
    expect(scanWal(segmentPath(cfg.dir!, 0, 1), false).seal).toBe(kSealRotated);

    // A second request while the first is being written waits for it.
    expect(core.requestSnapshot(2)).toBe('queued');
    expect(core.requestSnapshot(3)).toBe('queued');
    // Written; nothing changed since, so the waiting calls need no new snapshot.
    expect(core.endSnapshot(2, null)).toEqual({ job: 'skipped', reqIds: [2, 3] });
    expect(core.requestSnapshot(4)).toBe('skipped');

    // One pool changes: the next snapshot holds it alone, and a manifest of both.
    core.apply(new Batch().draw(1, 3, 16).message(2));
    core.commit();
    const j2 = job(core.requestSnapshot(5));
    expect(j2.body).toMatchObject({ coversBelow: 3, kind: 'incremental', maxRequestId: 18 });
    expect(j2.body.pools.map((p) => p.id)).toEqual(['coins']);
    expect(j2.body.pools[0]!.lastRequestId).toBe(18);
    expect(j2.body.manifest).toEqual({ poolIds: ['gems', 'coins'], at: [2, 3] });
    expect(j2.retention).toEqual({ keepSnapshots: [2, 3], deleteSegmentsBelow: 2, snapshotsBelow: 3 });
    expect(core.endSnapshot(3, null)).toEqual({ job: undefined, reqIds: [] });
  });

  it('a change while a snapshot is in flight goes into the job handed back by endSnapshot for the waiting call', () => {
    const { core } = open(walConfig(wal));
    core.apply(new Batch().create(0, 'gems', gemItems).create(1, 'coins', coinItems).draw(0, 5, 1).message(1));
    core.commit();
    const j1 = job(core.requestSnapshot(1));
    core.apply(new Batch().draw(1, 2, 6).message(2));
    core.commit();
    expect(core.requestSnapshot(2)).toBe('queued');
    const { job: next, reqIds } = core.endSnapshot(j1.body.coversBelow, null);
    expect(reqIds).toEqual([2]);
    const j2 = job(next);
    expect(j2.reqIds).toEqual([2]);
    expect(j2.body.kind).toBe('incremental');
    expect(j2.body.pools.map((p) => p.id)).toEqual(['coins']);
    expect(j2.body.manifest.at).toEqual([j1.body.coversBelow, j2.body.coversBelow]);
  });

  it('an endSnapshot error puts the pools back as changed: the next request snapshots them again', () => {
    const { core } = open(walConfig(wal));
    core.apply(new Batch().create(0, 'gems', gemItems).create(1, 'coins', coinItems).message(1));
    core.commit();
    const full = job(core.requestSnapshot(1));
    expect(core.endSnapshot(full.body.coversBelow, null).job).toBeUndefined();
    core.apply(new Batch().draw(0, 4, 1).message(2));
    core.commit();
    const j = job(core.requestSnapshot(2));
    expect(j.body.pools.map((p) => p.id)).toEqual(['gems']);
    expect(core.requestSnapshot(3)).toBe('queued');
    const failed = core.endSnapshot(j.body.coversBelow, new EngineError('ERR_DISK_FULL', 'cannot write snapshot: ENOSPC'));
    // The waiting call gets the retry, which holds the pool again (nothing else changed).
    expect(failed.reqIds).toEqual([3]);
    const retry = job(failed.job);
    expect(retry.reqIds).toEqual([3]);
    expect(retry.body.kind).toBe('incremental');
    expect(retry.body.pools.map((p) => p.id)).toEqual(['gems']);
    // The failed snapshot is not the base: retention still counts from the full one.
    expect(retry.retention.deleteSegmentsBelow).toBe(full.body.coversBelow);
    expect(retry.retention.keepSnapshots).toEqual([full.body.coversBelow, retry.body.coversBelow]);
    // Nothing was written since the failed job: the retry snapshots at the same boundary.
    expect(retry.body.coversBelow).toBe(j.body.coversBelow);
  });

  it('an endSnapshot error with nobody waiting leaves the pools changed for the next request', () => {
    const { core } = open(walConfig(wal));
    core.apply(new Batch().create(0, 'gems', gemItems).message(1));
    core.commit();
    const j = job(core.requestSnapshot(1));
    expect(core.endSnapshot(j.body.coversBelow, new EngineError('ERR_SHARD_FAILED', 'write failed'))).toEqual({ job: undefined, reqIds: [] });
    const again = job(core.requestSnapshot(2));
    // Still the first snapshot of the shard: full.
    expect(again.body.kind).toBe('full');
    expect(again.body.pools.map((p) => p.id)).toEqual(['gems']);
  });

  it('starts from a chain: pools missing from its manifest count as changed, the others are not copied', () => {
    const init = (ref: number, id: string): PoolInit => ({ ref, id, itemIds: ['copper', 'silver'], weights: [5, 1], quantities: [-1, -1], drawn: [0, 0], lastRequestId: 0 });
    const cfg = walConfig(wal, { firstSeq: 4, maxRequestId: 50, chain: { seq: 4, files: [2, 4], at: new Map([['old', 2], ['kept', 4]]) } });
    const { core } = open(cfg, [init(0, 'old'), init(1, 'kept'), init(2, 'unlisted')]);
    core.apply(new Batch().create(3, 'gems', gemItems).message(1));
    core.commit();
    const j = job(core.requestSnapshot(1));
    expect(j.body).toMatchObject({ kind: 'incremental', coversBelow: 5, maxRequestId: 50 });
    expect(j.body.pools.map((p) => p.id).sort()).toEqual(['gems', 'unlisted']);
    expect(j.body.manifest).toEqual({ poolIds: ['old', 'kept', 'unlisted', 'gems'], at: [2, 4, 5, 5] });
    expect(j.retention).toEqual({ keepSnapshots: [2, 4, 5], deleteSegmentsBelow: 4, snapshotsBelow: 5 });
  });

  it('snapshotIfDue: a job (for nobody) once snapshotEveryRecords records were written, none while one is in flight', () => {
    const { core } = open(walConfig(wal, { snapshotEveryRecords: 3 }));
    core.apply(new Batch().create(0, 'gems', gemItems).draw(0, 1, 1).message(1));
    core.commit();
    expect(core.snapshotIfDue()).toBeUndefined(); // 2 records
    core.apply(new Batch().draw(0, 1, 2).message(2));
    core.commit();
    const j = job(core.snapshotIfDue());
    expect(j.reqIds).toEqual([]);
    core.apply(new Batch().draw(0, 1, 3).draw(0, 1, 4).update(0, 0, 2, NaN).message(3));
    core.commit();
    expect(core.snapshotIfDue()).toBeUndefined(); // one in flight
    expect(core.endSnapshot(j.body.coversBelow, null).job).toBeUndefined();
    // 4 records since (a PoolRef in the new segment, 2 draws, an update).
    expect(job(core.snapshotIfDue()).body.kind).toBe('incremental');
  });
});

describe('ShardCore snapshots with wal none', () => {
  it('requestSnapshot is skipped, and snapshotIfDue never gives a job', () => {
    const { core } = open(config({ snapshotEveryRecords: 1 }));
    core.apply(new Batch().create(0, 'gems', gemItems).draw(0, 5, 1).message(1));
    core.commit();
    expect(core.requestSnapshot(1)).toBe('skipped');
    expect(core.snapshotIfDue()).toBeUndefined();
  });
});

describe('ShardCore fail-stop', () => {
  it('after fail(err) every batch is refused with that error, commit and requestSnapshot throw it', () => {
    const { core, metrics } = open(walConfig('mmap'));
    core.apply(new Batch().create(0, 'gems', gemItems).message(1));
    core.commit();
    const err = new EngineError('ERR_SHARD_FAILED', 'shard 0 background sync failed: EIO', { details: { errno: 'EIO' } });
    core.fail(err);
    core.fail(new EngineError('ERR_DISK_FULL', 'a later failure'));
    expect(core.failure).toBe(err);
    expect(metrics[kStateIndex]).toBe(BigInt(kStateFailed));
    const draws = metrics[kDrawsIndex];
    for (const id of [2, 3]) {
      const r = core.apply(new Batch().draw(0, 5, 1).state(0).message(id));
      expect(r).toEqual<Partial<BatchReply>>(
        expect.objectContaining({ type: 'done', id, error: errorToWire(err), opErrors: null, controlResults: [] }),
      );
      expect(r.indices.length).toBe(0);
    }
    expect(metrics[kDrawsIndex]).toBe(draws);
    expect(metrics[kBatchesIndex]).toBe(1n);
    expect(() => core.commit()).toThrow(err);
    expect(() => core.requestSnapshot(1)).toThrow(err);
  });

  it('a WAL append that throws fails the shard (ENOSPC: ERR_DISK_FULL) and refuses every later batch', () => {
    class FullDisk extends NullWalWriter {
      override appendDraws(): void {
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      }
    }
    const { core, metrics } = open(config(), [], new FullDisk());
    const r = core.apply(new Batch().create(0, 'gems', gemItems).draw(0, 5, 1).message(1));
    expect(r.error).toMatchObject({ code: 'ERR_DISK_FULL', message: 'shard 0 WAL append failed: ENOSPC: no space left on device, write' });
    expect(core.failure).toBeInstanceOf(EngineError);
    expect(core.failure!.code).toBe('ERR_DISK_FULL');
    expect(metrics[kStateIndex]).toBe(BigInt(kStateFailed));
    const later = core.apply(new Batch().state(0).message(2));
    expect(later.error).toEqual(errorToWire(core.failure));
    expect(later.controlResults).toEqual([]);
    expect(() => core.commit()).toThrow(core.failure);
  });

  it('a commit that fails throws, fails the shard, and refuses every later batch', () => {
    class BrokenSync extends NullWalWriter {
      override commit(): void {
        throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
      }
    }
    const { core, metrics } = open(config(), [], new BrokenSync());
    const r = core.apply(new Batch().create(0, 'gems', gemItems).draw(0, 5, 1).message(1));
    expect(r.error).toBeNull();
    let thrown: unknown;
    try {
      core.commit();
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(EngineError);
    expect(thrown).toMatchObject({ code: 'ERR_SHARD_FAILED', message: 'shard 0 WAL sync failed: EIO: i/o error, fdatasync' });
    expect(core.failure).toBe(thrown);
    expect(metrics[kStateIndex]).toBe(BigInt(kStateFailed));
    expect(core.apply(new Batch().draw(0, 1, 6).message(2)).error).toEqual(errorToWire(thrown));
  });
});
