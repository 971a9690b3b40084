import { join } from 'node:path';
import { loadNewestSnapshot } from '../snapshot/chain.js';
import { readSnapshotFile } from '../snapshot/format.js';
import { listSegments, listShardDirs, listSnapshots, segmentFileName, shardDirPath, snapshotFileName } from '../storage/data-dir.js';
import { realStorage } from '../storage/real-storage.js';
import { kRecDraw16, kRecDraw8, kRecKeyedDraw, kRecordTypeNames } from '../wal/format.js';
import { scanSegment } from '../wal/reader.js';
import { SegmentSource } from '../wal/segment-source.js';
import { parseDirArgs } from './dir-args.js';
import { describe, kExitCorrupt, kExitOk } from './exit-codes.js';

const usage = `usage: reward-pool-engine inspect <dir> [--json]

Read-only look at a data directory: per shard, its segments (epoch, records per type, draws,
request ids, checksum verdict) and snapshots (kind, pools, chain, validity). Changes nothing,
takes no lock. Exit codes: 0 all valid, 5 damage found, 3 not a data directory, 2 usage.
`;

interface SegmentInfo {
  file: string;
  seq: number;
  epoch: number | null;
  bytes: number;
  records: Record<string, number>;
  draws: number;
  firstRequestId: number | null;
  lastRequestId: number | null;
  /** 'ok', 'torn tail at N (reason)', or the corruption message. */
  verdict: string;
  ok: boolean;
}

interface SnapshotInfo {
  file: string;
  seq: number;
  valid: boolean;
  reason?: string;
  kind?: string;
  epoch?: number;
  pools?: number;
  poolsInFile?: number;
  chain?: number[];
}

export function inspectDir(dir: string): { shards: { shard: number; segments: SegmentInfo[]; snapshots: SnapshotInfo[]; recoverFrom: string }[]; ok: boolean } {
  let ok = true;
  const storage = realStorage;
  const shards = listShardDirs(storage, dir).map((shard) => {
    const shardDir = shardDirPath(dir, shard);
    const seqs = listSegments(storage, shardDir);
    const segments = seqs.map((seq, i): SegmentInfo => {
      const file = join(shardDir, segmentFileName(seq));
      const info: SegmentInfo = { file, seq, epoch: null, bytes: 0, records: {}, draws: 0, firstRequestId: null, lastRequestId: null, verdict: 'ok', ok: true };
      let src: SegmentSource | undefined;
      try {
        src = SegmentSource.open(storage, file);
        const scan = scanSegment(src, { file, newest: i === seqs.length - 1 }, (type, body) => {
          const name = kRecordTypeNames[type] ?? String(type);
          info.records[name] = (info.records[name] ?? 0) + 1;
          if (type === kRecDraw8 || type === kRecDraw16 || type === kRecKeyedDraw) {
            const first = body.readDoubleLE(8);
            const count = body.readUInt32LE(16);
            info.draws += count;
            info.firstRequestId ??= first;
            info.lastRequestId = first + count - 1;
          }
        });
        info.epoch = scan.header.epoch;
        info.bytes = scan.end;
        if (scan.torn) info.verdict = `torn tail at ${scan.torn.offset} (${scan.torn.reason}); would be dropped on open`;
      } catch (err) {
        info.verdict = describe(err);
        info.ok = false;
        ok = false;
      } finally {
        src?.close();
      }
      return info;
    });
    const snapshots = listSnapshots(storage, shardDir).map((seq): SnapshotInfo => {
      const file = join(shardDir, snapshotFileName(seq));
      const body = readSnapshotFile(storage, file);
      if (typeof body === 'string') return { file, seq, valid: false, reason: body };
      return {
        file,
        seq,
        valid: true,
        kind: body.kind,
        epoch: body.epoch,
        pools: body.manifest.poolIds.length,
        poolsInFile: body.pools.length,
        chain: [...new Set([...body.manifest.at, seq])].sort((a, b) => a - b),
      };
    });
    const chain = loadNewestSnapshot(storage, dir, shard);
    const recoverFrom = chain.loaded
      ? `snapshot ${snapshotFileName(chain.loaded.coversBelow)} (chain ${chain.loaded.files.map(snapshotFileName).join(', ')}) + segments from ${segmentFileName(chain.loaded.coversBelow)}`
      : 'no valid snapshot: every segment from the first';
    if (chain.fallbacks.length > 0 && snapshots.length > 0) ok = false;
    return { shard, segments, snapshots, recoverFrom };
  });
  return { shards, ok };
}

export async function run(argv: string[]): Promise<number> {
  const parsed = parseDirArgs('inspect', usage, argv, { json: { type: 'boolean' } });
  if (typeof parsed === 'number') return parsed;
  const { dir, values } = parsed;
  const result = inspectDir(dir);
  if (values.json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } else {
    const out: string[] = [];
    for (const s of result.shards) {
      out.push(`shard-${s.shard}: recovers from ${s.recoverFrom}`);
      for (const g of s.segments) {
        const recs = Object.entries(g.records).map(([k, v]) => `${k} ${v}`).join(', ') || 'no records';
        const ids = g.firstRequestId === null ? '' : `, ids ${g.firstRequestId}..${g.lastRequestId}`;
        out.push(`  ${segmentFileName(g.seq)}  epoch ${g.epoch ?? '?'}  ${g.bytes} bytes  ${recs}; ${g.draws} draws${ids}  [${g.verdict}]`);
      }
      for (const n of s.snapshots) {
        out.push(
          n.valid
            ? `  ${snapshotFileName(n.seq)}  ${n.kind} epoch ${n.epoch}: ${n.pools} pools (${n.poolsInFile} in this file), chain ${n.chain!.map(snapshotFileName).join(', ')}  [ok]`
            : `  ${snapshotFileName(n.seq)}  [invalid: ${n.reason}]`,
        );
      }
    }
    out.push(result.ok ? 'all checksums valid' : 'damage found (see above)');
    process.stdout.write(`${out.join('\n')}\n`);
  }
  return result.ok ? kExitOk : kExitCorrupt;
}
