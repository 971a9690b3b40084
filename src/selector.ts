import { Sfc32 } from './prng.js';

/** A source of uniform integers in [0, bound). */
export interface UniformSource {
  below(bound: number): number;
}

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
  /**
   * 1-based Fenwick tree, padded with +Infinity up to 2 * mask so the descent needs no bounds
   * check (a padded node is never <= target, so it is never taken).
   */
  #tree: Float64Array;
  #mask: number; // highest power of two <= size
  #total = 0;

  constructor(weights: ArrayLike<number>, quantities: ArrayLike<number>, drawn?: ArrayLike<number>) {
    const n = weights.length;
    this.size = n;
    this.weights = Float64Array.from(weights);
    this.quantities = Float64Array.from(quantities);
    this.drawn = drawn ? Float64Array.from(drawn) : new Float64Array(n);
    let mask = 1;
    while (mask * 2 <= n) mask *= 2;
    this.#mask = mask;
    this.#tree = new Float64Array(Math.max(n, 2 * mask) + 1);
    this.#rebuild();
  }

  /** Sum of the weights of available items: the denominator of every draw probability. */
  get totalWeight(): number {
    return this.#total;
  }

  #rebuild(): void {
    const tree = this.#tree;
    tree.fill(0);
    tree.fill(Infinity, this.size + 1);
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

  /** Smallest index whose prefix sum exceeds target (0 <= target < totalWeight). */
  pick(target: number): number {
    const tree = this.#tree;
    let pos = 0;
    for (let step = this.#mask; step > 0; step >>= 1) {
      const s = tree[pos + step]!;
      if (s <= target) {
        pos += step;
        target -= s;
      }
    }
    return pos;
  }

  /** Count draw i: drawn, quantity, and the item leaving the tree when it runs out. */
  #take(i: number): void {
    this.drawn[i]!++;
    const q = this.quantities[i]!;
    if (q > 0) {
      this.quantities[i] = q - 1;
      if (q === 1) this.#add(i, -this.weights[i]!);
    }
  }

  /**
   * Run `count` draws, writing each item index (or kEmptyDraw) into out[offset...].
   * Returns the number of empty draws. Any source with below(bound) works; Sfc32 gets a loop
   * with the generator inlined (its state in locals), about a third faster.
   */
  drawInto(rng: UniformSource, count: number, out: Uint16Array, offset: number): number {
    if (rng instanceof Sfc32) return this.#drawSfc32(rng, count, out, offset);
    for (let d = 0; d < count; d++) {
      if (this.#total === 0) return this.#fillEmpty(out, offset + d, offset + count);
      const i = this.pick(rng.below(this.#total));
      out[offset + d] = i;
      this.#take(i);
    }
    return 0;
  }

  /**
   * Apply draws made elsewhere (a follower replaying its leader's log): each index takes its
   * item as a draw would; kEmptyDraw counts as empty. Returns the empty draws; throws when an
   * index names no item or one that is not available (the logs disagree).
   */
  applyOutcomes(indices: Uint16Array, offset: number, count: number): number {
    let empty = 0;
    for (let d = offset, end = offset + count; d < end; d++) {
      const i = indices[d]!;
      if (i === kEmptyDraw) {
        empty++;
        continue;
      }
      if (i >= this.size || this.quantities[i] === 0) throw new Error(`draw of item ${i}, which is not available`);
      this.#take(i);
    }
    return empty;
  }

  #fillEmpty(out: Uint16Array, from: number, to: number): number {
    // Nothing can become available again without an update, so the rest are empty too.
    out.fill(kEmptyDraw, from, to);
    return to - from;
  }

  #drawSfc32(rng: Sfc32, count: number, out: Uint16Array, offset: number): number {
    const st = rng.state;
    let a = st[0]!;
    let b = st[1]!;
    let c = st[2]!;
    let e = st[3]!;
    let total = this.#total;
    let empty = 0;
    for (let d = 0; d < count; d++) {
      if (total === 0) {
        empty = this.#fillEmpty(out, offset + d, offset + count);
        break;
      }
      let target: number;
      if (total <= 0x1_0000_0000) {
        // sfc32, as Sfc32.nextU32 and Sfc32.below compute it.
        const t = (((a + b) | 0) + e) | 0;
        e = (e + 1) | 0;
        a = b ^ (b >>> 9);
        b = (c + (c << 3)) | 0;
        c = (((c << 21) | (c >>> 11)) + t) | 0;
        target = Math.floor(((t >>> 0) * total) / 0x1_0000_0000);
        if (target >= total) target = total - 1;
      } else {
        st[0] = a;
        st[1] = b;
        st[2] = c;
        st[3] = e;
        target = rng.below(total);
        a = st[0]!;
        b = st[1]!;
        c = st[2]!;
        e = st[3]!;
      }
      const i = this.pick(target);
      out[offset + d] = i;
      this.#take(i);
      total = this.#total;
    }
    st[0] = a;
    st[1] = b;
    st[2] = c;
    st[3] = e;
    return empty;
  }
}
