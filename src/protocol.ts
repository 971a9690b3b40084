import type { MessagePort } from 'node:worker_threads';
import type { ItemSpec } from './catalog.js';
import type { WireError } from './errors.js';
import type { WindowLimits } from './idempotency.js';
import type { StreamMark } from './wal/format.js';
import type { PoolData } from './pool-state.js';
import type { SyncMode, WalMode } from './options.js';
import type { SnapshotBody } from './snapshot/format.js';
import type { RetentionPlan } from './snapshot/retention.js';

/*
 * Every message between the coordinator and a shard worker. Lifecycle goes over parentPort
 * (init/ready/error/close/closed); batches go over a dedicated MessagePort per shard.
 */
export const kTag = 'rpe';

/** Op kinds in a batch's `ops` Float64Array, 4 slots per op: kind, pool ref, count, firstRequestId. */
export const kOpDraw = 1;
export const kOpCreate = 2;
export const kOpUpdate = 3;
export const kOpState = 4;
/** A draw() or drawMany() with an idempotency key: its key travels in BatchMessage.keys. */
export const kOpDrawKeyed = 5;
export const kOpStride = 4;

/** A pool handed to a shard at start: its state and its ref in that shard. */
export interface PoolInit extends PoolData {
  ref: number;
}

export interface ShardConfig {
  shard: number;
  wal: WalMode;
  dir: string | undefined;
  sync: SyncMode;
  syncIntervalMs: number;
  segmentBytes: number;
  epoch: number;
  firstSeq: number;
  /** undefined = seed from crypto. */
  seed: number | undefined;
  /** Shard count of this run (recorded in snapshots). */
  shards: number;
  snapshotEveryRecords: number;
  /** The idempotency window per pool. */
  idempotency: WindowLimits;
  /** Under replication: segments are flagged, and where the local WAL stands in the stream. */
  replicated: boolean;
  mark: StreamMark | undefined;
  /** Highest request id known at start (snapshots record at least this). */
  maxRequestId: number;
  /**
   * The snapshot this shard starts from: its seq, the files of its chain, where each pool's state
   * is. A Map, never an object: pool ids such as `constructor` are ordinary keys.
   */
  chain: { seq: number; files: number[]; at: Map<string, number> } | null;
}

export interface InitMessage {
  tag: typeof kTag;
  type: 'init';
  config: ShardConfig;
  pools: PoolInit[];
  metrics: SharedArrayBuffer;
  port: MessagePort;
}

export interface CloseMessage {
  tag: typeof kTag;
  type: 'close';
}

/** Take a snapshot now (engine.snapshot()). */
export interface SnapshotRequest {
  tag: typeof kTag;
  type: 'snapshot';
  reqId: number;
}

/** The coordinator wrote (or failed to write) the snapshot of a job. */
export interface SnapshotDone {
  tag: typeof kTag;
  type: 'snapshotDone';
  seq: number;
  error: WireError | null;
}

/** Lead from now on (replication): records go to messages numbered from nextMsgSeq under term. */
export interface LeadMessage {
  tag: typeof kTag;
  type: 'lead';
  term: number;
  nextMsgSeq: number;
  maxMessageBytes: number;
}

/** This shard no longer leads (the stream refused it): fail-stop with the error. */
export interface DeposeMessage {
  tag: typeof kTag;
  type: 'depose';
  error: WireError;
}

export type ToWorkerLifecycle = InitMessage | CloseMessage | SnapshotRequest | SnapshotDone | LeadMessage | DeposeMessage;

export interface ReadyMessage {
  tag: typeof kTag;
  type: 'ready';
}
export interface ClosedMessage {
  tag: typeof kTag;
  type: 'closed';
}
export interface FatalMessage {
  tag: typeof kTag;
  type: 'error';
  error: WireError;
}
/**
 * A snapshot to write: the copied state, taken at a segment boundary. Encoding and writing
 * happen on a pool thread, off the shard's draw path.
 */
export interface SnapshotJob {
  tag: typeof kTag;
  type: 'snapshotJob';
  reqIds: number[];
  body: SnapshotBody;
  retention: RetentionPlan;
}

/** Nothing changed since the last snapshot (or snapshots are off): nothing to write. */
export interface SnapshotSkipped {
  tag: typeof kTag;
  type: 'snapshotSkipped';
  reqIds: number[];
}

/** The shard leads (answer to LeadMessage). */
export interface LeadingMessage {
  tag: typeof kTag;
  type: 'leading';
}

export type FromWorkerLifecycle = ReadyMessage | ClosedMessage | FatalMessage | SnapshotJob | SnapshotSkipped | LeadingMessage;

export interface CreateControl {
  type: 'create';
  id: string;
  items: ItemSpec[];
}
export interface UpdateControl {
  type: 'update';
  itemIndex: number;
  /** NaN = unchanged. */
  weight: number;
  quantity: number;
}
export interface StateControl {
  type: 'state';
}
export type Control = CreateControl | UpdateControl | StateControl;

export interface BatchMessage {
  type: 'batch';
  id: number;
  ops: Float64Array;
  /** One per non-draw op, in op order. */
  controls: Control[];
  /** One per keyed draw op, in op order. */
  keys: string[];
}

/** The stream stored the messages of the group in flight (replicating leader): their sequences. */
export interface PublishedMessage {
  type: 'published';
  streamSeqs: number[];
}

/** A leader's message for a follower shard to apply. */
export interface ReplicateMessage {
  type: 'replicate';
  payload: Uint8Array;
  streamSeq: number;
}

/** Messages the coordinator sends on a shard's port. */
export type ToShardPort = BatchMessage | PublishedMessage | ReplicateMessage;

/** A replicating leader's group: its messages to publish, and the replies to send once stored. */
export interface PublishRequest {
  type: 'publish';
  messages: Uint8Array[];
  replies: BatchReply[];
}

/** A follower shard applied (or could not apply) a message. */
export interface AppliedReply {
  type: 'applied';
  streamSeq: number;
  msgSeq: number;
  term: number;
  /** Nothing new: the shard held the message already. */
  duplicate: boolean;
  created: { ref: number; id: string; itemIds: string[] }[];
  keyed: { poolId: string; key: string; count: number }[];
  maxRequestId: number;
  error: WireError | null;
}

/** Messages a shard sends on its port. */
export type FromShardPort = BatchReply | PublishRequest | AppliedReply;

/** The pool's state, read in order with its draws (typed-array copies, transferred). */
export type PoolStateReply = PoolData<Float64Array>;

export interface BatchReply {
  type: 'done';
  id: number;
  /** Outcomes of every draw op, concatenated in op order; 0xFFFF = empty draw. */
  indices: Uint16Array;
  /** One per non-draw op, in op order: PoolStateReply for 'state', null otherwise. */
  controlResults: (PoolStateReply | null)[];
  /**
   * Keyed draw ops whose key was already in the window, as [opIndex, firstRequestId]: nothing
   * was drawn, their indices are the original outcome, with the original request ids.
   */
  replayed: [number, number][] | null;
  /** Per-op failures as [opIndex, error]; the other ops succeeded. */
  opErrors: [number, WireError][] | null;
  /** Set when nothing in the batch was acknowledged (the shard is failed). */
  error: WireError | null;
}
