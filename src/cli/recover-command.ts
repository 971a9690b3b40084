import { closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { DrawEngine } from '../engine.js';
import { kHeaderBytes, readHeader } from '../wal/format.js';
import { listSegments, listShardDirs, segmentFileName, shardDirName } from '../wal/segment-files.js';
import { parseDirArgs } from './dir-args.js';
import { describe, exitCodeFor, kExitOk } from './exit-codes.js';
import { progressReporter } from './progress.js';

const usage = `usage: reward-pool-engine recover <dir> [--shards N] [--replay-threads N] [--segment-bytes N] [--json]

Recovers the data directory (as DrawEngine.open would), writes its snapshots, prints the
recovery report and closes. Shard count and segment size default to what the directory holds. Exit codes: 0 ok, 2 usage, 3 not a data directory, 4 locked by
another process, 5 corrupt (ERR_CORRUPT_WAL / ERR_CORRUPT_SNAPSHOT), 1 anything else.
`;

/** The segment size the directory was written with (from its newest readable segment header). */
function segmentBytesIn(dir: string): number | undefined {
  for (const k of listShardDirs(dir).reverse()) {
    const shardDir = join(dir, shardDirName(k));
    for (const seq of listSegments(shardDir).reverse()) {
      const fd = openSync(join(shardDir, segmentFileName(seq)), 'r');
      try {
        const head = Buffer.alloc(kHeaderBytes);
        readSync(fd, head, 0, kHeaderBytes, 0);
        const h = readHeader(head);
        if (typeof h === 'object') return h.segmentBytes;
      } finally {
        closeSync(fd);
      }
    }
  }
  return undefined;
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
  const shards = values.shards === undefined ? listShardDirs(dir).length : Number(values.shards);
  const replayThreads = values['replay-threads'] === undefined ? undefined : Number(values['replay-threads']);
  const segmentBytes = values['segment-bytes'] === undefined ? segmentBytesIn(dir) : Number(values['segment-bytes']);
  const progress = progressReporter('replaying segments');
  try {
    const engine = await DrawEngine.open({ dir, shards, replayThreads, segmentBytes, recoveryProgress: (done, total) => progress.update(done, total) });
    progress.end();
    const report = engine.recovery;
    const draws = (await Promise.all(engine.poolIds().map((id) => engine.pool(id)))).reduce((sum, p) => sum + p.items.reduce((a, i) => a + i.drawn, 0), 0);
    await engine.close();
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
      for (const f of report.removedSegments) lines.push(`  unwritten segment removed: ${f}`);
      process.stdout.write(`${lines.join('\n')}\n`);
    }
    return kExitOk;
  } catch (err) {
    progress.end();
    process.stderr.write(`reward-pool-engine recover: ${describe(err)}\n`);
    return exitCodeFor(err);
  }
}
