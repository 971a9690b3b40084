export { DrawEngine, type PoolState, type PoolItemState } from './engine.js';
export { DrawBatch } from './draw-batch.js';
export { EngineError, codes as errorCodes, type ErrorCode } from './errors.js';
export type { DrawResult } from './coordinator/shard-client.js';
export type { DrawEngineOptions, WalMode, SyncMode } from './options.js';
export type { ItemSpec, ItemPatch } from './catalog.js';
export type { EngineMetrics, ShardMetrics } from './metrics.js';
export type { RecoveryReport } from './recovery/recover.js';
