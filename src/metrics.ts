import type { ReplicationMetrics } from './replication/replication.js';
import {
  kBatchesIndex,
  kDrawsIndex,
  kEmptyDrawsIndex,
  kPendingIndex,
  kRecordsIndex,
  kRestartsIndex,
  kRotationsIndex,
  kSnapshotsIndex,
  kStateFailed,
  kStateIndex,
  kSyncNsIndex,
  kSyncsIndex,
  kWalBytesIndex,
  shardBlock,
} from './layout.js';

export interface ShardMetrics {
  draws: number;
  emptyDraws: number;
  batches: number;
  records: number;
  walBytes: number;
  syncs: number;
  syncTimeMs: number;
  rotations: number;
  /** Draws queued for or in flight to the shard. */
  pending: number;
  restarts: number;
  snapshots: number;
  failed: boolean;
}

export interface EngineMetrics extends Omit<ShardMetrics, 'failed'> {
  /** WAL bytes per logged draw (0 before any draw). */
  walBytesPerDraw: number;
  shards: ShardMetrics[];
  /** With replication: this node's role, the leader, and (follower) how far behind it is. */
  replication?: ReplicationMetrics;
}

function read(block: BigInt64Array, i: number): number {
  return Number(Atomics.load(block, i));
}

export function readShardMetrics(block: BigInt64Array): ShardMetrics {
  return {
    draws: read(block, kDrawsIndex),
    emptyDraws: read(block, kEmptyDrawsIndex),
    batches: read(block, kBatchesIndex),
    records: read(block, kRecordsIndex),
    walBytes: read(block, kWalBytesIndex),
    syncs: read(block, kSyncsIndex),
    syncTimeMs: read(block, kSyncNsIndex) / 1e6,
    rotations: read(block, kRotationsIndex),
    pending: read(block, kPendingIndex),
    restarts: read(block, kRestartsIndex),
    snapshots: read(block, kSnapshotsIndex),
    failed: read(block, kStateIndex) === kStateFailed,
  };
}

/** Sum every shard's block; no message to any worker. */
export function readMetrics(sab: SharedArrayBuffer, shards: number): EngineMetrics {
  const per: ShardMetrics[] = [];
  for (let k = 0; k < shards; k++) per.push(readShardMetrics(shardBlock(sab, k)));
  const sum = (f: (m: ShardMetrics) => number): number => per.reduce((a, m) => a + f(m), 0);
  const draws = sum((m) => m.draws);
  const walBytes = sum((m) => m.walBytes);
  return {
    draws,
    emptyDraws: sum((m) => m.emptyDraws),
    batches: sum((m) => m.batches),
    records: sum((m) => m.records),
    walBytes,
    syncs: sum((m) => m.syncs),
    syncTimeMs: sum((m) => m.syncTimeMs),
    rotations: sum((m) => m.rotations),
    pending: sum((m) => m.pending),
    restarts: sum((m) => m.restarts),
    snapshots: sum((m) => m.snapshots),
    walBytesPerDraw: draws === 0 ? 0 : walBytes / draws,
    shards: per,
  };
}
