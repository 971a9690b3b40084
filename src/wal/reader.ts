import { EngineError } from '../errors.js';
import { SegmentSource } from './segment-source.js';
import { align4, isSealed, kHeaderBytes, kRecordFrameBytes, kRecordTypeNames, readHeader, recordCrc, type SegmentHeader } from './format.js';

/** Called for each valid record; `body` is a view into the segment, valid during the call only. */
export type RecordVisitor = (type: number, body: Buffer, offset: number) => void;

export interface ScanResult {
  header: SegmentHeader;
  /** Offset just past the last valid record. */
  end: number;
  records: number;
  /** Set when a bad record at the tail of the newest segment was dropped. */
  torn: { offset: number; reason: string } | undefined;
}

export interface ScanTarget {
  file: string;
  /**
   * Newest written segment of its shard directory: if it is unsealed (its writer died), a bad
   * tail there is a torn write, not corruption.
   */
  newest: boolean;
}

function corrupt(target: ScanTarget, offset: number, reason: string): EngineError {
  return new EngineError('ERR_CORRUPT_WAL', `${target.file} at offset ${offset}: ${reason}`, {
    details: { file: target.file, offset, reason },
  });
}

/**
 * Why the record at p is not valid (`intact` when its checksum holds: then no crash produced it),
 * its length when it is, or 'end' at the clean end.
 */
function check(src: SegmentSource, p: number, seq: number): { bad: string; intact?: true } | { len: number } | 'end' {
  const size = src.size;
  if (p + kRecordFrameBytes > size) {
    src.ensure(size);
    for (let i = p; i < size; i++) if (src.buf[i] !== 0) return { bad: 'record frame cut off by end of file' };
    return 'end';
  }
  src.ensure(p + kRecordFrameBytes);
  const buf = src.buf;
  const len = buf.readUInt32LE(p);
  if (len === 0) return 'end';
  if (len > size - p - kRecordFrameBytes) return { bad: `record length ${len} runs past the end of the file` };
  src.ensure(p + kRecordFrameBytes + len);
  const body = buf.subarray(p + kRecordFrameBytes, p + kRecordFrameBytes + len);
  if (recordCrc(body, seq) !== buf.readUInt32LE(p + 4)) return { bad: 'record checksum mismatch' };
  if (kRecordTypeNames[body[0]!] === undefined) return { bad: `unknown record type ${body[0]}`, intact: true };
  return { len };
}

/** True when some valid record starts at an aligned offset after p: then p is not a torn tail. */
function anyValidAfter(src: SegmentSource, p: number, seq: number): boolean {
  src.ensure(src.size);
  const buf = src.buf;
  let last = src.size - 1;
  while (last > p && buf[last] === 0) last--;
  for (let q = align4(p + 4); q + kRecordFrameBytes <= last; q += 4) {
    const r = check(src, q, seq);
    if (typeof r === 'object' && 'len' in r) return true;
  }
  return false;
}

/**
 * Walk the records of one segment. A bad header or a bad record is ERR_CORRUPT_WAL naming file
 * and offset, except in the newest segment when it is unsealed (its writer died), where the first
 * bad record, or a zero length with valid records after it, is a torn write: the scan stops there
 * and reports it.
 */
export function scanSegment(input: Buffer | SegmentSource, target: ScanTarget, visit: RecordVisitor): ScanResult {
  const src = input instanceof SegmentSource ? input : SegmentSource.fromBuffer(input);
  src.ensure(kHeaderBytes);
  const header = readHeader(src.buf.subarray(0, Math.min(src.size, kHeaderBytes)));
  if (header === 'empty') throw corrupt(target, 0, 'segment header is all zeros');
  if (typeof header !== 'object') throw corrupt(target, 0, `segment header: ${header}`);
  // Segments are created whole before they are named: a different size is a cut or a swap.
  if (src.size !== header.segmentBytes) throw corrupt(target, 0, `file is ${src.size} bytes, its header says ${header.segmentBytes}`);
  const sealed = isSealed(header);
  if (sealed && (header.sealedEnd < kHeaderBytes || header.sealedEnd > src.size)) throw corrupt(target, 0, `sealed end ${header.sealedEnd} out of range`);
  let p = kHeaderBytes;
  let records = 0;
  let torn: ScanResult['torn'];
  for (;;) {
    const r = check(src, p, header.seq);
    if (r === 'end') {
      if (sealed) {
        // Sealed (rotated or closed): the records run exactly to the sealed end. Fewer is loss
        // (a zeroed or truncated tail), not a torn write: the writer was done with this segment.
        if (p !== header.sealedEnd) throw corrupt(target, p, `records end at ${p}, before the sealed end ${header.sealedEnd}`);
      } else if (anyValidAfter(src, p, header.seq)) {
        // An older unsealed segment (its shard died; recovery zeroed its torn tail) ends at its
        // first zero length, unless valid records follow. In the newest one that is what a power
        // cut leaves when later pages of the last, unsynced group reached the disk and this one
        // did not: a torn tail (see below).
        if (!target.newest) throw corrupt(target, p, 'zero record length followed by valid records');
        torn = { offset: p, reason: 'zero record length followed by valid records' };
      }
      break;
    }
    if ('bad' in r) {
      // Only the newest segment of a writer that died while writing can end in a torn record.
      // Valid records after it do not make it damage there: a power cut keeps any subset of the
      // pages written since the last completed sync (the kernel and the device write them back
      // in any order), so the last group can survive in pieces. Nothing from the first bad or
      // missing byte on was acknowledged: sync 'always' acknowledges a group only once every
      // page up to its end is durable. A record whose checksum holds was written whole: never torn.
      if (!sealed && target.newest && r.intact !== true) {
        torn = { offset: p, reason: r.bad };
        break;
      }
      throw corrupt(target, p, r.bad);
    }
    if (sealed && p >= header.sealedEnd) throw corrupt(target, p, `record after the sealed end ${header.sealedEnd}`);
    const body = src.buf.subarray(p + kRecordFrameBytes, p + kRecordFrameBytes + r.len);
    try {
      visit(body[0]!, body, p);
    } catch (err) {
      if (err instanceof EngineError) throw err;
      throw corrupt(target, p, `undecodable ${kRecordTypeNames[body[0]!]} record: ${(err as Error).message}`);
    }
    records++;
    p += align4(kRecordFrameBytes + r.len);
  }
  return { header, end: p, records, torn };
}
