import { describe, expect, it } from 'vitest';
import { Admission } from '../../src/coordinator/admission.js';
import { EngineError } from '../../src/errors.js';
import { below, mulberry32, testSeed } from '../helpers/seed.js';

/**
 * A shard driven the way src/coordinator/shard-client.ts drives its Admission: a call checks
 * mustWait(draws), waits with a re-run of itself, or counts its draws as pending and is
 * queued; a reply subtracts the batch's draws from pending and calls admit(); a failure sets
 * pending to 0 and calls releaseAll(), and every re-run then rejects with the failure.
 */
class FakeShard {
  readonly admission: Admission;
  /** Names of the calls in the order they got past admission (their ids' order). */
  readonly admitted: string[] = [];
  /** Admitted calls not answered yet, oldest first. */
  readonly inFlight: { name: string; draws: number; resolve: (v: string) => void }[] = [];
  /** Pending draws just before each admission (same order as `admitted`). */
  readonly pendingBefore: number[] = [];
  /** Every run of a call (first tries and re-runs), in order. */
  readonly runs: string[] = [];
  failure: EngineError | undefined;

  constructor(maxPending: number) {
    this.admission = new Admission(maxPending);
  }

  /** ShardClient.draw / drawMany / control (draws 0), with a name to follow the call. */
  call(name: string, draws: number): Promise<string> {
    this.runs.push(name);
    // A waiter that queues itself again on its re-run makes admit() loop forever: fail instead.
    if (this.runs.length > 50_000) throw new Error(`runaway re-runs (last: ${this.runs.slice(-4).join(', ')})`);
    if (this.failure) return Promise.reject(this.failure);
    if (this.admission.mustWait(draws)) return this.admission.wait(draws, () => this.call(name, draws));
    this.pendingBefore.push(this.admission.pending);
    this.admission.pending += draws;
    this.admitted.push(name);
    return new Promise((resolve) => this.inFlight.push({ name, draws, resolve }));
  }

  /** The reply to the oldest admitted call (ShardClient.#onReply). */
  reply(): string {
    const c = this.inFlight.shift();
    if (c === undefined) throw new Error('nothing in flight');
    this.admission.pending -= c.draws;
    c.resolve(c.name);
    this.admission.admit();
    return c.name;
  }

  /** ShardClient.failAll. */
  failAll(err: EngineError): void {
    this.failure ??= err;
    this.inFlight.splice(0);
    this.admission.pending = 0;
    this.admission.releaseAll();
  }
}

/** Settled state of a promise after the microtasks queued so far have run. */
async function settled<T>(p: Promise<T>): Promise<'pending' | { value: T } | { error: unknown }> {
  let state: 'pending' | { value: T } | { error: unknown } = 'pending';
  p.then(
    (value) => (state = { value }),
    (error: unknown) => (state = { error }),
  );
  for (let i = 0; i < 10; i++) await Promise.resolve();
  return state;
}

describe('Admission: the maxPending bound', () => {
  it('admits at once while pending + draws <= max, and counts nothing as waiting', () => {
    const s = new FakeShard(10);
    void s.call('a', 4);
    void s.call('b', 6);
    expect(s.admitted).toEqual(['a', 'b']);
    expect(s.admission.pending).toBe(10);
    expect(s.admission.waiting).toBe(0);
  });

  it('makes a call wait when pending + draws > max, and admits it once a reply frees room', async () => {
    const s = new FakeShard(10);
    void s.call('a', 8);
    const b = s.call('b', 3);
    expect(s.admitted).toEqual(['a']);
    expect(s.admission.waiting).toBe(1);
    expect(s.admission.pending).toBe(8);
    expect(s.reply()).toBe('a');
    expect(s.admitted).toEqual(['a', 'b']);
    expect(s.admission.waiting).toBe(0);
    expect(s.admission.pending).toBe(3);
    s.reply();
    await expect(b).resolves.toBe('b');
  });

  it('admits a call that fills the bound exactly (pending + draws === max)', () => {
    const s = new FakeShard(10);
    void s.call('a', 7);
    void s.call('b', 3);
    expect(s.admitted).toEqual(['a', 'b']);
    expect(s.admission.mustWait(1)).toBe(true);
    expect(s.admission.mustWait(0)).toBe(false);
  });

  it('admits one call larger than the bound alone: only when nothing is pending, and nothing joins it', async () => {
    const s = new FakeShard(10);
    void s.call('small', 1);
    const big = s.call('big', 25);
    const after = s.call('after', 1);
    expect(s.admitted).toEqual(['small']);
    expect(s.admission.waiting).toBe(2);
    s.reply(); // 'small' answered: nothing pending, so 'big' goes alone
    expect(s.admitted).toEqual(['small', 'big']);
    expect(s.admission.pending).toBe(25);
    expect(s.admission.waiting).toBe(1);
    // A control (0 draws) waits too: pending is already over the bound.
    expect(s.admission.mustWait(0)).toBe(true);
    s.reply();
    expect(s.admitted).toEqual(['small', 'big', 'after']);
    await expect(big).resolves.toBe('big');
    s.reply();
    await expect(after).resolves.toBe('after');
  });

  it('admits a call larger than the bound at once when nothing is pending', () => {
    const s = new FakeShard(10);
    void s.call('huge', 1000);
    expect(s.admitted).toEqual(['huge']);
    expect(s.admission.pending).toBe(1000);
  });
});

describe('Admission: FIFO, nobody overtakes', () => {
  it('admits waiters in arrival order as replies free room', async () => {
    const s = new FakeShard(10);
    void s.call('a', 6);
    const rest = [s.call('b', 6), s.call('c', 1), s.call('d', 3), s.call('e', 5)];
    expect(s.admitted).toEqual(['a']);
    expect(s.admission.waiting).toBe(4);
    s.reply(); // a: pending 0 -> b (6), c (7), d (10) fit; e (15) does not
    expect(s.admitted).toEqual(['a', 'b', 'c', 'd']);
    expect(s.admission.waiting).toBe(1);
    s.reply(); // b: pending 4 -> e (9) fits
    expect(s.admitted).toEqual(['a', 'b', 'c', 'd', 'e']);
    s.reply();
    s.reply();
    s.reply();
    expect(await Promise.all(rest)).toEqual(['b', 'c', 'd', 'e']);
    expect(s.admission.pending).toBe(0);
  });

  it('a small call does not overtake a waiting large one, even when it would fit', () => {
    const s = new FakeShard(10);
    void s.call('a', 6);
    void s.call('large', 6); // waits: 12 > 10
    // 'small' would fit (7 <= 10), but 'large' is waiting: it queues behind it.
    expect(s.admission.mustWait(1)).toBe(true);
    void s.call('small', 1);
    // A control waits behind them as well.
    void s.call('control', 0);
    expect(s.admitted).toEqual(['a']);
    expect(s.admission.waiting).toBe(3);
    s.reply();
    expect(s.admitted).toEqual(['a', 'large', 'small', 'control']);
  });

  it('stops at the first waiter that does not fit, even when a later one would', () => {
    const s = new FakeShard(10);
    void s.call('a', 10);
    void s.call('b', 4);
    void s.call('c', 9);
    void s.call('d', 1);
    s.reply(); // pending 0: b (4) fits, c (13) does not, d (5) would but must not overtake c
    expect(s.admitted).toEqual(['a', 'b']);
    expect(s.admission.waiting).toBe(2);
    s.reply(); // b answered: c (9), then d (10)
    expect(s.admitted).toEqual(['a', 'b', 'c', 'd']);
  });

  it('admit() with nothing waiting or no room does nothing', () => {
    const s = new FakeShard(5);
    s.admission.admit();
    void s.call('a', 5);
    void s.call('b', 1);
    s.admission.admit(); // no reply yet: still no room
    expect(s.admitted).toEqual(['a']);
    expect(s.admission.waiting).toBe(1);
  });

  it('admits in arrival order under a random workload, within the bound or with nothing pending (seeded)', async () => {
    const seed = testSeed(0xad_0001);
    const rng = mulberry32(seed);
    const max = 16;
    const s = new FakeShard(max);
    const all: Promise<string>[] = [];
    const names: string[] = [];
    const drawsOf = new Map<string, number>();
    let checked = 0;
    let n = 0;
    for (let step = 0; step < 5000; step++) {
      const ctx = `seed ${seed} (RPE_SEED), step ${step}`;
      if (s.inFlight.length > 0 && below(rng, 3) === 0) {
        s.reply();
      } else {
        const r = below(rng, 20);
        const draws = r === 0 ? max + below(rng, 3 * max) : r < 3 ? 0 : 1 + below(rng, 6);
        const name = `c${n++}`;
        names.push(name);
        drawsOf.set(name, draws);
        all.push(s.call(name, draws));
      }
      // Admitted in exactly the order the calls were made; each admission fit the bound, or
      // was a call admitted with nothing pending.
      for (; checked < s.admitted.length; checked++) {
        const name = s.admitted[checked]!;
        expect(name, ctx).toBe(names[checked]);
        const before = s.pendingBefore[checked]!;
        if (before > 0) expect(before + drawsOf.get(name)!, `${ctx}: ${name} admitted with ${before} pending`).toBeLessThanOrEqual(max);
      }
      expect(s.admitted.length + s.admission.waiting, ctx).toBe(names.length);
      expect(s.admission.pending, ctx).toBe(s.inFlight.reduce((a, c) => a + c.draws, 0));
    }
    while (s.inFlight.length > 0) s.reply();
    expect(s.admission.waiting, `seed ${seed} (RPE_SEED)`).toBe(0);
    expect(await Promise.all(all), `seed ${seed} (RPE_SEED)`).toEqual(names);
  });
});

describe('Admission: re-entrancy', () => {
  it('a waiter re-run by admit() does not queue again behind the waiters after it', async () => {
    const s = new FakeShard(2);
    void s.call('a', 2);
    const b = s.call('b', 1);
    const c = s.call('c', 1);
    const d = s.call('d', 1);
    expect(s.admission.waiting).toBe(3);
    // 'b' is re-run while 'c' and 'd' are still queued: its own mustWait must not send it to
    // the back (that would admit c before b, and wait forever on nothing).
    s.reply();
    expect(s.admitted).toEqual(['a', 'b', 'c']);
    expect(s.admission.waiting).toBe(1);
    expect(s.runs).toEqual(['a', 'b', 'c', 'd', 'b', 'c']);
    s.reply();
    s.reply();
    expect(s.admitted).toEqual(['a', 'b', 'c', 'd']);
    s.reply();
    expect(await Promise.all([b, c, d])).toEqual(['b', 'c', 'd']);
  });

  it('the re-run calls into the admission itself (mustWait, then pending +=) and the count stays exact', () => {
    const s = new FakeShard(10);
    void s.call('a', 10);
    void s.call('b', 3);
    void s.call('c', 3);
    void s.call('d', 3);
    void s.call('e', 3);
    s.reply();
    // Each re-run added its own draws before admit() looked at the next waiter.
    expect(s.admitted).toEqual(['a', 'b', 'c', 'd']);
    expect(s.admission.pending).toBe(9);
    expect(s.admission.waiting).toBe(1);
  });

  it('outside a re-run, waiters still block new calls (the flag is cleared after each re-run)', () => {
    const s = new FakeShard(2);
    void s.call('a', 2);
    void s.call('b', 1);
    void s.call('c', 2);
    s.reply(); // b admitted (pending 1), c does not fit
    expect(s.admitted).toEqual(['a', 'b']);
    expect(s.admission.waiting).toBe(1);
    // Room for 1 more, but 'c' is waiting: a new call must queue behind it.
    expect(s.admission.mustWait(1)).toBe(true);
    expect(s.admission.mustWait(0)).toBe(true);
  });

  it('wait() settles its promise with the outcome of the re-run, rejection included', async () => {
    const adm = new Admission(1);
    adm.pending = 1;
    const ok = adm.wait(1, () => Promise.resolve('ok'));
    const bad = adm.wait(0, () => Promise.reject(new EngineError('ERR_UNKNOWN_POOL', 'no such pool')));
    expect(await settled(ok)).toBe('pending');
    adm.pending = 0;
    adm.admit();
    expect(adm.waiting).toBe(0);
    await expect(ok).resolves.toBe('ok');
    await expect(bad).rejects.toMatchObject({ code: 'ERR_UNKNOWN_POOL', message: 'no such pool' });
  });
});

describe('Admission: releaseAll', () => {
  it('re-runs every waiter in order, room or not; after a failure each rejects with it', async () => {
    const s = new FakeShard(4);
    void s.call('a', 4).catch(() => {});
    const waiters = [s.call('b', 4), s.call('c', 1), s.call('d', 100), s.call('e', 0)];
    expect(s.admission.waiting).toBe(4);
    const err = new EngineError('ERR_SHARD_FAILED', 'shard 0 exited with code 1');
    s.failAll(err);
    expect(s.admission.waiting).toBe(0);
    expect(s.admission.pending).toBe(0);
    expect(s.runs).toEqual(['a', 'b', 'c', 'd', 'e', 'b', 'c', 'd', 'e']);
    expect(s.admitted).toEqual(['a']);
    for (const w of waiters) await expect(w).rejects.toBe(err);
  });

  it('with nothing waiting does nothing', () => {
    const s = new FakeShard(4);
    s.admission.releaseAll();
    expect(s.runs).toEqual([]);
    expect(s.admission.waiting).toBe(0);
  });

  it('without a failure, each re-run goes through the bound again in order (one that does not fit waits again)', () => {
    // Not what ShardClient does (it sets a failure first), but no waiter is lost or reordered.
    const s = new FakeShard(4);
    void s.call('a', 4);
    void s.call('b', 5);
    void s.call('c', 1);
    s.inFlight.splice(0);
    s.admission.pending = 0;
    s.admission.releaseAll();
    // b goes alone (nothing pending, larger than the bound); c no longer fits and waits again.
    expect(s.admitted).toEqual(['a', 'b']);
    expect(s.admission.pending).toBe(5);
    expect(s.admission.waiting).toBe(1);
    expect(s.runs).toEqual(['a', 'b', 'c', 'b', 'c']);
    s.reply();
    s.reply();
    expect(s.admitted).toEqual(['a', 'b', 'c']);
  });
});
