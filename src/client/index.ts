/**
 * `reward-pool-engine/client`: RewardPoolClient, the embedded engine's API over HTTP. Importing
 * it loads undici (not fastify, not the engine's workers).
 */
export { RewardPoolClient, type RewardPoolClientOptions, type DrawOptions } from './client.js';
export { DrawBatch } from '../draw-batch.js';
export { EngineError, type ErrorCode } from '../errors.js';
export type { DrawResult, PoolState, PoolItemState, ItemSpec, ItemPatch, EngineMetrics, ShardMetrics } from '../index.js';
