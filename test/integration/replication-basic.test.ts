/**
 * Replication in one process against a real three-server JetStream cluster: a leader and a
 * follower engine (each its own directory and NATS connection), the follower converging,
 * refusing writes, promoting and fencing the old leader out.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DrawEngine, EngineError } from '../../dist/src/index.js';
import type { DrawEngineOptions } from '../../dist/src/index.js';
import { NatsLog } from '../../dist/src/replication/nats-log.js';
import { fillReplication } from '../../dist/src/replication/options.js';
import { startCluster, type NatsCluster } from '../helpers/nats-cluster.js';
import { tmpDir } from '../helpers/tmp.js';

let cluster: NatsCluster;
let streams = 0;

beforeAll(async () => {
  cluster = await startCluster({ label: 'nats-basic' });
}, 90_000);

afterAll(async () => {
  await cluster?.stop();
});

function group(): string {
  return `basic${process.pid}x${streams++}`;
}

function opts(stream: string, dir: string, role: 'leader' | 'follower', extra: Partial<NonNullable<DrawEngineOptions['replication']>> = {}): DrawEngineOptions {
  return {
    dir,
    shards: 2,
    wal: 'file',
    replication: { servers: cluster.urls, stream, role, leaseMs: 1000, timeoutMs: 4000, node: `${role}-${dir.slice(-12)}`, advertise: `http://${role}.example:8080`, ...extra },
  };
}

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (err) {
    return err instanceof EngineError ? err.code : String(err);
  }
}

describe('replication on a three-server JetStream cluster', () => {
  it('a follower applies the leader, refuses writes, promotes, and fences the old leader out', async () => {
    const stream = group();
    const leader = await DrawEngine.open(opts(stream, tmpDir('leader'), 'leader'));
    const follower = await DrawEngine.open(opts(stream, tmpDir('follower'), 'follower'));
    try {
      expect(leader.role).toBe('leader');
      expect(follower.role).toBe('follower');
      await leader.createPool('p', [
        { id: 'a', weight: 1, quantity: 1000 },
        { id: 'b', weight: 3, quantity: -1 },
      ]);
      await leader.createPool('q', [{ id: 'x', weight: 1, quantity: 50 }]);
      const acks = await Promise.all(Array.from({ length: 2000 }, (_, i) => leader.draw(i % 2 ? 'p' : 'q', i % 7 === 0 ? { idempotencyKey: `k${i}` } : undefined)));
      const batch = await leader.drawMany('p', 10_000);
      const maxAcked = Math.max(batch.firstRequestId + batch.count - 1, ...acks.map((a) => a.requestId));
      const want = { p: await leader.pool('p'), q: await leader.pool('q') };

      await until('follower to converge', async () => {
        if (!follower.poolIds().includes('q')) return undefined;
        const got = { p: await follower.pool('p'), q: await follower.pool('q') };
        return JSON.stringify(got) === JSON.stringify(want) ? true : undefined;
      });
      const write = follower.draw('p');
      await expect(write).rejects.toMatchObject({ code: 'ERR_NOT_LEADER', details: { address: 'http://leader.example:8080' } });
      expect(follower.metrics().replication).toMatchObject({ role: 'follower', leaderAddress: 'http://leader.example:8080' });
      // A keyed draw the leader acknowledged is known to the follower's key index.
      await expect(code(follower.draw('q', { idempotencyKey: 'k0' }))).resolves.toBe('ERR_NOT_LEADER');

      await follower.promote();
      expect(follower.role).toBe('leader');
      const after = await follower.draw('p');
      expect(after.requestId).toBeGreaterThan(maxAcked);
      // The same key on the new leader gives back the first outcome.
      const again = await follower.draw('q', { idempotencyKey: 'k0' });
      expect(again).toEqual(acks[0]);

      // The old leader's next write is refused by the stream: it is deposed, and acknowledges nothing.
      await expect(code(leader.draw('p'))).resolves.toBe('ERR_NOT_LEADER');
      await until('old leader deposed', () => (leader.role === 'deposed' ? true : undefined));
      await expect(code(leader.drawMany('p', 10))).resolves.toBe('ERR_NOT_LEADER');
    } finally {
      await Promise.allSettled([leader.close(), follower.close()]);
    }
  }, 60_000);

  it('snapshots go to the object store and trim the stream; a new follower from an empty directory starts from them and converges', async () => {
    const stream = group();
    const leader = await DrawEngine.open({ ...opts(stream, tmpDir('trim-leader'), 'leader'), snapshotEveryRecords: 0 });
    let follower: DrawEngine | undefined;
    try {
      await leader.createPool('p', [
        { id: 'a', weight: 1, quantity: 100_000 },
        { id: 'b', weight: 2, quantity: -1 },
      ]);
      await leader.createPool('q', [{ id: 'x', weight: 1, quantity: -1 }]);
      for (let round = 0; round < 3; round++) {
        await Promise.all(Array.from({ length: 3000 }, (_, i) => leader.draw(i % 3 ? 'p' : 'q', i % 10 === 0 ? { idempotencyKey: `r${round}k${i}` } : undefined)));
        await leader.drawMany('p', 5000);
        await leader.snapshot(); // the second and third trim behind the one before
      }
      await Promise.all(Array.from({ length: 1000 }, () => leader.draw('p'))); // a tail after the last snapshot
      const nc = await cluster.connect();
      const jsm = await nc.jetstreamManager();
      const info = await jsm.streams.info(stream);
      expect(info.state.first_seq, 'the stream was trimmed').toBeGreaterThan(1);
      const os = await nc.jetstream().views.os(`${stream}_snap`);
      const objects: string[] = [];
      for await (const o of await os.list()) objects.push(o.name);
      expect(objects.sort()).toEqual(['shard-0', 'shard-1']);

      follower = await DrawEngine.open(opts(stream, tmpDir('trim-follower'), 'follower'));
      expect(follower.recovery.snapshotsLoaded, 'started from the uploaded snapshots').toBe(2);
      expect(follower.recovery.pools).toBe(2);
      const want = { p: await leader.pool('p'), q: await leader.pool('q') };
      await until('the new follower to converge', async () => {
        const got = { p: await follower!.pool('p'), q: await follower!.pool('q') };
        return JSON.stringify(got) === JSON.stringify(want) ? true : undefined;
      });
      // Both nodes recorded their positions, and a leader reads them before it trims.
      const log = await NatsLog.connect(fillReplication({ servers: cluster.urls, stream, node: 'reader' }, tmpDir('trim-reader')));
      try {
        const nodes = await until('both positions recorded', async () => {
          const p = await log.positions();
          return p.length === 2 ? p : undefined;
        });
        expect(nodes.map((n) => n.node).sort()).toEqual([leader.options.replication!.node, follower.options.replication!.node].sort());
        for (const n of nodes) expect(n.seqs).toHaveLength(2);
      } finally {
        await log.close();
      }
      // Idempotency keys came with the snapshot: the key index refuses one reused on another pool.
      await follower.promote();
      await expect(follower.draw('p', { idempotencyKey: 'r0k0' })).rejects.toMatchObject({ code: 'ERR_IDEMPOTENCY_MISMATCH' });
      expect(follower.metrics().replication).toMatchObject({ role: 'leader', lagMessages: 0 });
    } finally {
      await Promise.allSettled([leader.close(), follower?.close()]);
    }
  }, 60_000);

  it("a maxMessageBytes above the servers' max_payload is refused at open (it would be refused on every publish)", async () => {
    const dir = tmpDir('too-big');
    const o = opts(group(), dir, 'leader', { maxMessageBytes: 16 << 20 });
    await expect(DrawEngine.open(o)).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG', message: expect.stringContaining('max_payload (8388608)') });
    // The directory is not held: it opens with a size the servers take.
    const ok = await DrawEngine.open(opts(group(), dir, 'leader', { maxMessageBytes: 8 << 20 }));
    await ok.close();
  }, 30_000);
});

