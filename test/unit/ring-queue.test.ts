import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { RingQueue } from '../../src/coordinator/ring-queue.js';
import { below, mulberry32, testSeed } from '../helpers/seed.js';

/** Push 0..n-1 and shift them all back, checking order. */
function roundTrip(q: RingQueue<number>, from: number, n: number): void {
  for (let i = 0; i < n; i++) q.push(from + i);
  expect(q.length).toBe(n);
  for (let i = 0; i < n; i++) expect(q.shift()).toBe(from + i);
  expect(q.length).toBe(0);
}

describe('RingQueue', () => {
  it('is empty at first: length 0, shift and peek give undefined, drain gives []', () => {
    const q = new RingQueue<string>();
    expect(q.length).toBe(0);
    expect(q.shift()).toBeUndefined();
    expect(q.peek()).toBeUndefined();
    expect(q.drain()).toEqual([]);
    expect(q.length).toBe(0);
  });

  it('shift on empty after use gives undefined and leaves the queue usable', () => {
    const q = new RingQueue<number>();
    q.push(1);
    expect(q.shift()).toBe(1);
    expect(q.shift()).toBeUndefined();
    expect(q.shift()).toBeUndefined();
    expect(q.length).toBe(0);
    q.push(2);
    expect(q.peek()).toBe(2);
    expect(q.length).toBe(1);
    expect(q.shift()).toBe(2);
  });

  it('peek returns the oldest entry without removing it', () => {
    const q = new RingQueue<string>();
    q.push('a');
    q.push('b');
    expect(q.peek()).toBe('a');
    expect(q.peek()).toBe('a');
    expect(q.length).toBe(2);
    expect(q.shift()).toBe('a');
    expect(q.peek()).toBe('b');
  });

  it('keeps FIFO order across growth from an empty start (16 -> 32 -> ... -> 1024)', () => {
    const q = new RingQueue<number>();
    roundTrip(q, 0, 1000);
    roundTrip(q, 5000, 17);
  });

  it('keeps FIFO order when the ring wraps around, and when it grows while wrapped', () => {
    const q = new RingQueue<number>();
    // Head moves to 12 of 16 slots; the next 14 pushes wrap past the end of the buffer.
    for (let i = 0; i < 12; i++) q.push(i);
    for (let i = 0; i < 12; i++) expect(q.shift()).toBe(i);
    for (let i = 100; i < 114; i++) q.push(i);
    expect(q.length).toBe(14);
    expect(q.peek()).toBe(100);
    // Still wrapped (head 12, size 14): fill the ring and grow it with the head mid-buffer.
    for (let i = 114; i < 140; i++) q.push(i);
    expect(q.length).toBe(40);
    const out: number[] = [];
    for (let v = q.shift(); v !== undefined; v = q.shift()) out.push(v);
    expect(out).toEqual(Array.from({ length: 40 }, (_, i) => 100 + i));
  });

  it('wraps many times at a steady size without growing out of order', () => {
    const q = new RingQueue<number>();
    let next = 0;
    let expected = 0;
    for (let i = 0; i < 10; i++) q.push(next++);
    for (let round = 0; round < 500; round++) {
      q.push(next++);
      expect(q.shift()).toBe(expected++);
    }
    expect(q.length).toBe(10);
    expect(q.drain()).toEqual(Array.from({ length: 10 }, (_, i) => expected + i));
  });

  it('drain returns everything oldest first and leaves the queue empty and reusable', () => {
    const q = new RingQueue<number>();
    for (let i = 0; i < 20; i++) q.push(i);
    for (let i = 0; i < 7; i++) q.shift();
    for (let i = 20; i < 30; i++) q.push(i); // wrapped
    expect(q.drain()).toEqual(Array.from({ length: 23 }, (_, i) => 7 + i));
    expect(q.length).toBe(0);
    expect(q.shift()).toBeUndefined();
    roundTrip(q, 0, 40);
  });

  it("holds falsy values (0, '', null, false) like any other", () => {
    const q = new RingQueue<number | string | null | boolean>();
    for (const v of [0, '', null, false]) q.push(v);
    expect(q.length).toBe(4);
    expect(q.drain()).toEqual([0, '', null, false]);
  });

  it('matches an array model under a random mix of push, shift, peek and drain (seeded)', () => {
    const seed = testSeed(0x5eed_0001);
    const rng = mulberry32(seed);
    const q = new RingQueue<number>();
    const model: number[] = [];
    let next = 0;
    for (let step = 0; step < 20_000; step++) {
      const r = below(rng, 100);
      const ctx = `seed ${seed} (RPE_SEED), step ${step}`;
      if (r < 55) {
        // Bursts of pushes make the ring grow while its head is anywhere.
        const n = 1 + below(rng, r < 5 ? 200 : 3);
        for (let i = 0; i < n; i++) {
          q.push(next);
          model.push(next++);
        }
      } else if (r < 97) {
        expect(q.shift(), ctx).toBe(model.shift());
      } else if (r < 99) {
        expect(q.peek(), ctx).toBe(model[0]);
      } else {
        expect(q.drain(), ctx).toEqual(model.splice(0));
      }
      expect(q.length, ctx).toBe(model.length);
    }
  });

  it('keeps no reference to what it gave away: a shifted or drained value can be collected', async () => {
    // The cleared slot is checked by its effect: once shifted, the queue must not keep the value
    // alive. A full GC (exposed at runtime) tells held from released through WeakRefs.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const q = new RingQueue<object>();
    const refs: { shifted: WeakRef<object>; drained: WeakRef<object>; kept: WeakRef<object> } = (() => {
      // Built in a closure so no local of the test holds them.
      for (let i = 0; i < 5; i++) q.push({ filler: i });
      const shifted = { name: 'shifted' };
      const drained = { name: 'drained' };
      const kept = { name: 'kept' };
      q.push(shifted);
      q.push(drained);
      for (let i = 0; i < 5; i++) q.shift();
      expect(q.shift()).toBe(shifted); // slot 5, in the middle of the buffer
      const d = q.drain();
      expect(d).toEqual([drained]);
      q.push(kept);
      return { shifted: new WeakRef(shifted), drained: new WeakRef(drained), kept: new WeakRef(kept) };
    })();
    // WeakRef targets live until the end of the current job: collect on a later turn.
    await new Promise((resolve) => setTimeout(resolve, 0));
    gc();
    expect(refs.kept.deref(), 'an entry still queued stays alive (the check can tell)').toEqual({ name: 'kept' });
    expect(refs.shifted.deref(), 'a shifted entry is released').toBeUndefined();
    expect(refs.drained.deref(), 'a drained entry is released').toBeUndefined();
    expect(q.shift()).toEqual({ name: 'kept' });
  });
});
