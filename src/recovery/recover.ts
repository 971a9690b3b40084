import { closeSync, fdatasyncSync, openSync, readdirSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { EngineError, storageError } from '../errors.js';
import { readHeader } from '../wal/format.js';
import { scanSegment } from '../wal/reader.js';
import { listSegments, listShardDirs, segmentFileName, shardDirName } from '../wal/segment-files.js';
import { applySpan, type RecoveredPool } from './pool-state.js';
import { mergeSpan, newSpanSummary, SegmentSummarizer, type SpanSummary } from './summary.js';

/** What open() recovered; available as `engine.recovery`. */
export interface RecoveryReport {
  dir: string | undefined;
  /** Epoch this run writes under (one more than any found). */
  epoch: number;
  pools: number;
  snapshotsLoaded: number;
  segments: number;
  records: number;
  drawsReplayed: number;
  bytes: number;
  maxRequestId: number;
  threads: number;
  ms: number;
  /** Bad records at the tail of a newest segment, dropped (and zeroed on disk). */
  tornTails: { file: string; offset: number; reason: string }[];
  /** Newest segments left empty by a crash (during creation or before their first record), removed. */
  removedSegments: string[];
}

export interface RecoveredState {
  pools: Map<string, RecoveredPool>;
  maxRequestId: number;
  epoch: number;
  /** Next segment sequence number per shard directory. */
  nextSeq: Map<number, number>;
  report: RecoveryReport;
}

export function emptyReport(dir: string | undefined): RecoveryReport {
  return {
    dir,
    epoch: 1,
    pools: 0,
    snapshotsLoaded: 0,
    segments: 0,
    records: 0,
    drawsReplayed: 0,
    bytes: 0,
    maxRequestId: 0,
    threads: 0,
    ms: 0,
    tornTails: [],
    removedSegments: [],
  };
}

interface DecodedSegment {
  shard: number;
  seq: number;
  epoch: number;
  span: SpanSummary;
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

/**
 * Serial recovery of a whole data directory: every segment of every shard directory (whatever
 * the shard count of the runs that wrote them), decoded one at a time into summaries, folded in
 * (epoch, shard, seq) order. Within an epoch a pool lives in one shard, so that order is the
 * pool's log order.
 */
export function recoverDir(dir: string): RecoveredState {
  const t0 = performance.now();
  const report = emptyReport(dir);
  const decoded: DecodedSegment[] = [];
  const nextSeq = new Map<number, number>();
  let maxEpoch = 0;

  for (const shard of listShardDirs(dir)) {
    const shardDir = join(dir, shardDirName(shard));
    for (const name of readdirSync(shardDir)) {
      // Spare segments being prepared when the last run stopped.
      if (name.endsWith('.tmp')) unlinkSync(join(shardDir, name));
    }
    const seqs = listSegments(shardDir);
    for (let k = 0; k < seqs.length; k++) {
      const seq = seqs[k]!;
      const file = join(shardDir, segmentFileName(seq));
      if (k > 0 && seq !== seqs[k - 1]! + 1) {
        throw new EngineError('ERR_CORRUPT_WAL', `${join(shardDir, segmentFileName(seqs[k - 1]! + 1))} at offset 0: segment missing from the sequence`, {
          details: { file: join(shardDir, segmentFileName(seqs[k - 1]! + 1)), offset: 0, reason: 'missing segment' },
        });
      }
      const newest = k === seqs.length - 1;
      const buf = readFileSync(file);
      const header = readHeader(buf);
      if (newest && (header === 'empty' || (typeof header === 'string' && buf.subarray(64).every((b) => b === 0)))) {
        // A crash while the segment was being created or before its header reached disk.
        unlinkSync(file);
        report.removedSegments.push(file);
        continue;
      }
      const summarizer = new SegmentSummarizer();
      const scan = scanSegment(buf, { file, newest }, summarizer.visit);
      if (scan.header.seq !== seq || scan.header.shard !== shard) {
        throw new EngineError('ERR_CORRUPT_WAL', `${file} at offset 0: header says shard ${scan.header.shard} seq ${scan.header.seq}`, {
          details: { file, offset: 0, reason: 'header does not match file name' },
        });
      }
      if (scan.torn) {
        zeroTail(file, scan.torn.offset, buf.length);
        report.tornTails.push({ file, ...scan.torn });
      }
      if (newest && scan.records === 0) {
        unlinkSync(file);
        report.removedSegments.push(file);
        continue;
      }
      maxEpoch = Math.max(maxEpoch, scan.header.epoch);
      nextSeq.set(shard, seq + 1);
      decoded.push({ shard, seq, epoch: scan.header.epoch, span: summarizer.span });
      report.segments++;
      report.records += scan.records;
      report.bytes += scan.end;
    }
  }

  decoded.sort((a, b) => a.epoch - b.epoch || a.shard - b.shard || a.seq - b.seq);
  const total = newSpanSummary();
  for (const d of decoded) mergeSpan(total, d.span);
  const pools = new Map<string, RecoveredPool>();
  applySpan(pools, total);

  report.epoch = maxEpoch + 1;
  report.pools = pools.size;
  report.drawsReplayed = total.draws;
  report.maxRequestId = total.maxRequestId;
  report.threads = 1;
  report.ms = performance.now() - t0;
  return { pools, maxRequestId: total.maxRequestId, epoch: maxEpoch + 1, nextSeq, report };
}
