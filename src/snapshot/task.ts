import { errorToWire, EngineError, storageError, type WireError } from '../errors.js';
import type { Storage } from '../storage/storage.js';
import { decodeSnapshot, writeSnapshotFile, type SnapshotBody } from './format.js';
import { applyRetention, type RetentionPlan } from './retention.js';

/** What the coordinator hands the snapshot thread for one job. */
export interface SnapshotTask {
  dir: string;
  body: SnapshotBody;
  retention: RetentionPlan;
  archive: boolean;
}

export type SnapshotTaskResult = { path: string; removed: string[] } | { error: WireError };

/**
 * Write a shard snapshot durably, read it back, then retire what it covers. The body of
 * workers/snapshot-task.ts, here so that it runs without a thread on any Storage (the fault
 * injection tests drive it in-process).
 */
export function runSnapshotTask(storage: Storage, task: SnapshotTask): SnapshotTaskResult {
  try {
    const path = writeSnapshotFile(storage, task.dir, task.body);
    // Retire nothing on the strength of a file we have not read back whole. A read that fails
    // is a storage error (ERR_SHARD_FAILED / ERR_DISK_FULL), not a corrupt snapshot.
    let written: Buffer;
    try {
      written = storage.readFile(path);
    } catch (err) {
      throw storageError(err, `cannot read back ${path}`);
    }
    const check = decodeSnapshot(written);
    if (typeof check === 'string') throw new EngineError('ERR_CORRUPT_SNAPSHOT', `${path} failed verification after writing: ${check}`, { details: { file: path } });
    const removed = applyRetention(storage, task.dir, task.body.shard, task.retention, task.archive);
    return { path, removed };
  } catch (err) {
    return { error: errorToWire(err) };
  }
}
