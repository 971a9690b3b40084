import { closeSync, fdatasyncSync, openSync, readdirSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Piscina } from 'piscina';
import { workerEntry } from '../coordinator/worker-path.js';
import { EngineError, errorFromWire, storageError, type WireError } from '../errors.js';
import { loadNewestSnapshot, listSnapshots, type LoadedSnapshot } from '../snapshot/chain.js';
import { readHeader, kHeaderBytes } from '../wal/format.js';
import { SegmentSource } from '../wal/segment-source.js';
import { listSegments, listShardDirs, segmentFileName, shardDirName } from '../wal/segment-files.js';
import { decodeSegment, type DecodedSegment, type DecodeTask } from './decode-segment.js';
import { applySpan, type RecoveredPool } from './pool-state.js';
import { mergeSpan, newSpanSummary } from './summary.js';

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
  /** Newest segments whose header never reached disk (a crash while creating them), removed. */
  removedSegments: string[];
}

export interface RecoveredState {
  pools: Map<string, RecoveredPool>;
  maxRequestId: number;
  epoch: number;
  /** Next segment sequence number per shard directory (above every segment and snapshot). */
  nextSeq: Map<number, number>;
  /** Shard directories found (from any previous run). */
  shardDirs: number[];
  /** The snapshot each shard directory was recovered from. */
  bases: Map<number, LoadedSnapshot>;
  report: RecoveryReport;
}

export interface RecoverOptions {
  replayThreads: number;
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
  };
}

/** Overwrite the start of a torn record with zeros so later scans end cleanly before it. */
function zeroTail(file: string, offset: number, size: number): void {
  const n = Math.min(8, size - offset);
  if (n <= 0) return;
  let fd = -1;
  try {
    fd = openSync(file, 'r+');
    writeSync(fd, Buffer.alloc(n), 0, n, offset);
    fdatasyncSync(fd);
  } catch (err) {
    throw storageError(err, `cannot repair torn tail of ${file}`);
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

function peekHeader(file: string): { epoch: number; work: number } {
  const src = SegmentSource.open(file);
  try {
    src.ensure(kHeaderBytes);
    const h = readHeader(src.buf.subarray(0, Math.min(src.size, kHeaderBytes)));
    if (typeof h !== 'object') return { epoch: 0, work: src.size };
    return { epoch: h.epoch, work: h.sealedEnd > 0 ? h.sealedEnd : src.size };
  } finally {
    src.close();
  }
}

function segmentEpoch(file: string): number {
  return peekHeader(file).epoch;
}

/**
 * Below this many bytes of records replay does not start threads at all: the calling thread
 * decodes about 150-200 M draws/s, so a few MiB are done before a worker has booted.
 */
export const kParallelReplayBytes = 128 << 20;

function missing(shardDir: string, seq: number): EngineError {
  const file = join(shardDir, segmentFileName(seq));
  return new EngineError('ERR_CORRUPT_WAL', `${file} at offset 0: segment missing from the sequence`, {
    details: { file, offset: 0, reason: 'missing segment' },
  });
}

/**
 * Decode every segment. With more than one replay thread the calling thread decodes too: it
 * takes the next segment (largest first) while the pool's threads boot, and each pool thread
 * starts taking segments once it has loaded the decoder (a warm-up task). So starting threads
 * never makes replay slower than decoding inline, and a large replay spreads over all of them.
 */
async function decodeAll(tasks: DecodeTask[], opts: RecoverOptions): Promise<{ decoded: DecodedSegment[]; threads: number; threadsUsed: number }> {
  let done = 0;
  const progress = (): void => opts.onProgress?.(++done, tasks.length);
  // Sealed segments say where their records end; an unsealed one (the newest after a crash)
  // counts as full.
  const work = tasks.map((t) => peekHeader(t.file).work);
  const total = work.reduce((a, b) => a + b, 0);
  const helpers = total < (opts.parallelThreshold ?? kParallelReplayBytes) ? 0 : Math.min(opts.replayThreads, tasks.length) - 1;
  const order = tasks.map((_, i) => i).sort((a, b) => work[b]! - work[a]!);
  const results: DecodedSegment[] = new Array(tasks.length);
  let next = 0;
  if (helpers <= 0) {
    for (const i of order) {
      results[i] = decodeSegment(tasks[i]!);
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
        results[i] = decodeSegment(tasks[i]!);
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
 * order. The snapshot epoch chosen is the newest whose set is complete (every shard of that
 * run has one); an incomplete newest set with no WAL after it is what a crash while writing the
 * open-time snapshots leaves, and is passed over.
 */
export async function recoverDir(dir: string, opts: RecoverOptions): Promise<RecoveredState> {
  const t0 = performance.now();
  const report = emptyReport(dir);
  const shardDirs = opts.onlyShard === undefined ? listShardDirs(dir) : [opts.onlyShard];
  const segs = new Map<number, number[]>();
  const snaps = new Map<number, number[]>();
  for (const k of shardDirs) {
    const shardDir = join(dir, shardDirName(k));
    if (!opts.readOnly) {
      for (const name of safeReaddir(shardDir)) if (name.endsWith('.tmp')) unlinkSync(join(shardDir, name));
    }
    segs.set(k, listSegments(shardDir));
    snaps.set(k, listSnapshots(shardDir));
  }

  // Choose the snapshot set.
  let maxEpoch = Infinity;
  let bases = new Map<number, LoadedSnapshot>();
  let chosenShards = 0;
  for (;;) {
    bases = new Map();
    report.snapshotFallbacks = [];
    report.snapshotsLoaded = 0;
    for (const k of shardDirs) {
      const chain = loadNewestSnapshot(dir, k, maxEpoch);
      report.snapshotFallbacks.push(...chain.fallbacks);
      if (chain.loaded) {
        bases.set(k, chain.loaded);
        report.snapshotsLoaded += chain.loaded.files.length;
      }
    }
    if (bases.size === 0) break;
    const epoch = Math.max(...[...bases.values()].map((b) => b.epoch));
    const shards = Math.max(...[...bases.values()].filter((b) => b.epoch === epoch).map((b) => b.shards));
    const lacking: number[] = [];
    for (let k = 0; k < shards; k++) if (bases.get(k)?.epoch !== epoch) lacking.push(k);
    if (opts.onlyShard !== undefined) {
      chosenShards = shards;
      break;
    }
    if (lacking.length === 0) {
      chosenShards = shards;
      break;
    }
    const walAfter = shardDirs.some((k) => segs.get(k)!.some((seq) => segmentEpoch(join(dir, shardDirName(k), segmentFileName(seq))) >= epoch));
    if (walAfter) {
      throw new EngineError(
        'ERR_CORRUPT_SNAPSHOT',
        `${dir}: no valid snapshot of epoch ${epoch} for shard ${lacking.join(', ')} and the WAL before it is gone${report.snapshotFallbacks.length ? ` (${report.snapshotFallbacks.map((f) => `${f.file}: ${f.reason}`).join('; ')})` : ''}`,
        { details: { dir, epoch, shards: lacking, fallbacks: report.snapshotFallbacks } },
      );
    }
    // A crash while this epoch's open-time snapshots were written: nothing was logged under it.
    maxEpoch = epoch - 1;
  }

  // Which segments to replay.
  const tasks: DecodeTask[] = [];
  for (const k of shardDirs) {
    const shardDir = join(dir, shardDirName(k));
    const all = segs.get(k)!;
    const base = bases.get(k);
    let from: number;
    if (bases.size > 0) {
      if (base === undefined || k >= chosenShards) continue; // wholly covered by the chosen set
      from = base.coversBelow;
    } else {
      from = all[0] ?? 1;
      if (from > 1) {
        throw new EngineError('ERR_CORRUPT_SNAPSHOT', `${shardDir}: no valid snapshot, and the WAL starts at segment ${from}, not 1`, {
          details: { dir: shardDir, firstSegment: from, fallbacks: report.snapshotFallbacks },
        });
      }
    }
    const replay = all.filter((seq) => seq >= from);
    if (replay.length > 0 && replay[0]! !== from && base !== undefined) {
      // The snapshot we fell back to needs WAL that is not there.
      if (report.snapshotFallbacks.length > 0) {
        throw new EngineError('ERR_CORRUPT_SNAPSHOT', `${shardDir}: newest snapshot invalid and the WAL after the previous one (from segment ${from}) is gone`, {
          details: { dir: shardDir, from, fallbacks: report.snapshotFallbacks },
        });
      }
      throw missing(shardDir, from);
    }
    for (let i = 1; i < replay.length; i++) if (replay[i] !== replay[i - 1]! + 1) throw missing(shardDir, replay[i - 1]! + 1);
    replay.forEach((seq, i) => tasks.push({ file: join(shardDir, segmentFileName(seq)), shard: k, seq, newest: i === replay.length - 1 && seq === all[all.length - 1] }));
  }

  const { decoded, threads, threadsUsed } = await decodeAll(tasks, opts);
  const replayed: DecodedSegment[] = [];
  for (const d of decoded) {
    if (d.torn && !opts.readOnly) zeroTail(d.file, d.torn.offset, d.size);
    if (d.torn) report.tornTails.push({ file: d.file, ...d.torn });
    if (d.unwritten) {
      if (!opts.readOnly) unlinkSync(d.file);
      report.removedSegments.push(d.file);
      continue;
    }
    replayed.push(d);
    report.segments++;
    report.records += d.records;
    report.bytes += d.end;
  }
  replayed.sort((a, b) => a.epoch - b.epoch || a.shard - b.shard || a.seq - b.seq);
  const total = newSpanSummary();
  for (const d of replayed) mergeSpan(total, d.span);

  const pools = new Map<string, RecoveredPool>();
  let maxRequestId = total.maxRequestId;
  let epochSeen = 0;
  for (const [k, b] of bases) {
    if (k >= chosenShards) continue;
    for (const [id, p] of b.pools) pools.set(id, p);
    maxRequestId = Math.max(maxRequestId, b.maxRequestId);
  }
  for (const b of bases.values()) epochSeen = Math.max(epochSeen, b.epoch);
  for (const d of replayed) epochSeen = Math.max(epochSeen, d.epoch);
  applySpan(pools, total);

  const nextSeq = new Map<number, number>();
  for (const k of shardDirs) {
    const lastSeg = segs.get(k)!.filter((s) => !report.removedSegments.includes(join(dir, shardDirName(k), segmentFileName(s)))).at(-1) ?? 0;
    const lastSnap = snaps.get(k)!.at(-1) ?? 0;
    // A snapshot at S expects segment S next, so S itself may be (re)used.
    nextSeq.set(k, Math.max(lastSeg + 1, lastSnap, 1));
  }
  report.epoch = epochSeen + 1;
  report.pools = pools.size;
  report.drawsReplayed = total.draws;
  report.maxRequestId = maxRequestId;
  report.threads = threads;
  report.threadsUsed = threadsUsed;
  report.ms = performance.now() - t0;
  return { pools, maxRequestId, epoch: epochSeen + 1, nextSeq, shardDirs, bases, report };
}

function safeReaddir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}
