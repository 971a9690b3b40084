import { randomFillSync } from 'node:crypto';

/**
 * sfc32 (Chris Doty-Humphrey's Small Fast Chaotic PRNG): four 32-bit words of state, passes
 * PractRand to 2^42+ bytes and costs a handful of integer ops per output.
 */
export class Sfc32 {
  /**
   * The four state words. Public so a hot loop (WeightedSelector.drawInto) can keep them in
   * locals and write them back, instead of a call per output.
   */
  readonly state: Int32Array;

  constructor(a: number, b: number, c: number, d: number) {
    this.state = Int32Array.of(a | 0, b | 0, c | 0, d | 0);
    // Discard the first outputs: they are weakly mixed for low-entropy seeds.
    for (let i = 0; i < 15; i++) this.nextU32();
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    const s = this.state;
    const a = s[0]!;
    const b = s[1]!;
    const c = s[2]!;
    const d = s[3]!;
    const t = (((a + b) | 0) + d) | 0;
    s[3] = (d + 1) | 0;
    s[0] = b ^ (b >>> 9);
    s[1] = (c + (c << 3)) | 0;
    s[2] = (((c << 21) | (c >>> 11)) + t) | 0;
    return t >>> 0;
  }

  /**
   * Uniform integer in [0, bound) for 1 <= bound <= 2^53. One 32-bit output when bound fits in
   * 32 bits (bias below bound / 2^32), otherwise 53 bits from two outputs.
   */
  below(bound: number): number {
    let x: number;
    if (bound <= 0x1_0000_0000) {
      x = Math.floor((this.nextU32() * bound) / 0x1_0000_0000);
    } else {
      const hi = this.nextU32() >>> 5; // 27 bits
      const lo = this.nextU32() >>> 6; // 26 bits
      x = Math.floor(((hi * 0x400_0000 + lo) / 0x20_0000_0000_0000) * bound);
    }
    // Float rounding of the product can land exactly on bound.
    return x < bound ? x : bound - 1;
  }

  /** Seed deterministically from a number (shard k of engine seed s gets seedFrom(s, k)). */
  static fromSeed(seed: number, stream = 0): Sfc32 {
    const lo = seed >>> 0;
    const hi = Math.floor(seed / 0x1_0000_0000) >>> 0;
    return new Sfc32(lo ^ 0x9e3779b9, hi ^ 0x85ebca6b, (stream * 0x27d4eb2f) ^ 0xc2b2ae35, stream + 1);
  }

  static fromCrypto(): Sfc32 {
    const words = randomFillSync(new Uint32Array(4));
    return new Sfc32(words[0]!, words[1]!, words[2]!, words[3]!);
  }
}
