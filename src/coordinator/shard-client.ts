import type { Worker } from 'node:worker_threads';
import type { DrawBatch } from '../draw-batch.js';
import { EngineError, errorFromWire, errorToWire } from '../errors.js';
import { kPendingIndex, kSnapshotsIndex, shardBlock } from '../layout.js';
import { kTag, type AppliedReply, type BatchReply, type Control, type FromShardPort, type FromWorkerLifecycle, type InitMessage, type PublishRequest, type SnapshotJob } from '../protocol.js';
import { Admission } from './admission.js';
import { Batcher, type DrawResult, type IdCounter } from './batcher.js';
import type { PoolMeta } from './pool-meta.js';
import { ShardThread } from './shard-thread.js';

export interface ShardHooks {
  /** A worker produced a snapshot job: encode and write it off this thread. */
  writeSnapshot(job: SnapshotJob): Promise<unknown>;
  /** A replicating leader's group to publish (settlePublished / failReplies answer it). */
  publish?(shard: ShardClient, request: PublishRequest): void;
  /** The worker died after startup; everything pending was rejected with ERR_SHARD_FAILED. */
  onUnexpectedExit(shard: ShardClient, err: EngineError): void;
}

/**
 * The coordinator's side of one shard: its batches, its admission bound, its worker thread and
 * the snapshot() calls waiting on it. The thread can be replaced (a restart after a crash)
 * while this object, which the pools route to, stays.
 */
export class ShardClient {
  readonly index: number;
  readonly #batcher: Batcher;
  readonly #admission: Admission;
  readonly #metrics: BigInt64Array;
  readonly #hooks: ShardHooks;
  #thread: ShardThread | undefined;
  #failure: EngineError | undefined;
  #closing = false;
  #flushScheduled = false;
  #idleResolvers: (() => void)[] = [];
  readonly #snapshotWaiters = new Map<number, { resolve: () => void; reject: (err: unknown) => void }>();
  #nextSnapshotReq = 1;
  readonly #flush = (): void => this.flushNow();

  constructor(index: number, ids: IdCounter, maxPending: number, metrics: SharedArrayBuffer, hooks: ShardHooks) {
    this.index = index;
    this.#batcher = new Batcher(ids);
    this.#admission = new Admission(maxPending);
    this.#metrics = shardBlock(metrics, index);
    this.#hooks = hooks;
  }

  get threadId(): number {
    return this.#thread?.threadId ?? -1;
  }

  get worker(): Worker | undefined {
    return this.#thread?.worker;
  }

  get failure(): EngineError | undefined {
    return this.#failure;
  }

  /** Draws queued or in flight (callers waiting for room excluded). */
  get pendingDraws(): number {
    return this.#admission.pending;
  }

  /** Start a worker; resolves once its first segment is open and mapped. */
  async start(init: Omit<InitMessage, 'tag' | 'type' | 'port'>): Promise<void> {
    this.#thread = await ShardThread.start(this.index, init, {
      reply: (msg) => this.#onPort(msg),
      lifecycle: (msg) => this.#onLifecycle(msg),
      died: (how) => this.#died(how),
    });
    this.#failure = undefined;
  }

  draw(pool: PoolMeta): Promise<DrawResult> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#blocked) return Promise.reject(this.#blocked);
    if (this.#admission.mustWait(1)) return this.#admission.wait(1, () => this.draw(pool));
    this.#admission.pending++;
    this.#schedule();
    return this.#batcher.draw(pool);
  }

  drawMany(pool: PoolMeta, count: number): Promise<DrawBatch> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#blocked) return Promise.reject(this.#blocked);
    if (this.#admission.mustWait(count)) return this.#admission.wait(count, () => this.drawMany(pool, count));
    this.#admission.pending += count;
    this.#schedule();
    return this.#batcher.drawMany(pool, count);
  }

  keyed<T>(pool: PoolMeta, count: number, key: string, asBatch: boolean): Promise<T> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#blocked) return Promise.reject(this.#blocked);
    if (this.#admission.mustWait(count)) return this.#admission.wait(count, () => this.keyed<T>(pool, count, key, asBatch));
    this.#admission.pending += count;
    this.#schedule();
    return this.#batcher.keyed<T>(pool, count, key, asBatch);
  }

  control<T>(kind: number, pool: PoolMeta, control: Control): Promise<T> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#blocked && control.type !== 'state') return Promise.reject(this.#blocked);
    if (this.#admission.mustWait(0)) return this.#admission.wait(0, () => this.control<T>(kind, pool, control));
    this.#schedule();
    return this.#batcher.control<T>(kind, pool, control);
  }

  #schedule(): void {
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(this.#flush);
    }
  }

  /** Send this turn's batch: one message per shard per event-loop turn. */
  flushNow(): void {
    this.#flushScheduled = false;
    if (this.#failure || this.#thread === undefined) return;
    const firstInFlight = this.#batcher.batchesInFlight === 0;
    const msg = this.#batcher.pack();
    if (msg === undefined) return;
    this.#thread.postBatch(msg, firstInFlight);
    this.#publishPending();
  }

  #onPort(msg: FromShardPort): void {
    switch (msg.type) {
      case 'done':
        this.#onReply(msg);
        break;
      case 'publish':
        if (this.#hooks.publish) this.#hooks.publish(this, msg);
        else this.failAll(new EngineError('ERR_SHARD_FAILED', `shard ${this.index} asked to publish without replication`));
        break;
      case 'applied': {
        const waiter = this.#applying.shift();
        waiter?.(msg);
        break;
      }
      default:
        this.failAll(new EngineError('ERR_SHARD_FAILED', `unexpected message on shard ${this.index}'s port: ${String((msg as { type?: unknown }).type)}`));
    }
  }

  // ---- replication ----

  /** Writes (not state reads) reject with this error, without reaching the shard. */
  #blocked: EngineError | undefined;
  /** Resolvers of replicate() calls, in order. */
  readonly #applying: ((reply: AppliedReply) => void)[] = [];

  block(err: EngineError | undefined): void {
    this.#blocked = err;
  }

  /** The stream stored a group: answer its callers (unless they were already failed), let the shard log it. */
  settlePublished(replies: BatchReply[] | undefined, streamSeqs: number[]): void {
    if (replies !== undefined) for (const r of replies) this.#onReply(r);
    this.#thread?.postPort({ type: 'published', streamSeqs });
  }

  /** A group the stream did not store in time: its callers get `err`; the shard keeps it (it may still be stored). */
  failReplies(replies: BatchReply[], err: EngineError): void {
    const wire = errorToWire(err);
    for (const r of replies) {
      const { draws } = this.#batcher.settle({ ...r, error: wire });
      this.#admission.pending -= draws;
    }
    if (this.#batcher.batchesInFlight === 0) this.#thread?.quiet();
    this.#publishPending();
    this.#admission.admit();
    this.#notifyIdle();
  }

  /** A follower shard applies a leader's message; resolves with what it learned. */
  replicate(payload: Uint8Array, streamSeq: number): Promise<AppliedReply> {
    const thread = this.#thread;
    if (thread === undefined || this.#failure) return Promise.reject(this.#failure ?? new EngineError('ERR_ENGINE_CLOSED', `shard ${this.index} is not running`));
    return new Promise((resolve) => {
      this.#applying.push(resolve);
      thread.postPort({ type: 'replicate', payload, streamSeq });
    });
  }

  /** The shard leads from now on; resolves once it says so. */
  lead(term: number, nextMsgSeq: number, maxMessageBytes: number): Promise<void> {
    const thread = this.#thread;
    if (thread === undefined) return Promise.reject(new EngineError('ERR_ENGINE_CLOSED', `shard ${this.index} is not running`));
    return new Promise((resolve) => {
      this.#leading = resolve;
      thread.post({ tag: kTag, type: 'lead', term, nextMsgSeq, maxMessageBytes });
    });
  }

  #leading: (() => void) | undefined;

  /** No longer the leader: fail-stop with `err`. */
  depose(err: EngineError): void {
    this.#blocked = err;
    this.#thread?.post({ tag: kTag, type: 'depose', error: errorToWire(err) });
  }

  #onReply(reply: BatchReply): void {
    const { draws, error } = this.#batcher.settle(reply);
    this.#admission.pending -= draws;
    if (this.#batcher.batchesInFlight === 0) this.#thread?.quiet();
    if (error !== null) {
      this.failAll(error);
      return;
    }
    this.#publishPending();
    this.#admission.admit();
    this.#notifyIdle();
  }

  #onLifecycle(msg: FromWorkerLifecycle): void {
    switch (msg.type) {
      case 'error':
        this.failAll(errorFromWire(msg.error));
        break;
      case 'snapshotJob':
        this.#hooks.writeSnapshot(msg).then(
          () => this.#snapshotDone(msg, null),
          (err: unknown) => this.#snapshotDone(msg, err),
        );
        break;
      case 'snapshotSkipped':
        for (const id of msg.reqIds) this.#settleSnapshot(id, null);
        break;
      case 'leading':
        this.#leading?.();
        this.#leading = undefined;
        break;
      case 'closed':
      case 'ready':
        break; // awaited by start() and close()
      default:
        this.failAll(new EngineError('ERR_SHARD_FAILED', `unexpected message from shard ${this.index}: ${String((msg as { type?: unknown }).type)}`));
    }
  }

  #died(how: string): void {
    if (this.#closing && this.idle) return;
    const err = new EngineError('ERR_SHARD_FAILED', `shard ${this.index} ${how}`, { details: { shard: this.index, threadId: this.threadId } });
    const first = this.#failure === undefined;
    this.failAll(err);
    if (first && !this.#closing) this.#hooks.onUnexpectedExit(this, err);
  }

  #snapshotDone(job: SnapshotJob, err: unknown): void {
    // Counted before snapshot() settles, so a caller sees its own snapshot counted.
    if (err === null) Atomics.add(this.#metrics, kSnapshotsIndex, 1n);
    this.#thread?.post({ tag: kTag, type: 'snapshotDone', seq: job.body.coversBelow, error: err === null ? null : errorToWire(err) });
    for (const id of job.reqIds) this.#settleSnapshot(id, err);
  }

  #settleSnapshot(id: number, err: unknown): void {
    const w = this.#snapshotWaiters.get(id);
    if (w === undefined) return;
    this.#snapshotWaiters.delete(id);
    if (this.#snapshotWaiters.size === 0) this.#thread?.hold(false);
    if (err === null) w.resolve();
    else w.reject(err);
  }

  #rejectSnapshots(err: EngineError): void {
    if (this.#snapshotWaiters.size === 0) return;
    for (const w of this.#snapshotWaiters.values()) w.reject(err);
    this.#snapshotWaiters.clear();
    this.#thread?.hold(false);
  }

  /** Snapshot this shard now; resolves once the snapshot is durable (or nothing changed). */
  snapshot(): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    const thread = this.#thread;
    if (this.#closing || thread === undefined) {
      return Promise.reject(new EngineError('ERR_ENGINE_CLOSED', `shard ${this.index} is closing`, { details: { shard: this.index } }));
    }
    const reqId = this.#nextSnapshotReq++;
    return new Promise<void>((resolve, reject) => {
      this.#snapshotWaiters.set(reqId, { resolve, reject });
      thread.hold(true);
      thread.post({ tag: kTag, type: 'snapshot', reqId });
    });
  }

  /** Reject everything queued, waiting and in flight; the shard acknowledges nothing more. */
  failAll(err: EngineError): void {
    this.#failure ??= err;
    this.#batcher.failAll(err);
    this.#rejectSnapshots(err);
    for (const waiter of this.#applying.splice(0)) {
      waiter({ type: 'applied', streamSeq: 0, msgSeq: 0, term: 0, duplicate: false, created: [], keyed: [], maxRequestId: 0, error: errorToWire(err) });
    }
    this.#admission.pending = 0;
    this.#admission.releaseAll(); // each re-run sees the failure and rejects
    this.#publishPending();
    this.#notifyIdle();
  }

  #publishPending(): void {
    Atomics.store(this.#metrics, kPendingIndex, BigInt(this.#admission.pending));
  }

  get idle(): boolean {
    return this.#batcher.idle && this.#admission.waiting === 0;
  }

  #notifyIdle(): void {
    if (!this.idle) return;
    const waiters = this.#idleResolvers;
    this.#idleResolvers = [];
    for (const r of waiters) r();
  }

  /** Resolves once nothing is queued, waiting or in flight. */
  drained(): Promise<void> {
    if (this.idle || this.#failure) return Promise.resolve();
    this.flushNow();
    return new Promise((resolve) => this.#idleResolvers.push(resolve));
  }

  /** Drain, let the worker sync and release its segment, stop it; nothing stays pending. */
  async close(): Promise<void> {
    await this.drained();
    this.#closing = true;
    const thread = this.#thread;
    if (thread !== undefined) {
      if (this.#failure) await thread.terminate();
      else await thread.close();
    }
    this.#rejectSnapshots(new EngineError('ERR_ENGINE_CLOSED', `shard ${this.index} closed before the snapshot was written`, { details: { shard: this.index } }));
  }

  /** Stop the worker now (startup of another shard failed). */
  async terminate(): Promise<void> {
    this.#closing = true;
    await this.#thread?.terminate();
  }
}
