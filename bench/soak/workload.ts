/**
 * What the soak's child process and the soak itself share: the pools' catalogs, the child's
 * configuration, and the PRNG. Nothing here loads the engine.
 *
 * The child prints one line per event on stdout, each with a single synchronous write(2), so a
 * line the soak reads was really written before the child went on (a printed ack is an ack):
 *
 *   opening                                DrawEngine.open() is called
 *   open <maxRequestId>                    the engine is open (what its recovery found)
 *   exists <pool>                          a fixed pool was recovered from an earlier round
 *   creq <pool> / created <pool>           createPool requested / acknowledged
 *   refused <pool> <recordBytes> <segmentBytes>  createPool refused: the catalog's record does
 *                                          not fit in one segment (ERR_INVALID_ARGUMENT)
 *   ready                                  the draw streams start
 *   req <pool> <n>                         about to request n draws
 *   ack <pool> <firstId> <n> <counts json> a drawMany resolved: counts[i] = successful draws of
 *                                          item index i, the last slot = empty draws
 *   d <pool> <requestId> <itemIndex|-1>    a draw() resolved
 *   ureq <pool> <itemIndex> <weight>       about to call updateItem (weight only)
 *   uack <pool> <itemIndex> <weight>       updateItem resolved
 *   m <snapshots> <rotations>              metrics() moved (polled every 20 ms)
 *   closing / closed                       close() called / resolved
 *   fail <pool> <code> <message>           a call rejected
 */

export type SoakWal = 'mmap' | 'file';
export type SoakSync = 'always' | 'interval' | 'never';

export interface ChildConfig {
  dir: string;
  wal: SoakWal;
  sync: SoakSync;
  shards: number;
  segmentBytes: number;
  /** undefined: the engine's default. */
  snapshotEveryRecords: number | undefined;
  /** Seeds the child's workload and the engine's PRNG. */
  seed: number;
  /** Prefix of the pools this run creates (unique within a directory's history). */
  createPrefix: string;
  /** Call close() after this many ms of load (undefined: never). */
  closeAfterMs: number | undefined;
}

export interface Item {
  id: string;
  weight: number;
  quantity: number;
}

/** Pools every run makes sure exist: small and large catalogs, limited items that run out. */
export const kFixedPools: ReadonlyMap<string, readonly Item[]> = new Map<string, Item[]>([
  [
    'gems',
    [
      { id: 'ruby', weight: 1, quantity: 40_000 },
      { id: 'pearl', weight: 3, quantity: 600_000 },
      { id: 'dust', weight: 12, quantity: -1 },
    ],
  ],
  [
    'coins',
    [
      { id: 'gold', weight: 1, quantity: 250_000 },
      { id: 'silver', weight: 2, quantity: 900_000 },
    ],
  ],
  // Runs out within a few rounds: empty draws from then on.
  [
    'tiny',
    [
      { id: 'key', weight: 1, quantity: 400 },
      { id: 'map', weight: 2, quantity: 750 },
    ],
  ],
  // More than 255 items: draw records carry two bytes per draw.
  ['wide', Array.from({ length: 300 }, (_, i) => ({ id: `w${i}`, weight: 1 + (i % 7), quantity: i % 4 === 0 ? -1 : 5_000 }))],
]);

/** Pools created while the draws run are named `<prefix>.<n>`; their catalog follows from n. */
export function createdCatalog(n: number): Item[] {
  return [
    { id: 'only', weight: 1, quantity: n },
    { id: 'rest', weight: 1 + (n % 5), quantity: -1 },
  ];
}

/** The catalog of any pool the child may create (undefined: not a soak pool). */
export function catalogOf(poolId: string): readonly Item[] | undefined {
  const fixed = kFixedPools.get(poolId);
  if (fixed !== undefined) return fixed;
  const m = /\.(\d+)$/.exec(poolId);
  return m === null ? undefined : createdCatalog(Number(m[1]));
}

/** mulberry32: small, seeded, floats in [0, 1). */
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

/** An integer in [lo, hi]. */
export function between(rand: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1));
}
