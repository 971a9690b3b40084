import { EngineError, show } from '../errors.js';
import type { KeyedOutcome, WindowLimits } from '../idempotency.js';
import type { PoolMeta } from './pool-meta.js';

interface Entry {
  pool: PoolMeta;
  count: number;
}

/**
 * Which pool and count each retained idempotency key belongs to, across every shard, so that a
 * key reused on another pool or with another count is refused before it reaches a shard (the
 * shards hold the outcomes, each for its own pools). Each pool's keys are evicted by the same
 * rule as its shard's window; a key is taken when its call is sent, so a concurrent call with
 * it on another pool is refused too.
 */
export class IdempotencyIndex {
  readonly #limits: WindowLimits;
  readonly #byKey = new Map<string, Entry>();
  /** Per pool, its keys in insertion order (oldest first) with their counts. */
  readonly #perPool = new Map<PoolMeta, { keys: Map<string, number>; draws: number }>();

  constructor(limits: WindowLimits) {
    this.#limits = limits;
  }

  /** The error for `key` used on `pool` for `count` draws, or undefined when it may go on. */
  check(key: string, pool: PoolMeta, count: number): EngineError | undefined {
    const e = this.#byKey.get(key);
    if (e === undefined || (e.pool === pool && e.count === count)) return undefined;
    const what = e.pool === pool ? `for ${e.count} draws, not ${count}` : `on pool ${show(e.pool.id)}, not ${show(pool.id)}`;
    return new EngineError('ERR_IDEMPOTENCY_MISMATCH', `idempotency key ${show(key)} was used ${what}`, {
      details: { idempotencyKey: key, poolId: pool.id, count, originalPoolId: e.pool.id, originalCount: e.count },
    });
  }

  has(key: string): boolean {
    return this.#byKey.has(key);
  }

  add(key: string, pool: PoolMeta, count: number): void {
    let mine = this.#perPool.get(pool);
    if (mine === undefined) this.#perPool.set(pool, (mine = { keys: new Map(), draws: 0 }));
    this.#byKey.set(key, { pool, count });
    mine.keys.set(key, count);
    mine.draws += count;
    while (mine.keys.size > 1 && (mine.keys.size > this.#limits.keys || mine.draws > this.#limits.draws)) {
      const [oldest, n] = mine.keys.entries().next().value as [string, number];
      mine.keys.delete(oldest);
      mine.draws -= n;
      if (this.#byKey.get(oldest)?.pool === pool) this.#byKey.delete(oldest);
    }
  }

  /** A call that failed before drawing gives its key back. */
  remove(key: string, pool: PoolMeta): void {
    const mine = this.#perPool.get(pool);
    const n = mine?.keys.get(key);
    if (mine === undefined || n === undefined) return;
    mine.keys.delete(key);
    mine.draws -= n;
    if (this.#byKey.get(key)?.pool === pool) this.#byKey.delete(key);
  }

  /** The pool's keys are exactly these (recovered at open or at a shard restart), oldest first. */
  reset(pool: PoolMeta, outcomes: readonly KeyedOutcome[]): void {
    const mine = this.#perPool.get(pool);
    if (mine !== undefined) {
      for (const key of mine.keys.keys()) if (this.#byKey.get(key)?.pool === pool) this.#byKey.delete(key);
      this.#perPool.delete(pool);
    }
    for (const o of outcomes) this.add(o.key, pool, o.count);
  }
}
