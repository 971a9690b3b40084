/**
 * The scenarios of the suite and how one sample of each is measured.
 */
import { cpSync, rmSync } from 'node:fs';
import { DrawEngine, type DrawEngineOptions, type EngineMetrics, type SyncMode, type WalMode } from '../../src/index.js';
import { CpuMeter } from '../lib/cpu-load.js';
import { HeapProbe } from '../lib/heap-probe.js';
import { countFiles, dirBytes, type ScratchDir } from '../lib/paths.js';
import { binary, si } from '../lib/format.js';
import type { Profile } from './config.js';
import { createPools, drawCount, drawLoop, drawManyLoop, promiseLoop, selectionLoop } from './workloads.js';

export type Kind = 'selection' | 'promise' | 'promise-result' | 'drawMany' | 'draw' | 'recovery';
export type Group = 'ref' | 'main' | 'shards' | 'sync' | 'segment' | 'snapshot' | 'gc' | 'recovery';

export interface EngineConfig {
  shards: number;
  wal: WalMode;
  sync: SyncMode;
  syncIntervalMs?: number;
  segmentBytes?: number;
  snapshotEveryRecords?: number;
}

export interface Scenario {
  /** Stable id, matched by --filter: group/... */
  id: string;
  group: Group;
  kind: Kind;
  title: string;
  engine?: EngineConfig;
  poolsPerShard?: number;
  /** Samples to take, each in a fresh engine. */
  repeat: number;
  /** Not run on its own: the same configuration as that scenario, whose samples it shows. */
  sameAs?: string;
  /** Run each sample in a child Node process started with these flags (V8 heap settings). */
  nodeFlags?: string[];
}

/** The engine's default segment size (DESIGN.md), to know when a variant equals a main row. */
const kDefaultSegmentBytes = 64 * 1024 * 1024;

export function buildPlan(p: Profile, cores: number): Scenario[] {
  const out: Scenario[] = [];
  const seg = p.segmentBytes;
  const inFlight = p.inFlight.toLocaleString('en-US');
  out.push(
    { id: 'ref/selection', group: 'ref', kind: 'selection', title: `bare selection loop, 1 thread (drawInto ${p.batch}, Sfc32)`, repeat: p.repeat },
    { id: 'ref/promise', group: 'ref', kind: 'promise', title: `bare promise per call, ${inFlight} in flight`, repeat: p.repeat },
    { id: 'ref/promise-result', group: 'ref', kind: 'promise-result', title: `bare promise per call + result object, ${inFlight} in flight`, repeat: p.repeat },
  );
  const main = (api: 'draw' | 'drawMany', wal: WalMode): Scenario => ({
    id: `main/${api}/${wal}`,
    group: 'main',
    kind: api,
    title: `${wal === 'none' ? 'No WAL' : wal === 'mmap' ? 'Mmap WAL' : 'File WAL'}, ${api === 'draw' ? `draw() x${inFlight} in flight` : `drawMany(${p.batch})`}`,
    engine: { shards: cores, wal, sync: 'never', segmentBytes: seg },
    poolsPerShard: p.poolsPerShard,
    repeat: p.repeat,
  });
  for (const api of ['draw', 'drawMany'] as const) for (const wal of ['none', 'mmap', 'file'] as const) out.push(main(api, wal));

  for (let shards = 1; shards <= cores; shards++) {
    out.push({
      id: `shards/${shards}`,
      group: 'shards',
      kind: 'drawMany',
      title: `drawMany(${p.batch}), mmap, never, ${shards} shard${shards === 1 ? '' : 's'}`,
      engine: { shards, wal: 'mmap', sync: 'never', segmentBytes: seg },
      poolsPerShard: p.poolsPerShard,
      repeat: p.variantRepeat,
      ...(shards === cores ? { sameAs: 'main/drawMany/mmap' } : {}),
    });
  }

  const syncs: { id: string; sync: SyncMode; ms?: number }[] = [
    { id: 'always', sync: 'always' },
    ...p.syncIntervals.map((ms) => ({ id: `interval-${ms}ms`, sync: 'interval' as const, ms })),
    { id: 'never', sync: 'never' },
  ];
  for (const s of syncs) {
    out.push({
      id: `sync/${s.id}`,
      group: 'sync',
      kind: 'draw',
      title: `draw() x${inFlight} in flight, mmap, sync ${s.sync}${s.ms === undefined ? '' : ` every ${s.ms} ms`}`,
      engine: { shards: cores, wal: 'mmap', sync: s.sync, segmentBytes: seg, ...(s.ms === undefined ? {} : { syncIntervalMs: s.ms }) },
      poolsPerShard: p.poolsPerShard,
      repeat: p.variantRepeat,
      ...(s.sync === 'never' ? { sameAs: 'main/draw/mmap' } : {}),
    });
  }

  for (const bytes of p.segmentSizes) {
    out.push({
      id: `segment/${binary(bytes).replace(' ', '')}`,
      group: 'segment',
      kind: 'drawMany',
      title: `drawMany(${p.batch}), mmap, never, ${binary(bytes)} segments`,
      engine: { shards: cores, wal: 'mmap', sync: 'never', segmentBytes: bytes },
      poolsPerShard: p.poolsPerShard,
      repeat: p.variantRepeat,
      ...(bytes === (seg ?? kDefaultSegmentBytes) ? { sameAs: 'main/drawMany/mmap' } : {}),
    });
  }

  for (const every of [0, p.snapshotEvery]) {
    out.push({
      id: `snapshot/${every === 0 ? 'off' : 'on'}`,
      group: 'snapshot',
      kind: 'draw',
      title: `draw() x${inFlight} in flight over ${p.snapshotPoolsPerShard * cores} pools, mmap, never, snapshotEveryRecords ${every.toLocaleString('en-US')}`,
      engine: { shards: cores, wal: 'mmap', sync: 'never', segmentBytes: seg, snapshotEveryRecords: every },
      poolsPerShard: p.snapshotPoolsPerShard,
      repeat: p.variantRepeat,
    });
  }

  // The draw() scenario is coordinator-bound and spends a third of its time in scavenges of the
  // calls in flight: the same scenario with a larger young generation, in a child process.
  for (const mb of [0, 32]) {
    out.push({
      id: `gc/semi-space-${mb === 0 ? 'default' : `${mb}mb`}`,
      group: 'gc',
      kind: 'draw',
      title: `draw() x${inFlight} in flight, mmap, never, ${mb === 0 ? 'default young generation' : `node --max-semi-space-size=${mb}`}`,
      engine: { shards: cores, wal: 'mmap', sync: 'never', segmentBytes: seg },
      poolsPerShard: p.poolsPerShard,
      repeat: p.variantRepeat,
      ...(mb === 0 ? { sameAs: 'main/draw/mmap' } : { nodeFlags: [`--max-semi-space-size=${mb}`] }),
    });
  }

  out.push({
    id: 'recovery',
    group: 'recovery',
    kind: 'recovery',
    title: `recovery of ${si(p.recoveryDraws)} draws, 2 shards, ${binary(p.recoverySegmentBytes)} segments, replayThreads 1..${cores}`,
    repeat: p.recoveryRepeat,
  });
  return out;
}

/** The scenarios to run for a filter: the matches, plus what the matching aliases point at. */
export function selectScenarios(plan: Scenario[], filter: RegExp | undefined): Scenario[] {
  if (filter === undefined) return plan;
  const ids = new Set(plan.filter((s) => filter.test(s.id)).map((s) => s.id));
  for (const s of plan) if (ids.has(s.id) && s.sameAs !== undefined) ids.add(s.sameAs);
  return plan.filter((s) => ids.has(s.id));
}

export interface Sample {
  draws: number;
  seconds: number;
  drawsPerSec: number;
  /** Coordinator-thread V8 heap bytes allocated during the timed window. */
  heapBytes: number;
  gcCount: number;
  gcPauseMs: number;
  /** CPU used by other processes during the window, % of all cores (NaN off Linux). */
  foreignCpuPct: number;
  /** CPU taken by the hypervisor during the window, % of all cores. */
  stealCpuPct: number;
  /** CPU used by this process (coordinator and shard threads), % of all cores. */
  ownCpuPct: number;
  /** Engine counters over the timed window (0 for the reference loops). */
  walBytes: number;
  records: number;
  batches: number;
  syncs: number;
  syncTimeMs: number;
  rotations: number;
  snapshots: number;
  /** Bytes of every file under the engine's directory after close (warm-up included). */
  walFileBytes: number;
  /** Segment files left after close. */
  segments: number;
  /** Engine open and close, wall clock. */
  openMs: number;
  closeMs: number;
}

export interface RecoveryBuild {
  /** draw() calls made. */
  draws: number;
  /** Draws in the WAL (metrics().draws: the calls plus the one-draw probes that placed the pools). */
  drawsLogged: number;
  seconds: number;
  records: number;
  walBytes: number;
  segments: number;
  dirBytes: number;
}

export interface RecoveryRun {
  replayThreads: number;
  /** engine.recovery: what open() reports. Threads started: the calling thread plus the pool's. */
  threads: number;
  /** engine.recovery.threadsUsed: of those, the threads that decoded at least one segment. */
  threadsUsed: number;
  ms: number;
  records: number;
  drawsReplayed: number;
  segments: number;
  bytes: number;
  snapshotsLoaded: number;
  /** DrawEngine.open() wall clock (lock, recovery, worker start). */
  openMs: number;
  /** CPU used by other processes during open(), % of all cores. */
  foreignCpuPct: number;
}

function emptySample(): Sample {
  return {
    draws: 0,
    seconds: 0,
    drawsPerSec: 0,
    heapBytes: 0,
    gcCount: 0,
    gcPauseMs: 0,
    foreignCpuPct: 0,
    stealCpuPct: 0,
    ownCpuPct: 0,
    walBytes: 0,
    records: 0,
    batches: 0,
    syncs: 0,
    syncTimeMs: 0,
    rotations: 0,
    snapshots: 0,
    walFileBytes: 0,
    segments: 0,
    openMs: 0,
    closeMs: 0,
  };
}

/** What the live progress line shows while a sample runs. */
export type LiveStatus = (text: () => string) => void;

type Timed = Pick<Sample, 'draws' | 'seconds' | 'drawsPerSec' | 'heapBytes' | 'gcCount' | 'gcPauseMs' | 'foreignCpuPct' | 'stealCpuPct' | 'ownCpuPct'>;

/** The timed window around `load`: wall clock, heap probe, machine CPU. */
async function timed(load: () => Promise<number>): Promise<Timed> {
  const probe = new HeapProbe();
  const cpu = new CpuMeter();
  cpu.start();
  probe.start();
  const t0 = performance.now();
  const draws = await load();
  const seconds = (performance.now() - t0) / 1000;
  const heap = probe.stop();
  const machine = cpu.stop();
  return {
    draws,
    seconds,
    drawsPerSec: draws / seconds,
    heapBytes: heap.allocatedBytes,
    gcCount: heap.gcCount,
    gcPauseMs: heap.gcPauseMs,
    foreignCpuPct: machine.foreignPct,
    stealCpuPct: machine.stealPct,
    ownCpuPct: machine.ownPct,
  };
}

/** One sample of a reference loop (no engine). */
export async function runReferenceSample(sc: Scenario, p: Profile, live: LiveStatus): Promise<Sample> {
  const load = (ms: number): Promise<number> => {
    switch (sc.kind) {
      case 'selection':
        return selectionLoop(p.batch, ms);
      case 'promise':
        return promiseLoop(p.inFlight, ms, false);
      case 'promise-result':
        return promiseLoop(p.inFlight, ms, true);
      default:
        throw new Error(`${sc.id}: not a reference scenario`);
    }
  };
  const t = performance.now();
  live(() => `running ${((performance.now() - t) / 1000).toFixed(1)} s`);
  if (p.warmupMs > 0) await load(p.warmupMs);
  return { ...emptySample(), ...(await timed(() => load(p.sampleMs))) };
}

function delta(m1: EngineMetrics, m0: EngineMetrics): Pick<Sample, 'walBytes' | 'records' | 'batches' | 'syncs' | 'syncTimeMs' | 'rotations' | 'snapshots'> {
  return {
    walBytes: m1.walBytes - m0.walBytes,
    records: m1.records - m0.records,
    batches: m1.batches - m0.batches,
    syncs: m1.syncs - m0.syncs,
    syncTimeMs: m1.syncTimeMs - m0.syncTimeMs,
    rotations: m1.rotations - m0.rotations,
    snapshots: m1.snapshots - m0.snapshots,
  };
}

function engineOptions(cfg: EngineConfig, dir: string): DrawEngineOptions {
  const o: DrawEngineOptions = { shards: cfg.shards, wal: cfg.wal, sync: cfg.sync };
  if (cfg.wal !== 'none') o.dir = dir;
  if (cfg.syncIntervalMs !== undefined) o.syncIntervalMs = cfg.syncIntervalMs;
  if (cfg.segmentBytes !== undefined) o.segmentBytes = cfg.segmentBytes;
  if (cfg.snapshotEveryRecords !== undefined) o.snapshotEveryRecords = cfg.snapshotEveryRecords;
  return o;
}

/** One sample of an engine scenario: fresh engine and directory, warm-up, timed window, close, sizes. */
export async function runEngineSample(sc: Scenario, p: Profile, scratch: ScratchDir, live: LiveStatus): Promise<{ sample: Sample; options: Record<string, unknown> }> {
  const cfg = sc.engine!;
  const dir = scratch.next(sc.id);
  const sample = emptySample();
  let t = performance.now();
  const engine = await DrawEngine.open(engineOptions(cfg, dir));
  sample.openMs = performance.now() - t;
  const { dir: _dir, ...options } = engine.options as unknown as Record<string, unknown>;
  try {
    const pools = await createPools(engine, sc.poolsPerShard ?? p.poolsPerShard);
    const load = (ms: number): Promise<number> =>
      sc.kind === 'drawMany' ? drawManyLoop(engine, pools, p.batch, ms) : drawLoop(engine, pools, p.inFlight, ms);
    let phase = 'warm-up';
    let base = engine.metrics().draws;
    let t0 = performance.now();
    live(() => {
      const s = (performance.now() - t0) / 1000;
      return `${phase} ${s.toFixed(1)} s, ${si((engine.metrics().draws - base) / Math.max(s, 1e-3))} draws/s`;
    });
    if (p.warmupMs > 0) await load(p.warmupMs);
    phase = 'measuring';
    const m0 = engine.metrics();
    base = m0.draws;
    t0 = performance.now();
    Object.assign(sample, await timed(() => load(p.sampleMs)));
    Object.assign(sample, delta(engine.metrics(), m0));
  } finally {
    t = performance.now();
    await engine.close();
    sample.closeMs = performance.now() - t;
  }
  sample.walFileBytes = dirBytes(dir);
  sample.segments = countFiles(dir, /\.wal$/);
  rmSync(dir, { recursive: true, force: true });
  return { sample, options };
}

/** Build the directory the recovery runs copy: `recoveryDraws` draw() calls, 2 shards, no snapshots. */
export async function buildRecoveryDir(p: Profile, scratch: ScratchDir, live: LiveStatus): Promise<{ dir: string; build: RecoveryBuild }> {
  const dir = scratch.next('recovery-source');
  const engine = await DrawEngine.open({ dir, shards: 2, wal: 'mmap', sync: 'never', segmentBytes: p.recoverySegmentBytes, snapshotEveryRecords: 0 });
  let draws = 0;
  let m: EngineMetrics;
  const t0 = performance.now();
  try {
    const pools = await createPools(engine, p.poolsPerShard);
    live(() => `writing ${si(engine.metrics().draws)} / ${si(p.recoveryDraws)} draws`);
    draws = await drawCount(engine, pools, p.inFlight, p.recoveryDraws);
  } finally {
    await engine.close();
    m = engine.metrics();
  }
  return {
    dir,
    build: {
      draws,
      drawsLogged: m.draws,
      seconds: (performance.now() - t0) / 1000,
      records: m.records,
      walBytes: m.walBytes,
      segments: countFiles(dir, /\.wal$/),
      dirBytes: dirBytes(dir),
    },
  };
}

/** Copy the built directory, open the copy with `replayThreads`, read engine.recovery, close. */
export async function runRecovery(source: string, replayThreads: number, p: Profile, scratch: ScratchDir): Promise<RecoveryRun> {
  const copy = scratch.next(`recovery-t${replayThreads}`);
  cpSync(source, copy, { recursive: true });
  try {
    const cpu = new CpuMeter();
    cpu.start();
    const t = performance.now();
    // segmentBytes as written, so open does not preallocate 64 MiB segments it will not use.
    const engine = await DrawEngine.open({ dir: copy, replayThreads, shards: 2, segmentBytes: p.recoverySegmentBytes });
    const openMs = performance.now() - t;
    const foreignCpuPct = cpu.stop().foreignPct;
    const r = engine.recovery;
    await engine.close();
    return {
      replayThreads,
      threads: r.threads,
      threadsUsed: r.threadsUsed,
      ms: r.ms,
      records: r.records,
      drawsReplayed: r.drawsReplayed,
      segments: r.segments,
      bytes: r.bytes,
      snapshotsLoaded: r.snapshotsLoaded,
      openMs,
      foreignCpuPct,
    };
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
}
