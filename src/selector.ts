import type { Sfc32 } from './prng.js';

/** Index reported for a draw that found nothing available. */
export const kEmptyDraw = 0xffff;

/**
 * Weighted selection over one pool's catalog with a Fenwick (binary indexed) tree of the
 * *effective* weights: an item's weight while it is available, 0 once it runs out. Draw and
 * update are O(log n). Weights are integers and every partial sum stays <= 2^48, so Float64
 * arithmetic is exact.
 */
export class WeightedSelector {
  readonly size: number;
  readonly weights: Float64Array;
  /** -1 = unlimited. */
  readonly quantities: Float64Array;
  readonly drawn: Float64Array;
  #tree: Float64Array; // 1-based
  #mask: number; // highest power of two <= size
  #total = 0;

  constructor(weights: ArrayLike<number>, quantities: ArrayLike<number>, drawn?: ArrayLike<number>) {
    const n = weights.length;
    this.size = n;
    this.weights = Float64Array.from(weights);
    this.quantities = Float64Array.from(quantities);
    this.drawn = drawn ? Float64Array.from(drawn) : new Float64Array(n);
    this.#tree = new Float64Array(n + 1);
    let mask = 1;
    while (mask * 2 <= n) mask *= 2;
    this.#mask = mask;
    this.#rebuild();
  }

  /** Sum of the weights of available items: the denominator of every draw probability. */
  get totalWeight(): number {
    return this.#total;
  }

  #rebuild(): void {
    const tree = this.#tree;
    tree.fill(0);
    let total = 0;
    for (let i = 0; i < this.size; i++) {
      const w = this.#effective(i);
      total += w;
      tree[i + 1] = w;
    }
    // Linear-time Fenwick construction: push each node's sum to its parent.
    for (let i = 1; i <= this.size; i++) {
      const parent = i + (i & -i);
      if (parent <= this.size) tree[parent]! += tree[i]!;
    }
    this.#total = total;
  }

  #effective(i: number): number {
    const q = this.quantities[i]!;
    return q !== 0 ? this.weights[i]! : 0;
  }

  #add(i: number, delta: number): void {
    const tree = this.#tree;
    const n = this.size;
    for (let k = i + 1; k <= n; k += k & -k) tree[k]! += delta;
    this.#total += delta;
  }

  /** Set weight and/or quantity of item i (NaN leaves a field unchanged). */
  update(i: number, weight: number, quantity: number): void {
    const before = this.#effective(i);
    if (!Number.isNaN(weight)) this.weights[i] = weight;
    if (!Number.isNaN(quantity)) this.quantities[i] = quantity;
    const after = this.#effective(i);
    if (after !== before) this.#add(i, after - before);
  }

  /**
   * Run `count` draws, writing each item index (or kEmptyDraw) into out[offset...].
   * Returns the number of empty draws.
   */
  drawInto(rng: Sfc32, count: number, out: Uint16Array, offset: number): number {
    const tree = this.#tree;
    const n = this.size;
    const quantities = this.quantities;
    const drawn = this.drawn;
    let empty = 0;
    for (let d = 0; d < count; d++) {
      const total = this.#total;
      if (total === 0) {
        // Nothing can become available again without an update, so the rest are empty too.
        out.fill(kEmptyDraw, offset + d, offset + count);
        empty += count - d;
        break;
      }
      let target = rng.below(total);
      // Fenwick descent: find the smallest index whose prefix sum exceeds target.
      let pos = 0;
      for (let step = this.#mask; step > 0; step >>= 1) {
        const next = pos + step;
        if (next <= n) {
          const s = tree[next]!;
          if (s <= target) {
            pos = next;
            target -= s;
          }
        }
      }
      const i = pos; // 0-based item index
      out[offset + d] = i;
      drawn[i]!++;
      const q = quantities[i]!;
      if (q > 0) {
        quantities[i] = q - 1;
        if (q === 1) this.#add(i, -this.weights[i]!);
      }
    }
    return empty;
  }
}
