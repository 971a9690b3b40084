import { join } from 'node:path';
import { Piscina } from 'piscina';
import { workerEntry } from '../worker-path.js';
import { EngineError, errorFromWire, messageOf, storageError, type WireError } from '../errors.js';
import { loadNewestSnapshot, type LoadedSnapshot } from '../snapshot/chain.js';
import { listSegments, listShardDirs, listSnapshots, segmentFileName, shardDirPath } from '../storage/data-dir.js';
import { realStorage } from '../storage/real-storage.js';
import type { Storage } from '../storage/storage.js';
import { SegmentSource } from '../wal/segment-source.js';
import { decodeSegment, type DecodedSegment, type DecodeTask } from './decode-segment.js';
import { chooseSnapshotSet, planReplay, type Peek, type ShardListing } from './plan.js';
import { peekSegment, type SegmentPeek } from '../wal/segment-peek.js';
import type { WindowLimits } from '../idempotency.js';
import { isSealed, type SegmentHeader, type StreamMark } from '../wal/format.js';
import type { PoolData } from '../pool-state.js';
import { foldRecovery } from './fold.js';
import { removeTempFiles, syncSegment, zeroTornTail } from './repair.js';

/** What open() recovered; available as `engine.recovery`. */
export interface RecoveryReport {
  dir: string | undefined;
  /** Epoch this run writes under (one more than any found). */
  epoch: number;
  pools: number;
  /** Snapshot files loaded (a chain of incremental snapshots counts each file). */
  snapshotsLoaded: number;
  /** Snapshots passed over because they were invalid, newest first per shard. */
  snapshotFallbacks: { file: string; reason: string }[];
  segments: number;
  records: number;
  drawsReplayed: number;
  bytes: number;
  maxRequestId: number;
  /** Threads replay ran on: the calling thread plus the pool threads started (1 = inline). */
  threads: number;
  /** Of those, the threads that decoded at least one segment (a pool thread may boot too late). */
  threadsUsed: number;
  ms: number;
  /** Bad records at the tail of a newest segment, dropped (and zeroed on disk). */
  tornTails: { file: string; offset: number; reason: string }[];
  /**
   * Trailing segments with nothing written, not even a header (an older version's crash while
   * creating them): not replayed, and retired with what the open-time snapshot covers.
   */
  removedSegments: string[];
  /** Draws in records written under replication that no mark confirmed (the stream may not have them): not applied. */
  unconfirmedDraws: number;
}

export interface RecoveredState {
  pools: Map<string, PoolData>;
  maxRequestId: number;
  epoch: number;
  /** Next segment sequence number per shard directory (above every segment and snapshot). */
  nextSeq: Map<number, number>;
  /** Shard directories found (from any previous run). */
  shardDirs: number[];
  /** The snapshot each shard directory was recovered from. */
  bases: Map<number, LoadedSnapshot>;
  /** Under replication: per shard, the last group of the stream the recovered state includes. */
  marks: Map<number, StreamMark>;
  report: RecoveryReport;
}

export interface RecoverOptions {
  replayThreads: number;
  /** Default: the real disk. Another Storage makes replay run on the calling thread. */
  storage?: Storage;
  /** The idempotency window recovered keys are trimmed to. Default: no trimming. */
  idempotency?: WindowLimits;
  /** Inspect only: no torn-tail repair, no removal of anything. */
  readOnly?: boolean;
  /** Only this shard directory, and only snapshots/segments of this epoch (shard restart). */
  onlyShard?: number;
  onProgress?: (done: number, total: number) => void;
  /** Bytes of records below which replay stays on the calling thread. Default: kParallelReplayBytes (128 MiB). */
  parallelThreshold?: number;
}

export function emptyReport(dir: string | undefined): RecoveryReport {
  return {
    dir,
    epoch: 1,
    pools: 0,
    snapshotsLoaded: 0,
    snapshotFallbacks: [],
    segments: 0,
    records: 0,
    drawsReplayed: 0,
    bytes: 0,
    maxRequestId: 0,
    threads: 0,
    threadsUsed: 0,
    ms: 0,
    tornTails: [],
    removedSegments: [],
    unconfirmedDraws: 0,
  };
}

/** Header and first record length of each segment, read once per recovery. */
function peeker(storage: Storage): { peek: Peek; work: (file: string) => number } {
  const cache = new Map<string, SegmentPeek & { work: number }>();
  const read = (file: string): SegmentPeek & { work: number } => {
    let p = cache.get(file);
    if (p === undefined) {
      const peeked = peekSegment(storage, file);
      const h = peeked.head;
      const fd = storage.open(file, 'r');
      let size: number;
      try {
        size = storage.fileSize(fd);
      } finally {
        storage.close(fd);
      }
      p = {
        ...peeked,
        work: typeof h === 'object' && h.sealedEnd > 0 ? h.sealedEnd : size,
      };
      cache.set(file, p);
    }
    return p;
  };
  return { peek: read, work: (file) => read(file).work };
}

function isSealedHead(head: SegmentHeader | string): boolean {
  return typeof head === 'object' && isSealed(head);
}

function allZero(storage: Storage, file: string): boolean {
  const src = SegmentSource.open(storage, file);
  try {
    src.ensure(src.size);
    return src.buf.subarray(0, src.size).every((b) => b === 0);
  } finally {
    src.close();
  }
}

/**
 * Below this many bytes of records replay does not start threads at all: the calling thread
 * decodes about 150-200 M draws/s, so a few MiB are done before a worker has booted.
 */
export const kParallelReplayBytes = 128 << 20;

/**
 * Decode every segment. With more than one replay thread the calling thread decodes too: it
 * takes the next segment (largest first) while the pool's threads boot, and each pool thread
 * starts taking segments once it has loaded the decoder (a warm-up task). So starting threads
 * never makes replay slower than decoding inline, and a large replay spreads over all of them.
 */
async function decodeAll(
  tasks: DecodeTask[],
  opts: RecoverOptions,
  workOf: (file: string) => number,
): Promise<{ decoded: DecodedSegment[]; threads: number; threadsUsed: number }> {
  let done = 0;
  const progress = (): void => opts.onProgress?.(++done, tasks.length);
  // Sealed segments say where their records end; an unsealed one (the newest after a crash)
  // counts as full.
  const work = tasks.map((t) => workOf(t.file));
  const total = work.reduce((a, b) => a + b, 0);
  const storage = opts.storage ?? realStorage;
  // Pool threads read the real disk: any other Storage replays on this thread.
  const parallel = storage === realStorage && total >= (opts.parallelThreshold ?? kParallelReplayBytes);
  const helpers = parallel ? Math.min(opts.replayThreads, tasks.length) - 1 : 0;
  const order = tasks.map((_, i) => i).sort((a, b) => work[b]! - work[a]!);
  const results: DecodedSegment[] = new Array(tasks.length);
  let next = 0;
  if (helpers <= 0) {
    for (const i of order) {
      results[i] = decodeSegment(tasks[i]!, storage);
      progress();
    }
    const threads = tasks.length === 0 ? 0 : 1;
    return { decoded: results, threads, threadsUsed: threads };
  }
  const pool = new Piscina({ filename: workerEntry('replay-task'), minThreads: helpers, maxThreads: helpers, idleTimeout: 100 });
  let failed = false;
  let helpersUsed = 0;
  const helper = async (): Promise<void> => {
    await pool.run(null);
    let used = false;
    while (next < order.length && !failed) {
      const i = order[next++]!;
      const r = (await pool.run(tasks[i])) as DecodedSegment | { error: WireError };
      if ('error' in r) throw errorFromWire(r.error);
      results[i] = r;
      used = true;
      progress();
    }
    if (used) helpersUsed++;
  };
  const running = Array.from({ length: helpers }, () =>
    helper().catch((err: unknown) => {
      failed = true;
      throw err;
    }),
  );
  try {
    try {
      while (next < order.length && !failed) {
        const i = order[next++]!;
        results[i] = decodeSegment(tasks[i]!, storage);
        progress();
        // Let the pool's messages through: a thread that finished booting picks up work.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } catch (err) {
      failed = true;
      await Promise.allSettled(running);
      throw err;
    }
    await Promise.all(running);
    return { decoded: results, threads: 1 + helpers, threadsUsed: 1 + helpersUsed };
  } finally {
    await pool.close();
  }
}

/**
 * Recover a data directory. Per shard directory: the newest valid snapshot chain, then the
 * segments after it, decoded in parallel into summaries and folded in (epoch, shard, seq)
 * order (see plan.ts for which snapshot set and which segments). Every failure is a coded
 * EngineError: damage that cannot be applied is ERR_CORRUPT_WAL.
 */
export async function recoverDir(dir: string, opts: RecoverOptions): Promise<RecoveredState> {
  try {
    return await recoverDirUnchecked(dir, opts);
  } catch (err) {
    if (err instanceof EngineError) throw err;
    const errno = (err as NodeJS.ErrnoException | null)?.code;
    if (typeof errno === 'string' && /^E[A-Z]+$/.test(errno)) throw storageError(err, `cannot read ${dir}`);
    throw new EngineError('ERR_CORRUPT_WAL', `${dir}: ${messageOf(err)}`, { cause: err, details: { dir } });
  }
}

async function recoverDirUnchecked(dir: string, opts: RecoverOptions): Promise<RecoveredState> {
  const t0 = performance.now();
  const report = emptyReport(dir);
  const storage = opts.storage ?? realStorage;
  const listings: ShardListing[] = (opts.onlyShard === undefined ? listShardDirs(storage, dir) : [opts.onlyShard]).map((shard) => {
    const shardDir = shardDirPath(dir, shard);
    if (!opts.readOnly) removeTempFiles(storage, shardDir);
    return { shard, segments: listSegments(storage, shardDir) };
  });
  const { peek, work } = peeker(storage);
  const choice = chooseSnapshotSet(dir, listings, (k, maxEpoch) => loadNewestSnapshot(storage, dir, k, maxEpoch), peek, opts.onlyShard);
  report.snapshotFallbacks = choice.fallbacks;
  report.snapshotsLoaded = choice.snapshotsLoaded;
  const { tasks, unwritten } = planReplay(dir, listings, choice, peek, (file) => allZero(storage, file));
  if (opts.idempotency) for (const t of tasks) t.limits = opts.idempotency;
  report.removedSegments = unwritten;

  const { decoded, threads, threadsUsed } = await decodeAll(tasks, opts, work);
  for (const d of decoded) {
    if (d.torn && !opts.readOnly) zeroTornTail(storage, d.file, d.torn.offset, d.size);
    else if (d.newest && !opts.readOnly && !isSealedHead(peek(d.file).head)) syncSegment(storage, d.file);
    if (d.torn) report.tornTails.push({ file: d.file, ...d.torn });
    report.segments++;
    report.records += d.records;
    report.bytes += d.end;
  }
  // The first segments of an open that crashed before its snapshots: their epoch is used up too.
  let epochSeen = 0;
  for (const { shard, segments } of listings) {
    for (const seq of segments) {
      const { head } = peek(join(shardDirPath(dir, shard), segmentFileName(seq)));
      if (typeof head === 'object') epochSeen = Math.max(epochSeen, head.epoch);
    }
  }
  const folded = foldRecovery(choice.bases, choice.shards, decoded, opts.idempotency);
  const { pools, maxRequestId } = folded;
  epochSeen = Math.max(epochSeen, folded.epochSeen);

  const nextSeq = new Map<number, number>();
  for (const { shard, segments } of listings) {
    const lastSeg = segments.at(-1) ?? 0;
    const lastSnap = listSnapshots(storage, shardDirPath(dir, shard)).at(-1) ?? 0;
    // Past every segment (unwritten ones included: they are retired, never reused).
    nextSeq.set(shard, Math.max(lastSeg + 1, lastSnap, 1));
  }
  report.epoch = epochSeen + 1;
  report.pools = pools.size;
  report.drawsReplayed = folded.draws;
  report.unconfirmedDraws = folded.unconfirmedDraws;
  report.maxRequestId = maxRequestId;
  report.threads = threads;
  report.threadsUsed = threadsUsed;
  report.ms = performance.now() - t0;
  return { pools, maxRequestId, epoch: epochSeen + 1, nextSeq, shardDirs: listings.map((l) => l.shard), bases: choice.bases, marks: folded.marks, report };
}
