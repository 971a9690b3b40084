/** piscina task: write a shard snapshot durably, read it back, then retire what it covers. */
import { runSnapshotTask, type SnapshotTask, type SnapshotTaskResult } from '../src/snapshot/task.js';
import { realStorage } from '../src/storage/real-storage.js';

export type { SnapshotTask };

export default function writeSnapshot(task: SnapshotTask): SnapshotTaskResult {
  return runSnapshotTask(realStorage, task);
}
