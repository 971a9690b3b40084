import { shardOf } from '../hash.js';
import { PoolMeta } from './pool-meta.js';

/**
 * Where every pool lives: its shard (a stable hash of its id, so a pool keeps its shard for
 * a given shard count) and its ref inside that shard (a small number assigned in order).
 */
export class PoolDirectory {
  readonly #pools = new Map<string, PoolMeta>();
  readonly #nextRef: number[];

  constructor(shards: number) {
    this.#nextRef = new Array<number>(shards).fill(0);
  }

  get(id: unknown): PoolMeta | undefined {
    return typeof id === 'string' ? this.#pools.get(id) : undefined;
  }

  has(id: string): boolean {
    return this.#pools.has(id);
  }

  register(id: string, itemIds: readonly string[], ready: boolean): PoolMeta {
    const k = shardOf(id, this.#nextRef.length);
    const meta = new PoolMeta(id, this.#nextRef[k]!++, k, itemIds, ready);
    this.#pools.set(id, meta);
    return meta;
  }

  /** A pool a follower's shard created from its leader's log, under the ref the shard gave it. */
  registerAt(id: string, ref: number, itemIds: readonly string[]): PoolMeta {
    const k = shardOf(id, this.#nextRef.length);
    const meta = new PoolMeta(id, ref, k, itemIds, true);
    this.#nextRef[k] = Math.max(this.#nextRef[k]!, ref + 1);
    this.#pools.set(id, meta);
    return meta;
  }

  /** Forget a pool whose creation failed (if it is still the one registered). */
  unregister(meta: PoolMeta): void {
    if (this.#pools.get(meta.id) === meta && !meta.ready) this.#pools.delete(meta.id);
  }

  /** Ids of the pools whose creation is logged. */
  readyIds(): string[] {
    const out: string[] = [];
    for (const meta of this.#pools.values()) if (meta.ready) out.push(meta.id);
    return out;
  }
}
