import { kEmptyDraw } from './selector.js';

/**
 * The outcome of drawMany: request ids firstRequestId .. firstRequestId + count - 1, in order,
 * with one Uint16 item index per draw (0xFFFF = empty). No per-draw objects are built unless
 * asked for.
 */
export class DrawBatch {
  readonly firstRequestId: number;
  readonly count: number;
  /** The pool's item ids, by index. */
  readonly items: readonly string[];
  readonly indices: Uint16Array;

  constructor(firstRequestId: number, items: readonly string[], indices: Uint16Array) {
    this.firstRequestId = firstRequestId;
    this.count = indices.length;
    this.items = items;
    this.indices = indices;
  }

  /** Item id of draw i (0-based), or null for an empty draw. */
  itemIdAt(i: number): string | null {
    const idx = this.indices[i];
    if (idx === undefined) throw new RangeError(`draw index ${i} is out of range 0..${this.count - 1}`);
    return idx === kEmptyDraw ? null : this.items[idx]!;
  }

  /** Item id -> number of draws; the key null counts empty draws. */
  counts(): Map<string | null, number> {
    const tally = new Float64Array(this.items.length);
    let empty = 0;
    const indices = this.indices;
    for (let i = 0; i < indices.length; i++) {
      const idx = indices[i]!;
      if (idx === kEmptyDraw) empty++;
      else tally[idx]!++;
    }
    const out = new Map<string | null, number>();
    for (let i = 0; i < tally.length; i++) if (tally[i]! > 0) out.set(this.items[i]!, tally[i]!);
    if (empty > 0) out.set(null, empty);
    return out;
  }
}
