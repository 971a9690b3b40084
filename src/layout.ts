/*
 * Metrics SharedArrayBuffer: one block of kSlotsPerShard BigInt64 slots per shard, 128 bytes
 * each (a multiple of the 64-byte cache line, so shards never share a line).
 *
 *   block k at byte offset k * 128:
 *   +-------+------+--------+--------+---------+-------+--------+----------+--------+-------+----------+-----------+---------+
 *   | draws | empty| batches| records| walBytes| syncs | syncNs | rotations| pending| state | restarts | snapshots | 4 spare |
 *   +-------+------+--------+--------+---------+-------+--------+----------+--------+-------+----------+-----------+---------+
 *     0       1      2        3        4         5       6        7          8        9       10         11
 *
 * Writers: the shard owns every slot of its block except kPendingIndex, kRestartsIndex and
 * kSnapshotsIndex, which the coordinator owns (it is the one that learns a snapshot is
 * durable). One writer per slot; readers use Atomics.load.
 */
export const kSlotsPerShard = 16;
export const kBlockBytes = kSlotsPerShard * 8;

export const kDrawsIndex = 0;
export const kEmptyDrawsIndex = 1;
export const kBatchesIndex = 2;
export const kRecordsIndex = 3;
export const kWalBytesIndex = 4;
export const kSyncsIndex = 5;
export const kSyncNsIndex = 6;
export const kRotationsIndex = 7;
export const kPendingIndex = 8;
export const kStateIndex = 9;
export const kRestartsIndex = 10;
export const kSnapshotsIndex = 11;

export const kStateRunning = 0;
export const kStateClosed = -1;
export const kStateFailed = -2;

export function createMetricsBuffer(shards: number): SharedArrayBuffer {
  return new SharedArrayBuffer(shards * kBlockBytes);
}

/** View of one shard's block. */
export function shardBlock(sab: SharedArrayBuffer, shard: number): BigInt64Array {
  return new BigInt64Array(sab, shard * kBlockBytes, kSlotsPerShard);
}
