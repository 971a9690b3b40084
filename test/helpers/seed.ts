/**
 * Seeds for randomized tests: fixed by default, overridden with RPE_SEED=<n> to replay a
 * failure. Every randomized test puts the seed in its assertion messages, so a failure names
 * the value to rerun with. Nothing here loads the engine (neither src/ nor dist/).
 */

/** RPE_SEED when set (decimal or 0x hex), else `fallback`; always a uint32. */
export function testSeed(fallback: number): number {
  const env = process.env.RPE_SEED;
  if (env === undefined || env === '') return fallback >>> 0;
  const n = Number(env);
  if (!Number.isInteger(n)) throw new Error(`RPE_SEED must be an integer, got ${JSON.stringify(env)}`);
  return n >>> 0;
}

/** mulberry32: a small seeded PRNG giving floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [0, n) from a mulberry32 stream. */
export function below(rng: () => number, n: number): number {
  return Math.floor(rng() * n);
}
