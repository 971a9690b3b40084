/**
 * Shard worker thread: the message loop only. All logic is in src/shard/shard-core.ts.
 *
 * Group commit: batches are applied as they arrive, but the WAL is synced and replies are
 * posted from a setImmediate, so every batch that arrived in the same event-loop turn shares
 * one msync/fdatasync.
 */
import { parentPort, type MessagePort } from 'node:worker_threads';
import { errorFromWire, errorToWire, EngineError } from '../src/errors.js';
import { kStateClosed, kStateIndex, shardBlock } from '../src/layout.js';
import { kTag, type SnapshotJob, type BatchMessage, type BatchReply, type FromWorkerLifecycle, type ToWorkerLifecycle } from '../src/protocol.js';
import { ShardCore } from '../src/shard/shard-core.js';
import { snapshotReply, snapshotTransfer } from '../src/shard/snapshot-reply.js';

if (parentPort === null) throw new Error('shard-worker must run as a worker thread');
const parent = parentPort;

function post(msg: FromWorkerLifecycle): void {
  parent.postMessage(msg);
}

process.on('uncaughtException', (err) => {
  post({ tag: kTag, type: 'error', error: errorToWire(err) });
  process.exit(1);
});
process.on('unhandledRejection', (err) => {
  post({ tag: kTag, type: 'error', error: errorToWire(err) });
  process.exit(1);
});

let core: ShardCore | undefined;
let port: MessagePort | undefined;
let metrics: BigInt64Array | undefined;
const group: BatchReply[] = [];
let commitScheduled = false;

function commitGroup(): void {
  commitScheduled = false;
  if (group.length === 0 || core === undefined || port === undefined) return;
  try {
    core.commit();
  } catch (err) {
    // Fail-stop: nothing in this group was durable, so none of it is acknowledged.
    const wire = errorToWire(err);
    for (const r of group) {
      r.error = wire;
      r.indices = new Uint16Array(0);
    }
  }
  for (const r of group) port.postMessage(r, [r.indices.buffer as ArrayBuffer]);
  group.length = 0;
  postSnapshot(core.snapshotIfDue());
}

/** Answer a snapshot step (see snapshotReply), transferring a job's copied typed arrays. */
function postSnapshot(job: SnapshotJob | 'skipped' | 'queued' | undefined, reqIds: number[] = []): void {
  const msg = snapshotReply(job, reqIds, core?.failure);
  if (msg === undefined) return;
  parent.postMessage(msg, msg.type === 'snapshotJob' ? snapshotTransfer(msg) : []);
}

function onBatch(msg: BatchMessage): void {
  if (msg?.type !== 'batch') {
    post({ tag: kTag, type: 'error', error: errorToWire(new EngineError('ERR_SHARD_FAILED', `unexpected message on shard port: ${String(msg?.type)}`)) });
    return;
  }
  group.push(core!.apply(msg));
  if (!commitScheduled) {
    commitScheduled = true;
    setImmediate(commitGroup);
  }
}

parent.on('message', (msg: ToWorkerLifecycle) => {
  if (msg?.tag !== kTag) return; // not ours (e.g. Node's own messages)
  switch (msg.type) {
    case 'init': {
      try {
        metrics = shardBlock(msg.metrics, msg.config.shard);
        core = new ShardCore(msg.config, msg.pools, metrics);
      } catch (err) {
        post({ tag: kTag, type: 'error', error: errorToWire(err) });
        return;
      }
      port = msg.port;
      port.on('message', onBatch);
      post({ tag: kTag, type: 'ready' });
      break;
    }
    case 'snapshot': {
      if (core === undefined) {
        post({ tag: kTag, type: 'snapshotSkipped', reqIds: [msg.reqId] });
        break;
      }
      commitGroup();
      try {
        postSnapshot(core.requestSnapshot(msg.reqId), [msg.reqId]);
      } catch (err) {
        post({ tag: kTag, type: 'error', error: errorToWire(err) });
      }
      break;
    }
    case 'snapshotDone': {
      if (core === undefined) break;
      const { job, reqIds } = core.endSnapshot(msg.seq, msg.error === null ? null : errorFromWire(msg.error));
      postSnapshot(job, reqIds);
      break;
    }
    case 'close': {
      commitGroup();
      const c = core;
      core = undefined;
      (c ? c.close() : Promise.resolve()).then(
        () => {
          if (metrics) Atomics.store(metrics, kStateIndex, BigInt(kStateClosed));
          port?.close();
          post({ tag: kTag, type: 'closed' });
        },
        (err: unknown) => post({ tag: kTag, type: 'error', error: errorToWire(err) }),
      );
      break;
    }
    default:
      post({ tag: kTag, type: 'error', error: errorToWire(new EngineError('ERR_SHARD_FAILED', `unexpected lifecycle message ${String((msg as { type?: unknown }).type)}`)) });
  }
});
