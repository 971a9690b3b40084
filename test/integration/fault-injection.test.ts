/**
 * Counted I/O fault injection (issue 12, item 2; cf. SQLite's counted I/O-error tests): for
 * k = 1, 2, ... the k-th storage operation of a workload fails (EIO, ENOSPC, or a short
 * write), until the workload completes without reaching a k-th operation. Each run is
 * checked: (a) the shard whose operation failed acknowledges nothing after the failure (its
 * core and metrics say failed), (b) the error surfaces with its code (ERR_DISK_FULL for
 * ENOSPC, ERR_SHARD_FAILED otherwise), (c) the other shards keep serving, (d) reopening with
 * the real disk recovers every acknowledged draw and never refuses the directory. See
 * test/helpers/faulty-storage.ts for what is counted and test/helpers/fault-workload.ts for
 * the workload and the checks.
 *
 * Scenarios: the run's shards (two ShardCores in-process, wal 'mmap' and 'file', sync
 * 'always': pools, single draws, drawMany, updateItem, rotations of 8 KiB segments, requested
 * and automatic snapshots through the snapshot task, close); and a second open of a crashed
 * directory (torn tail, leftover spares, several snapshots), where the open-time steps and
 * recovery itself are counted, followed by a little serving on one shard.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DrawEngine } from '../../dist/src/index.js';
import { EngineError } from '../../src/errors.js';
import { kStateFailed, kStateIndex } from '../../src/layout.js';
import { recoverDir, type RecoveredState } from '../../src/recovery/recover.js';
import { openWalWriter } from '../../src/shard/open-wal.js';
import { runSnapshotTask } from '../../src/snapshot/task.js';
import { realStorage } from '../../src/storage/real-storage.js';
import type { Storage } from '../../src/storage/storage.js';
import { readHeader } from '../../src/wal/format.js';
import type { WalWriter } from '../../src/wal/writer.js';
import { FaultPlan, FaultyStorage, faultKinds, type FaultKind, type OpRecord } from '../helpers/faulty-storage.js';
import {
  absorbable,
  checkReopen,
  checkRun,
  Driver,
  engineOptions,
  gemItems,
  mainWorkload,
  newBook,
  prepareFresh,
  secondRun,
  type PoolBook,
  type RunResult,
  type WorkloadOptions,
} from '../helpers/fault-workload.js';
import { copyToTmp, tmpDir } from '../helpers/tmp.js';
import { kHeaderBytes, readRecords, segmentFiles } from '../helpers/wal-files.js';

type Workload = (plan: FaultPlan, dir: string) => Promise<RunResult>;

interface SweepResult {
  /** The first k the workload completed without reaching. */
  kReached: number;
  runs: number;
  ms: number;
  violations: string[];
  trace: OpRecord[];
}

function faultedShard(r: RunResult): number {
  const m = /^shard-(\d+)$/.exec(r.plan.fired?.label ?? '');
  return m ? Number(m[1]) : -1;
}

function samePools(a: RecoveredState, b: RecoveredState): string[] {
  const out: string[] = [];
  const plain = (s: RecoveredState): Record<string, unknown> =>
    Object.fromEntries([...s.pools.values()].map((p) => [p.id, { itemIds: p.itemIds, weights: [...p.weights], quantities: [...p.quantities], drawn: [...p.drawn], lastRequestId: p.lastRequestId }]));
  const pa = plain(a);
  const pb = plain(b);
  for (const id of new Set([...Object.keys(pa), ...Object.keys(pb)])) {
    if (JSON.stringify(pa[id]) !== JSON.stringify(pb[id])) out.push(`pool ${id}: ${JSON.stringify(pa[id])} != ${JSON.stringify(pb[id])}`);
  }
  if (a.maxRequestId !== b.maxRequestId) out.push(`maxRequestId ${a.maxRequestId} != ${b.maxRequestId}`);
  return out;
}

/** DrawEngine.open of the built package on a directory: the same state as recoverDir, and it serves. */
async function checkWithEngine(dir: string, opts: WorkloadOptions, state: RecoveredState): Promise<string[]> {
  const out: string[] = [];
  const engine = await DrawEngine.open(engineOptions(dir, opts, 2));
  try {
    for (const p of state.pools.values()) {
      const s = await engine.pool(p.id);
      const got = { drawn: s.items.map((i) => i.drawn), quantities: s.items.map((i) => i.quantity), lastRequestId: s.lastRequestId };
      const want = { drawn: [...p.drawn], quantities: [...p.quantities], lastRequestId: p.lastRequestId };
      if (JSON.stringify(got) !== JSON.stringify(want)) out.push(`DrawEngine.open: pool ${p.id} ${JSON.stringify(got)}, recoverDir ${JSON.stringify(want)}`);
    }
    const first = state.pools.values().next().value;
    if (first !== undefined) {
      const d = await engine.draw(first.id);
      if (!(d.requestId > state.maxRequestId)) out.push(`DrawEngine.open: new draw got request id ${d.requestId} <= ${state.maxRequestId}`);
    }
  } finally {
    await engine.close();
  }
  return out;
}

/**
 * For k = 1, 2, ... until a run completes without reaching its k-th operation. Which kinds for
 * operation k (known from a run without faults: the workload is deterministic up to the fault,
 * which each run checks): every kind that applies (faultKinds) at the first occurrence of each
 * site (phase and operation), then one kind per occurrence, in turn; so every site sees every
 * kind that applies to it, at about 1.2 runs per k.
 */
async function sweep(
  name: string,
  template: string,
  workload: Workload,
  check: (r: RunResult) => Promise<string[]>,
  engine?: { phases: string[]; check: (r: RunResult, state: RecoveredState) => Promise<string[]> },
): Promise<SweepResult> {
  const t0 = performance.now();
  const tracePlan = new FaultPlan(0, 'EIO', { trace: true });
  const traceDir = copyToTmp(template, 'trace');
  const clean = await workload(tracePlan, traceDir);
  const trace = tracePlan.trace!;
  const violations = await check(clean);
  let runs = 1;
  const engineChecked = new Set<string>();
  const seen = new Map<string, number>();
  for (let k = 1; ; k++) {
    const op = trace[k - 1];
    let kinds: FaultKind[] = ['EIO'];
    if (op !== undefined) {
      const site = `${op.phase}:${op.op}`;
      const i = seen.get(site) ?? 0;
      seen.set(site, i + 1);
      const all = faultKinds(op);
      kinds = i === 0 ? all : [all[i % all.length]!];
    }
    for (const kind of kinds) {
      const plan = new FaultPlan(k, kind);
      const dir = copyToTmp(template, 'run');
      const r = await workload(plan, dir);
      runs++;
      const f = plan.fired;
      if (f === undefined) {
        violations.push(...(await check(r)));
        rmSync(dir, { recursive: true, force: true });
        const ms = performance.now() - t0;
        console.log(`fault injection, ${name}: k reached ${k} (${trace.length} operations counted), ${runs} runs (${engineChecked.size} also opened with DrawEngine), ${(ms / 1000).toFixed(1)} s`);
        if (engine) expect([...engineChecked].sort()).toEqual([...engine.phases].sort());
        return { kReached: k, runs, ms, violations, trace };
      }
      if (f.op !== op?.op || f.path.replace(dir, '') !== op.path.replace(traceDir, '') || f.phase !== op.phase) {
        violations.push(`not deterministic: operation ${k} was ${op?.op} ${op?.path} (${op?.phase}) without faults, ${f.op} ${f.path} (${f.phase}) now`);
      }
      const v = await check(r);
      violations.push(...v);
      // The built package opens it too, for a few k: the first EIO that must surface in each of
      // the given phases.
      if (engine && v.length === 0 && kind === 'EIO' && !absorbable(f) && engine.phases.includes(f.phase) && !engineChecked.has(f.phase)) {
        engineChecked.add(f.phase);
        const state = await recoverDir(dir, { replayThreads: 1 });
        violations.push(...(await engine.check(r, state)));
      }
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

/** Checks (a)-(d) of a run of the main workload. */
async function checkMain(r: RunResult): Promise<string[]> {
  const faulted = faultedShard(r);
  const reopen = await checkReopen(r, (b: PoolBook) => b.shard !== faulted);
  return [...checkRun(r), ...reopen.violations];
}

/** A disk that acknowledges the record writes of shard 1's segments without writing them. */
function dropsRecordWrites(): Storage {
  const paths = new Map<number, string>();
  return {
    ...realStorage,
    open(path, mode) {
      const fd = realStorage.open(path, mode);
      paths.set(fd, path);
      return fd;
    },
    write(fd, buf, offset, length, position) {
      if (/\/shard-1\/\d+\.wal$/.test(paths.get(fd) ?? '') && position >= kHeaderBytes) return length;
      return realStorage.write(fd, buf, offset, length, position);
    },
  };
}

/** A WAL writer whose commit swallows its sync errors (what fsyncgate warns against). */
function swallowSyncErrors(wal: WalWriter): WalWriter {
  return new Proxy(wal, {
    get(target, prop) {
      if (prop === 'commit') {
        return () => {
          try {
            target.commit();
          } catch {
            // the bug under test: carry on as if it were durable
          }
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** A torn record at the end of the records of `file` (as a crash mid-write leaves it). */
function tearTail(file: string): void {
  const { buf, end } = readRecords(file);
  buf.writeUInt32LE(100, end); // a length, then a checksum that does not match
  buf.writeUInt32LE(0xdeadbeef, end + 4);
  buf.fill(0x5a, end + 8, end + 20);
  writeFileSync(file, buf);
}

describe('counted I/O faults: two shards serving (in-process ShardCores)', () => {
  for (const wal of ['mmap', 'file'] as const) {
    it(`wal '${wal}', sync 'always': every k-th operation fails (EIO, ENOSPC, short write); nothing acknowledged is lost`, async () => {
      const opts: WorkloadOptions = { wal, shards: 2, close: true, snapshotEveryRecords: 12, skipSyncs: true };
      const template = tmpDir(`fi-${wal}`);
      await prepareFresh(template, opts);
      const res = await sweep(`wal '${wal}'`, template, (plan, dir) => mainWorkload(plan, dir, opts), checkMain, {
        phases: ['apply', 'commit', 'snapshot-request'],
        check: (r, state) => checkWithEngine(r.dir, opts, state),
      });
      // The workload covers what it claims: rotations, snapshots (requested and automatic), close.
      const phases = new Set(res.trace.map((o) => `${o.phase}:${o.op}`));
      for (const p of ['start:map', 'apply:rename', 'commit:' + (wal === 'mmap' ? 'msync' : 'datasync'), 'snapshot-request:rename', 'snapshot-due:rename', 'snapshot-task:rename', 'snapshot-task:unlink', 'turn:allocate', 'close:' + (wal === 'mmap' ? 'msync' : 'datasync')]) {
        if (wal === 'file' && p === 'start:map') continue;
        expect(phases, p).toContain(p);
      }
      expect(res.kReached).toBe(res.trace.length + 1);
      expect(res.violations.slice(0, 60)).toEqual([]);
    });
  }
});

describe('counted I/O faults: a second open (open-time steps and recovery counted)', () => {
  // Recovery reads the same segments whichever writer wrote them: the default writer is enough here.
  for (const wal of ['mmap'] as const) {
    it(`wal '${wal}': a crashed directory (torn tail, spares, snapshot chain) reopened with one shard; every k-th operation fails`, async () => {
      const opts: WorkloadOptions = { wal, shards: 2, close: false, snapshotEveryRecords: 12, skipSyncs: true };
      // The first run, without faults, ends in a crash: unsealed segments, spare files left.
      const template = tmpDir(`fi-open-${wal}`);
      await prepareFresh(template, opts);
      const first = await mainWorkload(new FaultPlan(0), template, opts);
      expect(checkRun(first)).toEqual([]);
      const newest = segmentFiles(template, 0).at(-1)!;
      tearTail(newest);
      const reference = await recoverDir(copyToTmp(template, 'reference'), { replayThreads: 1 });
      expect(reference.report.tornTails).toHaveLength(1);
      expect(reference.report.snapshotsLoaded).toBeGreaterThan(0);
      const check = async (r: RunResult): Promise<string[]> => {
        const out = checkRun(r);
        const where = r.plan.fired ? `fault #${r.plan.fired.n} ${r.plan.fired.kind} on ${r.plan.fired.op} (${r.plan.fired.label}, ${r.plan.fired.phase})` : 'no fault';
        // A recovery that went through despite a fault recovered everything: never a silent loss.
        if (r.prepared) out.push(...samePools(r.prepared, reference).map((m) => `${where}: open recovered another state: ${m}`));
        const faulted = faultedShard(r);
        const reopen = await checkReopen(r, (b) => b.shard !== faulted);
        out.push(...reopen.violations);
        // Open failed: the directory still holds exactly what the first run left.
        if (r.openError !== undefined && reopen.state) out.push(...samePools(reopen.state, reference).map((m) => `${where}: after the failed open: ${m}`));
        return out;
      };
      const res = await sweep(`second open, wal '${wal}'`, template, (plan, dir) => secondRun(plan, dir, opts), check, {
        phases: ['open', 'commit'],
        check: (r, state) => checkWithEngine(r.dir, opts, state),
      });
      const sites = new Set(res.trace.map((o) => `${o.label}:${o.op}`));
      for (const site of ['open:readFile', 'open:read', 'open:write', 'open:unlink', 'open:rmdir', 'open:allocate', 'open:rename', 'shard-0:map']) {
        expect(sites, site).toContain(site);
      }
      expect(res.kReached).toBe(res.trace.length + 1);
      expect(res.violations.slice(0, 60)).toEqual([]);
    });
  }
});

// ---- the findings of the sweeps, one regression test each ----

/**
 * A small workload for the regression tests: per shard a pool, a draw, engine.snapshot() on
 * shard 0 (a rotation at its boundary), then enough draws to fill 8 KiB segments (rotations
 * inside apply) on every shard, then close.
 */
async function miniWorkload(plan: FaultPlan, dir: string, opts: WorkloadOptions): Promise<RunResult> {
  const d = new Driver(plan, dir, opts);
  const n = opts.shards;
  for (let k = 0; k < n; k++) d.start(k, n, 1, 1, { seq: 1, files: [1], at: new Map() }, []);
  const pools = Array.from({ length: n }, (_, k) => newBook(`gems-${k}`, k, 0, gemItems()));
  for (let k = 0; k < n; k++) await d.group(k, [[d.create(pools[k]!, gemItems()), d.draw(pools[k]!, 1)]]);
  await d.snapshot(0);
  for (let r = 0; r < 4; r++) for (let k = 0; k < n; k++) await d.group(k, [[d.draw(pools[k]!, 3000)]]);
  await d.close();
  return { plan, dir, shards: d.shards, books: d.books };
}

/** Runs of miniWorkload with the fault at every operation `pick` selects from a clean trace. */
async function runAt(opts: WorkloadOptions, pick: (op: OpRecord, i: number, trace: OpRecord[]) => boolean, kind: FaultKind): Promise<RunResult[]> {
  const template = tmpDir(`fi-mini-${opts.wal}`);
  await prepareFresh(template, opts);
  const tracePlan = new FaultPlan(0, 'EIO', { trace: true });
  await miniWorkload(tracePlan, copyToTmp(template, 'trace'), opts);
  const ks = tracePlan.trace!.filter((op, i, t) => pick(op, i, t)).map((op) => op.n);
  expect(ks.length, 'the workload reaches the site').toBeGreaterThan(0);
  const out: RunResult[] = [];
  for (const k of ks) out.push(await miniWorkload(new FaultPlan(k, kind), copyToTmp(template, 'run'), opts));
  return out;
}

async function violations(r: RunResult): Promise<string[]> {
  return [...checkRun(r), ...(await checkReopen(r, (b) => b.shard !== faultedShard(r))).violations];
}

const mini = (wal: 'mmap' | 'file', shards = 1): WorkloadOptions => ({ wal, shards, close: true, snapshotEveryRecords: 0, skipSyncs: true });

describe('findings of the counted fault injection (regressions)', () => {
  it.each(['mmap', 'file'] as const)(
    'finding 1 (wal %s): a rotation that fails while engine.snapshot() takes its boundary fail-stops the shard (it went on acknowledging)',
    async (wal) => {
      const runs = await runAt(mini(wal), (op) => op.phase === 'snapshot-request', 'EIO');
      for (const r of runs) {
        const s = r.shards[0]!;
        expect(s.requestErrors).toHaveLength(1);
        expect(s.core!.failure, `fault #${r.plan.fired!.n} ${r.plan.fired!.op}`).toBeInstanceOf(EngineError);
        expect(s.core!.failure!.code).toBe('ERR_SHARD_FAILED');
        expect(s.metrics[kStateIndex]).toBe(BigInt(kStateFailed));
        const later = s.batches.filter((b) => b.faultBefore);
        expect(later.length).toBeGreaterThan(0);
        for (const b of later) expect(b).toMatchObject({ acked: false, error: expect.objectContaining({ code: 'ERR_SHARD_FAILED' }) });
        expect(await violations(r)).toEqual([]);
      }
    },
  );

  it.each(['mmap', 'file'] as const)(
    'finding 2 (wal %s): a short write of a segment header is completed (it was ignored, and reopening refused the directory as ERR_CORRUPT_WAL)',
    async (wal) => {
      // Every 64-byte write: a new segment's header, and (wal 'file') the seals at rotation and close.
      const runs = await runAt(mini(wal), (op) => op.op === 'write' && op.detail === 64, 'short');
      expect(runs.length).toBeGreaterThanOrEqual(wal === 'file' ? 4 : 2);
      for (const r of runs) {
        expect(r.plan.fired!.kind).toBe('short');
        for (const s of r.shards) expect(s.core!.failure).toBeUndefined();
        expect(await violations(r)).toEqual([]);
      }
    },
  );

  it('finding 3 (wal mmap): a failed shard writes nothing at close (its seal went into the next segment, and reopening refused the directory)', async () => {
    // close(2) of the descriptor a new segment was mapped through fails: the rotation stops half-way.
    const runs = await runAt(mini('mmap'), (op, i, t) => op.op === 'close' && op.phase === 'apply' && t[i - 1]?.op === 'map', 'EIO');
    for (const r of runs) {
      const s = r.shards[0]!;
      expect(s.core!.failure?.code).toBe('ERR_SHARD_FAILED');
      expect(s.closeError).toBeUndefined();
      // The segment it was moving to is as rotation left it: header unsealed, no records.
      const next = r.plan.fired!.path;
      const head = readHeader(readFileSync(next).subarray(0, 64));
      expect(head).toMatchObject({ sealedEnd: 0, seal: 0 });
      expect(await violations(r)).toEqual([]);
    }
  });

  it("finding 4 (wal file): a segment whose close fails does not leave its descriptor number behind (another shard's segment was then written and closed through it)", async () => {
    const runs = await runAt(mini('file', 2), (op) => op.op === 'close' && op.label === 'shard-0' && /\/\d+\.wal$/.test(op.path) && op.phase !== 'close', 'EIO');
    for (const r of runs) {
      const other = r.shards[1]!;
      expect(other.core!.failure).toBeUndefined();
      expect(other.closeError).toBeUndefined();
      expect(other.batches.every((b) => b.acked)).toBe(true);
      expect(await violations(r)).toEqual([]);
    }
  });

  it('finding 5: ENOSPC reported by close(2) surfaces as ERR_DISK_FULL (it escaped as a bare errno: ERR_SHARD_FAILED)', async () => {
    const dir = tmpDir('fi-close-enospc');
    await prepareFresh(dir, mini('mmap'));
    // Opening the first segment: the descriptor it was mapped through.
    const cfg = { shard: 0, wal: 'mmap', dir, sync: 'always', syncIntervalMs: 10, segmentBytes: 8192, epoch: 1, firstSeq: 1, seed: 1, shards: 1, snapshotEveryRecords: 0, idempotency: { keys: 10, draws: 10 }, replicated: false, mark: undefined, maxRequestId: 0, chain: null } as const;
    const trace = new FaultPlan(0, 'EIO', { trace: true });
    openWalWriter(cfg, () => {}, new FaultyStorage(trace, 'shard-0', { skipSyncs: true })).abandon();
    const k = trace.trace!.find((op, i, t) => op.op === 'close' && t[i - 1]?.op === 'map')!.n;
    let err: unknown;
    try {
      openWalWriter(cfg, () => {}, new FaultyStorage(new FaultPlan(k, 'ENOSPC'), 'shard-0', { skipSyncs: true }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(EngineError);
    expect(err).toMatchObject({ code: 'ERR_DISK_FULL' });
    // And the snapshot task: the temp file's close.
    const body = { epoch: 1, shard: 0, shards: 1, coversBelow: 7, maxRequestId: 0, kind: 'full', createdAt: 0, manifest: { poolIds: [], at: [] }, pools: [] } as const;
    const task = { dir, body: { ...body, manifest: { poolIds: [], at: [] }, pools: [] }, retention: { keepSnapshots: [7], deleteSegmentsBelow: 0, snapshotsBelow: 0 }, archive: false };
    const traced = new FaultPlan(0, 'EIO', { trace: true });
    expect(runSnapshotTask(new FaultyStorage(traced, 'snap', { skipSyncs: true }), task)).not.toHaveProperty('error');
    const close = traced.trace!.find((op) => op.op === 'close')!.n;
    const r = runSnapshotTask(new FaultyStorage(new FaultPlan(close, 'ENOSPC'), 'snap', { skipSyncs: true }), { ...task, body: { ...task.body, coversBelow: 8 }, retention: { ...task.retention, keepSnapshots: [8] } });
    expect(r).toMatchObject({ error: { code: 'ERR_DISK_FULL' } });
  });

  it('finding 6: a snapshot that cannot be read back after writing fails with a storage code, not ERR_CORRUPT_SNAPSHOT', async () => {
    const dir = tmpDir('fi-readback');
    await prepareFresh(dir, mini('mmap'));
    const task = { dir, body: { epoch: 1, shard: 0, shards: 1, coversBelow: 9, maxRequestId: 0, kind: 'full' as const, createdAt: 0, manifest: { poolIds: [], at: [] }, pools: [] }, retention: { keepSnapshots: [9], deleteSegmentsBelow: 0, snapshotsBelow: 0 }, archive: false };
    const traced = new FaultPlan(0, 'EIO', { trace: true });
    runSnapshotTask(new FaultyStorage(traced, 'snap', { skipSyncs: true }), task);
    const k = traced.trace!.find((op) => op.op === 'readFile')!.n;
    const r = runSnapshotTask(new FaultyStorage(new FaultPlan(k, 'EIO'), 'snap', { skipSyncs: true }), task);
    expect(r).toMatchObject({ error: { code: 'ERR_SHARD_FAILED' } });
    expect((r as { error: { message: string } }).error.message).toMatch(/cannot read back .*0000000009\.snap: EIO/);
  });

  it('finding 7: a snapshot that cannot be read on open is a storage error (ERR_SHARD_FAILED naming it), not ERR_CORRUPT_SNAPSHOT ("restore from a backup")', async () => {
    const opts = mini('mmap', 2);
    const dir = tmpDir('fi-open-read');
    await prepareFresh(dir, opts);
    await miniWorkload(new FaultPlan(0), dir, opts);
    const reference = await recoverDir(copyToTmp(dir, 'reference'), { replayThreads: 1 });
    const traced = new FaultPlan(0, 'EIO', { trace: true });
    await recoverDir(copyToTmp(dir, 'trace'), { replayThreads: 1, storage: new FaultyStorage(traced, 'open') });
    const reads = traced.trace!.filter((op) => op.op === 'readFile' && op.path.endsWith('.snap'));
    expect(reads.length).toBeGreaterThanOrEqual(2);
    for (const op of reads) {
      const copy = copyToTmp(dir, 'run');
      const err = await recoverDir(copy, { replayThreads: 1, storage: new FaultyStorage(new FaultPlan(op.n, 'EIO'), 'open') }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(EngineError);
      expect(err).toMatchObject({ code: 'ERR_SHARD_FAILED', message: expect.stringContaining(`cannot read snapshot ${op.path.replace(/^.*\/_tmp\/[^/]+/, copy)}`) });
      // Nothing was harmed: the real disk recovers the same state.
      expect(samePools(await recoverDir(copy, { replayThreads: 1 }), reference)).toEqual([]);
    }
  });
});

describe('the checker fails when it should', () => {
  it('catches a WAL writer that swallows its sync errors (fsyncgate): no fail-stop, acknowledgements after the fault', async () => {
    const opts: WorkloadOptions = { wal: 'mmap', shards: 2, close: true, snapshotEveryRecords: 12, skipSyncs: true, wrapWal: swallowSyncErrors };
    const template = tmpDir('fi-swallow');
    await prepareFresh(template, opts);
    const tracePlan = new FaultPlan(0, 'EIO', { trace: true });
    const clean = await mainWorkload(tracePlan, copyToTmp(template, 'trace'), opts);
    // Without a fault the broken writer looks fine.
    expect(await checkMain(clean)).toEqual([]);
    const syncs = tracePlan.trace!.filter((op) => op.phase === 'commit' && op.op === 'msync').slice(0, 3);
    expect(syncs).toHaveLength(3);
    for (const op of syncs) {
      const r = await mainWorkload(new FaultPlan(op.n, 'EIO'), copyToTmp(template, 'run'), opts);
      const v = await checkMain(r);
      expect(v).toContainEqual(expect.stringMatching(/EIO on msync .*: the shard did not fail \(no fail-stop\)/));
      expect(v).toContainEqual(expect.stringMatching(/acknowledged after the fault|during which the fault happened, was acknowledged/));
    }
  });

  it('catches acknowledged draws missing after reopening (a disk that drops record writes)', async () => {
    // A crash after the run: shard 1's only segment stays unsealed, so recovery cannot tell.
    const opts: WorkloadOptions = { wal: 'file', shards: 2, close: false, snapshotEveryRecords: 0, skipSyncs: true, inner: dropsRecordWrites() };
    const template = tmpDir('fi-lossy');
    await prepareFresh(template, opts);
    const r = await mainWorkload(new FaultPlan(0), copyToTmp(template, 'run'), opts);
    expect(checkRun(r)).toEqual([]); // every call was acknowledged...
    const v = await checkMain(r);
    // ...and the reopen finds them gone.
    expect(v).toContainEqual('no fault: pool gems-1 was created (acknowledged) but is gone after reopening');
    expect(v).toContainEqual('no fault: pool coins-1 was created (acknowledged) but is gone after reopening');
  });

  it('numbers the operations the same with and without real syncs', async () => {
    const trace = async (skipSyncs: boolean): Promise<string[]> => {
      const opts: WorkloadOptions = { wal: 'mmap', shards: 2, close: true, snapshotEveryRecords: 12, skipSyncs };
      const template = tmpDir('fi-syncs');
      await prepareFresh(template, opts);
      const plan = new FaultPlan(0, 'EIO', { trace: true });
      const dir = copyToTmp(template, 'run');
      await mainWorkload(plan, dir, opts);
      return plan.trace!.map((o) => `${o.label} ${o.phase} ${o.op} ${o.path.replace(dir, '')}`);
    };
    expect(await trace(false)).toEqual(await trace(true));
  });
});
