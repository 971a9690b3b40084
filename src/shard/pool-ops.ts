import { pack } from 'msgpackr';
import { EngineError, show } from '../errors.js';
import type { Sfc32 } from '../prng.js';
import { kOpCreate, kOpState, kOpUpdate, type Control, type PoolStateReply } from '../protocol.js';
import { drawWidth, keyedDrawRecordBytes } from '../wal/format.js';
import type { RecordSink, WalWriter } from '../wal/writer.js';
import type { ShardPools } from './shard-pools.js';

/** What the pool operations reach of their shard (getters: the sink changes when it leads). */
export interface PoolOpsContext {
  pools(): ShardPools;
  rng(): Sfc32;
  /** The local WAL (refs are registered there even while records go to messages). */
  wal(): WalWriter;
  /** Where records go: the WAL, or a replicating leader's messages. */
  sink(): RecordSink;
  /** The pool changed since the last snapshot. */
  changed(ref: number): void;
}

/**
 * A keyed call: its key already in the pool's window gives back the original outcome (copied
 * into out; returns -firstRequestId, nothing drawn or logged); otherwise draw, log key and
 * outcome as one record, keep it in the window, and return the empty draws. Errors are the
 * op's own (nothing drawn): unknown pool, the key reused with another count, a record too
 * large for a segment.
 */
export function drawKeyed(ctx: PoolOpsContext, ref: number, key: string, count: number, first: number, out: Uint16Array, at: number): number | EngineError {
  const pools = ctx.pools();
  const pool = pools.get(ref);
  if (pool === undefined) return unknownRefError(ref);
  const kept = pool.window.get(key);
  if (kept !== undefined) {
    if (kept.count !== count) return mismatch(pool.id, key, kept.count, count);
    out.set(kept.indices, at);
    return -kept.firstRequestId;
  }
  const sink = ctx.sink();
  const keyBytes = Buffer.from(key, 'utf8');
  const bytes = keyedDrawRecordBytes(keyBytes.length, count, drawWidth(pool.itemIds.length));
  const room = Math.min(ctx.wal().maxRecordBytes, sink.maxRecordBytes);
  if (bytes > room) {
    return new EngineError('ERR_INVALID_ARGUMENT', `a keyed call of ${count} draws needs a ${bytes}-byte record, more than one holds (${room}): raise segmentBytes or split the call`, {
      details: { poolId: pool.id, count, recordBytes: bytes },
    });
  }
  const empty = pool.selector.drawInto(ctx.rng(), count, out, at);
  sink.appendKeyedDraws(ref, first, keyBytes, out, at, count);
  pool.window.add({ key, firstRequestId: first, count, indices: out.slice(at, at + count) });
  pools.drew(pool, first, count);
  ctx.changed(ref);
  return empty;
}

/** A create, update or state read, in order with the pool's draws. */
export function runControl(ctx: PoolOpsContext, kind: number, ref: number, control: Control): PoolStateReply | null | EngineError {
  const pools = ctx.pools();
  const sink = ctx.sink();
  if (kind === kOpCreate && control.type === 'create') {
    if (pools.get(ref) !== undefined) return new EngineError('ERR_POOL_EXISTS', `pool ${JSON.stringify(control.id)} already exists`);
    const packed = pack({ id: control.id, items: control.items });
    // Log first: a pool exists once its creation is in the WAL.
    const wal = ctx.wal();
    wal.registerPool(ref, control.id, control.items.length);
    if (sink !== wal) sink.registerPool(ref, control.id, control.items.length);
    try {
      sink.appendCreate(ref, packed);
    } catch (err) {
      // Too large for a segment: nothing was written, so the shard stays healthy.
      if (err instanceof EngineError && err.code === 'ERR_INVALID_ARGUMENT') return err;
      throw err;
    }
    pools.create(ref, control.id, control.items);
    return null;
  }
  const pool = pools.get(ref);
  if (pool === undefined) return unknownRefError(ref);
  if (kind === kOpUpdate && control.type === 'update') {
    const { itemIndex, weight, quantity } = control;
    const tooHeavy = pools.checkWeight(pool, itemIndex, weight);
    if (tooHeavy !== undefined) return tooHeavy;
    sink.appendUpdate(ref, itemIndex, weight, quantity);
    pools.update(pool, itemIndex, weight, quantity);
    return null;
  }
  if (kind === kOpState && control.type === 'state') return pools.state(pool);
  return new EngineError('ERR_SHARD_FAILED', `protocol: op kind ${kind} does not match control ${control.type}`);
}

function mismatch(poolId: string, key: string, kept: number, asked: number): EngineError {
  return new EngineError('ERR_IDEMPOTENCY_MISMATCH', `idempotency key ${show(key)} was used on pool ${show(poolId)} for ${kept} draws, not ${asked}`, {
    details: { poolId, idempotencyKey: key, count: asked, originalCount: kept },
  });
}

export function unknownRefError(ref: number): EngineError {
  return new EngineError('ERR_UNKNOWN_POOL', `pool ref ${ref} is not known to this shard (its creation failed)`);
}
