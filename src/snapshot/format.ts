import { createHash } from 'node:crypto';
import { pack, unpack } from 'msgpackr';
import type { KeyedOutcome } from '../idempotency.js';
import type { StreamMark } from '../wal/format.js';
import type { PoolData } from '../pool-state.js';
import { snapshotPath } from '../storage/data-dir.js';
import { writeFileDurably } from '../storage/durable.js';
import type { Storage } from '../storage/storage.js';

/*
 * Snapshot file dir/shard-<k>/<seq>.snap:
 *
 *   0       4         6          8          12                 44
 *   +-------+---------+----------+----------+------------------+---------------------+
 *   | magic | version | reserved | bodyLen  | sha256(body)     | body (msgpackr)     |
 *   +-------+---------+----------+----------+------------------+---------------------+
 *
 * `seq` is the first WAL segment of the shard NOT covered: the snapshot is taken at a segment
 * boundary, so "covered" is simply "seq < coversBelow".
 */
export const kSnapMagic = 0x4e53_5052; // "RPSN"
export const kSnapVersion = 1;
export const kSnapHeaderBytes = 44;

/** A pool in a snapshot: typed-array copies from the shard, plain arrays once read back. */
export type SnapshotPool = PoolData<number[] | Float64Array>;

export interface SnapshotBody {
  epoch: number;
  shard: number;
  /** Shard count of the run that wrote it. */
  shards: number;
  coversBelow: number;
  maxRequestId: number;
  kind: 'full' | 'incremental';
  createdAt: number;
  /**
   * The manifest: every pool of the shard and the snapshot (by seq) holding its latest state.
   * A full snapshot points every pool at itself; an incremental one only the changed pools.
   */
  manifest: { poolIds: string[]; at: number[] };
  /** State of the pools this file holds (all, or the changed ones). */
  pools: SnapshotPool[];
  /** Under replication: the last group of the stream the state includes. */
  replication?: StreamMark;
  /**
   * Segment `coversBelow` was named, with its header, before this file was written (true in
   * every snapshot of versions that create segments whole): if it is all zeros, that is
   * damage, not an older version's crash while creating it. Absent in older snapshots.
   */
  segmentCreated?: boolean;
}

/** A kept outcome as a snapshot file holds it. */
interface FileOutcome {
  key: string;
  firstRequestId: number;
  count: number;
  bytes: Uint8Array;
}

function outcomeFromFile(o: FileOutcome): KeyedOutcome {
  if (typeof o.key !== 'string' || !(o.bytes instanceof Uint8Array) || o.bytes.length !== o.count * 2) throw new Error(`bad kept outcome for key ${JSON.stringify(o?.key)}`);
  const indices = new Uint16Array(o.count);
  new Uint8Array(indices.buffer).set(o.bytes);
  return { key: o.key, firstRequestId: o.firstRequestId, count: o.count, indices };
}

export function encodeSnapshot(body: SnapshotBody): Buffer {
  // Plain arrays on disk: the shard hands over Float64Array copies, which msgpackr would
  // store as raw bytes and give back as a Buffer.
  const pools = body.pools.map((p) => ({
    ...p,
    weights: Array.from(p.weights),
    quantities: Array.from(p.quantities),
    drawn: Array.from(p.drawn),
    // Outcomes as their little-endian bytes (msgpackr keeps a Buffer as raw bytes).
    keys: (p.keys ?? []).map((o) => ({ key: o.key, firstRequestId: o.firstRequestId, count: o.count, bytes: Buffer.from(o.indices.buffer, o.indices.byteOffset, o.indices.byteLength) })),
  }));
  const packed = pack({ ...body, pools });
  const out = Buffer.allocUnsafe(kSnapHeaderBytes + packed.length);
  out.writeUInt32LE(kSnapMagic, 0);
  out.writeUInt16LE(kSnapVersion, 4);
  out.writeUInt16LE(0, 6);
  out.writeUInt32LE(packed.length, 8);
  createHash('sha256').update(packed).digest().copy(out, 12);
  packed.copy(out, kSnapHeaderBytes);
  return out;
}

/** The body, or a reason why the file is not a valid snapshot. */
export function decodeSnapshot(buf: Buffer): SnapshotBody | string {
  if (buf.length < kSnapHeaderBytes) return `truncated header (${buf.length} bytes)`;
  if (buf.readUInt32LE(0) !== kSnapMagic) return 'bad magic';
  const version = buf.readUInt16LE(4);
  if (version !== kSnapVersion) return `unsupported snapshot version ${version}`;
  const len = buf.readUInt32LE(8);
  if (kSnapHeaderBytes + len !== buf.length) return `body length ${len} does not match file size ${buf.length}`;
  const body = buf.subarray(kSnapHeaderBytes);
  if (!createHash('sha256').update(body).digest().equals(buf.subarray(12, kSnapHeaderBytes))) return 'checksum mismatch';
  try {
    const decoded = unpack(body) as SnapshotBody;
    for (const p of decoded.pools) p.keys = (p.keys as unknown as FileOutcome[] | undefined)?.map(outcomeFromFile) ?? [];
    return decoded;
  } catch (err) {
    return `undecodable body: ${(err as Error).message}`;
  }
}

export function readSnapshotFile(storage: Storage, path: string): SnapshotBody | string {
  let buf: Buffer;
  try {
    buf = storage.readFile(path);
  } catch (err) {
    return `unreadable: ${(err as Error).message}`;
  }
  return decodeSnapshot(buf);
}

/** Temp file, fsync, rename, fsync the directory: the file is either whole or absent. */
export function writeSnapshotFile(storage: Storage, dir: string, body: SnapshotBody): string {
  const path = snapshotPath(dir, body.shard, body.coversBelow);
  // Both writers (open's base snapshots, after createFirstSegments; a shard's, after it rotated
  // to segment coversBelow) call this once that segment is named.
  writeFileDurably(storage, path, encodeSnapshot({ ...body, segmentCreated: true }));
  return path;
}
