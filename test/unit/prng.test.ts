import { describe, expect, it } from 'vitest';
import { Sfc32 } from '../../src/prng.js';

/*
 * Chi-square critical values at p = 0.001 (upper tail), from the chi-square distribution:
 *
 *   df  | critical value
 *   ----+---------------
 *    1  | 10.828
 *    9  | 27.877
 *   15  | 37.697
 *
 * Every statistical test below uses a fixed seed, so it is deterministic: it passes or fails the
 * same way on every run.
 */
const kChi2 = { 1: 10.828, 9: 27.877, 15: 37.697 } as const;

function chiSquareUniform(observed: ArrayLike<number>, n: number): number {
  const k = observed.length;
  const expected = n / k;
  let stat = 0;
  for (let i = 0; i < k; i++) stat += (observed[i]! - expected) ** 2 / expected;
  return stat;
}

function take(rng: Sfc32, n: number, bound: number): number[] {
  const out: number[] = new Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.below(bound);
  return out;
}

describe('Sfc32.fromSeed', () => {
  it('gives the same sequence for the same seed and stream', () => {
    const a = Sfc32.fromSeed(12345, 0);
    const b = Sfc32.fromSeed(12345, 0);
    for (let i = 0; i < 1000; i++) expect(a.nextU32()).toBe(b.nextU32());
  });

  it('gives different sequences for different seeds, streams and high seed bits', () => {
    const seq = (seed: number, stream: number): number[] => {
      const r = Sfc32.fromSeed(seed, stream);
      return Array.from({ length: 8 }, () => r.nextU32());
    };
    const base = seq(12345, 0);
    expect(seq(12346, 0)).not.toEqual(base);
    expect(seq(12345, 1)).not.toEqual(base);
    // Seeds that differ only above bit 32 must not collide.
    expect(seq(12345 + 2 ** 32, 0)).not.toEqual(base);
    expect(seq(-12345, 0)).not.toEqual(base);
    // Streams of the same seed are distinct from each other.
    expect(seq(7, 2)).not.toEqual(seq(7, 3));
  });

  it('defaults the stream to 0', () => {
    const a = Sfc32.fromSeed(99);
    const b = Sfc32.fromSeed(99, 0);
    for (let i = 0; i < 100; i++) expect(a.nextU32()).toBe(b.nextU32());
  });
});

describe('Sfc32.nextU32', () => {
  it('returns unsigned 32-bit integers', () => {
    const rng = Sfc32.fromSeed(1, 0);
    for (let i = 0; i < 100_000; i++) {
      const x = rng.nextU32();
      expect(Number.isInteger(x) && x >= 0 && x < 2 ** 32).toBe(true);
    }
  });

  it('sets every bit about half the time (chi-square per bit, df=1)', () => {
    const rng = Sfc32.fromSeed(2024, 0);
    const n = 200_000;
    const ones = new Float64Array(32);
    for (let i = 0; i < n; i++) {
      const x = rng.nextU32();
      for (let b = 0; b < 32; b++) if ((x >>> b) & 1) ones[b]!++;
    }
    for (let b = 0; b < 32; b++) {
      const stat = chiSquareUniform([ones[b]!, n - ones[b]!], n);
      expect(stat, `bit ${b}`).toBeLessThan(kChi2[1]);
    }
  });
});

describe('Sfc32.below', () => {
  it('returns 0 for bound 1', () => {
    const rng = Sfc32.fromSeed(3, 0);
    for (const x of take(rng, 10_000, 1)) expect(x).toBe(0);
  });

  it('returns both 0 and 1 for bound 2, nothing else', () => {
    const rng = Sfc32.fromSeed(4, 0);
    const xs = take(rng, 10_000, 2);
    expect(new Set(xs)).toEqual(new Set([0, 1]));
  });

  it.each([
    ['2^32', 2 ** 32],
    ['2^32+1', 2 ** 32 + 1],
    ['2^48', 2 ** 48],
    ['2^53', 2 ** 53],
    ['3', 3],
    ['2^31+7', 2 ** 31 + 7],
  ])('stays an integer in [0, bound) for bound %s', (_name, bound) => {
    const rng = Sfc32.fromSeed(5, 0);
    let min = Infinity;
    let max = -Infinity;
    let odd = 0;
    const n = 100_000;
    for (let i = 0; i < n; i++) {
      const x = rng.below(bound);
      if (!Number.isInteger(x) || x < 0 || x >= bound) throw new Error(`below(${bound}) returned ${x}`);
      if (x < min) min = x;
      if (x > max) max = x;
      if (x % 2 === 1) odd++;
    }
    // The range is covered: values near both ends show up.
    if (bound < 1000) {
      expect(min).toBe(0);
      expect(max).toBe(bound - 1);
    } else {
      expect(min).toBeLessThan(bound / 100);
      expect(max).toBeGreaterThan(bound - bound / 100);
    }
    if (bound >= 2 ** 31) {
      // Low bits are not stuck (a 32-bit value scaled up to 2^48 would always be even).
      expect(odd).toBeGreaterThan(n * 0.45);
      expect(odd).toBeLessThan(n * 0.55);
    }
  });

  it('is uniform on below(10) (chi-square, df=9, critical 27.877)', () => {
    const rng = Sfc32.fromSeed(10, 0);
    const n = 200_000;
    const counts = new Float64Array(10);
    for (let i = 0; i < n; i++) counts[rng.below(10)]!++;
    expect(chiSquareUniform(counts, n)).toBeLessThan(kChi2[9]);
  });

  it('is uniform on below(2^48) over 16 equal buckets (chi-square, df=15, critical 37.697)', () => {
    const rng = Sfc32.fromSeed(11, 0);
    const n = 160_000;
    const counts = new Float64Array(16);
    for (let i = 0; i < n; i++) counts[Math.floor(rng.below(2 ** 48) / 2 ** 44)]!++;
    expect(chiSquareUniform(counts, n)).toBeLessThan(kChi2[15]);
  });

  it('is uniform on the low 4 bits of below(2^48) (chi-square, df=15, critical 37.697)', () => {
    const rng = Sfc32.fromSeed(12, 0);
    const n = 160_000;
    const counts = new Float64Array(16);
    for (let i = 0; i < n; i++) counts[rng.below(2 ** 48) % 16]!++;
    expect(chiSquareUniform(counts, n)).toBeLessThan(kChi2[15]);
  });

  it('the uniformity check has power: a biased source fails it', () => {
    // Sanity check of the statistic itself: values 0..9 with 0 twice as likely.
    const counts = new Float64Array(10);
    const rng = Sfc32.fromSeed(13, 0);
    const n = 200_000;
    for (let i = 0; i < n; i++) {
      const x = rng.below(11);
      counts[x === 10 ? 0 : x]!++;
    }
    expect(chiSquareUniform(counts, n)).toBeGreaterThan(kChi2[9]);
  });
});
