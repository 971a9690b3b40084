/**
 * Shard worker thread: the message loop only. All logic is in src/shard/shard-core.ts.
 *
 * Group commit: batches are applied as they arrive, but the WAL is synced and replies are
 * posted from a setImmediate, so every batch that arrived in the same event-loop turn shares
 * one msync/fdatasync.
 *
 * A replicating leader hands each group to the coordinator as messages to publish, with its
 * replies, and applies nothing more until the stream has stored it (batches that arrive
 * meanwhile wait, and form the next group): then it logs the group locally. A follower
 * applies its leader's messages as the coordinator passes them on.
 */
import { parentPort, type MessagePort } from 'node:worker_threads';
import { errorFromWire, errorToWire, EngineError } from '../src/errors.js';
import { kStateClosed, kStateIndex, shardBlock } from '../src/layout.js';
import {
  kTag,
  type AppliedReply,
  type BatchMessage,
  type BatchReply,
  type FromWorkerLifecycle,
  type PublishedMessage,
  type PublishRequest,
  type ReplicateMessage,
  type SnapshotJob,
  type ToShardPort,
  type ToWorkerLifecycle,
} from '../src/protocol.js';
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
/** Replicating leader: the messages of the group the stream has not stored yet. */
let publishing: Uint8Array[] | undefined;
/** Batches, and snapshot requests, that arrived while a group was being published. */
const waiting: BatchMessage[] = [];
const waitingSnapshots: number[] = [];

function commitGroup(): void {
  commitScheduled = false;
  if (group.length === 0 || core === undefined || port === undefined) return;
  if (publishing !== undefined) return;
  const messages = core.failure === undefined ? core.takeMessages() : [];
  if (messages.length > 0) {
    publishing = messages;
    const replies = group.splice(0);
    const req: PublishRequest = { type: 'publish', messages, replies };
    // The messages are copied (this shard logs them once stored); the indices move.
    port.postMessage(req, replies.map((r) => r.indices.buffer as ArrayBuffer));
    return;
  }
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

/** The stream stored the group in flight: log it, then take what waited. */
function onPublished(msg: PublishedMessage): void {
  const messages = publishing;
  publishing = undefined;
  if (core === undefined || messages === undefined) return;
  try {
    core.published(messages, msg.streamSeqs);
  } catch (err) {
    post({ tag: kTag, type: 'error', error: errorToWire(err) });
    return;
  }
  postSnapshot(core.snapshotIfDue());
  for (const reqId of waitingSnapshots.splice(0)) requestSnapshot(reqId);
  for (const b of waiting.splice(0)) group.push(core.apply(b));
  schedule();
}

/** A follower shard applies its leader's message. */
function onReplicate(msg: ReplicateMessage): void {
  if (core === undefined || port === undefined) return;
  const reply: AppliedReply = { type: 'applied', streamSeq: msg.streamSeq, msgSeq: 0, term: 0, duplicate: true, created: [], keyed: [], maxRequestId: 0, error: null };
  try {
    const applied = core.applyMessage(msg.payload, msg.streamSeq);
    if (applied !== undefined) {
      reply.duplicate = false;
      reply.msgSeq = applied.header.msgSeq;
      reply.term = applied.header.term;
      reply.created = applied.created;
      reply.keyed = applied.keyed;
    }
    reply.maxRequestId = core.position.maxRequestId;
  } catch (err) {
    reply.error = errorToWire(err);
  }
  port.postMessage(reply);
  postSnapshot(core.snapshotIfDue());
}

function schedule(): void {
  if (!commitScheduled && group.length > 0) {
    commitScheduled = true;
    setImmediate(commitGroup);
  }
}

function requestSnapshot(reqId: number): void {
  if (core === undefined) {
    post({ tag: kTag, type: 'snapshotSkipped', reqIds: [reqId] });
    return;
  }
  commitGroup();
  // A snapshot copies the pools: not while a group is applied but not yet logged.
  if (publishing !== undefined) {
    waitingSnapshots.push(reqId);
    return;
  }
  try {
    postSnapshot(core.requestSnapshot(reqId), [reqId]);
  } catch (err) {
    post({ tag: kTag, type: 'error', error: errorToWire(err) });
  }
}

/** Answer a snapshot step (see snapshotReply), transferring a job's copied typed arrays. */
function postSnapshot(job: SnapshotJob | 'skipped' | 'queued' | undefined, reqIds: number[] = []): void {
  const msg = snapshotReply(job, reqIds, core?.failure);
  if (msg === undefined) return;
  parent.postMessage(msg, msg.type === 'snapshotJob' ? snapshotTransfer(msg) : []);
}

function onPortMessage(msg: ToShardPort): void {
  switch (msg?.type) {
    case 'batch':
      if (publishing !== undefined) waiting.push(msg);
      else {
        group.push(core!.apply(msg));
        schedule();
      }
      break;
    case 'published':
      onPublished(msg);
      break;
    case 'replicate':
      onReplicate(msg);
      break;
    default:
      post({ tag: kTag, type: 'error', error: errorToWire(new EngineError('ERR_SHARD_FAILED', `unexpected message on shard port: ${String((msg as { type?: unknown })?.type)}`)) });
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
      port.on('message', onPortMessage);
      post({ tag: kTag, type: 'ready' });
      break;
    }
    case 'snapshot':
      requestSnapshot(msg.reqId);
      break;
    case 'lead':
      core?.lead(msg.term, msg.nextMsgSeq, msg.maxMessageBytes);
      post({ tag: kTag, type: 'leading' });
      break;
    case 'depose': {
      // The stream refused this leader: acknowledge nothing more, answer what waited.
      core?.fail(errorFromWire(msg.error));
      for (const b of waiting.splice(0)) group.push(core!.apply(b));
      publishing = undefined;
      commitGroup();
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
