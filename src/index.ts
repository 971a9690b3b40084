export { DrawEngine, kMaxDrawMany, type DrawEngineEvents } from './engine.js';
export type { PoolState, PoolItemState } from './pool-state.js';
export { DrawBatch } from './draw-batch.js';
export { EngineError, codes as errorCodes, type ErrorCode } from './errors.js';
export type { DrawResult } from './coordinator/batcher.js';
export type { DrawEngineOptions, WalMode, SyncMode } from './options.js';
export type { ItemSpec, ItemPatch } from './catalog.js';
export type { EngineMetrics, ShardMetrics } from './metrics.js';
export type { RecoveryReport } from './recovery/recover.js';
