import { EngineError } from '../errors.js';
import type { PoolData } from '../pool-state.js';
import { emptyReport, type RecoveredState } from '../recovery/recover.js';
import { decodeSnapshot } from '../snapshot/format.js';
import type { StreamMark } from '../wal/format.js';
import type { ReplicatedLog } from './log.js';

/**
 * The state a node with an empty directory starts from: each shard's newest snapshot in the
 * group's object store (a full one, with the stream position it includes). The stream's tail
 * after each mark is applied once the shards run. Undefined when the store holds none.
 */
export async function bootstrapFromLog(log: ReplicatedLog, dir: string, shards: number): Promise<RecoveredState | undefined> {
  const t0 = performance.now();
  const pools = new Map<string, PoolData>();
  const marks = new Map<number, StreamMark>();
  let maxRequestId = 0;
  let loaded = 0;
  for (let k = 0; k < shards; k++) {
    const bytes = await log.snapshotGet(k);
    if (bytes === undefined) continue;
    const body = decodeSnapshot(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    const where = `the replication group's snapshot of shard ${k}`;
    if (typeof body === 'string') throw new EngineError('ERR_CORRUPT_SNAPSHOT', `${where} is damaged: ${body}`, { details: { shard: k } });
    if (body.shards !== shards) {
      throw new EngineError('ERR_INVALID_CONFIG', `options.shards must be ${body.shards} to join this replication group (${where} was written with ${body.shards}), got ${shards}`, {
        details: { option: 'shards', value: shards, expected: body.shards },
      });
    }
    if (body.kind !== 'full' || body.shard !== k) throw new EngineError('ERR_CORRUPT_SNAPSHOT', `${where} is not a full snapshot of shard ${k}`, { details: { shard: k } });
    for (const p of body.pools as PoolData[]) pools.set(p.id, p);
    if (body.replication !== undefined) marks.set(k, body.replication);
    maxRequestId = Math.max(maxRequestId, body.maxRequestId);
    loaded++;
  }
  if (loaded === 0) return undefined;
  const report = emptyReport(dir);
  report.snapshotsLoaded = loaded;
  report.pools = pools.size;
  report.maxRequestId = maxRequestId;
  report.ms = performance.now() - t0;
  return { pools, maxRequestId, epoch: 1, nextSeq: new Map(), shardDirs: [], bases: new Map(), marks, report };
}
