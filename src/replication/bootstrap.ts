import { shardOf } from '../hash.js';
import { EngineError, messageOf } from '../errors.js';
import type { PoolData } from '../pool-state.js';
import type { RecoveredState } from '../recovery/recover.js';
import { decodeSnapshot, type SnapshotBody } from '../snapshot/format.js';
import { LogError, type ReplicatedLog } from './log.js';

/**
 * What a node starts each shard from, given what its directory recovered: its own state when the
 * stream still holds the message its local WAL ends at (it follows on from there), or the
 * group's newest uploaded snapshot of the shard when it does not: an empty directory, a shard
 * with no replicated data, or a node that was away while the stream was trimmed past it. A
 * leader trims no further than the positions nodes record (positions.ts), and this node records
 * its own before it looks.
 */
export async function reconcileWithLog(log: ReplicatedLog, node: string, state: RecoveredState, shards: number): Promise<RecoveredState> {
  const t0 = performance.now();
  let replaced = 0;
  // Said first, so that no trim after the checks below passes this node by.
  try {
    await log.positionPut(node, Array.from({ length: shards }, (_, k) => state.marks.get(k)?.streamSeq ?? 0));
  } catch (err) {
    throw new EngineError('ERR_REPLICATION_UNAVAILABLE', `cannot record this node's position in the replication group: ${messageOf(err)}`, { cause: err });
  }
  for (let k = 0; k < shards; k++) {
    const local = state.marks.get(k);
    try {
      if (local !== undefined && (await log.at(k, local.streamSeq)) !== undefined) continue;
    } catch (err) {
      throw new EngineError('ERR_REPLICATION_UNAVAILABLE', `cannot read shard ${k}'s replication stream: ${messageOf(err)}`, { cause: err });
    }
    const body = await downloadSnapshot(log, k, shards);
    if (body === undefined) {
      if (local === undefined) continue; // nothing uploaded yet: the stream holds it all
      throw new EngineError('ERR_REPLICATION_UNAVAILABLE', `shard ${k}'s stream no longer holds message ${local.streamSeq} (this node's position) and no snapshot covers it: start this node from an empty directory`, {
        details: { shard: k, streamSeq: local.streamSeq },
      });
    }
    if (local !== undefined && body.replication !== undefined && body.replication.streamSeq < local.streamSeq) continue;
    for (const id of [...state.pools.keys()]) if (shardOf(id, shards) === k) state.pools.delete(id);
    for (const p of body.pools as PoolData[]) state.pools.set(p.id, p);
    if (body.replication === undefined) state.marks.delete(k);
    else state.marks.set(k, body.replication);
    state.maxRequestId = Math.max(state.maxRequestId, body.maxRequestId);
    replaced++;
  }
  if (replaced > 0) {
    state.report.snapshotsLoaded += replaced;
    state.report.pools = state.pools.size;
    state.report.maxRequestId = state.maxRequestId;
    state.report.ms += performance.now() - t0;
  }
  return state;
}

/** The group's snapshot of shard k, checked; undefined when none was uploaded. */
async function downloadSnapshot(log: ReplicatedLog, k: number, shards: number): Promise<SnapshotBody | undefined> {
  let bytes: Uint8Array | undefined;
  try {
    bytes = await log.snapshotGet(k);
  } catch (err) {
    throw new EngineError('ERR_REPLICATION_UNAVAILABLE', `cannot download shard ${k}'s snapshot: ${messageOf(err)}`, { cause: err instanceof LogError ? err.cause : err });
  }
  if (bytes === undefined) return undefined;
  const body = decodeSnapshot(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  const where = `the replication group's snapshot of shard ${k}`;
  if (typeof body === 'string') throw new EngineError('ERR_CORRUPT_SNAPSHOT', `${where} is damaged: ${body}`, { details: { shard: k } });
  if (body.shards !== shards) {
    throw new EngineError('ERR_INVALID_CONFIG', `options.shards must be ${body.shards} to join this replication group (${where} was written with ${body.shards}), got ${shards}`, {
      details: { option: 'shards', value: shards, expected: body.shards },
    });
  }
  if (body.kind !== 'full' || body.shard !== k) throw new EngineError('ERR_CORRUPT_SNAPSHOT', `${where} is not a full snapshot of shard ${k}`, { details: { shard: k } });
  return body;
}
