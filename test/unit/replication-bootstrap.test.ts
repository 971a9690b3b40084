import { describe, expect, it } from 'vitest';
import { EngineError } from '../../src/errors.js';
import { shardOf } from '../../src/hash.js';
import type { PoolData } from '../../src/pool-state.js';
import { reconcileWithLog } from '../../src/replication/bootstrap.js';
import { emptyReport, type RecoveredState } from '../../src/recovery/recover.js';
import { encodeSnapshot, type SnapshotBody } from '../../src/snapshot/format.js';
import type { StreamMark } from '../../src/wal/format.js';
import { MemoryLog } from '../helpers/memory-log.js';

/*
 * reconcileWithLog (bootstrap.ts): what each shard starts from, given the local directory's
 * state, the stream and the group's uploaded snapshots.
 */

const kShards = 2;

/** The first `n` pool ids of the form `<prefix>-<i>` that shardOf places in shard k. */
function idsOf(k: number, n: number, prefix = 'pool'): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < n; i++) if (shardOf(`${prefix}-${i}`, kShards) === k) out.push(`${prefix}-${i}`);
  return out;
}

function pool(id: string, lastRequestId: number, drawn = 0): PoolData {
  return { id, itemIds: ['a', 'b'], weights: [1, 2], quantities: [-1, 5], drawn: [drawn, 0], lastRequestId, keys: [] };
}

function state(pools: PoolData[], marks: [number, StreamMark][], maxRequestId: number): RecoveredState {
  const report = emptyReport('data');
  report.pools = pools.length;
  report.maxRequestId = maxRequestId;
  return {
    pools: new Map(pools.map((p) => [p.id, p])),
    maxRequestId,
    epoch: 1,
    nextSeq: new Map(),
    shardDirs: [0, 1],
    bases: new Map(),
    marks: new Map(marks),
    report,
  };
}

function snapshot(k: number, pools: PoolData[], maxRequestId: number, replication: StreamMark | undefined, over: Partial<SnapshotBody> = {}): Buffer {
  return encodeSnapshot({
    epoch: 3,
    shard: k,
    shards: kShards,
    coversBelow: 9,
    maxRequestId,
    kind: 'full',
    createdAt: 0,
    manifest: { poolIds: pools.map((p) => p.id), at: pools.map(() => 9) },
    pools,
    ...(replication === undefined ? {} : { replication }),
    ...over,
  });
}

/** A stream with `n` messages on shard k's subject (and one on the other shard's between each). */
async function fill(log: MemoryLog, k: number, n: number): Promise<number[]> {
  const seqs: number[] = [];
  for (let i = 0; i < n; i++) {
    log.fence(1 - k, `x.${i}`);
    seqs.push(log.fence(k, `m.${k}.${i}`));
  }
  return seqs;
}

async function rejection(p: Promise<unknown>): Promise<EngineError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(EngineError);
  return err as EngineError;
}

const [a0, b0] = idsOf(0, 2) as [string, string];
const [a1] = idsOf(1, 1) as [string];

describe('reconcileWithLog', () => {
  it('keeps a shard whose mark the stream still holds, and records the position before looking', async () => {
    const log = new MemoryLog();
    const seqs = await fill(log, 0, 3);
    const mark: StreamMark = { term: 1, groupSeq: 3, streamSeq: seqs[2]! };
    await log.snapshotPut(0, snapshot(0, [pool(a0, 999)], 999, { term: 1, groupSeq: 1, streamSeq: seqs[0]! }));
    const st = state([pool(a0, 10), pool(a1, 11)], [[0, mark]], 11);
    const before = structuredClone(st.pools);
    log.calls.length = 0;

    const out = await reconcileWithLog(log, 'node-b', st, kShards);
    expect(out).toBe(st);
    expect(st.pools).toEqual(before);
    expect(st.marks.get(0)).toEqual(mark);
    expect(st.report.snapshotsLoaded).toBe(0);
    expect(log.calls[0]).toBe(`positionPut:node-b:${seqs[2]},0`);
    expect(log.calls).toContain(`at:0:${seqs[2]}`);
    expect(log.calls).not.toContain('snapshotGet:0');
  });

  it("replaces a trimmed shard's pools (and only that shard's) with the uploaded snapshot", async () => {
    const log = new MemoryLog();
    const seqs = await fill(log, 0, 6);
    await log.trim(0, seqs[4]!); // the node's position seqs[1] is gone
    const snapMark: StreamMark = { term: 2, groupSeq: 4, streamSeq: seqs[3]! };
    const fromSnap = [pool(a0, 400, 7), pool(idsOf(0, 3)[2]!, 401)];
    await log.snapshotPut(0, snapshot(0, fromSnap, 450, snapMark));
    const st = state([pool(a0, 10), pool(b0, 12), pool(a1, 11)], [[0, { term: 1, groupSeq: 2, streamSeq: seqs[1]! }]], 12);
    log.calls.length = 0;

    await reconcileWithLog(log, 'node-b', st, kShards);
    expect([...st.pools.keys()].sort()).toEqual([a0, idsOf(0, 3)[2]!, a1].sort()); // b0 dropped: not in the snapshot
    expect(st.pools.get(a0)).toMatchObject({ lastRequestId: 400, drawn: [7, 0], quantities: [-1, 5] });
    expect(st.pools.get(a1)).toEqual(pool(a1, 11)); // shard 1 untouched
    expect(st.marks.get(0)).toEqual(snapMark);
    expect(st.maxRequestId).toBe(450);
    expect(st.report).toMatchObject({ snapshotsLoaded: 1, pools: 3, maxRequestId: 450 });
    expect(log.calls.indexOf(`positionPut:node-b:${seqs[1]},0`)).toBe(0);
  });

  it('a shard with no mark (an empty directory) starts from the uploaded snapshot', async () => {
    const log = new MemoryLog();
    const seqs = await fill(log, 1, 2);
    const snapMark: StreamMark = { term: 1, groupSeq: 1, streamSeq: seqs[0]! };
    await log.snapshotPut(1, snapshot(1, [pool(a1, 70)], 70, snapMark));
    const st = state([], [], 0);
    log.calls.length = 0;
    await reconcileWithLog(log, 'fresh', st, kShards);
    expect([...st.pools.keys()]).toEqual([a1]);
    expect(st.marks.get(1)).toEqual(snapMark);
    expect(st.marks.has(0)).toBe(false);
    expect(st.maxRequestId).toBe(70);
    expect(st.report.snapshotsLoaded).toBe(1);
    expect(log.calls[0]).toBe('positionPut:fresh:0,0');
  });

  it('a request id never goes down: the local maximum stays when the snapshot is older', async () => {
    const log = new MemoryLog();
    await log.snapshotPut(0, snapshot(0, [pool(a0, 5)], 5, { term: 1, groupSeq: 1, streamSeq: 1 }));
    const st = state([pool(a1, 900)], [], 900);
    await reconcileWithLog(log, 'n', st, kShards);
    expect(st.maxRequestId).toBe(900);
  });

  it('a shard with no mark and nothing uploaded keeps what it has (the stream holds it all)', async () => {
    const log = new MemoryLog();
    await fill(log, 0, 2);
    const st = state([pool(a0, 3)], [], 3);
    await reconcileWithLog(log, 'n', st, kShards);
    expect([...st.pools.keys()]).toEqual([a0]);
    expect(st.report.snapshotsLoaded).toBe(0);
  });

  it('keeps local state that is newer than the uploaded snapshot even when its mark was trimmed', async () => {
    const log = new MemoryLog();
    const seqs = await fill(log, 0, 6);
    await log.trim(0, seqs[5]!);
    await log.snapshotPut(0, snapshot(0, [pool(a0, 1)], 1, { term: 1, groupSeq: 1, streamSeq: seqs[0]! }));
    const mark = { term: 1, groupSeq: 4, streamSeq: seqs[3]! };
    const st = state([pool(a0, 40)], [[0, mark]], 40);
    await reconcileWithLog(log, 'n', st, kShards);
    expect(st.pools.get(a0)!.lastRequestId).toBe(40);
    expect(st.marks.get(0)).toEqual(mark);
  });

  it('throws ERR_REPLICATION_UNAVAILABLE when its mark was trimmed and no snapshot covers it', async () => {
    const log = new MemoryLog();
    const seqs = await fill(log, 0, 4);
    await log.trim(0, seqs[3]!);
    const st = state([pool(a0, 10)], [[0, { term: 1, groupSeq: 1, streamSeq: seqs[0]! }]], 10);
    const err = await rejection(reconcileWithLog(log, 'n', st, kShards));
    expect(err.code).toBe('ERR_REPLICATION_UNAVAILABLE');
    expect(err.message).toContain(`no longer holds message ${seqs[0]}`);
    expect(err.details).toEqual({ shard: 0, streamSeq: seqs[0] });
  });

  it('ERR_INVALID_CONFIG naming options.shards for a snapshot written with another shard count', async () => {
    const log = new MemoryLog();
    await log.snapshotPut(0, snapshot(0, [], 0, undefined, { shards: 4 }));
    const err = await rejection(reconcileWithLog(log, 'n', state([], [], 0), kShards));
    expect(err.code).toBe('ERR_INVALID_CONFIG');
    expect(err.message).toContain('options.shards must be 4');
    expect(err.details).toEqual({ option: 'shards', value: kShards, expected: 4 });
  });

  it('ERR_CORRUPT_SNAPSHOT for damaged bytes, an incremental snapshot, or another shard\'s', async () => {
    const good = snapshot(0, [pool(a0, 1)], 1, { term: 1, groupSeq: 1, streamSeq: 1 });
    const flipped = Buffer.from(good);
    flipped[flipped.length - 1]! ^= 0xff;
    const cases: [string, Uint8Array, RegExp][] = [
      ['a flipped byte', flipped, /is damaged: checksum mismatch/],
      ['truncated', good.subarray(0, 20), /is damaged: truncated header/],
      ['garbage', Buffer.from('not a snapshot at all, really not one, whatever its length is'), /is damaged: bad magic/],
      ['incremental', snapshot(0, [], 0, undefined, { kind: 'incremental' }), /is not a full snapshot of shard 0/],
      ["shard 1's", snapshot(1, [], 0, undefined), /is not a full snapshot of shard 0/],
    ];
    for (const [what, bytes, message] of cases) {
      const log = new MemoryLog();
      await log.snapshotPut(0, bytes);
      const err = await rejection(reconcileWithLog(log, 'n', state([], [], 0), kShards));
      expect(err.code, what).toBe('ERR_CORRUPT_SNAPSHOT');
      expect(err.message, what).toMatch(message);
      expect(err.details, what).toEqual({ shard: 0 });
    }
  });

  it('ERR_REPLICATION_UNAVAILABLE when it cannot record its position, read the stream or download a snapshot', async () => {
    for (const op of ['positionPut', 'at', 'snapshotGet'] as const) {
      const log = new MemoryLog();
      const seqs = await fill(log, 0, 1);
      log.failNext(op);
      log.calls.length = 0;
      const st = state([pool(a0, 1)], op === 'at' ? [[0, { term: 1, groupSeq: 1, streamSeq: seqs[0]! }]] : [], 1);
      const err = await rejection(reconcileWithLog(log, 'n', st, kShards));
      expect(err.code, op).toBe('ERR_REPLICATION_UNAVAILABLE');
      expect(err.message, op).toContain(`injected failure of ${op}`);
      if (op === 'positionPut') expect(log.calls.filter((c) => c.startsWith('at') || c.startsWith('snapshot'))).toEqual([]);
    }
  });
});
