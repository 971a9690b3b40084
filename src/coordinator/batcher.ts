import { DrawBatch } from '../draw-batch.js';
import { EngineError, errorFromWire } from '../errors.js';
import { kOpDraw, kOpDrawKeyed, kOpStride, type BatchMessage, type BatchReply, type Control } from '../protocol.js';
import { kEmptyDraw } from '../selector.js';
import { lastReject, lastResolve, newPending, Op } from './op.js';
import type { PoolMeta } from './pool-meta.js';
import { RingQueue } from './ring-queue.js';

export interface DrawResult {
  requestId: number;
  /** null when nothing was available (an empty draw). */
  itemId: string | null;
}

/** Shared by every shard: request ids are unique across the engine. */
export interface IdCounter {
  next: number;
}

interface InFlight {
  id: number;
  ops: Op[];
  draws: number;
}

/**
 * One shard's batches: the ops queued this turn, packed into one message when the turn ends
 * (request ids assigned then, in op order, so they are contiguous per op and increasing per
 * pool), and the batches in flight, whose replies settle each op's promises. draw() calls for
 * one pool in one turn join a single "run" op; a run stays open until any other op on that
 * pool is queued, so later calls get later ids.
 */
export class Batcher {
  readonly #ids: IdCounter;
  #ops: Op[] = [];
  /** Open draw() run per pool ref. */
  #runs: (Op | null)[] = [];
  #queuedDraws = 0;
  readonly #inflight = new RingQueue<InFlight>();
  #nextBatchId = 1;

  constructor(ids: IdCounter) {
    this.#ids = ids;
  }

  get hasQueued(): boolean {
    return this.#ops.length > 0;
  }

  /** Nothing queued and nothing in flight. */
  get idle(): boolean {
    return this.#ops.length === 0 && this.#inflight.length === 0;
  }

  get batchesInFlight(): number {
    return this.#inflight.length;
  }

  draw(pool: PoolMeta): Promise<DrawResult> {
    const p = newPending<DrawResult>();
    let run = this.#runs[pool.ref];
    if (run === undefined || run === null) {
      run = new Op(kOpDraw, pool, 0, null);
      run.resolves = [];
      this.#runs[pool.ref] = run;
      this.#ops.push(run);
    }
    run.count++;
    run.resolves!.push(lastResolve());
    this.#queuedDraws++;
    return p;
  }

  drawMany(pool: PoolMeta, count: number): Promise<DrawBatch> {
    const op = new Op(kOpDraw, pool, count, null);
    const p = newPending<DrawBatch>();
    op.resolve = lastResolve();
    op.reject = lastReject();
    this.#push(op);
    this.#queuedDraws += count;
    return p;
  }

  /** A draw() (asBatch false, count 1) or drawMany() call with an idempotency key: an op of its own. */
  keyed<T>(pool: PoolMeta, count: number, key: string, asBatch: boolean): Promise<T> {
    const op = new Op(kOpDrawKeyed, pool, count, null);
    op.key = key;
    op.asBatch = asBatch;
    const p = newPending<T>();
    op.resolve = lastResolve();
    op.reject = lastReject();
    this.#push(op);
    this.#queuedDraws += count;
    return p;
  }

  control<T>(kind: number, pool: PoolMeta, control: Control): Promise<T> {
    const op = new Op(kind, pool, 0, control);
    const p = newPending<T>();
    op.resolve = lastResolve();
    op.reject = lastReject();
    this.#push(op);
    return p;
  }

  /** Ops other than draw() runs close the pool's open run, so later draws get later ids. */
  #push(op: Op): void {
    this.#runs[op.pool.ref] = null;
    this.#ops.push(op);
  }

  /** This turn's ops as one message (typed arrays to transfer); undefined when nothing is queued. */
  pack(): BatchMessage | undefined {
    const ops = this.#ops;
    if (ops.length === 0) return undefined;
    this.#ops = [];
    const packed = new Float64Array(ops.length * kOpStride);
    const controls: Control[] = [];
    const keys: string[] = [];
    const ids = this.#ids;
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      const o = i * kOpStride;
      packed[o] = op.kind;
      packed[o + 1] = op.pool.ref;
      if (op.kind === kOpDraw || op.kind === kOpDrawKeyed) {
        if (this.#runs[op.pool.ref] === op) this.#runs[op.pool.ref] = null;
        // A keyed call whose key turns out to be known draws nothing: its ids stay unused.
        op.firstId = ids.next;
        ids.next += op.count;
        packed[o + 2] = op.count;
        packed[o + 3] = op.firstId;
        if (op.key !== null) keys.push(op.key);
      } else {
        controls.push(op.control!);
      }
    }
    const id = this.#nextBatchId++;
    this.#inflight.push({ id, ops, draws: this.#queuedDraws });
    this.#queuedDraws = 0;
    return { type: 'batch', id, ops: packed, controls, keys };
  }

  /**
   * Settle the ops of the oldest batch in flight from its reply. Returns the batch's draw count
   * and, when the shard refused the whole batch (it is failed), the error; a reply that does not
   * match the oldest batch is a protocol error.
   */
  settle(reply: BatchReply): { draws: number; error: EngineError | null } {
    const batch = this.#inflight.peek();
    if (batch === undefined || batch.id !== reply.id) {
      return { draws: 0, error: new EngineError('ERR_SHARD_FAILED', `shard replied to batch ${reply?.id}, expected ${batch?.id}`) };
    }
    this.#inflight.shift();
    if (reply.error !== null) {
      const err = errorFromWire(reply.error);
      for (const op of batch.ops) op.fail(err);
      return { draws: batch.draws, error: err };
    }
    const opErrors = reply.opErrors;
    let nextErr = opErrors === null ? -1 : opErrors[0]![0];
    let errAt = 0;
    const replayed = reply.replayed;
    let nextReplay = replayed === null ? -1 : replayed[0]![0];
    let replayAt = 0;
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
              resolves[k]!({ requestId: first + k, itemId: idx === kEmptyDraw ? null : items[idx]! });
            }
          } else {
            op.resolve!(new DrawBatch(first, items, indices.subarray(at, at + op.count)));
          }
        }
        at += op.count;
      } else if (op.kind === kOpDrawKeyed) {
        let first = op.firstId;
        if (i === nextReplay) {
          first = replayed![replayAt++]![1];
          nextReplay = replayAt < replayed!.length ? replayed![replayAt]![0] : -1;
        }
        if (!failed) {
          const slice = indices.subarray(at, at + op.count);
          if (op.asBatch) op.resolve!(new DrawBatch(first, op.pool.items, slice));
          else op.resolve!({ requestId: first, itemId: slice[0] === kEmptyDraw ? null : op.pool.items[slice[0]!]! });
        }
        at += op.count;
      } else {
        const result = reply.controlResults[c++];
        if (!failed) op.resolve!(result);
      }
    }
    return { draws: batch.draws, error: null };
  }

  /** Reject everything queued and in flight. */
  failAll(err: EngineError): void {
    const queued = this.#ops;
    this.#ops = [];
    this.#queuedDraws = 0;
    this.#runs = [];
    for (const op of queued) op.fail(err);
    for (const batch of this.#inflight.drain()) for (const op of batch.ops) op.fail(err);
  }
}
