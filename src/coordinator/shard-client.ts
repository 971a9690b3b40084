import { Worker, MessageChannel, type MessagePort } from 'node:worker_threads';
import { DrawBatch } from '../draw-batch.js';
import { EngineError, errorFromWire, errorToWire } from '../errors.js';
import { kPendingIndex, kSnapshotsIndex, shardBlock } from '../layout.js';
import {
  kOpDraw,
  kOpStride,
  kTag,
  type BatchMessage,
  type BatchReply,
  type Control,
  type FromWorkerLifecycle,
  type PoolInit,
  type PoolStateReply,
  type ShardConfig,
  type SnapshotJob,
} from '../protocol.js';
import type { PoolMeta } from './pool-meta.js';
import { workerEntry } from './worker-path.js';

export interface DrawResult {
  requestId: number;
  itemId: string | null;
}

/** Shared by every shard: request ids are unique across the engine. */
export interface IdCounter {
  next: number;
}

type Resolve = (value: any) => void;
type Reject = (err: unknown) => void;

/**
 * One queued operation. A draw() "run" collects every draw() call for one pool in one batch
 * (one resolver pair per call, no other per-draw object); drawMany and control ops are one
 * call each. Same shape for all kinds keeps the hot path monomorphic.
 */
export class Op {
  kind: number;
  pool: PoolMeta;
  count: number;
  /** draw() runs: one resolver per call (a rejection is delivered through it, see fail()). */
  resolves: Resolve[] | null;
  /** drawMany and controls. */
  resolve: Resolve | null;
  reject: Reject | null;
  control: Control | null;
  firstId = 0;

  constructor(kind: number, pool: PoolMeta, count: number, control: Control | null) {
    this.kind = kind;
    this.pool = pool;
    this.count = count;
    this.control = control;
    this.resolves = null;
    this.resolve = null;
    this.reject = null;
  }

  fail(err: unknown): void {
    if (this.resolves !== null) {
      // Resolving with a rejected promise rejects: one array of resolvers serves both ways.
      const rejected = Promise.reject(err);
      rejected.catch(() => {});
      for (const r of this.resolves) r(rejected);
    } else {
      this.reject!(err);
    }
  }
}

interface InFlight {
  id: number;
  ops: Op[];
  draws: number;
}

/** A call waiting for room under maxPending. */
interface Waiter {
  enqueue: () => void;
  draws: number;
}

// One executor for every promise: capturing resolvers through module variables avoids a closure
// per draw() call.
let capturedResolve: Resolve = () => {};
let capturedReject: Reject = () => {};
function capture(resolve: Resolve, reject: Reject): void {
  capturedResolve = resolve;
  capturedReject = reject;
}

export interface ShardHooks {
  /** A worker produced a snapshot job: encode and write it off this thread. */
  writeSnapshot(job: SnapshotJob): Promise<void>;
  /** The worker died after startup; everything pending was rejected with ERR_SHARD_FAILED. */
  onUnexpectedExit(shard: ShardClient, err: EngineError): void;
}

/**
 * The coordinator's side of one shard (cf. piscina's WorkerInfo): the worker, its request
 * port, the batch being built this turn, batches in flight and callers waiting for room.
 * The worker can be replaced (restart after a crash) while this object, which the pools
 * point at, stays.
 */
export class ShardClient {
  readonly index: number;
  worker!: Worker;
  #port!: MessagePort;
  #ids: IdCounter;
  #maxPending: number;
  #metrics: BigInt64Array;
  #sab: SharedArrayBuffer;
  #hooks: ShardHooks;
  #ops: Op[] = [];
  #batchDraws = 0;
  #flushScheduled = false;
  #inflight: InFlight[] = [];
  #inflightHead = 0;
  #waiting: Waiter[] = [];
  #waitingHead = 0;
  #admitting = false;
  #nextBatchId = 1;
  /** Draws queued or in flight, waiters excluded. */
  pendingDraws = 0;
  #failure: EngineError | undefined;
  #idleResolvers: (() => void)[] = [];
  #closing = false;
  #snapshotWaiters = new Map<number, { resolve: () => void; reject: (err: unknown) => void }>();
  #nextSnapshotReq = 1;
  #flush = (): void => this.flushNow();

  constructor(index: number, ids: IdCounter, maxPending: number, metrics: SharedArrayBuffer, hooks: ShardHooks) {
    this.index = index;
    this.#ids = ids;
    this.#maxPending = maxPending;
    this.#sab = metrics;
    this.#metrics = shardBlock(metrics, index);
    this.#hooks = hooks;
  }

  /** Thread id of the current worker. */
  get threadId(): number {
    return this.worker.threadId;
  }

  /** Spawn a worker, send init, wait for ready (its segment is open and mapped). */
  start(config: ShardConfig, pools: PoolInit[]): Promise<void> {
    const worker = new Worker(workerEntry('shard-worker'), { name: `rpe-shard-${this.index}` });
    const { port1, port2 } = new MessageChannel();
    this.worker = worker;
    this.#port = port1;
    port1.on('message', (reply: BatchReply) => this.#onReply(reply));
    port1.unref();
    return new Promise<void>((resolve, reject) => {
      const onMessage = (msg: FromWorkerLifecycle): void => {
        if (msg?.tag !== kTag) return;
        if (msg.type === 'ready') {
          cleanup();
          resolve();
        } else if (msg.type === 'error') {
          cleanup();
          reject(errorFromWire(msg.error));
        }
      };
      const onExit = (code: number): void => {
        cleanup();
        reject(new EngineError('ERR_SHARD_FAILED', `shard ${this.index} exited with code ${code} during startup`, { details: { shard: this.index, code } }));
      };
      const onError = (err: Error): void => {
        cleanup();
        reject(new EngineError('ERR_SHARD_FAILED', `shard ${this.index} failed during startup: ${err.message}`, { cause: err }));
      };
      const cleanup = (): void => {
        worker.off('message', onMessage);
        worker.off('exit', onExit);
        worker.off('error', onError);
      };
      worker.on('message', onMessage);
      worker.on('exit', onExit);
      worker.on('error', onError);
      worker.postMessage({ tag: kTag, type: 'init', config, pools, metrics: this.#sab, port: port2 }, [port2]);
    }).then(
      () => {
        worker.on('message', (msg: FromWorkerLifecycle) => this.#onLifecycle(msg));
        worker.on('error', (err) => this.#died(worker, `crashed: ${err.message}`));
        worker.on('exit', (code) => this.#died(worker, `exited unexpectedly with code ${code}`));
        worker.unref();
        this.#failure = undefined;
      },
      async (err: unknown) => {
        port1.close();
        await worker.terminate();
        throw err;
      },
    );
  }

  #died(worker: Worker, how: string): void {
    if (worker !== this.worker) return; // an old worker's late event
    if (this.#closing && this.idle) return;
    const err = new EngineError('ERR_SHARD_FAILED', `shard ${this.index} ${how}`, { details: { shard: this.index, threadId: worker.threadId } });
    const first = this.#failure === undefined;
    this.failAll(err);
    for (const w of this.#snapshotWaiters.values()) w.reject(err);
    this.#snapshotWaiters.clear();
    if (first && !this.#closing) this.#hooks.onUnexpectedExit(this, err);
  }

  #onLifecycle(msg: FromWorkerLifecycle): void {
    if (msg?.tag !== kTag) return;
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
      case 'closed':
      case 'ready':
        break; // handled by the promise that is waiting for it
      default:
        this.failAll(new EngineError('ERR_SHARD_FAILED', `unexpected message from shard ${this.index}: ${String((msg as { type?: unknown }).type)}`));
    }
  }

  #snapshotDone(job: SnapshotJob, err: unknown): void {
    const wire = err === null ? null : errorToWire(err);
    // Counted here, before snapshot() settles, so a caller sees its own snapshot counted.
    if (err === null) Atomics.add(this.#metrics, kSnapshotsIndex, 1n);
    this.worker.postMessage({ tag: kTag, type: 'snapshotDone', seq: job.body.coversBelow, error: wire });
    for (const id of job.reqIds) this.#settleSnapshot(id, err);
  }

  #settleSnapshot(id: number, err: unknown): void {
    const w = this.#snapshotWaiters.get(id);
    if (w === undefined) return;
    this.#snapshotWaiters.delete(id);
    if (err === null) w.resolve();
    else w.reject(err);
  }

  /** Snapshot this shard now; resolves once the snapshot is durable (or nothing changed). */
  snapshot(): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#closing) return Promise.reject(new EngineError('ERR_ENGINE_CLOSED', `shard ${this.index} is closing`, { details: { shard: this.index } }));
    const reqId = this.#nextSnapshotReq++;
    return new Promise<void>((resolve, reject) => {
      this.#snapshotWaiters.set(reqId, { resolve, reject });
      this.worker.ref();
      this.worker.postMessage({ tag: kTag, type: 'snapshot', reqId });
    }).finally(() => {
      if (this.#snapshotWaiters.size === 0) this.worker.unref();
    });
  }

  get failure(): EngineError | undefined {
    return this.#failure;
  }

  /** Reject everything queued and in flight; the shard acknowledges nothing more. */
  failAll(err: EngineError): void {
    this.#failure ??= err;
    const ops = this.#ops;
    this.#ops = [];
    this.#batchDraws = 0;
    for (const op of ops) {
      op.pool.run = null;
      op.fail(err);
    }
    for (let i = this.#inflightHead; i < this.#inflight.length; i++) for (const op of this.#inflight[i]!.ops) op.fail(err);
    this.#inflight = [];
    this.#inflightHead = 0;
    const waiting = this.#waiting;
    this.#waiting = [];
    this.#waitingHead = 0;
    for (let i = 0; i < waiting.length; i++) waiting[i]!.enqueue(); // enqueue sees the failure and rejects
    this.pendingDraws = 0;
    this.#publishPending();
    this.#notifyIdle();
  }

  #schedule(): void {
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(this.#flush);
    }
  }

  #mustWait(draws: number): boolean {
    // While admitting, the waiter being admitted must not queue again behind the others.
    if (!this.#admitting && this.#waitingHead < this.#waiting.length) return true;
    return this.pendingDraws > 0 && this.pendingDraws + draws > this.#maxPending;
  }

  draw(pool: PoolMeta): Promise<DrawResult> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#mustWait(1)) return this.#wait(1, () => this.draw(pool));
    const p = new Promise<DrawResult>(capture);
    let run = pool.run;
    if (run === null) {
      run = new Op(kOpDraw, pool, 0, null);
      run.resolves = [];
      pool.run = run;
      this.#ops.push(run);
      this.#schedule();
    }
    run.count++;
    run.resolves!.push(capturedResolve);
    this.#batchDraws++;
    this.pendingDraws++;
    return p;
  }

  drawMany(pool: PoolMeta, count: number): Promise<DrawBatch> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#mustWait(count)) return this.#wait(count, () => this.drawMany(pool, count));
    const op = new Op(kOpDraw, pool, count, null);
    const p = new Promise<DrawBatch>(capture);
    op.resolve = capturedResolve;
    op.reject = capturedReject;
    this.#push(op);
    this.#batchDraws += count;
    this.pendingDraws += count;
    return p;
  }

  control<T>(kind: number, pool: PoolMeta, control: Control): Promise<T> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#mustWait(0)) return this.#wait(0, () => this.control<T>(kind, pool, control));
    const op = new Op(kind, pool, 0, control);
    const p = new Promise<T>(capture);
    op.resolve = capturedResolve;
    op.reject = capturedReject;
    this.#push(op);
    return p;
  }

  /** Ops other than draw() runs close the pool's open run, so later draws get later ids. */
  #push(op: Op): void {
    op.pool.run = null;
    this.#ops.push(op);
    this.#schedule();
  }

  #wait<T>(draws: number, retry: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#waiting.push({ draws, enqueue: () => retry().then(resolve, reject) });
    });
  }

  /** Admit waiters in FIFO order while there is room. */
  #admit(): void {
    while (this.#waitingHead < this.#waiting.length) {
      const w = this.#waiting[this.#waitingHead]!;
      if (this.pendingDraws > 0 && this.pendingDraws + w.draws > this.#maxPending) break;
      this.#waiting[this.#waitingHead++] = undefined as unknown as Waiter;
      this.#admitting = true;
      try {
        w.enqueue();
      } finally {
        this.#admitting = false;
      }
    }
    if (this.#waitingHead === this.#waiting.length) {
      this.#waiting = [];
      this.#waitingHead = 0;
    }
  }

  /** Send this turn's batch: one message, ids assigned per op in order, typed arrays transferred. */
  flushNow(): void {
    this.#flushScheduled = false;
    const ops = this.#ops;
    if (ops.length === 0 || this.#failure) return;
    this.#ops = [];
    const packed = new Float64Array(ops.length * kOpStride);
    const controls: Control[] = [];
    const ids = this.#ids;
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      const o = i * kOpStride;
      packed[o] = op.kind;
      packed[o + 1] = op.pool.ref;
      if (op.kind === kOpDraw) {
        if (op.pool.run === op) op.pool.run = null;
        op.firstId = ids.next;
        ids.next += op.count;
        packed[o + 2] = op.count;
        packed[o + 3] = op.firstId;
      } else {
        controls.push(op.control!);
      }
    }
    const id = this.#nextBatchId++;
    if (this.#inflightHead === this.#inflight.length) this.#port.ref();
    this.#inflight.push({ id, ops, draws: this.#batchDraws });
    this.#batchDraws = 0;
    const msg: BatchMessage = { type: 'batch', id, ops: packed, controls };
    this.#port.postMessage(msg, [packed.buffer]);
    this.#publishPending();
  }

  #onReply(reply: BatchReply): void {
    const batch = this.#inflight[this.#inflightHead];
    if (batch === undefined || batch.id !== reply.id) {
      this.failAll(new EngineError('ERR_SHARD_FAILED', `shard ${this.index} replied to batch ${reply?.id}, expected ${batch?.id}`));
      return;
    }
    this.#inflight[this.#inflightHead++] = undefined as unknown as InFlight;
    if (this.#inflightHead === this.#inflight.length) {
      this.#inflight = [];
      this.#inflightHead = 0;
      this.#port.unref();
    }
    this.pendingDraws -= batch.draws;
    if (reply.error !== null) {
      const err = errorFromWire(reply.error);
      for (const op of batch.ops) op.fail(err);
      this.failAll(err);
      return;
    }
    const opErrors = reply.opErrors;
    let nextErr = opErrors === null ? -1 : opErrors[0]![0];
    let errAt = 0;
    const indices = reply.indices;
    let at = 0;
    let c = 0;
    for (let i = 0; i < batch.ops.length; i++) {
      const op = batch.ops[i]!;
      const failed = i === nextErr;
      if (failed) {
        op.fail(errorFromWire(opErrors![errAt++]![1]));
        nextErr = errAt < opErrors!.length ? opErrors![errAt]![0] : -1;
      }
      if (op.kind === kOpDraw) {
        if (!failed) {
          const items = op.pool.items;
          const first = op.firstId;
          if (op.resolves !== null) {
            const resolves = op.resolves;
            for (let k = 0; k < resolves.length; k++) {
              const idx = indices[at + k]!;
              resolves[k]!({ requestId: first + k, itemId: idx === 0xffff ? null : items[idx]! });
            }
          } else {
            op.resolve!(new DrawBatch(first, items, indices.subarray(at, at + op.count)));
          }
        }
        at += op.count;
      } else {
        const result = reply.controlResults[c++] as PoolStateReply | null;
        if (!failed) op.resolve!(result);
      }
    }
    this.#publishPending();
    this.#admit();
    this.#notifyIdle();
  }

  #publishPending(): void {
    Atomics.store(this.#metrics, kPendingIndex, BigInt(this.pendingDraws));
  }

  get idle(): boolean {
    return this.#ops.length === 0 && this.#inflightHead === this.#inflight.length && this.#waitingHead === this.#waiting.length;
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

  /** Drain, then let the worker sync and release its segment, then stop it. */
  async close(): Promise<void> {
    await this.drained();
    this.#closing = true;
    if (this.worker !== undefined && this.worker.threadId !== -1 && !this.#failure) {
      await new Promise<void>((resolve) => {
        const onMessage = (msg: FromWorkerLifecycle): void => {
          if (msg?.tag === kTag && (msg.type === 'closed' || msg.type === 'error')) done();
        };
        const done = (): void => {
          this.worker.off('message', onMessage);
          this.worker.off('exit', done);
          resolve();
        };
        this.worker.on('message', onMessage);
        this.worker.on('exit', done);
        this.worker.ref();
        this.worker.postMessage({ tag: kTag, type: 'close' });
      });
    }
    this.#port?.close();
    await this.worker?.terminate();
    // Nothing may stay pending once the shard is gone.
    const closed = new EngineError('ERR_ENGINE_CLOSED', `shard ${this.index} closed before the snapshot was written`, { details: { shard: this.index } });
    for (const w of this.#snapshotWaiters.values()) w.reject(closed);
    this.#snapshotWaiters.clear();
  }
}
