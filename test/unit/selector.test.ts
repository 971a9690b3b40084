import { describe, expect, it } from 'vitest';
import { Sfc32 } from '../../src/prng.js';
import { kEmptyDraw, WeightedSelector } from '../../src/selector.js';

/*
 * Chi-square critical values at p = 0.001 (upper tail) for the degrees of freedom used here
 * (df = number of categories - 1):
 *
 *   df  | critical value
 *   ----+---------------
 *    1  | 10.828
 *    2  | 13.816
 *    3  | 16.266
 *    4  | 18.467
 *    5  | 20.515
 *
 * All draws use fixed seeds, so each test is deterministic.
 */
const kChi2: Record<number, number> = { 1: 10.828, 2: 13.816, 3: 16.266, 4: 18.467, 5: 20.515 };

interface Item {
  id: string;
  weight: number;
  quantity: number;
}

/** The sample catalog of DESIGN.md's domain (weight / quantity; -1 = unlimited). */
const kSample: Item[] = [
  { id: 'diamond', weight: 10, quantity: 100 },
  { id: 'gold', weight: 20, quantity: 1000 },
  { id: 'silver', weight: 30, quantity: 10_000 },
  { id: 'rock', weight: 40, quantity: 100_000 },
  { id: 'mud', weight: 70, quantity: -1 },
  { id: 'log', weight: 50, quantity: -1 },
];

function selectorOf(items: Item[]): WeightedSelector {
  return new WeightedSelector(
    items.map((i) => i.weight),
    items.map((i) => i.quantity),
  );
}

/**
 * Pearson's statistic of `counts` (over the listed categories only) against probabilities
 * proportional to `weights`. Returns the statistic and the degrees of freedom.
 */
function chiSquare(counts: ArrayLike<number>, weights: ArrayLike<number>, categories: number[]): { stat: number; df: number } {
  let n = 0;
  let w = 0;
  for (const i of categories) {
    n += counts[i]!;
    w += weights[i]!;
  }
  let stat = 0;
  for (const i of categories) {
    const expected = (n * weights[i]!) / w;
    expect(expected, 'expected count per category must be >= 5 for the test to be valid').toBeGreaterThanOrEqual(5);
    stat += (counts[i]! - expected) ** 2 / expected;
  }
  return { stat, df: categories.length - 1 };
}

function expectFits(counts: ArrayLike<number>, weights: ArrayLike<number>, categories: number[]): void {
  const { stat, df } = chiSquare(counts, weights, categories);
  const critical = kChi2[df];
  if (critical === undefined) throw new Error(`no critical value tabulated for df=${df}`);
  expect(stat, `chi-square ${stat.toFixed(2)} with df=${df}`).toBeLessThan(critical);
}

function tally(out: Uint16Array, size: number, from = 0, to = out.length): Float64Array {
  const counts = new Float64Array(size);
  for (let i = from; i < to; i++) {
    const v = out[i]!;
    if (v === kEmptyDraw) throw new Error(`unexpected empty draw at ${i}`);
    counts[v]!++;
  }
  return counts;
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** An rng stand-in that returns the given targets from below(); records the bounds asked for. */
function scripted(targets: number[]): { rng: Sfc32; bounds: number[] } {
  const bounds: number[] = [];
  let k = 0;
  const rng = {
    below(bound: number): number {
      bounds.push(bound);
      return targets[k++]!;
    },
  } as unknown as Sfc32;
  return { rng, bounds };
}

describe('kEmptyDraw', () => {
  it('is 0xFFFF', () => {
    expect(kEmptyDraw).toBe(0xffff);
  });
});

describe('WeightedSelector basics', () => {
  it('reports the total weight of available items only', () => {
    const sel = new WeightedSelector([5, 7, 11, 13], [0, 3, -1, 0]);
    expect(sel.totalWeight).toBe(7 + 11);
    expect(sel.size).toBe(4);
    expect(Array.from(sel.weights)).toEqual([5, 7, 11, 13]);
    expect(Array.from(sel.quantities)).toEqual([0, 3, -1, 0]);
    expect(Array.from(sel.drawn)).toEqual([0, 0, 0, 0]);
  });

  it('copies its inputs (callers may reuse their arrays)', () => {
    const w = [1, 2];
    const q = [5, 5];
    const d = [1, 1];
    const sel = new WeightedSelector(w, q, d);
    w[0] = 100;
    q[0] = 0;
    d[0] = 50;
    expect(sel.weights[0]).toBe(1);
    expect(sel.quantities[0]).toBe(5);
    expect(sel.drawn[0]).toBe(1);
  });

  it('maps every target in [0, totalWeight) to the item owning that slice of the weight line', () => {
    // Items 1 and 4 are unavailable (quantity 0): their slices have zero width.
    const weights = [3, 4, 2, 5, 6, 1, 7];
    const quantities = [-1, 0, -1, -1, 0, -1, -1];
    const sel = new WeightedSelector(weights, quantities);
    const total = 3 + 2 + 5 + 1 + 7;
    expect(sel.totalWeight).toBe(total);
    const expected: number[] = [];
    for (let i = 0; i < weights.length; i++) if (quantities[i] !== 0) for (let k = 0; k < weights[i]!; k++) expected.push(i);
    const { rng, bounds } = scripted(range(total));
    const out = new Uint16Array(total);
    expect(sel.drawInto(rng, total, out, 0)).toBe(0);
    expect(Array.from(out)).toEqual(expected);
    // Each draw asks the rng for a number below the current total weight.
    expect(bounds.every((b) => b === total)).toBe(true);
  });

  it('writes only out[offset .. offset+count) and returns the number of empty draws', () => {
    const sel = new WeightedSelector([1, 1], [2, 1]);
    const out = new Uint16Array(12).fill(0x1234);
    const empty = sel.drawInto(Sfc32.fromSeed(1, 0), 6, out, 3);
    expect(empty).toBe(3);
    expect(Array.from(out.subarray(0, 3))).toEqual([0x1234, 0x1234, 0x1234]);
    expect(Array.from(out.subarray(9))).toEqual([0x1234, 0x1234, 0x1234]);
    const drawn = Array.from(out.subarray(3, 9));
    expect(drawn.slice(3)).toEqual([kEmptyDraw, kEmptyDraw, kEmptyDraw]);
    expect(drawn.slice(0, 3).sort()).toEqual([0, 0, 1]);
  });

  it('a count of 0 draws nothing', () => {
    const sel = new WeightedSelector([1], [1]);
    const out = new Uint16Array(1).fill(7);
    expect(sel.drawInto(Sfc32.fromSeed(1, 0), 0, out, 0)).toBe(0);
    expect(out[0]).toBe(7);
    expect(sel.quantities[0]).toBe(1);
  });

  it('keeps the drawn counts it was constructed with and adds to them', () => {
    const sel = new WeightedSelector([1, 1], [-1, 0], [40, 2]);
    sel.drawInto(Sfc32.fromSeed(1, 0), 10, new Uint16Array(10), 0);
    expect(Array.from(sel.drawn)).toEqual([50, 2]);
  });

  it('draws unlimited items forever without touching their quantity', () => {
    const sel = new WeightedSelector([1, 3], [-1, -1]);
    const out = new Uint16Array(10_000);
    expect(sel.drawInto(Sfc32.fromSeed(2, 0), out.length, out, 0)).toBe(0);
    expect(Array.from(sel.quantities)).toEqual([-1, -1]);
    expect(sel.drawn[0]! + sel.drawn[1]!).toBe(10_000);
    expect(sel.totalWeight).toBe(4);
  });
});

describe('WeightedSelector exhaustion', () => {
  it('yields exactly N successful draws for N units, then only empty draws', () => {
    const quantities = [3, 5, 7, 0, 1];
    const sel = new WeightedSelector([10, 1, 100, 50, 2], quantities);
    const out = new Uint16Array(100);
    const empty = sel.drawInto(Sfc32.fromSeed(3, 0), 100, out, 0);
    expect(empty).toBe(100 - 16);
    for (let i = 0; i < 16; i++) expect(out[i]).not.toBe(kEmptyDraw);
    for (let i = 16; i < 100; i++) expect(out[i]).toBe(kEmptyDraw);
    expect(Array.from(tally(out, 5, 0, 16))).toEqual(quantities);
    expect(Array.from(sel.quantities)).toEqual([0, 0, 0, 0, 0]);
    expect(Array.from(sel.drawn)).toEqual(quantities);
    expect(sel.totalWeight).toBe(0);
  });

  it('behaves the same when drawn one at a time, and never goes below zero', () => {
    const quantities = [2, 4, 6];
    const sel = new WeightedSelector([5, 3, 1], quantities);
    const rng = Sfc32.fromSeed(4, 0);
    const out = new Uint16Array(40);
    let empty = 0;
    for (let d = 0; d < 40; d++) {
      empty += sel.drawInto(rng, 1, out, d);
      for (const q of sel.quantities) expect(q).toBeGreaterThanOrEqual(0);
    }
    expect(empty).toBe(40 - 12);
    expect(Array.from(out.subarray(12)).every((v) => v === kEmptyDraw)).toBe(true);
    expect(Array.from(tally(out, 3, 0, 12))).toEqual(quantities);
    expect(Array.from(sel.drawn)).toEqual(quantities);
  });

  it('a pool that starts empty yields only empty draws and never asks the rng', () => {
    const sel = new WeightedSelector([5, 3], [0, 0]);
    const { rng, bounds } = scripted([]);
    const out = new Uint16Array(5);
    expect(sel.drawInto(rng, 5, out, 0)).toBe(5);
    expect(Array.from(out)).toEqual([kEmptyDraw, kEmptyDraw, kEmptyDraw, kEmptyDraw, kEmptyDraw]);
    expect(bounds).toEqual([]);
    expect(Array.from(sel.drawn)).toEqual([0, 0]);
  });

  it('exhausts the sample catalog exactly, with unlimited items removed', () => {
    // Same catalog with the unlimited items taken out: 111,100 units in all.
    const finite = kSample.filter((i) => i.quantity !== -1);
    const units = finite.reduce((a, i) => a + i.quantity, 0);
    const sel = selectorOf(finite);
    const out = new Uint16Array(units + 1000);
    const empty = sel.drawInto(Sfc32.fromSeed(5, 0), out.length, out, 0);
    expect(empty).toBe(1000);
    expect(Array.from(tally(out, finite.length, 0, units))).toEqual(finite.map((i) => i.quantity));
    expect(Array.from(out.subarray(units)).every((v) => v === kEmptyDraw)).toBe(true);
    expect(Array.from(sel.drawn)).toEqual(finite.map((i) => i.quantity));
    expect(Array.from(sel.quantities)).toEqual(finite.map(() => 0));
  });

  it('tracks quantities and drawn exactly over the sample catalog', () => {
    const sel = selectorOf(kSample);
    const out = new Uint16Array(50_000);
    expect(sel.drawInto(Sfc32.fromSeed(6, 0), out.length, out, 0)).toBe(0);
    const counts = tally(out, kSample.length);
    for (let i = 0; i < kSample.length; i++) {
      expect(sel.drawn[i]).toBe(counts[i]);
      const q = kSample[i]!.quantity;
      expect(sel.quantities[i]).toBe(q === -1 ? -1 : q - counts[i]!);
      expect(sel.quantities[i]).toBeGreaterThanOrEqual(-1);
    }
    // diamond and gold are gone after 50k draws, and never drawn beyond their stock.
    expect(counts[0]).toBe(100);
    expect(counts[1]).toBe(1000);
    expect(sel.totalWeight).toBe(30 + 40 + 70 + 50);
  });
});

describe('WeightedSelector distribution (chi-square at p = 0.001)', () => {
  it('sample catalog before anything runs out (df=5, critical 20.515)', () => {
    // 1000 draws per fresh selector keep diamond (100 units, ~43 expected) from running out,
    // so every draw sees all six items; 200 selectors give 200,000 draws in total.
    const counts = new Float64Array(kSample.length);
    const out = new Uint16Array(1000);
    for (let run = 0; run < 200; run++) {
      const sel = selectorOf(kSample);
      sel.drawInto(Sfc32.fromSeed(1000 + run, 0), out.length, out, 0);
      for (const q of sel.quantities) expect(q).not.toBe(0);
      const c = tally(out, kSample.length);
      for (let i = 0; i < c.length; i++) counts[i]! += c[i]!;
    }
    expectFits(
      counts,
      kSample.map((i) => i.weight),
      range(6),
    );
  });

  it('sample catalog after diamond and gold ran out: only available items, renormalized (df=3, critical 16.266)', () => {
    const counts = new Float64Array(kSample.length);
    const one = new Uint16Array(1);
    const out = new Uint16Array(30_000);
    for (let run = 0; run < 5; run++) {
      const sel = selectorOf(kSample);
      const rng = Sfc32.fromSeed(2000 + run, 0);
      let guard = 0;
      while (sel.quantities[0] !== 0 || sel.quantities[1] !== 0) {
        sel.drawInto(rng, 1, one, 0);
        if (++guard > 1_000_000) throw new Error('diamond and gold never ran out');
      }
      expect(sel.totalWeight).toBe(30 + 40 + 70 + 50);
      sel.drawInto(rng, out.length, out, 0);
      // silver and rock must still be in stock for the phase to have a fixed distribution.
      expect(sel.quantities[2]).toBeGreaterThan(0);
      expect(sel.quantities[3]).toBeGreaterThan(0);
      const c = tally(out, kSample.length);
      expect(c[0]).toBe(0);
      expect(c[1]).toBe(0);
      for (let i = 0; i < c.length; i++) counts[i]! += c[i]!;
    }
    const weights = kSample.map((i) => i.weight);
    expectFits(counts, weights, [2, 3, 4, 5]);
    // And the counts do not fit the full catalog's proportions (the test has power): silver's
    // share is 30/190 now, not 30/230.
    const share = counts[2]! / 150_000;
    expect(Math.abs(share - 30 / 190)).toBeLessThan(0.005);
  });

  it('skewed weights 1/10/100/1000, unlimited (df=3, critical 16.266)', () => {
    const weights = [1, 10, 100, 1000];
    const sel = new WeightedSelector(weights, [-1, -1, -1, -1]);
    const out = new Uint16Array(300_000);
    sel.drawInto(Sfc32.fromSeed(7, 0), out.length, out, 0);
    expectFits(tally(out, 4), weights, range(4));
  });

  it('weights above 2^32 (the 53-bit rng path), total just under 2^48 (df=2, critical 13.816)', () => {
    const weights = [2 ** 46, 2 ** 47, 2 ** 46 - 1];
    const sel = new WeightedSelector(weights, [-1, -1, -1]);
    expect(sel.totalWeight).toBe(2 ** 48 - 1);
    const out = new Uint16Array(200_000);
    sel.drawInto(Sfc32.fromSeed(8, 0), out.length, out, 0);
    expectFits(tally(out, 3), weights, range(3));
  });

  it('16 items with mixed finite/unlimited stock, pooled into 5 groups (df=4, critical 18.467)', () => {
    // Items are pooled into 5 groups (a few items each) to keep the df in the table above.
    const weights = [3, 5, 7, 9, 11, 13, 2, 4, 6, 8, 10, 12, 14, 1, 15, 16];
    const quantities = weights.map((_, i) => (i % 2 === 0 ? -1 : 1_000_000));
    const sel = new WeightedSelector(weights, quantities);
    const out = new Uint16Array(200_000);
    sel.drawInto(Sfc32.fromSeed(9, 0), out.length, out, 0);
    const c = tally(out, 16);
    const groups = [
      [0, 1, 2],
      [3, 4, 5],
      [6, 7, 8, 9],
      [10, 11, 12],
      [13, 14, 15],
    ];
    const gc = groups.map((g) => g.reduce((a, i) => a + c[i]!, 0));
    const gw = groups.map((g) => g.reduce((a, i) => a + weights[i]!, 0));
    expectFits(gc, gw, range(5));
  });
});

describe('WeightedSelector.update', () => {
  it('reviving an exhausted item makes it drawable again, exactly as many times', () => {
    const sel = new WeightedSelector([4, 6], [2, 3]);
    const rng = Sfc32.fromSeed(10, 0);
    const out = new Uint16Array(10);
    expect(sel.drawInto(rng, 10, out, 0)).toBe(5);
    expect(sel.totalWeight).toBe(0);
    sel.update(0, NaN, 4);
    expect(sel.totalWeight).toBe(4);
    expect(sel.weights[0]).toBe(4);
    expect(sel.drawInto(rng, 10, out, 0)).toBe(6);
    expect(Array.from(out.subarray(0, 4))).toEqual([0, 0, 0, 0]);
    expect(Array.from(sel.drawn)).toEqual([6, 3]);
    expect(Array.from(sel.quantities)).toEqual([0, 0]);
  });

  it('NaN leaves a field unchanged; a weight change on an exhausted item keeps it out', () => {
    const sel = new WeightedSelector([4, 6], [0, 5]);
    sel.update(0, 9, NaN);
    expect(sel.weights[0]).toBe(9);
    expect(sel.quantities[0]).toBe(0);
    expect(sel.totalWeight).toBe(6);
    sel.update(1, NaN, NaN);
    expect(sel.weights[1]).toBe(6);
    expect(sel.quantities[1]).toBe(5);
    expect(sel.totalWeight).toBe(6);
    sel.update(1, 2, NaN);
    expect(sel.totalWeight).toBe(2);
    sel.update(0, NaN, -1);
    expect(sel.totalWeight).toBe(11);
  });

  it('setting quantity 0 removes an item; setting -1 makes it unlimited', () => {
    const sel = new WeightedSelector([1, 1, 1], [-1, 2, -1]);
    sel.update(0, NaN, 0);
    sel.update(1, NaN, -1);
    expect(sel.totalWeight).toBe(2);
    const out = new Uint16Array(5000);
    expect(sel.drawInto(Sfc32.fromSeed(11, 0), out.length, out, 0)).toBe(0);
    const c = tally(out, 3);
    expect(c[0]).toBe(0);
    expect(c[1]! + c[2]!).toBe(5000);
    expect(Array.from(sel.quantities)).toEqual([0, -1, -1]);
  });

  it('a weight change alters the distribution (df=3, critical 16.266)', () => {
    const weights = [10, 20, 30, 40];
    const sel = new WeightedSelector(weights, [-1, -1, -1, -1]);
    const rng = Sfc32.fromSeed(12, 0);
    const out = new Uint16Array(200_000);
    sel.drawInto(rng, out.length, out, 0);
    expectFits(tally(out, 4), weights, range(4));

    sel.update(0, 100, NaN);
    sel.update(3, 5, NaN);
    const updated = [100, 20, 30, 5];
    expect(sel.totalWeight).toBe(155);
    sel.drawInto(rng, out.length, out, 0);
    const after = tally(out, 4);
    expectFits(after, updated, range(4));
    // The same counts are far from the old weights.
    expect(chiSquare(after, weights, range(4)).stat).toBeGreaterThan(kChi2[3]!);
  });

  it('after random updates and draws, the incremental tree picks what a rebuilt tree picks', () => {
    const rng = Sfc32.fromSeed(13, 0);
    const weights = range(40).map((i) => 1 + ((i * 7) % 13));
    const quantities = range(40).map((i) => (i % 3 === 0 ? -1 : 1 + (i % 5)));
    const sel = new WeightedSelector(weights, quantities);
    const out = new Uint16Array(50);
    const a = new Uint16Array(1);
    const b = new Uint16Array(1);
    for (let round = 0; round < 200; round++) {
      const i = rng.below(40);
      const w = rng.below(3) === 0 ? 1 + rng.below(50) : NaN;
      const q = rng.below(2) === 0 ? rng.below(6) - 1 : NaN;
      sel.update(i, w, q);
      sel.drawInto(rng, 50, out, 0);
      const fresh = new WeightedSelector(sel.weights, sel.quantities, sel.drawn);
      expect(sel.totalWeight).toBe(fresh.totalWeight);
      // Drive both with the same targets; both consume stock the same way if they agree.
      for (let k = 0; k < 10 && sel.totalWeight > 0; k++) {
        const t = rng.below(sel.totalWeight);
        sel.drawInto(scripted([t]).rng, 1, a, 0);
        fresh.drawInto(scripted([t]).rng, 1, b, 0);
        expect(a[0]).toBe(b[0]);
      }
      expect(Array.from(sel.quantities)).toEqual(Array.from(fresh.quantities));
      expect(sel.totalWeight).toBe(fresh.totalWeight);
    }
  });
});

describe('WeightedSelector determinism', () => {
  it('the same seed gives the same sequence of outcomes', () => {
    const run = (seed: number): Uint16Array => {
      const sel = selectorOf(kSample);
      const out = new Uint16Array(20_000);
      sel.drawInto(Sfc32.fromSeed(seed, 0), out.length, out, 0);
      return out;
    };
    expect(Buffer.from(run(42).buffer).equals(Buffer.from(run(42).buffer))).toBe(true);
    expect(Buffer.from(run(42).buffer).equals(Buffer.from(run(43).buffer))).toBe(false);
  });

  it('splitting a run into several calls does not change the outcomes', () => {
    const whole = new Uint16Array(10_000);
    selectorOf(kSample).drawInto(Sfc32.fromSeed(44, 0), whole.length, whole, 0);
    const parts = new Uint16Array(10_000);
    const sel = selectorOf(kSample);
    const rng = Sfc32.fromSeed(44, 0);
    for (let at = 0; at < parts.length; at += 999) sel.drawInto(rng, Math.min(999, parts.length - at), parts, at);
    expect(Array.from(parts)).toEqual(Array.from(whole));
  });
});

describe('WeightedSelector large catalogs', () => {
  it('1000 items: only valid indices, stock respected', () => {
    const rng = Sfc32.fromSeed(14, 0);
    const n = 1000;
    const weights = range(n).map(() => 1 + rng.below(1000));
    const quantities = range(n).map((i) => (i % 10 === 0 ? -1 : rng.below(300)));
    const sel = new WeightedSelector(weights, quantities);
    const out = new Uint16Array(200_000);
    const empty = sel.drawInto(rng, out.length, out, 0);
    expect(empty).toBe(0);
    const counts = tally(out, n);
    for (let i = 0; i < n; i++) {
      if (quantities[i] === -1) expect(sel.quantities[i]).toBe(-1);
      else {
        expect(counts[i]).toBeLessThanOrEqual(quantities[i]!);
        expect(sel.quantities[i]).toBe(quantities[i]! - counts[i]!);
      }
      if (quantities[i] === 0) expect(counts[i]).toBe(0);
    }
  });

  it('65,534 items (the maximum): only valid indices, first and last items reachable', () => {
    const n = 65_534;
    const rng = Sfc32.fromSeed(15, 0);
    const weights = range(n).map(() => 1 + rng.below(100));
    // The first and the last item carry a large share of the weight.
    weights[0] = 3_000_000;
    weights[n - 1] = 3_000_000;
    const quantities = range(n).map((i) => (i % 2 === 0 ? -1 : 1 + rng.below(3)));
    const sel = new WeightedSelector(weights, quantities);
    const out = new Uint16Array(300_000);
    expect(sel.drawInto(rng, out.length, out, 0)).toBe(0);
    let max = 0;
    let invalid = 0;
    for (const v of out) {
      if (v >= n) invalid++;
      if (v > max) max = v;
    }
    expect(invalid).toBe(0);
    const counts = tally(out, n);
    expect(counts[0]).toBeGreaterThan(0);
    expect(counts[n - 1]).toBeGreaterThan(0);
    expect(max).toBe(n - 1);
    let over = 0;
    for (let i = 1; i < n; i += 2) if (counts[i]! > quantities[i]! || sel.quantities[i] !== quantities[i]! - counts[i]!) over++;
    expect(over).toBe(0);
  });

  it('65,534 items: targets at every slice boundary map to the right item', () => {
    const n = 65_534;
    const weights = range(n).map((i) => 1 + (i % 17));
    const quantities = range(n).map((i) => (i % 5 === 0 ? 0 : -1));
    const sel = new WeightedSelector(weights, quantities);
    const targets: number[] = [];
    const expected: number[] = [];
    let prefix = 0;
    for (let i = 0; i < n; i++) {
      if (quantities[i] === 0) continue;
      targets.push(prefix, prefix + weights[i]! - 1);
      expected.push(i, i);
      prefix += weights[i]!;
    }
    expect(sel.totalWeight).toBe(prefix);
    const out = new Uint16Array(targets.length);
    const unlimited = new WeightedSelector(weights, quantities);
    unlimited.drawInto(scripted(targets).rng, targets.length, out, 0);
    expect(Array.from(out)).toEqual(expected);
  });
});
