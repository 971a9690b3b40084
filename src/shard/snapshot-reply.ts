import { errorToWire, type EngineError } from '../errors.js';
import { kTag, type FromWorkerLifecycle, type SnapshotJob } from '../protocol.js';

/**
 * What a shard says after a snapshot step, so that every snapshot() request id gets an answer:
 * the job to write, or 'snapshotSkipped' for the ids (nothing changed, or nothing left to do),
 * or, when the shard has failed, the failure (the coordinator then rejects every waiter).
 * Nothing while the request is queued behind a job in flight.
 */
export function snapshotReply(job: SnapshotJob | 'skipped' | 'queued' | undefined, reqIds: number[], failure: EngineError | undefined): FromWorkerLifecycle | undefined {
  if (job === 'queued') return undefined;
  if (job === undefined || job === 'skipped') {
    if (reqIds.length === 0) return undefined;
    if (job === undefined && failure !== undefined) return { tag: kTag, type: 'error', error: errorToWire(failure) };
    return { tag: kTag, type: 'snapshotSkipped', reqIds };
  }
  return job;
}

/** The typed arrays of a job's pools, transferred rather than copied. */
export function snapshotTransfer(job: SnapshotJob): ArrayBuffer[] {
  const transfer: ArrayBuffer[] = [];
  for (const p of job.body.pools) for (const a of [p.weights, p.quantities, p.drawn]) if (a instanceof Float64Array) transfer.push(a.buffer as ArrayBuffer);
  return transfer;
}
