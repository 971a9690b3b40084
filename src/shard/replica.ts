import { unpack } from 'msgpackr';
import type { ItemSpec } from '../catalog.js';
import { EngineError } from '../errors.js';
import { forEachRecord, type MessageHeader } from '../replication/message.js';
import { kEmptyDraw } from '../selector.js';
import {
  kCreateHeaderBytes,
  kDrawHeaderBytes,
  kEmpty8,
  kKeyedDrawHeaderBytes,
  kPoolRefHeaderBytes,
  kRecCreatePool,
  kRecDraw16,
  kRecDraw8,
  kRecKeyedDraw,
  kRecPoolRef,
  kRecUpdateItem,
} from '../wal/format.js';
import type { WalWriter } from '../wal/writer.js';
import type { ShardPools } from './shard-pools.js';

/*
 * A shard's side of replication: a follower applies its leader's messages to its own pools
 * (the outcomes they carry, not new random draws) and logs them in its own WAL, with its own
 * refs; a leader logs its own messages once the stream has stored them.
 */

/** What a follower learned from one message, for its coordinator. */
export interface ReplicaApplied {
  header: MessageHeader;
  /** Pools the message created: the coordinator routes to them from now on. */
  created: { ref: number; id: string; itemIds: string[] }[];
  /** Keyed calls it logged: the coordinator's key index learns them. */
  keyed: { poolId: string; key: string; count: number }[];
  draws: number;
  empty: number;
  /** Refs of the pools it changed. */
  changed: Set<number>;
}

/** One index per draw, as u16 (0xFFFF = empty), from a record's u8 or u16 indices. */
function indicesOf(body: Buffer, at: number, count: number, width: number): Uint16Array {
  const out = new Uint16Array(count);
  if (width === 1) for (let i = 0; i < count; i++) out[i] = body[at + i] === kEmpty8 ? kEmptyDraw : body[at + i]!;
  else for (let i = 0; i < count; i++) out[i] = body.readUInt16LE(at + 2 * i);
  return out;
}

/** Apply a leader's message to a follower's pools, logging every record in its own WAL. */
export function applyReplicated(pools: ShardPools, wal: WalWriter, payload: Uint8Array): ReplicaApplied {
  const created: ReplicaApplied['created'] = [];
  const keyed: ReplicaApplied['keyed'] = [];
  const changed = new Set<number>();
  let draws = 0;
  let empty = 0;
  // The leader's refs in this message -> this shard's pools (the message defines each first).
  const refs = new Map<number, number>();
  const local = (leaderRef: number): number => {
    const ref = refs.get(leaderRef);
    if (ref === undefined) throw new EngineError('ERR_CORRUPT_WAL', `replicated message: pool ref ${leaderRef} used before it is defined`);
    return ref;
  };
  const header = forEachRecord(payload, (type, body) => {
    switch (type) {
      case kRecPoolRef: {
        const id = body.toString('utf8', kPoolRefHeaderBytes);
        const pool = pools.byId(id);
        if (pool === undefined) throw new EngineError('ERR_CORRUPT_WAL', `replicated message: pool ${JSON.stringify(id)} used before its creation`);
        refs.set(body.readUInt32LE(4), pool.ref);
        break;
      }
      case kRecCreatePool: {
        const { id, items } = unpack(body.subarray(kCreateHeaderBytes)) as { id: string; items: ItemSpec[] };
        if (pools.byId(id) !== undefined) throw new EngineError('ERR_CORRUPT_WAL', `replicated message: pool ${JSON.stringify(id)} created twice`);
        const ref = pools.freeRef();
        pools.create(ref, id, items);
        wal.registerPool(ref, id, items.length);
        wal.appendCreate(ref, body.subarray(kCreateHeaderBytes));
        refs.set(body.readUInt32LE(4), ref);
        created.push({ ref, id, itemIds: items.map((i) => i.id) });
        changed.add(ref);
        break;
      }
      case kRecDraw8:
      case kRecDraw16: {
        const ref = local(body.readUInt32LE(4));
        const first = body.readDoubleLE(8);
        const count = body.readUInt32LE(16);
        const indices = indicesOf(body, kDrawHeaderBytes, count, type === kRecDraw8 ? 1 : 2);
        const pool = pools.get(ref)!;
        empty += pool.selector.applyOutcomes(indices, 0, count);
        wal.appendDraws(ref, first, indices, 0, count);
        pools.drew(pool, first, count);
        draws += count;
        changed.add(ref);
        break;
      }
      case kRecKeyedDraw: {
        const ref = local(body.readUInt32LE(4));
        const width = body.readUInt8(1);
        const keyLen = body.readUInt16LE(2);
        const first = body.readDoubleLE(8);
        const count = body.readUInt32LE(16);
        const keyBytes = body.subarray(kKeyedDrawHeaderBytes, kKeyedDrawHeaderBytes + keyLen);
        const key = keyBytes.toString('utf8');
        const indices = indicesOf(body, kKeyedDrawHeaderBytes + keyLen, count, width);
        const pool = pools.get(ref)!;
        empty += pool.selector.applyOutcomes(indices, 0, count);
        pool.window.add({ key, firstRequestId: first, count, indices });
        wal.appendKeyedDraws(ref, first, Buffer.from(keyBytes), indices, 0, count);
        pools.drew(pool, first, count);
        draws += count;
        keyed.push({ poolId: pool.id, key, count });
        changed.add(ref);
        break;
      }
      case kRecUpdateItem: {
        const ref = local(body.readUInt32LE(4));
        const itemIndex = body.readUInt32LE(8);
        const weight = body.readDoubleLE(16);
        const quantity = body.readDoubleLE(24);
        const pool = pools.get(ref)!;
        if (itemIndex >= pool.itemIds.length) throw new EngineError('ERR_CORRUPT_WAL', `replicated message: item index ${itemIndex} out of range`);
        pools.update(pool, itemIndex, weight, quantity);
        wal.appendUpdate(ref, itemIndex, weight, quantity);
        changed.add(ref);
        break;
      }
      default:
        throw new EngineError('ERR_CORRUPT_WAL', `replicated message: unexpected record type ${type}`);
    }
  });
  return { header, created, keyed, draws, empty, changed };
}

/**
 * A leader's own message, stored by the stream: log its records in the local WAL (the pools
 * already hold them; refs are this shard's own).
 */
export function logPublished(wal: WalWriter, payload: Uint8Array): MessageHeader {
  return forEachRecord(payload, (type, body) => {
    switch (type) {
      case kRecPoolRef:
        break; // the local writer defines refs in its own segments
      case kRecCreatePool:
        wal.appendCreate(body.readUInt32LE(4), body.subarray(kCreateHeaderBytes));
        break;
      case kRecDraw8:
      case kRecDraw16: {
        const count = body.readUInt32LE(16);
        wal.appendDraws(body.readUInt32LE(4), body.readDoubleLE(8), indicesOf(body, kDrawHeaderBytes, count, type === kRecDraw8 ? 1 : 2), 0, count);
        break;
      }
      case kRecKeyedDraw: {
        const keyLen = body.readUInt16LE(2);
        const count = body.readUInt32LE(16);
        const key = Buffer.from(body.subarray(kKeyedDrawHeaderBytes, kKeyedDrawHeaderBytes + keyLen));
        wal.appendKeyedDraws(body.readUInt32LE(4), body.readDoubleLE(8), key, indicesOf(body, kKeyedDrawHeaderBytes + keyLen, count, body.readUInt8(1)), 0, count);
        break;
      }
      case kRecUpdateItem:
        wal.appendUpdate(body.readUInt32LE(4), body.readUInt32LE(8), body.readDoubleLE(16), body.readDoubleLE(24));
        break;
      default:
        throw new EngineError('ERR_SHARD_FAILED', `replication: unexpected record type ${type} in the shard's own message`);
    }
  });
}
