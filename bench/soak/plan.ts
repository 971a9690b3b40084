/**
 * One soak round's parameters, all drawn from the round's seed, so `--seed <round seed>
 * --kills 1` runs that round again (on a fresh directory).
 */
import { binary } from '../lib/format.js';
import { between, mulberry32, type SoakSync, type SoakWal } from './workload.js';

export type KillPhase = 'open' | 'load' | 'close';

export interface RoundPlan {
  round: number;
  seed: number;
  wal: SoakWal;
  sync: SoakSync;
  /** Shards of the child that is killed. */
  shards: number;
  /** Shards of the soak's own reopen (recovery with another layout). */
  reopenShards: number;
  segmentBytes: number;
  /** undefined: the engine's default (1,000,000 records per shard). */
  snapshotEveryRecords: number | undefined;
  /** Continue on the previous round's directory (when there is one to continue). */
  reuse: boolean;
  /**
   * Where the kill is aimed: 'open' = killDelayMs after the child calls DrawEngine.open (while
   * the engine recovers, writes its open-time snapshots and creates the pools, or at the very
   * start of the load); 'load' = killDelayMs after `ready`;
   * 'close' = the child calls close() closeAfterMs after `ready`, killed killDelayMs after that.
   */
  phase: KillPhase;
  killDelayMs: number;
  closeAfterMs: number | undefined;
}

/** Seeds of the rounds: the first is the soak's seed itself, the next come from it. */
export function roundSeeds(seed: number): () => number {
  const rand = mulberry32(seed ^ 0x50a4_50a4);
  let first = true;
  return () => {
    if (first) {
      first = false;
      return seed >>> 0;
    }
    return Math.floor(rand() * 2 ** 32) >>> 0;
  };
}

export function planRound(round: number, seed: number): RoundPlan {
  const rand = mulberry32(seed);
  const wal: SoakWal = rand() < 0.5 ? 'mmap' : 'file';
  const sync = (['always', 'interval', 'never'] as const)[between(rand, 0, 2)]!;
  const shards = between(rand, 1, 4);
  const reopenShards = between(rand, 1, 4);
  // Small segments, so that runs of a second rotate many times: half powers of two from 4 KiB
  // to 1 MiB, half any size in that range.
  const segmentBytes = rand() < 0.5 ? 4096 * 2 ** between(rand, 0, 8) : between(rand, 4096, 1 << 20);
  const s = rand();
  // Small intervals log-uniform from 10 to 2,000 records per shard: a shard logs a few thousand
  // records a second here, so they snapshot from several times a second to every other second.
  const snapshotEveryRecords = s < 0.3 ? 0 : s < 0.7 ? Math.round(Math.exp(Math.log(10) + rand() * Math.log(200))) : undefined;
  const reuse = rand() < 0.7;
  const p = rand();
  const phase: KillPhase = p < 0.12 ? 'open' : p < 0.88 ? 'load' : 'close';
  let killDelayMs: number;
  let closeAfterMs: number | undefined;
  if (phase === 'open') {
    killDelayMs = between(rand, 0, 350);
  } else if (phase === 'load') {
    // Half log-uniform from 2 ms (the first acks, the first rotation), half uniform to 1.5 s.
    killDelayMs = rand() < 0.5 ? Math.round(Math.exp(Math.log(2) + rand() * Math.log(1500 / 2))) : between(rand, 2, 1500);
  } else {
    closeAfterMs = between(rand, 0, 500);
    // close() drains, syncs and seals in some tens of ms here: aim inside it, often right away.
    killDelayMs = rand() < 0.5 ? between(rand, 0, 5) : between(rand, 0, 60);
  }
  return { round, seed, wal, sync, shards, reopenShards, segmentBytes, snapshotEveryRecords, reuse, phase, killDelayMs, closeAfterMs };
}

export function describePlan(p: RoundPlan, reusedRuns: number): string {
  const snap = p.snapshotEveryRecords === undefined ? 'default' : p.snapshotEveryRecords === 0 ? 'off' : String(p.snapshotEveryRecords);
  const kill =
    p.phase === 'open'
      ? `${p.killDelayMs} ms into open`
      : p.phase === 'load'
        ? `${p.killDelayMs} ms after ready`
        : `${p.killDelayMs} ms into close (called ${p.closeAfterMs} ms after ready)`;
  const dir = reusedRuns > 0 ? `dir reused (kill ${reusedRuns + 1} on it)` : 'fresh dir';
  return `wal ${p.wal}, sync ${p.sync}, shards ${p.shards} -> ${p.reopenShards}, segments ${binary(p.segmentBytes)}, snapshotEveryRecords ${snap}, ${dir}, kill ${kill}`;
}
