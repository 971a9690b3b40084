/*
 * Idempotent draws: a draw()/drawMany() call given an idempotencyKey logs the key with its
 * outcome; a later call with the same key on the same pool, while the key is in the pool's
 * window, draws nothing and gets the original outcome back. The window keeps the newest keyed
 * calls of each pool: at most `keys` of them, and at most `draws` draw outcomes (older keys go
 * first; the newest always stays). The same rule trims the window in the shard, in replay and
 * in snapshots, so every path keeps the same keys.
 */

/** A keyed call's outcome. */
export interface KeyedOutcome {
  key: string;
  firstRequestId: number;
  count: number;
  /** One item index per draw (0xFFFF = empty). */
  indices: Uint16Array;
}

export interface WindowLimits {
  keys: number;
  draws: number;
}

/** The newest outcomes of `list` (oldest first) within the limits; a repeated key keeps its last. */
export function trimWindow(list: readonly KeyedOutcome[], limits: WindowLimits): KeyedOutcome[] {
  const byKey = new Map<string, KeyedOutcome>();
  for (const o of list) {
    byKey.delete(o.key); // a later outcome of the same key replaces it, at its new place
    byKey.set(o.key, o);
  }
  const out = [...byKey.values()];
  let draws = out.reduce((a, o) => a + o.count, 0);
  let from = 0;
  while (out.length - from > 1 && (out.length - from > limits.keys || draws > limits.draws)) draws -= out[from++]!.count;
  return from === 0 ? out : out.slice(from);
}

/** One pool's window in its shard: lookups by key, eviction in insertion order. */
export class KeyWindow {
  readonly #limits: WindowLimits;
  /** Insertion order is the window's order: the first entry is the oldest. */
  readonly #byKey = new Map<string, KeyedOutcome>();
  #draws = 0;

  constructor(limits: WindowLimits, initial: readonly KeyedOutcome[] = []) {
    this.#limits = limits;
    for (const o of trimWindow(initial, limits)) this.add(o);
  }

  get(key: string): KeyedOutcome | undefined {
    return this.#byKey.get(key);
  }

  get size(): number {
    return this.#byKey.size;
  }

  add(o: KeyedOutcome): void {
    const old = this.#byKey.get(o.key);
    if (old !== undefined) {
      this.#byKey.delete(o.key);
      this.#draws -= old.count;
    }
    this.#byKey.set(o.key, o);
    this.#draws += o.count;
    while (this.#byKey.size > 1 && (this.#byKey.size > this.#limits.keys || this.#draws > this.#limits.draws)) {
      const [oldestKey, oldest] = this.#byKey.entries().next().value as [string, KeyedOutcome];
      this.#byKey.delete(oldestKey);
      this.#draws -= oldest.count;
    }
  }

  /** Oldest first (the form snapshots keep). */
  toArray(): KeyedOutcome[] {
    return [...this.#byKey.values()];
  }
}
