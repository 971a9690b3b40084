/** FNV-1a over UTF-16 code units: stable across runs and processes, so a pool keeps its shard. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export function shardOf(poolId: string, shards: number): number {
  return fnv1a(poolId) % shards;
}
