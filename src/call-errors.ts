import { isValidId, kIdRule } from './catalog.js';
import { EngineError, show } from './errors.js';

/*
 * The errors a DrawEngine method rejects with before any shard is involved, each naming the
 * offending value.
 */

export function notAnEngine(method: string): EngineError {
  return new EngineError('ERR_INVALID_ARGUMENT', `${method}() must be called on a DrawEngine (engine.${method}(...)); it was called on something else, e.g. as a detached method`, {
    details: { method },
  });
}

export function engineClosed(): EngineError {
  return new EngineError('ERR_ENGINE_CLOSED', 'the engine is closed');
}

/** Why `poolId` names no pool: not a valid id at all, or no such pool. */
export function noSuchPool(poolId: unknown): EngineError {
  if (!isValidId(poolId)) return new EngineError('ERR_INVALID_ARGUMENT', `poolId must be ${kIdRule}, got ${show(poolId)}`, { details: { poolId } });
  return new EngineError('ERR_UNKNOWN_POOL', `no pool with id ${show(poolId)}`, { details: { poolId } });
}

export function badCount(poolId: unknown, count: unknown, max: number): EngineError {
  return new EngineError('ERR_INVALID_ARGUMENT', `drawMany(${show(poolId)}): count must be an integer from 1 to ${max}, got ${show(count)}`, {
    details: { poolId, count },
  });
}
