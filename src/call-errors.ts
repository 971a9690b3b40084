import { isValidId, kIdRule } from './catalog.js';
import type { PoolMeta } from './coordinator/pool-meta.js';
import { asEngineError, EngineError, show } from './errors.js';
import type { FilledOptions } from './options.js';
import { drawWidth, kHeaderBytes, keyedDrawRecordBytes } from './wal/format.js';

/** Options of draw() and drawMany(). */
export interface DrawOptions {
  /**
   * Makes the call idempotent: 1-128 characters (an order id, a purchase id). Repeated with the
   * same pool and count while the key is in the pool's window, the call draws nothing and gets
   * the original outcome back; with another pool or count it is ERR_IDEMPOTENCY_MISMATCH.
   */
  idempotencyKey?: string;
}

/** The options' key, read once: undefined when absent, an EngineError when invalid. */
export function readKey(method: string, options: unknown): string | undefined | EngineError {
  if (typeof options !== 'object' || options === null) {
    return new EngineError('ERR_INVALID_ARGUMENT', `${method}(): options must be an object, got ${show(options)}`, { details: { options } });
  }
  let key: unknown;
  try {
    key = (options as DrawOptions).idempotencyKey;
  } catch (err) {
    return asEngineError(err, 'ERR_INVALID_ARGUMENT', `${method}(): options.idempotencyKey could not be read`);
  }
  if (key === undefined) return undefined;
  if (!isValidId(key)) {
    return new EngineError('ERR_INVALID_ARGUMENT', `${method}(): options.idempotencyKey must be ${kIdRule}, got ${show(key)}`, { details: { idempotencyKey: key } });
  }
  return key;
}

/** A keyed call is logged as one record: it must fit in a segment of the largest size. */
export function keyedCallTooLarge(pool: PoolMeta, count: number, key: string, opts: FilledOptions): EngineError | undefined {
  if (opts.wal === 'none') return undefined;
  const bytes = keyedDrawRecordBytes(Buffer.byteLength(key, 'utf8'), count, drawWidth(pool.items.length));
  if (bytes <= opts.segmentBytes - kHeaderBytes) return undefined;
  return new EngineError(
    'ERR_INVALID_ARGUMENT',
    `a keyed call of ${count} draws on pool ${show(pool.id)} needs a ${bytes}-byte WAL record, more than a segment of ${opts.segmentBytes} bytes holds: raise segmentBytes or split the call`,
    { details: { poolId: pool.id, count, recordBytes: bytes, segmentBytes: opts.segmentBytes } },
  );
}

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
