import type { ItemSpec } from '../catalog.js';
import { kMaxTotalWeight } from '../catalog.js';
import { EngineError, show } from '../errors.js';
import { KeyWindow, type WindowLimits } from '../idempotency.js';
import type { PoolInit, PoolStateReply } from '../protocol.js';
import { WeightedSelector } from '../selector.js';
import type { SnapshotPool } from '../snapshot/format.js';

/** One pool as its shard holds it. */
export interface ShardPool {
  ref: number;
  id: string;
  itemIds: string[];
  selector: WeightedSelector;
  lastRequestId: number;
  /** Sum of all catalog weights (available or not), kept <= 2^48. */
  weightSum: number;
  /** The pool's idempotency window. */
  window: KeyWindow;
}

/** A shard's pools by ref (the small number its WAL records use) and by id. */
export class ShardPools {
  readonly #limits: WindowLimits;
  readonly #byRef: (ShardPool | undefined)[] = [];
  readonly #byId = new Map<string, ShardPool>();
  /** Highest request id any of the shard's pools (or the engine at start) has seen. */
  maxRequestId = 0;

  constructor(limits: WindowLimits) {
    this.#limits = limits;
  }

  get(ref: number): ShardPool | undefined {
    return this.#byRef[ref];
  }

  byId(id: string): ShardPool | undefined {
    return this.#byId.get(id);
  }

  /** Refs in use, ascending. */
  refs(): number[] {
    const out: number[] = [];
    for (let r = 0; r < this.#byRef.length; r++) if (this.#byRef[r] !== undefined) out.push(r);
    return out;
  }

  /** A ref no pool uses (a follower names the pools it learns from the stream). */
  freeRef(): number {
    return this.#byRef.length;
  }

  /** A pool recovered from disk, or handed over at a restart. */
  load(p: PoolInit): ShardPool {
    return this.#put({
      ref: p.ref,
      id: p.id,
      itemIds: p.itemIds,
      selector: new WeightedSelector(p.weights, p.quantities, p.drawn),
      lastRequestId: p.lastRequestId,
      weightSum: p.weights.reduce((a, b) => a + b, 0),
      window: new KeyWindow(this.#limits, p.keys),
    });
  }

  create(ref: number, id: string, items: ItemSpec[]): ShardPool {
    return this.#put({
      ref,
      id,
      itemIds: items.map((i) => i.id),
      selector: new WeightedSelector(
        items.map((i) => i.weight),
        items.map((i) => i.quantity),
      ),
      lastRequestId: 0,
      weightSum: items.reduce((a, i) => a + i.weight, 0),
      window: new KeyWindow(this.#limits),
    });
  }

  #put(p: ShardPool): ShardPool {
    this.#byRef[p.ref] = p;
    this.#byId.set(p.id, p);
    if (p.lastRequestId > this.maxRequestId) this.maxRequestId = p.lastRequestId;
    return p;
  }

  /** Why a weight update would break the 2^48 bound, or undefined. */
  checkWeight(pool: ShardPool, itemIndex: number, weight: number): EngineError | undefined {
    if (Number.isNaN(weight)) return undefined;
    const sum = pool.weightSum - pool.selector.weights[itemIndex]! + weight;
    if (sum <= kMaxTotalWeight) return undefined;
    return new EngineError('ERR_INVALID_ARGUMENT', `updateItem(${show(pool.id)}): weight ${weight} would make the pool's total weight ${sum} > 2^48`, {
      details: { poolId: pool.id, value: weight },
    });
  }

  update(pool: ShardPool, itemIndex: number, weight: number, quantity: number): void {
    if (!Number.isNaN(weight)) pool.weightSum += weight - pool.selector.weights[itemIndex]!;
    pool.selector.update(itemIndex, weight, quantity);
  }

  /** Draws `first .. first + count - 1` were made on the pool. */
  drew(pool: ShardPool, first: number, count: number): void {
    pool.lastRequestId = first + count - 1;
    if (pool.lastRequestId > this.maxRequestId) this.maxRequestId = pool.lastRequestId;
  }

  state(pool: ShardPool): PoolStateReply {
    const sel = pool.selector;
    return { id: pool.id, itemIds: pool.itemIds, lastRequestId: pool.lastRequestId, weights: sel.weights.slice(), quantities: sel.quantities.slice(), drawn: sel.drawn.slice() };
  }

  /** A copy for a snapshot (typed arrays, transferred to the writer). */
  copy(pool: ShardPool): SnapshotPool {
    return { ...this.state(pool), keys: pool.window.toArray() };
  }
}
