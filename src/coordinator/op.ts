import type { Control } from '../protocol.js';
import type { PoolMeta } from './pool-meta.js';

export type Resolve = (value: any) => void;
export type Reject = (err: unknown) => void;

/**
 * One queued operation. A draw() "run" collects every draw() call for one pool in one batch
 * (one resolver per call, no other per-draw object); drawMany and control ops are one call
 * each. The same shape for every kind keeps the hot path monomorphic.
 */
export class Op {
  kind: number;
  pool: PoolMeta;
  count: number;
  /** draw() runs: one resolver per call (a rejection is delivered through it, see fail()). */
  resolves: Resolve[] | null = null;
  /** drawMany and controls. */
  resolve: Resolve | null = null;
  reject: Reject | null = null;
  control: Control | null;
  firstId = 0;
  /** Keyed draws: the idempotency key, and whether the caller gets a DrawBatch (drawMany). */
  key: string | null = null;
  asBatch = false;

  constructor(kind: number, pool: PoolMeta, count: number, control: Control | null) {
    this.kind = kind;
    this.pool = pool;
    this.count = count;
    this.control = control;
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

// One executor for every promise: capturing the resolvers through module variables avoids a
// closure per draw() call.
let capturedResolve: Resolve = () => {};
let capturedReject: Reject = () => {};
function capture(resolve: Resolve, reject: Reject): void {
  capturedResolve = resolve;
  capturedReject = reject;
}

/**
 * A new promise whose resolvers are then read with lastResolve() / lastReject(): no closure and
 * no tuple per call on the draw() path.
 */
export function newPending<T>(): Promise<T> {
  return new Promise<T>(capture);
}

export function lastResolve(): Resolve {
  return capturedResolve;
}

export function lastReject(): Reject {
  return capturedReject;
}
