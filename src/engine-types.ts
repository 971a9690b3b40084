/**
 * Most draws one drawMany call may ask for: 2^24 (16,777,216), so a single call holds at most
 * 32 MiB of indices on each side of the thread boundary. More is several calls.
 */
export const kMaxDrawMany = 1 << 24;

/** Internal handle for tests and diagnostics: the shard Worker objects. */
export const kShardWorkers = Symbol.for('reward-pool-engine.shardWorkers');

/** The events a DrawEngine emits, with their arguments. */
export interface DrawEngineEvents {
  /** A shard worker died; its calls in flight were rejected with ERR_SHARD_FAILED. */
  shardExit: [{ shard: number; error: unknown }];
  /** A shard is back after a restart, on a new thread. */
  shardRestart: [{ shard: number; threadId: number }];
  /** A snapshot could not be written (the WAL still holds everything; the next one retries). */
  snapshotError: [{ shard: number; error: unknown }];
  /** Replication: this node's role changed (or, on a follower, the leader did). */
  roleChange: [{ role: 'leader' | 'follower' | 'deposed'; term: number; leader: string | undefined; leaderAddress: string | undefined }];
  /** Replication: something in the background failed (a lease renewal, an automatic promotion); it is retried. */
  replicationError: [{ error: unknown }];
  /** close() has finished. */
  close: [];
}
