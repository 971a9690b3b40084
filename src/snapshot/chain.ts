import { join } from 'node:path';
import { plainPoolData, type PoolData } from '../pool-state.js';
import { listSnapshots, shardDirPath, snapshotFileName } from '../storage/data-dir.js';
import type { Storage } from '../storage/storage.js';
import type { StreamMark } from '../wal/format.js';
import { storageError } from '../errors.js';
import { decodeSnapshot, type SnapshotBody } from './format.js';

/** A shard's state as of a snapshot, with the chain it came from. */
export interface LoadedSnapshot {
  shard: number;
  epoch: number;
  shards: number;
  /** Seq of the snapshot used: WAL segments below it are covered. */
  coversBelow: number;
  maxRequestId: number;
  pools: Map<string, PoolData>;
  manifest: { poolIds: string[]; at: number[] };
  /** Every snapshot file the state was read from (the chain). */
  files: number[];
  /** Under replication: the last group of the stream the state includes. */
  replication?: StreamMark;
  /** Segment coversBelow was named with its header before the snapshot (see SnapshotBody). */
  segmentCreated?: boolean;
}

export interface ChainLoad {
  loaded: LoadedSnapshot | undefined;
  /** Snapshots passed over because they (or a file of their chain) were invalid. */
  fallbacks: { file: string; reason: string }[];
  /** Valid snapshot files read. */
  filesRead: number;
}

/**
 * Load the newest snapshot of a shard directory whose whole chain is valid. An incremental
 * snapshot holds only the pools that changed; its manifest says which older file holds each
 * of the others. A bad newest snapshot falls back to the previous one (its segments are kept);
 * one that cannot be read at all is a storage error.
 */
export function loadNewestSnapshot(storage: Storage, dir: string, shard: number, maxEpoch = Infinity): ChainLoad {
  const shardDir = shardDirPath(dir, shard);
  const seqs = listSnapshots(storage, shardDir);
  const cache = new Map<number, SnapshotBody | string>();
  const read = (seq: number): SnapshotBody | string => {
    let body = cache.get(seq);
    if (body === undefined) {
      const file = join(shardDir, snapshotFileName(seq));
      // A file that cannot be read (EIO) is not known to be invalid: a storage error, as for a
      // segment, never a fallback that would report it as corrupt.
      let buf: Buffer;
      try {
        buf = storage.readFile(file);
      } catch (err) {
        throw storageError(err, `cannot read snapshot ${file}`);
      }
      body = decodeSnapshot(buf);
      if (typeof body === 'object' && (body.shard !== shard || body.coversBelow !== seq)) {
        body = `header says shard ${body.shard} seq ${body.coversBelow}`;
      }
      cache.set(seq, body);
    }
    return body;
  };
  const fallbacks: ChainLoad['fallbacks'] = [];
  for (let i = seqs.length - 1; i >= 0; i--) {
    const seq = seqs[i]!;
    const file = join(shardDir, snapshotFileName(seq));
    const head = read(seq);
    if (typeof head === 'string') {
      fallbacks.push({ file, reason: head });
      continue;
    }
    if (head.epoch > maxEpoch) continue; // an incomplete later set, passed over by the caller
    const pools = new Map<string, PoolData>();
    const files = new Set<number>([seq]);
    let bad: string | undefined;
    const { poolIds, at } = head.manifest;
    for (let p = 0; p < poolIds.length && bad === undefined; p++) {
      const holder = at[p]!;
      const body = read(holder);
      if (typeof body === 'string') {
        bad = `chain file ${snapshotFileName(holder)}: ${body}`;
        break;
      }
      if (body.epoch !== head.epoch) {
        bad = `chain file ${snapshotFileName(holder)} is from epoch ${body.epoch}, not ${head.epoch}`;
        break;
      }
      files.add(holder);
      const pool = body.pools.find((x) => x.id === poolIds[p]);
      if (pool === undefined) {
        bad = `chain file ${snapshotFileName(holder)} does not hold pool ${JSON.stringify(poolIds[p])}`;
        break;
      }
      pools.set(pool.id, plainPoolData(pool));
    }
    if (bad !== undefined) {
      fallbacks.push({ file, reason: bad });
      continue;
    }
    return {
      loaded: {
        shard,
        epoch: head.epoch,
        shards: head.shards,
        coversBelow: seq,
        maxRequestId: head.maxRequestId,
        pools,
        manifest: head.manifest,
        files: [...files].sort((a, b) => a - b),
        replication: head.replication ?? undefined,
        segmentCreated: head.segmentCreated === true,
      },
      fallbacks,
      filesRead: [...cache.values()].filter((b) => typeof b === 'object').length,
    };
  }
  return { loaded: undefined, fallbacks, filesRead: 0 };
}
