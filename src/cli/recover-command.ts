import { join } from 'node:path';
import { DrawEngine } from '../engine.js';
import { peekSegment } from '../wal/segment-peek.js';
import { listSegments, listShardDirs, segmentFileName, shardDirPath } from '../storage/data-dir.js';
import { realStorage } from '../storage/real-storage.js';
import { intFlag, parseDirArgs, UsageError } from './dir-args.js';
import { describe, exitCodeFor, kExitOk, kExitUsage } from './exit-codes.js';
import { progressReporter } from './progress.js';

const usage = `usage: reward-pool-engine recover <dir> [--shards N] [--replay-threads N] [--segment-bytes N] [--json]

Recovers the data directory (as DrawEngine.open would), writes its snapshots, prints the
recovery report and closes. Shard count and segment size default to what the directory holds. Exit codes: 0 ok, 2 usage, 3 not a data directory, 4 locked by
another process, 5 corrupt (ERR_CORRUPT_WAL / ERR_CORRUPT_SNAPSHOT), 1 anything else.
`;

/**
 * The segment size the directory was written with: the largest segment header found (segments
 * start small and grow to it; the first segments of a run are all the open writes).
 */
function segmentBytesIn(dir: string): number | undefined {
  let largest: number | undefined;
  for (const k of listShardDirs(realStorage, dir)) {
    const shardDir = shardDirPath(dir, k);
    for (const seq of listSegments(realStorage, shardDir)) {
      const { head } = peekSegment(realStorage, join(shardDir, segmentFileName(seq)));
      if (typeof head === 'object') largest = Math.max(largest ?? 0, head.segmentBytes);
    }
  }
  return largest;
}

export async function run(argv: string[]): Promise<number> {
  const parsed = parseDirArgs('recover', usage, argv, {
    shards: { type: 'string' },
    'replay-threads': { type: 'string' },
    'segment-bytes': { type: 'string' },
    json: { type: 'boolean' },
  });
  if (typeof parsed === 'number') return parsed;
  const { dir, values } = parsed;
  let shards: number;
  let replayThreads: number | undefined;
  let segmentBytes: number | undefined;
  try {
    shards = intFlag(values, 'shards', 1, 256) ?? listShardDirs(realStorage, dir).length;
    replayThreads = intFlag(values, 'replay-threads', 1, 256);
    segmentBytes = intFlag(values, 'segment-bytes', 4096, 2 ** 30) ?? segmentBytesIn(dir);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`reward-pool-engine recover: ${err.message}\n${usage}`);
    return kExitUsage;
  }
  const progress = progressReporter('replaying segments');
  // Stopping during recovery is safe (every step leaves a recoverable directory, and the kernel
  // drops the lock with the process); once open, close the engine first.
  let engine: DrawEngine | undefined;
  const stop = (signal: NodeJS.Signals): void => {
    progress.end();
    process.stderr.write(`reward-pool-engine recover: ${signal}: stopping; the directory stays recoverable\n`);
    const code = signal === 'SIGINT' ? 130 : 143;
    void (engine?.close() ?? Promise.resolve()).finally(() => process.exit(code));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    const opened = await DrawEngine.open({ dir, shards, replayThreads, segmentBytes, recoveryProgress: (done, total) => progress.update(done, total) });
    engine = opened;
    progress.end();
    const report = opened.recovery;
    const draws = (await Promise.all(opened.poolIds().map((id) => opened.pool(id)))).reduce((sum, p) => sum + p.items.reduce((a, i) => a + i.drawn, 0), 0);
    await opened.close();
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ ...report, totalDrawn: draws }, null, 2)}\n`);
    } else {
      const lines = [
        `recovered ${dir} in ${report.ms.toFixed(1)} ms (${report.threads} replay thread${report.threads === 1 ? '' : 's'})`,
        `  pools            ${report.pools} (successful draws over their life: ${draws})`,
        `  snapshots loaded ${report.snapshotsLoaded}${report.snapshotFallbacks.length ? `, passed over ${report.snapshotFallbacks.length}` : ''}`,
        `  segments         ${report.segments}, records ${report.records}, bytes ${report.bytes}`,
        `  draws replayed   ${report.drawsReplayed}`,
        `  max request id   ${report.maxRequestId}`,
        `  next epoch       ${report.epoch}`,
      ];
      for (const f of report.snapshotFallbacks) lines.push(`  snapshot passed over: ${f.file}: ${f.reason}`);
      for (const t of report.tornTails) lines.push(`  torn tail dropped: ${t.file} at offset ${t.offset} (${t.reason})`);
      for (const f of report.removedSegments) lines.push(`  unwritten segment passed over: ${f}`);
      process.stdout.write(`${lines.join('\n')}\n`);
    }
    return kExitOk;
  } catch (err) {
    progress.end();
    process.stderr.write(`reward-pool-engine recover: ${describe(err)}\n`);
    return exitCodeFor(err);
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
