import type { EngineError } from '../errors.js';
import type { SyncMode } from '../options.js';
import type { Storage } from '../storage/storage.js';
import type { StreamMark } from './format.js';

export interface WalWriterOptions {
  storage: Storage;
  dir: string;
  shard: number;
  epoch: number;
  /** Sequence number of the first segment this writer writes. */
  firstSeq: number;
  /** Largest segment size; segments start at firstSegmentBytes() of it and double up to it. */
  segmentBytes: number;
  /** Under replication: segments say so, and records count once a mark follows them. Default: false. */
  replicated?: boolean;
  sync: SyncMode;
  syncIntervalMs: number;
  /** A background sync failed: the shard must stop acknowledging (fail-stop). */
  onBackgroundError: (err: EngineError) => void;
}

/** Counters a writer accumulates; the shard publishes them to the metrics block. */
export interface WalStats {
  bytes: number;
  records: number;
  syncs: number;
  syncNs: number;
  rotations: number;
}

/** Where a shard's records go: its WAL, or the messages of a replicating leader. */
export interface RecordSink {
  registerPool(ref: number, poolId: string, itemCount: number): void;
  appendCreate(ref: number, packed: Uint8Array): void;
  appendUpdate(ref: number, itemIndex: number, weight: number, quantity: number): void;
  appendDraws(ref: number, firstRequestId: number, indices: Uint16Array, offset: number, count: number): void;
  /** A keyed call's draws with its key, as one record (it must fit: see maxRecordBytes). */
  appendKeyedDraws(ref: number, firstRequestId: number, key: Buffer, indices: Uint16Array, offset: number, count: number): void;
  /** The largest record that fits. */
  readonly maxRecordBytes: number;
}

/**
 * Appends records for one shard. Records reference pools by a small per-shard number (`ref`);
 * each segment defines the refs it uses (PoolRef or CreatePool record) before using them, so a
 * segment decodes on its own.
 */
export interface WalWriter extends RecordSink {
  readonly stats: WalStats;
  /** The replicated stream stored everything appended before this (replication only). */
  appendMark(mark: StreamMark): void;
  /** End of a batch: apply the sync policy. With 'always', returns only once it is durable. */
  commit(): void;
  /**
   * Seq of the first segment a snapshot taken now does not cover: the current one if it holds
   * no record yet, else a fresh one (the current is synced and sealed first).
   */
  snapshotBoundary(): number;
  /** Sync what is written, seal the segment as closed, drop the prepared spare segment. */
  close(): Promise<void>;
  /**
   * Fail-stop: release the segment without writing anything more (no sync, no seal), and drop
   * the spare. After a storage failure the writer's state is unknown (a rotation may have
   * failed half-way), so the newest segment stays as a crash would leave it.
   */
  abandon(): void;
}

/** A run's segments start this small (or at segmentBytes, if smaller) and double as they fill. */
export const kFirstSegmentBytes = 1 << 20;

export function firstSegmentBytes(segmentBytes: number): number {
  return Math.min(segmentBytes, kFirstSegmentBytes);
}

export class NullWalWriter implements WalWriter {
  readonly stats: WalStats = { bytes: 0, records: 0, syncs: 0, syncNs: 0, rotations: 0 };
  registerPool(): void {}
  appendCreate(): void {}
  appendUpdate(): void {}
  appendDraws(): void {}
  appendKeyedDraws(): void {}
  appendMark(): void {}
  readonly maxRecordBytes = Infinity;
  commit(): void {}
  snapshotBoundary(): number {
    return 0;
  }
  async close(): Promise<void> {}
  abandon(): void {}
}
