/**
 * A FIFO on a growable power-of-two ring buffer: O(1) push and shift with no Array#shift
 * copying (cf. undici's FixedQueue). Shifted slots are cleared so the queue holds no
 * reference to what it gave away.
 */
export class RingQueue<T> {
  #buf: (T | undefined)[] = new Array<T | undefined>(16);
  #head = 0;
  #size = 0;

  get length(): number {
    return this.#size;
  }

  push(value: T): void {
    if (this.#size === this.#buf.length) this.#grow();
    this.#buf[(this.#head + this.#size) & (this.#buf.length - 1)] = value;
    this.#size++;
  }

  /** The oldest entry, or undefined when empty. */
  peek(): T | undefined {
    return this.#size === 0 ? undefined : this.#buf[this.#head];
  }

  shift(): T | undefined {
    if (this.#size === 0) return undefined;
    const value = this.#buf[this.#head];
    this.#buf[this.#head] = undefined;
    this.#head = (this.#head + 1) & (this.#buf.length - 1);
    this.#size--;
    return value;
  }

  /** Remove and return everything, oldest first. */
  drain(): T[] {
    const out: T[] = [];
    while (this.#size > 0) out.push(this.shift() as T);
    return out;
  }

  #grow(): void {
    const old = this.#buf;
    const next = new Array<T | undefined>(old.length * 2);
    for (let i = 0; i < this.#size; i++) next[i] = old[(this.#head + i) & (old.length - 1)];
    this.#buf = next;
    this.#head = 0;
  }
}
