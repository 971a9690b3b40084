import type { KeyedOutcome } from './idempotency.js';

/*
 * The one shape of a pool's state. The shard's init, a snapshot's pools, what recovery hands
 * over and a state reply are all PoolData (with typed arrays where they cross a thread, plain
 * arrays on disk); PoolState is its public form, one object per item.
 */

/** One pool's full state, items in catalog order. */
export interface PoolData<A extends ArrayLike<number> = number[]> {
  id: string;
  itemIds: string[];
  weights: A;
  /** -1 = unlimited. */
  quantities: A;
  /** Successful draws over the pool's whole life. */
  drawn: A;
  /** Request id of the pool's latest draw (0 before any). */
  lastRequestId: number;
  /** The pool's idempotency window, oldest first (absent: empty). */
  keys?: KeyedOutcome[];
}

export interface PoolItemState {
  id: string;
  weight: number;
  /** -1 = unlimited. */
  quantity: number;
  /** Successful draws over the pool's whole life. */
  drawn: number;
}

export interface PoolState {
  id: string;
  /** Request id of the pool's latest draw (0 before any). */
  lastRequestId: number;
  items: PoolItemState[];
}

/** The public form: one object per item. */
export function toPoolState(d: PoolData<ArrayLike<number>>): PoolState {
  return {
    id: d.id,
    lastRequestId: d.lastRequestId,
    items: d.itemIds.map((id, i) => ({ id, weight: d.weights[i]!, quantity: d.quantities[i]!, drawn: d.drawn[i]! })),
  };
}

/** A copy with plain arrays (the file form, and what recovery works on). */
export function plainPoolData(d: PoolData<ArrayLike<number>>): PoolData {
  return {
    id: d.id,
    itemIds: d.itemIds.slice(),
    weights: Array.from(d.weights),
    quantities: Array.from(d.quantities),
    drawn: Array.from(d.drawn),
    lastRequestId: d.lastRequestId,
    keys: d.keys?.slice() ?? [],
  };
}
