import { readFileHead } from '../storage/durable.js';
import type { Storage } from '../storage/storage.js';
import { kHeaderBytes, readHeader, type SegmentHeader } from './format.js';

/** What the first bytes of a segment file say, without reading its records. */
export interface SegmentPeek {
  /** The parsed header, 'empty' for 64 zero bytes, or why it is invalid. */
  head: SegmentHeader | 'empty' | string;
  /** A record starts right after the header. */
  hasRecords: boolean;
}

/** The one place a segment's header is read from its file. */
export function peekSegment(storage: Storage, path: string): SegmentPeek {
  const head = readFileHead(storage, path, kHeaderBytes + 4);
  return {
    head: readHeader(head.subarray(0, kHeaderBytes)),
    hasRecords: head.length === kHeaderBytes + 4 && head.readUInt32LE(kHeaderBytes) !== 0,
  };
}
