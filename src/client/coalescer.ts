/**
 * Group batching of draw() calls, as the engine's coordinator does across threads: every
 * draw(pool) call made in one event-loop turn (setImmediate, so calls made from promise
 * continuations of the same turn join too) travels as ONE drawMany request of n draws, and call
 * i of the group resolves with requestId first + i and the item of draw i. One HTTP round trip
 * and one sync on the server then serve the whole group.
 *
 * Each group request gets its own generated Idempotency-Key, reused on every retry of that
 * request, so a group whose response was lost to a dropped connection is answered from the
 * server's record instead of being drawn twice.
 */
import { randomUUID } from 'node:crypto';
import type { DrawResult } from '../index.js';
import { kEmptyDrawIndex, type DrawsResponse } from './wire-types.js';

type Resolve = (value: DrawResult) => void;
type Reject = (err: unknown) => void;

// One executor for every promise (as the engine's coordinator does): the resolvers are taken
// from module variables right after `new Promise`, so no closure is created per draw() call.
let capturedResolve: Resolve = () => {};
let capturedReject: Reject = () => {};
function capture(resolve: Resolve, reject: Reject): void {
  capturedResolve = resolve;
  capturedReject = reject;
}

/** The draw() calls on one pool waiting for this turn's flush. */
interface Group {
  pool: string;
  resolves: Resolve[];
  rejects: Reject[];
}

export interface CoalescerDeps {
  /** POST /v1/pools/:pool/draws with indices; resolves with the decoded response. */
  drawMany(pool: string, count: number, idempotencyKey: string): Promise<DrawsResponse>;
  /** Largest group sent as one request; larger groups are split. */
  maxGroup: number;
}

/** A fresh key per group request: 'rpc-' + a random UUID (visible ASCII, 40 characters). */
export function newIdempotencyKey(): string {
  return `rpc-${randomUUID()}`;
}

export class DrawCoalescer {
  readonly #deps: CoalescerDeps;
  #groups = new Map<string, Group>();
  #scheduled = false;
  readonly #inflight = new Set<Promise<void>>();
  readonly #flush = (): void => this.flush();
  /** Group requests sent (each is one HTTP request, retries aside). */
  requests = 0;

  constructor(deps: CoalescerDeps) {
    this.#deps = deps;
  }

  add(pool: string): Promise<DrawResult> {
    let group = this.#groups.get(pool);
    if (group === undefined) {
      group = { pool, resolves: [], rejects: [] };
      this.#groups.set(pool, group);
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(this.#flush);
      }
    }
    const p = new Promise<DrawResult>(capture);
    group.resolves.push(capturedResolve);
    group.rejects.push(capturedReject);
    return p;
  }

  /** Send every waiting group now. */
  flush(): void {
    this.#scheduled = false;
    const groups = this.#groups;
    if (groups.size === 0) return;
    this.#groups = new Map();
    for (const g of groups.values()) {
      for (let start = 0; start < g.resolves.length; start += this.#deps.maxGroup) {
        const end = Math.min(g.resolves.length, start + this.#deps.maxGroup);
        this.#send(g.pool, g.resolves.slice(start, end), g.rejects.slice(start, end));
      }
    }
  }

  #send(pool: string, resolves: Resolve[], rejects: Reject[]): void {
    this.requests++;
    const run = this.#deps.drawMany(pool, resolves.length, newIdempotencyKey()).then(
      (r) => {
        const { firstRequestId, items, indices } = r;
        for (let i = 0; i < resolves.length; i++) {
          const idx = indices[i]!;
          resolves[i]!({ requestId: firstRequestId + i, itemId: idx === kEmptyDrawIndex ? null : items[idx]! });
        }
      },
      (err: unknown) => {
        for (const reject of rejects) reject(err);
      },
    );
    this.#inflight.add(run);
    void run.finally(() => this.#inflight.delete(run));
  }

  /** Flush what waits and resolve once every group request has settled. */
  async drain(): Promise<void> {
    this.flush();
    while (this.#inflight.size > 0) await Promise.all(this.#inflight);
  }
}
