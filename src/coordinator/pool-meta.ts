/**
 * What the coordinator knows of a pool: where it lives and its item ids. No quantities or
 * weights: those belong to the shard.
 */
export class PoolMeta {
  readonly id: string;
  /** Small number naming the pool inside its shard (WAL records use it). */
  readonly ref: number;
  readonly shard: number;
  readonly items: readonly string[];
  readonly itemIndex: Map<string, number>;
  /** False until the shard has logged the pool's creation. */
  ready: boolean;

  constructor(id: string, ref: number, shard: number, items: readonly string[], ready: boolean) {
    this.id = id;
    this.ref = ref;
    this.shard = shard;
    this.items = Object.freeze(items.slice());
    this.itemIndex = new Map(items.map((item, i) => [item, i]));
    this.ready = ready;
  }
}
