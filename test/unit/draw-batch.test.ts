import { describe, expect, it } from 'vitest';
import { DrawBatch } from '../../src/draw-batch.js';
import { kEmptyDraw } from '../../src/selector.js';

const items = ['diamond', 'gold', 'silver', 'rock', 'mud', 'log'];

describe('DrawBatch', () => {
  it('exposes firstRequestId, count, items and indices as given', () => {
    const indices = Uint16Array.of(4, 0, kEmptyDraw, 5);
    const b = new DrawBatch(101, items, indices);
    expect(b.firstRequestId).toBe(101);
    expect(b.count).toBe(4);
    expect(b.items).toBe(items);
    expect(b.indices).toBe(indices);
  });

  it('itemIdAt maps each draw to its item id, and empty draws to null', () => {
    const b = new DrawBatch(1, items, Uint16Array.of(4, 0, kEmptyDraw, 5, 3));
    expect([0, 1, 2, 3, 4].map((i) => b.itemIdAt(i))).toEqual(['mud', 'diamond', null, 'log', 'rock']);
  });

  it('itemIdAt throws RangeError outside 0..count-1', () => {
    const b = new DrawBatch(1, items, Uint16Array.of(1, 2, 3));
    for (const i of [-1, 3, 4, 1e9, 0.5, NaN]) {
      expect(() => b.itemIdAt(i), String(i)).toThrow(RangeError);
    }
    expect(() => b.itemIdAt(3)).toThrow(/3/);
    expect(() => new DrawBatch(1, items, new Uint16Array(0)).itemIdAt(0)).toThrow(RangeError);
  });

  it('counts() tallies item ids, with the null key for empty draws', () => {
    const b = new DrawBatch(1, items, Uint16Array.of(4, 4, 0, kEmptyDraw, 4, kEmptyDraw, 5));
    const c = b.counts();
    expect(c).toBeInstanceOf(Map);
    expect(c.get('mud')).toBe(3);
    expect(c.get('diamond')).toBe(1);
    expect(c.get('log')).toBe(1);
    expect(c.get(null)).toBe(2);
    expect(c.get('gold') ?? 0).toBe(0);
    let sum = 0;
    for (const v of c.values()) sum += v;
    expect(sum).toBe(b.count);
  });

  it('counts() of a batch with no empty draws has no null key; all-empty has only null', () => {
    expect(new DrawBatch(1, items, Uint16Array.of(1, 2)).counts().has(null)).toBe(false);
    const allEmpty = new DrawBatch(1, items, new Uint16Array(5).fill(kEmptyDraw)).counts();
    expect([...allEmpty.entries()]).toEqual([[null, 5]]);
  });

  it('counts() agrees with itemIdAt over a large batch, including the last index (65,533) of a 65,534-item catalog', () => {
    const big = Array.from({ length: 65_534 }, (_, i) => `i${i}`);
    const n = 100_000;
    const indices = new Uint16Array(n);
    for (let i = 0; i < n; i++) indices[i] = i % 7 === 0 ? kEmptyDraw : (i * 2654435761) % 65_534;
    indices[1] = 65_533;
    const b = new DrawBatch(5, big, indices);
    const expected = new Map<string | null, number>();
    for (let i = 0; i < n; i++) {
      const id = b.itemIdAt(i);
      expected.set(id, (expected.get(id) ?? 0) + 1);
    }
    expect(b.counts()).toEqual(expected);
    expect(b.itemIdAt(1)).toBe('i65533');
  });
});
