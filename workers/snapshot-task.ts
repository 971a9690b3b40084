/** piscina task: write a shard snapshot durably, read it back, then retire what it covers. */
import { errorToWire, EngineError, type WireError } from '../src/errors.js';
import { readSnapshotFile, writeSnapshotFile, type SnapshotBody } from '../src/snapshot/format.js';
import { applyRetention, type RetentionPlan } from '../src/snapshot/retention.js';
import { realStorage } from '../src/storage/real-storage.js';

export interface SnapshotTask {
  dir: string;
  body: SnapshotBody;
  retention: RetentionPlan;
  archive: boolean;
}

export default function writeSnapshot(task: SnapshotTask): { path: string; removed: string[] } | { error: WireError } {
  try {
    const path = writeSnapshotFile(realStorage, task.dir, task.body);
    // Retire nothing on the strength of a file we have not read back whole.
    const check = readSnapshotFile(realStorage, path);
    if (typeof check === 'string') throw new EngineError('ERR_CORRUPT_SNAPSHOT', `${path} failed verification after writing: ${check}`, { details: { file: path } });
    const removed = applyRetention(realStorage, task.dir, task.body.shard, task.retention, task.archive);
    return { path, removed };
  } catch (err) {
    return { error: errorToWire(err) };
  }
}
