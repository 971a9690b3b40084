import { EngineError } from '../errors.js';
import { trimWindow, type WindowLimits } from '../idempotency.js';
import type { PoolData } from '../pool-state.js';

const kNoLimits: WindowLimits = { keys: Infinity, draws: Infinity };
import type { LoadedSnapshot } from '../snapshot/chain.js';
import type { StreamMark } from '../wal/format.js';
import type { DecodedSegment } from './decode-segment.js';
import { mergeSpan, newSpanSummary, type PoolSummary, type SpanSummary } from './summary.js';

function fail(s: PoolSummary, why: string): never {
  throw new EngineError('ERR_CORRUPT_WAL', `pool ${JSON.stringify(s.poolId)}: ${why}`, { details: { poolId: s.poolId, reason: why } });
}

/** Apply a folded span of WAL history on top of `pools` (from a snapshot, or empty). */
export function applySpan(pools: Map<string, PoolData>, span: SpanSummary, limits: WindowLimits = kNoLimits): void {
  for (const s of span.pools.values()) {
    let p = pools.get(s.poolId);
    if (p === undefined) {
      if (s.created === undefined) fail(s, 'has WAL records but no creation record (missing segment or snapshot?)');
      p = {
        id: s.poolId,
        itemIds: s.created.map((i) => i.id),
        weights: s.created.map((i) => i.weight),
        quantities: s.created.map((i) => i.quantity),
        drawn: new Array<number>(s.itemCount).fill(0),
        lastRequestId: 0,
      };
      pools.set(s.poolId, p);
    } else if (s.created !== undefined) {
      fail(s, 'created again although it already exists');
    }
    if (p.itemIds.length !== s.itemCount) fail(s, `WAL names ${s.itemCount} items, catalog has ${p.itemIds.length}`);
    for (let i = 0; i < s.itemCount; i++) {
      if (!Number.isNaN(s.setW[i]!)) p.weights[i] = s.setW[i]!;
      const setQ = s.setQ[i]!;
      let q: number;
      if (!Number.isNaN(setQ)) q = setQ === -1 ? -1 : setQ - s.drawsAfterSetQ[i]!;
      else q = p.quantities[i] === -1 ? -1 : p.quantities[i]! - s.draws[i]!;
      if (q < -1 || (q === -1 && (Number.isNaN(setQ) ? p.quantities[i] !== -1 : setQ !== -1))) {
        fail(s, `item ${JSON.stringify(p.itemIds[i])} would have quantity ${q}`);
      }
      p.quantities[i] = q;
      p.drawn[i]! += s.draws[i]!;
    }
    if (s.lastRequestId > p.lastRequestId) p.lastRequestId = s.lastRequestId;
    if (s.keyed.length > 0) p.keys = trimWindow((p.keys ?? []).concat(s.keyed), limits);
  }
}

/**
 * The recovered state: the chosen snapshots' pools (shards of that run only), then every
 * replayed segment's summary folded in (epoch, shard, seq) order, which is each pool's log
 * order (within an epoch a pool lives in one shard).
 */
export function foldRecovery(
  bases: Map<number, LoadedSnapshot>,
  shards: number,
  decoded: DecodedSegment[],
  limits: WindowLimits = kNoLimits,
): { pools: Map<string, PoolData>; maxRequestId: number; epochSeen: number; draws: number; unconfirmedDraws: number; marks: Map<number, StreamMark> } {
  const replayed = decoded.slice().sort((a, b) => a.epoch - b.epoch || a.shard - b.shard || a.seq - b.seq);
  const marks = new Map<number, StreamMark>();
  for (const [k, b] of bases) if (b.replication) marks.set(k, b.replication);
  // Under replication a group's records count once the mark after them says the stream stored
  // them: in each (epoch, shard), everything up to the last mark; the rest was never confirmed.
  const lastMarked = new Map<string, number>();
  for (const d of replayed) if (d.replicated && d.mark !== undefined) lastMarked.set(`${d.epoch}/${d.shard}`, d.seq);
  const total = newSpanSummary();
  let unconfirmedDraws = 0;
  for (const d of replayed) {
    if (!d.replicated) {
      mergeSpan(total, d.span, limits);
      continue;
    }
    const last = lastMarked.get(`${d.epoch}/${d.shard}`) ?? -1;
    if (d.seq < last) mergeSpan(total, d.span, limits);
    else if (d.seq === last) {
      mergeSpan(total, d.confirmed, limits);
      unconfirmedDraws += d.tail.draws;
      marks.set(d.shard, d.mark!);
    } else unconfirmedDraws += d.span.draws;
  }
  const pools = new Map<string, PoolData>();
  let maxRequestId = total.maxRequestId;
  let epochSeen = 0;
  for (const [k, b] of bases) {
    epochSeen = Math.max(epochSeen, b.epoch);
    if (k >= shards) continue;
    for (const [id, p] of b.pools) pools.set(id, p);
    maxRequestId = Math.max(maxRequestId, b.maxRequestId);
  }
  for (const d of replayed) epochSeen = Math.max(epochSeen, d.epoch);
  applySpan(pools, total, limits);
  return { pools, maxRequestId, epochSeen, draws: total.draws, unconfirmedDraws, marks };
}
