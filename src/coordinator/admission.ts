import { RingQueue } from './ring-queue.js';

interface Waiter {
  draws: number;
  retry: () => void;
}

/**
 * The maxPending bound of one shard: draws queued or in flight may not exceed it, so memory
 * never grows without bound; past it, calls wait in FIFO order and are admitted as replies free
 * room. A single call larger than the bound is admitted alone when nothing is pending.
 */
export class Admission {
  readonly #max: number;
  /** Draws queued for or in flight to the shard (waiters excluded). */
  pending = 0;
  readonly #waiting = new RingQueue<Waiter>();
  /** True while a waiter is being re-run: it must not queue again behind the others. */
  #admitting = false;

  constructor(maxPending: number) {
    this.#max = maxPending;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  mustWait(draws: number): boolean {
    if (!this.#admitting && this.#waiting.length > 0) return true;
    return this.pending > 0 && this.pending + draws > this.#max;
  }

  /** Park a call; `call` is re-run (and settles the returned promise) once it is admitted. */
  wait<T>(draws: number, call: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#waiting.push({ draws, retry: () => call().then(resolve, reject) });
    });
  }

  /** Admit waiters in FIFO order while there is room. */
  admit(): void {
    for (let w = this.#waiting.peek(); w !== undefined; w = this.#waiting.peek()) {
      if (this.pending > 0 && this.pending + w.draws > this.#max) break;
      this.#waiting.shift();
      this.#run(w);
    }
  }

  /** Re-run every waiter now (the shard failed: each call then rejects with its failure). */
  releaseAll(): void {
    for (const w of this.#waiting.drain()) this.#run(w);
  }

  #run(w: Waiter): void {
    this.#admitting = true;
    try {
      w.retry();
    } finally {
      this.#admitting = false;
    }
  }
}
