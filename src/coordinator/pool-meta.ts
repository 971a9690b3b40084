import type { ShardClient, Op } from './shard-client.js';

/**
 * What the coordinator knows of a pool: where it lives and its item ids. No quantities or
 * weights: those belong to the shard.
 */
export class PoolMeta {
  readonly id: string;
  readonly ref: number;
  readonly shard: ShardClient;
  readonly items: readonly string[];
  readonly itemIndex: Map<string, number>;
  /** False until the shard has logged the pool's creation. */
  ready: boolean;
  /** The draw() run for this pool in the shard's unsent batch, which new draw() calls join. */
  run: Op | null = null;

  constructor(id: string, ref: number, shard: ShardClient, items: readonly string[], ready: boolean) {
    this.id = id;
    this.ref = ref;
    this.shard = shard;
    this.items = Object.freeze(items.slice());
    this.itemIndex = new Map(items.map((item, i) => [item, i]));
    this.ready = ready;
  }
}
