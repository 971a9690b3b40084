import { dirname, join } from 'node:path';
import { EngineError } from '../errors.js';
import type { ChainLoad, LoadedSnapshot } from '../snapshot/chain.js';
import { isSealed, kSealClosed, kSealRotated } from '../wal/format.js';
import type { SegmentPeek } from '../wal/segment-peek.js';
import { segmentFileName, shardDirName, snapshotFileName } from '../storage/data-dir.js';
import type { DecodeTask } from './decode-segment.js';

/*
 * Recovery planning: which snapshot set to start from and which segments to replay. Data in,
 * plan out: the files are read by the caller through the functions it passes, so every rule
 * here can be tested without a disk.
 */

export type Peek = (file: string) => SegmentPeek;

export interface ShardListing {
  shard: number;
  /** Segment seqs present, ascending. */
  segments: number[];
}

export interface SnapshotChoice {
  /** Shard directory -> the snapshot it starts from. */
  bases: Map<number, LoadedSnapshot>;
  /** Shard count of the run the chosen set comes from (0 = no snapshot at all). */
  shards: number;
  snapshotsLoaded: number;
  fallbacks: { file: string; reason: string }[];
}

/**
 * The newest epoch whose snapshot set is complete (every shard of that run has one). An
 * incomplete newest set with no record logged under its epoch is what a crash while open()
 * writes its snapshots leaves: passed over for the set before it. With records logged under
 * it, the missing snapshots are damage.
 */
export function chooseSnapshotSet(
  dir: string,
  listings: ShardListing[],
  loadChain: (shard: number, maxEpoch: number) => ChainLoad,
  peek: Peek,
  onlyShard: number | undefined,
): SnapshotChoice {
  const file = (k: number, seq: number): string => join(dir, shardDirName(k), segmentFileName(seq));
  const epochOf = (k: number, seq: number): number => {
    const { head } = peek(file(k, seq));
    return typeof head === 'object' ? head.epoch : 0;
  };
  let maxEpoch = Infinity;
  for (;;) {
    const bases = new Map<number, LoadedSnapshot>();
    const fallbacks: SnapshotChoice['fallbacks'] = [];
    let snapshotsLoaded = 0;
    for (const { shard } of listings) {
      const chain = loadChain(shard, maxEpoch);
      fallbacks.push(...chain.fallbacks);
      if (chain.loaded) {
        bases.set(shard, chain.loaded);
        snapshotsLoaded += chain.loaded.files.length;
      }
    }
    if (bases.size === 0) return { bases, shards: 0, snapshotsLoaded, fallbacks };
    const epoch = Math.max(...[...bases.values()].map((b) => b.epoch));
    const shards = Math.max(...[...bases.values()].filter((b) => b.epoch === epoch).map((b) => b.shards));
    const lacking: number[] = [];
    for (let k = 0; k < shards; k++) if (bases.get(k)?.epoch !== epoch) lacking.push(k);
    if (onlyShard !== undefined || lacking.length === 0) return { bases, shards, snapshotsLoaded, fallbacks };
    const loggedSince = listings.some(({ shard, segments }) => segments.some((seq) => epochOf(shard, seq) >= epoch && peek(file(shard, seq)).hasRecords));
    if (loggedSince) {
      // Each run's snapshot of a shard sits at the first segment that run wrote.
      const expected = lacking.map((k) => {
        const first = listings.find((l) => l.shard === k)?.segments.find((seq) => epochOf(k, seq) >= epoch);
        return join(dir, shardDirName(k), first === undefined ? '<seq>.snap' : snapshotFileName(first));
      });
      throw new EngineError(
        'ERR_CORRUPT_SNAPSHOT',
        `${dir}: no valid snapshot of epoch ${epoch} for shard ${lacking.join(', ')} (expected ${expected.join(', ')}) and the WAL before it is gone${fallbacks.length ? ` (${fallbacks.map((f) => `${f.file}: ${f.reason}`).join('; ')})` : ''}`,
        { details: { dir, epoch, shards: lacking, files: expected, fallbacks } },
      );
    }
    maxEpoch = epoch - 1;
  }
}

export interface ReplayPlan {
  /** Segments to decode, in (shard, seq) order. */
  tasks: DecodeTask[];
  /** Trailing segments with nothing at all written (an older version's crash while creating them). */
  unwritten: string[];
}

/** Snapshots passed over, with why, for a message. */
function passedOver(fallbacks: { file: string; reason: string }[]): string {
  return fallbacks.map((f) => `${f.file}: ${f.reason}`).join('; ');
}

function corruptWal(file: string, reason: string): EngineError {
  return new EngineError('ERR_CORRUPT_WAL', `${file} at offset 0: ${reason}`, { details: { file, offset: 0, reason } });
}

/**
 * Which segments of each shard to replay, from its snapshot (or from segment 1 without one) to
 * its newest, and the checks that tell damage from a crash:
 *
 * - the sequence is contiguous and starts at the snapshot's seq (open() and snapshots create
 *   segment S before writing the snapshot at S, so it is always there);
 * - segments are created whole, header first, so a named segment with a zeroed header is
 *   damage, except trailing all-zero files that an older version left when it crashed;
 * - a newest segment sealed as rotated says its successor exists: if not, the successor is gone.
 *
 * Whether the newest segment may have a torn tail (only if unsealed) is the reader's rule.
 */
export function planReplay(
  dir: string,
  listings: ShardListing[],
  choice: SnapshotChoice,
  peek: Peek,
  allZero: (file: string) => boolean,
): ReplayPlan {
  const tasks: DecodeTask[] = [];
  const unwritten: string[] = [];
  for (const { shard, segments } of listings) {
    const shardDir = join(dir, shardDirName(shard));
    const file = (seq: number): string => join(shardDir, segmentFileName(seq));
    const base = choice.bases.get(shard);
    let from: number;
    if (choice.bases.size > 0) {
      if (base === undefined || shard >= choice.shards) continue; // wholly covered by the chosen set
      from = base.coversBelow;
    } else {
      from = segments[0] ?? 1;
      if (from > 1) {
        const mine = choice.fallbacks.filter((f) => dirname(f.file) === shardDir);
        throw new EngineError(
          'ERR_CORRUPT_SNAPSHOT',
          `${shardDir}: no valid snapshot (expected ${join(shardDir, snapshotFileName(from))}${mine.length > 0 ? `; passed over ${passedOver(mine)}` : ''}), and the WAL starts at segment ${from}, not 1`,
          { details: { dir: shardDir, file: join(shardDir, snapshotFileName(from)), firstSegment: from, fallbacks: choice.fallbacks } },
        );
      }
    }
    const replay = segments.filter((seq) => seq >= from);
    if (base !== undefined && replay[0] !== from) {
      // Only this shard's passed-over snapshots say that its newer snapshot was bad; another
      // shard's say nothing about this one's missing segment.
      const mine = choice.fallbacks.filter((f) => dirname(f.file) === shardDir);
      if (mine.length > 0) {
        throw new EngineError('ERR_CORRUPT_SNAPSHOT', `${shardDir}: newest snapshot invalid (${passedOver(mine)}) and the WAL after the previous one (from ${file(from)}) is gone`, {
          details: { dir: shardDir, from, file: mine[0]!.file, files: mine.map((f) => f.file), fallbacks: mine },
        });
      }
      throw corruptWal(file(from), `segment missing: snapshot ${snapshotFileName(from)} continues with it`);
    }
    for (let i = 1; i < replay.length; i++) {
      if (replay[i] !== replay[i - 1]! + 1) throw corruptWal(file(replay[i - 1]! + 1), 'segment missing from the sequence');
    }
    // Trailing files with nothing written at all: not replayed, retired by the next snapshot.
    let last = replay.length - 1;
    while (last >= 0) {
      const seq = replay[last]!;
      const { head } = peek(file(seq));
      if (head !== 'empty') break;
      if (!allZero(file(seq))) throw corruptWal(file(seq), 'segment header is zeroed but records follow it');
      // Versions that seal a segment as rotated or closed name a segment only once its header
      // is written: after such a seal, an all-zero segment is damage (its records zeroed), not
      // what an older version's crash while creating it left.
      // So does a snapshot written after its segment was named.
      const before = segments.includes(seq - 1) ? peek(file(seq - 1)).head : undefined;
      if (typeof before === 'object' && (before.seal === kSealRotated || before.seal === kSealClosed)) {
        throw corruptWal(file(seq), `segment is all zeros, but ${segmentFileName(seq - 1)} before it was sealed ${before.seal === kSealRotated ? 'rotated' : 'closed'}, so it was named with its header`);
      }
      if (seq === from && base?.segmentCreated === true) {
        throw corruptWal(file(seq), `segment is all zeros, but snapshot ${snapshotFileName(seq)} was written after it was named with its header`);
      }
      unwritten.push(file(seq));
      last--;
    }
    if (last >= 0) {
      const newest = replay[last]!;
      const { head } = peek(file(newest));
      // Its seal is only evidence about this shard's sequence if the header is this file's (a
      // file copied or renamed over it is damage here, not a sign that a successor is missing).
      if (typeof head === 'object' && (head.seq !== newest || head.shard !== shard)) {
        throw new EngineError('ERR_CORRUPT_WAL', `${file(newest)} at offset 0: header says shard ${head.shard} seq ${head.seq}`, {
          details: { file: file(newest), offset: 0, reason: 'header does not match file name' },
        });
      }
      if (typeof head === 'object' && isSealed(head) && head.seal === kSealRotated && !segments.includes(newest + 1)) {
        throw corruptWal(file(newest + 1), `segment missing: ${segmentFileName(newest)} was sealed when its writer moved on to it`);
      }
    }
    for (let i = 0; i <= last; i++) tasks.push({ file: file(replay[i]!), shard, seq: replay[i]!, newest: i === last });
  }
  return { tasks, unwritten };
}
