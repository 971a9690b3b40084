import { describe, expect, it } from 'vitest';
import { EngineError } from '../../src/errors.js';
import type { PoolInit, SnapshotJob } from '../../src/protocol.js';
import { SnapshotPlanner, type SnapshotSource } from '../../src/shard/snapshot-planner.js';
import type { SnapshotPool } from '../../src/snapshot/format.js';

/*
 * The snapshot planner alone, on a fake shard: pools are refs with ids `p<ref>`, the WAL is a
 * record counter, and the boundary moves to a fresh segment whenever records were written
 * since the last boundary (as the WAL writer does).
 */
class FakeShard implements SnapshotSource {
  recordCount = 0;
  seq: number;
  #recordsAtBoundary = 0;
  pools: number[];
  boundaryCalls = 0;
  copied: number[] = [];

  constructor(pools: number[], firstSeq = 1) {
    this.pools = pools;
    this.seq = firstSeq;
  }

  /** n records written (draws on these refs, say). */
  write(n = 1): void {
    this.recordCount += n;
  }

  records(): number {
    return this.recordCount;
  }

  boundary(): number {
    this.boundaryCalls++;
    if (this.recordCount !== this.#recordsAtBoundary) {
      this.seq++;
      this.#recordsAtBoundary = this.recordCount;
    }
    return this.seq;
  }

  refs(): number[] {
    return this.pools.slice();
  }

  id(ref: number): string {
    return `p${ref}`;
  }

  copy(ref: number): SnapshotPool {
    this.copied.push(ref);
    return { id: `p${ref}`, itemIds: ['a'], weights: [1], quantities: [-1], drawn: [ref], lastRequestId: ref };
  }

  header(): { epoch: number; shard: number; shards: number; maxRequestId: number } {
    return { epoch: 2, shard: 1, shards: 3, maxRequestId: 99 };
  }
}

function job(j: SnapshotJob | 'skipped'): SnapshotJob {
  if (j === 'skipped') throw new Error('expected a snapshot job, got skipped');
  return j;
}

/** Change `refs` (one record each), snapshot, and acknowledge it as written. */
function snapshotAfter(planner: SnapshotPlanner, shard: FakeShard, refs: number[], reqIds: number[] = []): SnapshotJob {
  for (const r of refs) {
    planner.changed(r);
    shard.write();
  }
  const j = job(planner.begin(reqIds, shard));
  expect(planner.end(j.body.coversBelow, null)).toEqual([]);
  return j;
}

function poolInit(ref: number): PoolInit {
  return { ref, id: `p${ref}`, itemIds: ['a'], weights: [1], quantities: [-1], drawn: [0], lastRequestId: 0 };
}

describe('SnapshotPlanner.begin', () => {
  it('the first snapshot is full: every pool, a manifest of all, header from the source', () => {
    const shard = new FakeShard([0, 1, 2]);
    const planner = new SnapshotPlanner();
    planner.changed(1);
    shard.write(3);
    const j = job(planner.begin([7, 8], shard));
    expect(j.type).toBe('snapshotJob');
    expect(j.reqIds).toEqual([7, 8]);
    expect(j.body).toMatchObject({ epoch: 2, shard: 1, shards: 3, maxRequestId: 99, coversBelow: 2, kind: 'full' });
    expect(typeof j.body.createdAt).toBe('number');
    expect(j.body.manifest).toEqual({ poolIds: ['p0', 'p1', 'p2'], at: [2, 2, 2] });
    expect(j.body.pools.map((p) => p.id)).toEqual(['p0', 'p1', 'p2']);
    expect(j.retention).toEqual({ keepSnapshots: [2], deleteSegmentsBelow: 0, snapshotsBelow: 2 });
    expect(planner.idle).toBe(false);
  });

  it('is skipped when nothing changed and no record was written since the last snapshot', () => {
    const shard = new FakeShard([0, 1]);
    const planner = new SnapshotPlanner();
    snapshotAfter(planner, shard, [0]);
    const calls = shard.boundaryCalls;
    expect(planner.begin([1], shard)).toBe('skipped');
    // Skipped before asking for a boundary: no rotation for nothing.
    expect(shard.boundaryCalls).toBe(calls);
    expect(planner.idle).toBe(true);
  });

  it('is skipped when the boundary is the seq of the last snapshot (nothing written since it)', () => {
    const shard = new FakeShard([0]);
    const planner = new SnapshotPlanner();
    snapshotAfter(planner, shard, [0]);
    planner.changed(0); // marked changed, but no record reached the WAL
    expect(planner.begin([], shard)).toBe('skipped');
    expect(planner.idle).toBe(true);
  });

  it('an incremental snapshot holds the changed pools and new pools, and a manifest of all', () => {
    const shard = new FakeShard([0, 1, 2]);
    const planner = new SnapshotPlanner();
    const full = snapshotAfter(planner, shard, [0]);
    shard.pools.push(5); // created since (its creation is a record)
    planner.changed(2);
    shard.write(2);
    const j = job(planner.begin([], shard));
    expect(j.body.kind).toBe('incremental');
    expect(j.body.coversBelow).toBe(3);
    expect(j.body.pools.map((p) => p.id)).toEqual(['p2', 'p5']);
    expect(j.body.manifest).toEqual({ poolIds: ['p0', 'p1', 'p2', 'p5'], at: [2, 2, 3, 3] });
    expect(j.retention).toEqual({ keepSnapshots: [2, 3], deleteSegmentsBelow: full.body.coversBelow, snapshotsBelow: 3 });
  });

  it('changes made while a job is in flight go into the next job', () => {
    const shard = new FakeShard([0, 1]);
    const planner = new SnapshotPlanner();
    snapshotAfter(planner, shard, [0, 1]);
    planner.changed(0);
    shard.write();
    const j = job(planner.begin([], shard));
    planner.changed(1);
    shard.write();
    planner.end(j.body.coversBelow, null);
    const next = job(planner.begin([], shard));
    expect(next.body.pools.map((p) => p.id)).toEqual(['p1']);
    expect(next.body.manifest.at).toEqual([j.body.coversBelow, next.body.coversBelow]);
  });
});

describe('SnapshotPlanner: when to write a full snapshot', () => {
  it('writes a full snapshot every 8th: one full, then 7 incrementals', () => {
    const shard = new FakeShard([0, 1, 2, 3]);
    const planner = new SnapshotPlanner();
    const kinds: string[] = [];
    // Always the same pool changes, so the chain never spans more than two files.
    for (let i = 0; i < 17; i++) kinds.push(snapshotAfter(planner, shard, [0]).body.kind[0]!.toUpperCase());
    expect(kinds.join('')).toBe('FIIIIIIIFIIIIIIIF');
  });

  it('a full snapshot holds every pool and points the whole manifest at itself; its retention keeps the previous chain', () => {
    const shard = new FakeShard([0, 1, 2]);
    const planner = new SnapshotPlanner();
    const jobs: SnapshotJob[] = [];
    for (let i = 0; i < 9; i++) jobs.push(snapshotAfter(planner, shard, [i % 3]));
    const full = jobs[8]!;
    expect(full.body.kind).toBe('full');
    expect(full.body.pools.map((p) => p.id)).toEqual(['p0', 'p1', 'p2']);
    expect(full.body.manifest.at).toEqual([full.body.coversBelow, full.body.coversBelow, full.body.coversBelow]);
    const prev = jobs[7]!;
    // The new chain is the full file alone; the previous chain (its fallback) is kept.
    const prevChain = new Set([...prev.body.manifest.at, prev.body.coversBelow]);
    expect(prevChain.size).toBe(3);
    expect([...full.retention.keepSnapshots].sort((a, b) => a - b)).toEqual([...prevChain, full.body.coversBelow].sort((a, b) => a - b));
    expect(full.retention.deleteSegmentsBelow).toBe(prev.body.coversBelow);
  });

  it('writes a full snapshot when the chain it starts from spans more than 8 files', () => {
    // A restart: the planner starts from a chain whose pools sit in 9 different files.
    const refs = [0, 1, 2, 3, 4, 5, 6, 7, 8];
    const shard = new FakeShard(refs, 20);
    const planner = new SnapshotPlanner();
    planner.startFrom({ seq: 20, files: [12, 13, 14, 15, 16, 17, 18, 19, 20], at: new Map(refs.map((r) => [`p${r}`, 12 + r])) }, refs.map(poolInit));
    const j = snapshotAfter(planner, shard, [0]);
    expect(j.body.kind).toBe('full');
    expect(j.body.pools).toHaveLength(9);
  });

  it('stays incremental when the chain it starts from spans exactly 8 files', () => {
    const refs = [0, 1, 2, 3, 4, 5, 6, 7];
    const shard = new FakeShard(refs, 20);
    const planner = new SnapshotPlanner();
    planner.startFrom({ seq: 20, files: [13, 14, 15, 16, 17, 18, 19, 20], at: new Map(refs.map((r) => [`p${r}`, 13 + r])) }, refs.map(poolInit));
    const j = snapshotAfter(planner, shard, [0]);
    expect(j.body.kind).toBe('incremental');
    expect(j.body.pools.map((p) => p.id)).toEqual(['p0']);
    expect(j.body.manifest.at).toEqual([21, 14, 15, 16, 17, 18, 19, 20]);
    // The next one sees 8 files still (13 is no longer used) ...
    expect(snapshotAfter(planner, shard, [1]).body.kind).toBe('incremental');
  });

  it('goes full once incrementals after a restart make the chain span more than 8 files', () => {
    const refs = Array.from({ length: 12 }, (_, i) => i);
    const shard = new FakeShard(refs, 10);
    const planner = new SnapshotPlanner();
    // Pools in 7 files.
    planner.startFrom({ seq: 10, files: [4, 5, 6, 7, 8, 9, 10], at: new Map(refs.map((r) => [`p${r}`, 4 + (r % 7)])) }, refs.map(poolInit));
    const kinds: string[] = [];
    // Each snapshot puts one pool in a new file while the old files stay in use: 8, then 9 files.
    for (const r of [7, 8, 9]) kinds.push(snapshotAfter(planner, shard, [r]).body.kind);
    expect(kinds).toEqual(['incremental', 'incremental', 'full']);
  });

  it('a pool of the starting chain missing from its manifest counts as changed', () => {
    const shard = new FakeShard([0, 1, 2], 5);
    const planner = new SnapshotPlanner();
    planner.startFrom({ seq: 5, files: [5], at: new Map([['p0', 5], ['p2', 5]]) }, [0, 1, 2].map(poolInit));
    shard.write();
    const j = job(planner.begin([], shard));
    expect(j.body.kind).toBe('incremental');
    expect(j.body.pools.map((p) => p.id)).toEqual(['p1']);
    expect(j.body.manifest.at).toEqual([5, 6, 5]);
    expect(j.retention).toEqual({ keepSnapshots: [5, 6], deleteSegmentsBelow: 5, snapshotsBelow: 6 });
  });
});

describe('SnapshotPlanner: retention', () => {
  it('keeps the new chain and the previous one, and deletes segments below the previous snapshot seq', () => {
    const shard = new FakeShard([0, 1, 2]);
    const planner = new SnapshotPlanner();
    const s1 = snapshotAfter(planner, shard, [0]); // full at 2
    const s2 = snapshotAfter(planner, shard, [1]); // incremental at 3: p1 -> 3
    const s3 = snapshotAfter(planner, shard, [1]); // incremental at 4: p1 -> 4
    expect([s1.body.coversBelow, s2.body.coversBelow, s3.body.coversBelow]).toEqual([2, 3, 4]);
    expect(s1.retention).toEqual({ keepSnapshots: [2], deleteSegmentsBelow: 0, snapshotsBelow: 2 });
    expect(s2.retention).toEqual({ keepSnapshots: [2, 3], deleteSegmentsBelow: 2, snapshotsBelow: 3 });
    // New chain {2, 4}, previous chain {2, 3}: 3 is kept as the fallback's file.
    expect(s3.retention).toEqual({ keepSnapshots: [2, 4, 3], deleteSegmentsBelow: 3, snapshotsBelow: 4 });
    const s4 = snapshotAfter(planner, shard, [2]); // incremental at 5: chain {2, 4, 5}, previous {2, 4}
    expect(new Set(s4.retention.keepSnapshots)).toEqual(new Set([2, 4, 5]));
    expect(s4.retention.deleteSegmentsBelow).toBe(4);
  });

  it('counts retention from the last written snapshot, not from one that failed', () => {
    const shard = new FakeShard([0, 1]);
    const planner = new SnapshotPlanner();
    const s1 = snapshotAfter(planner, shard, [0]);
    planner.changed(1);
    shard.write();
    const failed = job(planner.begin([], shard));
    planner.end(failed.body.coversBelow, new EngineError('ERR_DISK_FULL', 'no space'));
    shard.write();
    const next = job(planner.begin([], shard));
    expect(next.retention.deleteSegmentsBelow).toBe(s1.body.coversBelow);
    expect(next.retention.keepSnapshots).toEqual([s1.body.coversBelow, next.body.coversBelow]);
  });
});

describe('SnapshotPlanner: one job at a time', () => {
  it('queued calls come back from end(), in order, whether the job was written or not', () => {
    const shard = new FakeShard([0]);
    const planner = new SnapshotPlanner();
    planner.changed(0);
    shard.write();
    const j = job(planner.begin([1], shard));
    planner.queue(2);
    planner.queue(3);
    expect(planner.end(j.body.coversBelow, null)).toEqual([2, 3]);
    expect(planner.end(j.body.coversBelow, null)).toEqual([]);
    planner.changed(0);
    shard.write();
    const k = job(planner.begin([4], shard));
    planner.queue(5);
    expect(planner.end(k.body.coversBelow, new EngineError('ERR_SHARD_FAILED', 'x'))).toEqual([5]);
    expect(planner.idle).toBe(true);
  });

  it('a failed job puts its pools back as changed, and the next is still the first full one', () => {
    const shard = new FakeShard([0, 1, 2]);
    const planner = new SnapshotPlanner();
    planner.changed(1);
    shard.write();
    const j = job(planner.begin([], shard));
    planner.end(j.body.coversBelow, new EngineError('ERR_DISK_FULL', 'no space'));
    const again = job(planner.begin([], shard));
    expect(again.body.kind).toBe('full');
    expect(again.body.coversBelow).toBe(j.body.coversBelow);
    planner.end(again.body.coversBelow, null);
    // A later failure of an incremental: its pool is included in the next one again.
    planner.changed(2);
    shard.write();
    const inc = job(planner.begin([], shard));
    expect(inc.body.pools.map((p) => p.id)).toEqual(['p2']);
    planner.end(inc.body.coversBelow, new EngineError('ERR_DISK_FULL', 'no space'));
    planner.changed(0);
    shard.write();
    const retry = job(planner.begin([], shard));
    expect(retry.body.kind).toBe('incremental');
    expect(retry.body.pools.map((p) => p.id)).toEqual(['p0', 'p2']);
  });

  it('recordsAt follows the written snapshots only', () => {
    const shard = new FakeShard([0]);
    const planner = new SnapshotPlanner();
    expect(planner.recordsAt).toBe(0);
    planner.changed(0);
    shard.write(5);
    const j = job(planner.begin([], shard));
    expect(planner.recordsAt).toBe(0);
    planner.end(j.body.coversBelow, new EngineError('ERR_DISK_FULL', 'no space'));
    expect(planner.recordsAt).toBe(0);
    const k = job(planner.begin([], shard));
    shard.write(2);
    planner.end(k.body.coversBelow, null);
    expect(planner.recordsAt).toBe(5);
  });
});
