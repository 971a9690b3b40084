/**
 * One owner per data directory (issue 7, item 1). The lock is flock(2) on dir/LOCK held for the
 * engine's life: processes racing to open (with or without a LOCK file left by a dead process)
 * never both get in, and under a loop of SIGKILLs no acknowledged draw is lost and no request
 * id is acknowledged twice.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { collect, DrawEngine, fixture } from '../helpers/engine.js';
import { tmpDir } from '../helpers/tmp.js';

const live = new Set<ChildProcess>();
afterEach(() => {
  for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  live.clear();
});

function start(script: string, args: string[]): ChildProcess {
  const child = spawn(process.execPath, [fixture(script), ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  live.add(child);
  return child;
}

/** Resolves when the child has printed `line`. */
function printed(child: ChildProcess, line: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer): void => {
      buf += d.toString();
      if (buf.split('\n').includes(line)) {
        child.stdout!.off('data', onData);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`child exited (${code}) before printing ${line}`)));
  });
}

/** mulberry32: the kill schedule is fixed by the seed (printed on failure). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('processes racing to open one directory', () => {
  it.each([
    ['no LOCK file', undefined],
    ['a LOCK file naming a dead process', 'dead'],
    ['an empty LOCK file', ''],
  ])('with %s: exactly one of 6 simultaneous openers gets in, 3 trials', async (_label, leftover) => {
    for (let trial = 0; trial < 3; trial++) {
      const dir = tmpDir('lock-race');
      if (leftover !== undefined) {
        let content = leftover;
        if (leftover === 'dead') {
          const dead = spawn(process.execPath, ['-e', '']);
          await collect(dead);
          content = String(dead.pid);
        }
        writeFileSync(join(dir, 'LOCK'), content);
      }
      const children = Array.from({ length: 6 }, () => start('open-once.mjs', [dir, '1000']));
      await Promise.all(children.map((c) => printed(c, 'ready')));
      for (const c of children) c.stdin!.write('go\n');
      const results = await Promise.all(children.map((c) => collect(c)));
      const outcomes = results.map((r) => r.stdout.split('\n').filter((l) => l !== 'ready' && l !== '')[0]);
      expect(outcomes.filter((o) => o === 'opened'), `trial ${trial}: ${JSON.stringify(outcomes)}`).toHaveLength(1);
      expect(outcomes.filter((o) => o === 'locked')).toHaveLength(5);
    }
  });
});

describe('owners killed at random moments', () => {
  it('3 contenders, 16 of them SIGKILLed while they own or wait: never two owners, every acknowledged draw recovered, no id acknowledged twice', async () => {
    const seed = 7_077;
    const rand = rng(seed);
    const ctx = `seed ${seed}`;
    const dir = tmpDir('lock-kill-loop');
    const claim = join(tmpDir('lock-claim'), 'owner');
    const logs: { stdout: string }[] = [];
    const running: ChildProcess[] = [];
    let spawned = 0;
    const add = (): void => {
      const child = start('lock-contender.mjs', [dir, claim, String(seed * 100 + spawned++)]);
      const log = { stdout: '' };
      child.stdout!.on('data', (d: Buffer) => (log.stdout += d.toString()));
      logs.push(log);
      running.push(child);
    };
    for (let i = 0; i < 3; i++) add();
    // Each kill waits for a new owner since the previous one (so ownership really changes hands,
    // also on a slow machine), then lands at a random moment of its run.
    const ownersNow = (): number => logs.reduce((n, l) => n + l.stdout.split('\n').filter((x) => x === 'owner').length, 0);
    let kills = 0;
    let seen = 0;
    const until = Date.now() + 20_000;
    while (kills < 16 && Date.now() < until) {
      for (let i = 0; i < 150 && ownersNow() <= seen; i++) await new Promise((r) => setTimeout(r, 20));
      seen = ownersNow();
      await new Promise((r) => setTimeout(r, rand() * 200));
      const victim = running.splice(Math.floor(rand() * running.length), 1)[0]!;
      const exited = new Promise((r) => victim.once('exit', r));
      victim.kill('SIGKILL');
      await exited;
      kills++;
      add();
    }
    for (const c of running) c.kill('SIGKILL');
    await Promise.all(running.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : undefined)));

    const lines = logs.flatMap((l) => l.stdout.split('\n'));
    expect(lines.filter((l) => l.startsWith('double')), ctx).toEqual([]);
    expect(lines.filter((l) => l.startsWith('fail')), ctx).toEqual([]);
    const owners = lines.filter((l) => l === 'owner').length;
    const acks = lines
      .filter((l) => l.startsWith('ack '))
      .map((l) => l.split(' ').map(Number) as [number, number, number])
      .map(([, first, count]) => ({ first, count }))
      .sort((x, y) => x.first - y.first);
    expect(kills, ctx).toBe(16);
    expect(owners, ctx).toBeGreaterThanOrEqual(kills);
    expect(acks.length, ctx).toBeGreaterThan(16);
    // No request id acknowledged twice: the acknowledged ranges are disjoint.
    for (let i = 1; i < acks.length; i++) expect(acks[i]!.first, `${ctx}: ack ${i}`).toBeGreaterThan(acks[i - 1]!.first + acks[i - 1]!.count - 1);

    const engine = await DrawEngine.open({ dir, shards: 2 });
    try {
      const p = await engine.pool('p');
      const drawn = p.items.reduce((s, i) => s + i.drawn, 0);
      const acked = acks.reduce((s, a) => s + a.count, 0);
      expect(drawn, ctx).toBeGreaterThanOrEqual(acked);
      const last = acks.at(-1)!;
      expect(p.lastRequestId, ctx).toBeGreaterThanOrEqual(last.first + last.count - 1);
    } finally {
      await engine.close();
    }
  });
});
