import type { ReplicatedLog } from './log.js';

/** How often a node records its position in the stream (when it moved, or to stay fresh). */
export const kPositionEveryMs = 1000;
const kPositionRefreshMs = 10_000;

/** A position older than this (by the store's clock) is a node that is gone: it no longer holds trimming back. */
export function freshWindowMs(leaseMs: number): number {
  return Math.max(30_000, 10 * leaseMs);
}

/**
 * Records this node's position in every shard's subject when it moved (and every so often
 * anyway), so that a leader does not trim messages a live follower has yet to apply.
 */
export class PositionReporter {
  readonly #log: ReplicatedLog;
  readonly #node: string;
  readonly #seqs: () => number[];
  #last = '';
  #lastAt = 0;
  #busy = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(log: ReplicatedLog, node: string, seqs: () => number[]) {
    this.#log = log;
    this.#node = node;
    this.#seqs = seqs;
  }

  start(): void {
    this.#timer = setInterval(() => void this.report(false), kPositionEveryMs).unref();
  }

  async report(force: boolean): Promise<void> {
    if (this.#busy) return;
    const seqs = this.#seqs();
    const text = seqs.join(',');
    if (!force && text === this.#last && Date.now() - this.#lastAt < kPositionRefreshMs) return;
    this.#busy = true;
    try {
      await this.#log.positionPut(this.#node, seqs);
      this.#last = text;
      this.#lastAt = Date.now();
    } catch {
      // The next tick tries again: a position is advice for trimming, never needed for safety.
    } finally {
      this.#busy = false;
    }
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

/**
 * Where shard k's subject may be trimmed up to (exclusive): `keepFrom`, or lower so that every
 * node whose position is fresh keeps the messages after it.
 */
export async function trimPoint(log: ReplicatedLog, self: string, seqs: number[], k: number, keepFrom: number, freshMs: number): Promise<number> {
  await log.positionPut(self, seqs);
  const all = await log.positions();
  const now = all.find((p) => p.node === self)?.at;
  if (now === undefined) return 0; // cannot tell who is behind: trim nothing
  let point = keepFrom;
  for (const p of all) {
    if (p.node === self || p.at < now - freshMs) continue;
    point = Math.min(point, (p.seqs[k] ?? 0) + 1);
  }
  return point;
}
