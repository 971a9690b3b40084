/**
 * Results of a run: per-scenario summaries (medians over samples) and the JSON document.
 */
import type { Calibration, PromiseCosts } from '../lib/heap-probe.js';
import type { MachineInfo } from '../lib/machine.js';
import { median, spreadPct } from '../lib/stats.js';
import type { Table } from '../lib/format.js';
import type { Profile } from './config.js';
import type { Group, Kind, RecoveryBuild, RecoveryRun, Sample } from './scenarios.js';

export interface Summary {
  samples: number;
  /** Medians over the samples. */
  drawsPerSec: number;
  nsPerOp: number;
  bytesPerDraw: number;
  gcCount: number;
  gcPauseMs: number;
  walBytesPerDraw: number;
  walFileBytes: number;
  segments: number;
  rotations: number;
  snapshots: number;
  records: number;
  syncsPerSec: number;
  msPerSync: number;
  drawsPerBatch: number;
  seconds: number;
  /** Share of the window the coordinator spent in GC pauses, percent (median). */
  gcPausePct: number;
  /** CPU used by this process (coordinator and shards), % of all cores (median). */
  ownCpuPct: number;
  /** CPU used by other processes during the windows, % of all cores: median and worst sample. */
  foreignCpuPct: number;
  foreignCpuMaxPct: number;
  /** Spread of draws/sec: half the range over the median, percent. */
  spreadPct: number;
}

export interface RecoverySummary {
  replayThreads: number;
  runs: number;
  /** engine.recovery.threads (median): the calling thread plus the replay pool's threads. */
  threads: number;
  /** engine.recovery.threadsUsed (median): threads that decoded at least one segment. */
  threadsUsed: number;
  ms: number;
  openMs: number;
  records: number;
  drawsReplayed: number;
  segments: number;
  bytes: number;
  recordsPerSec: number;
  drawsPerSec: number;
  /** ms at replayThreads 1 over ms here. */
  speedup: number;
  spreadPct: number;
}

export interface Result {
  id: string;
  group: Group;
  kind: Kind;
  title: string;
  /** Shown from that scenario's samples (same configuration). */
  sameAs?: string;
  /** Engine options in force (engine.options, without dir). */
  options?: Record<string, unknown>;
  poolsPerShard?: number;
  samples: Sample[];
  /** Samples discarded because other processes were busy during them (their draws/sec). */
  retaken: { drawsPerSec: number; foreignCpuPct: number }[];
  summary?: Summary;
  recovery?: { build: RecoveryBuild; runs: RecoveryRun[]; byThreads: RecoverySummary[] };
  error?: string;
}

export interface Target {
  id: string;
  what: string;
  /** Measured value (NaN when an input is missing). */
  value: number;
  op: '>=' | '<=';
  goal: number;
  measured: string;
  target: string;
  /** true = pass, false = miss, null = not measured in this run. */
  pass: boolean | null;
  margin: string;
  /** Why it is missed, or what bounds it when it passes. */
  note: string;
}

export interface RunDocument {
  version: 1;
  tool: 'reward-pool-engine bench';
  date: string;
  argv: string[];
  profile: Profile;
  machine: MachineInfo;
  calibration: Calibration | undefined;
  /** Heap cost of one promise and one await on this thread (the floor under draw()). */
  promiseCosts: PromiseCosts | undefined;
  durationSec: number;
  /** How busy the machine was with other work (see bench/lib/cpu-load.ts). */
  load: LoadReport;
  results: Result[];
  tables: Table[];
  targets: Target[];
}

export interface LoadReport {
  /** os.loadavg() (1, 5, 15 minutes) when the run started and ended. */
  loadavgStart: number[];
  loadavgEnd: number[];
  /** CPU used by other processes over all timed windows, % of all cores: median and worst. */
  foreignCpuMedianPct: number;
  foreignCpuMaxPct: number;
  /** Hypervisor steal over all timed windows, worst sample. */
  stealCpuMaxPct: number;
  /** The retake threshold in force (percent of all cores). */
  maxOtherCpuPct: number;
  /** Samples discarded and taken again because the machine was busy. */
  retakenSamples: number;
  /** Kept samples still above the threshold (retakes exhausted). */
  busySamples: number;
}

export function loadReport(results: Iterable<Result>, loadavgStart: number[], loadavgEnd: number[], maxOtherCpuPct: number): LoadReport {
  const foreign: number[] = [];
  const steal: number[] = [];
  let retakenSamples = 0;
  for (const r of results) {
    retakenSamples += r.retaken.length;
    for (const s of r.samples) {
      foreign.push(s.foreignCpuPct);
      steal.push(s.stealCpuPct);
    }
    for (const run of r.recovery?.runs ?? []) foreign.push(run.foreignCpuPct);
  }
  const max = (v: number[]): number => (v.filter(Number.isFinite).length === 0 ? Number.NaN : Math.max(...v.filter(Number.isFinite)));
  return {
    loadavgStart,
    loadavgEnd,
    foreignCpuMedianPct: median(foreign),
    foreignCpuMaxPct: max(foreign),
    stealCpuMaxPct: max(steal),
    maxOtherCpuPct,
    retakenSamples,
    busySamples: foreign.filter((f) => f > maxOtherCpuPct).length,
  };
}

export function summarize(samples: Sample[]): Summary {
  const m = (f: (s: Sample) => number): number => median(samples.map(f));
  const drawsPerSec = m((s) => s.drawsPerSec);
  return {
    samples: samples.length,
    drawsPerSec,
    nsPerOp: 1e9 / drawsPerSec,
    bytesPerDraw: m((s) => s.heapBytes / s.draws),
    gcCount: m((s) => s.gcCount),
    gcPauseMs: m((s) => s.gcPauseMs),
    walBytesPerDraw: m((s) => (s.walBytes === 0 ? Number.NaN : s.walBytes / s.draws)),
    walFileBytes: m((s) => s.walFileBytes),
    segments: m((s) => s.segments),
    rotations: m((s) => s.rotations),
    snapshots: m((s) => s.snapshots),
    records: m((s) => s.records),
    syncsPerSec: m((s) => s.syncs / s.seconds),
    msPerSync: m((s) => (s.syncs === 0 ? Number.NaN : s.syncTimeMs / s.syncs)),
    drawsPerBatch: m((s) => (s.batches === 0 ? Number.NaN : s.draws / s.batches)),
    seconds: m((s) => s.seconds),
    gcPausePct: m((s) => (s.gcPauseMs / (s.seconds * 1000)) * 100),
    ownCpuPct: m((s) => s.ownCpuPct),
    foreignCpuPct: m((s) => s.foreignCpuPct),
    foreignCpuMaxPct: Math.max(...samples.map((s) => s.foreignCpuPct)),
    spreadPct: spreadPct(samples.map((s) => s.drawsPerSec)),
  };
}

export function summarizeRecovery(runs: RecoveryRun[]): RecoverySummary[] {
  const threads = [...new Set(runs.map((r) => r.replayThreads))].sort((a, b) => a - b);
  const out: RecoverySummary[] = [];
  for (const t of threads) {
    const rs = runs.filter((r) => r.replayThreads === t);
    const m = (f: (r: RecoveryRun) => number): number => median(rs.map(f));
    const ms = m((r) => r.ms);
    out.push({
      replayThreads: t,
      runs: rs.length,
      threads: m((r) => r.threads),
      threadsUsed: m((r) => r.threadsUsed),
      ms,
      openMs: m((r) => r.openMs),
      records: m((r) => r.records),
      drawsReplayed: m((r) => r.drawsReplayed),
      segments: m((r) => r.segments),
      bytes: m((r) => r.bytes),
      recordsPerSec: m((r) => r.records / (r.ms / 1000)),
      drawsPerSec: m((r) => r.drawsReplayed / (r.ms / 1000)),
      speedup: Number.NaN,
      spreadPct: spreadPct(rs.map((r) => r.ms)),
    });
  }
  const one = out.find((s) => s.replayThreads === 1);
  for (const s of out) s.speedup = one === undefined ? Number.NaN : one.ms / s.ms;
  return out;
}

/** The result a row shows: its own, or the one it is the same configuration as. */
export function resolve(results: Map<string, Result>, id: string): Result | undefined {
  const r = results.get(id);
  if (r?.sameAs !== undefined) return results.get(r.sameAs);
  return r;
}
