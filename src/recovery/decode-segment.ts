import { EngineError } from '../errors.js';
import { scanSegment } from '../wal/reader.js';
import { realStorage } from '../storage/real-storage.js';
import type { Storage } from '../storage/storage.js';
import { SegmentSource } from '../wal/segment-source.js';
import type { WindowLimits } from '../idempotency.js';
import type { StreamMark } from '../wal/format.js';
import { SegmentSummarizer, type SpanSummary } from './summary.js';

export interface DecodeTask {
  file: string;
  shard: number;
  seq: number;
  /** Newest segment of its shard directory: a bad tail there is a torn write. */
  newest: boolean;
  /** The idempotency window the keyed calls are trimmed to (default: none). */
  limits?: WindowLimits;
}

export interface DecodedSegment extends DecodeTask {
  epoch: number;
  records: number;
  /** Offset just past the last valid record. */
  end: number;
  size: number;
  torn: { offset: number; reason: string } | undefined;
  /** Every record of the segment. */
  span: SpanSummary;
  /** Written under replication: only records a mark confirmed count (see foldRecovery). */
  replicated: boolean;
  /** Records up to the segment's last mark, and after it. */
  confirmed: SpanSummary;
  tail: SpanSummary;
  /** The segment's last mark. */
  mark: StreamMark | undefined;
}

/**
 * Decode one segment into a summary, with no state from any other segment: this is the unit
 * of parallel replay (workers/replay-task.ts runs it on a piscina thread).
 */
export function decodeSegment(task: DecodeTask, storage: Storage = realStorage): DecodedSegment {
  const src = SegmentSource.open(storage, task.file);
  try {
    const summarizer = new SegmentSummarizer(task.limits);
    const scan = scanSegment(src, task, summarizer.visit);
    if (scan.header.seq !== task.seq || scan.header.shard !== task.shard) {
      throw new EngineError('ERR_CORRUPT_WAL', `${task.file} at offset 0: header says shard ${scan.header.shard} seq ${scan.header.seq}`, {
        details: { file: task.file, offset: 0, reason: 'header does not match file name' },
      });
    }
    return {
      ...task,
      epoch: scan.header.epoch,
      records: scan.records,
      end: scan.end,
      size: src.size,
      torn: scan.torn,
      ...summarizer.finish(),
      replicated: scan.header.replicated,
    };
  } finally {
    src.close();
  }
}
