/**
 * Regression (found by these tests): a snapshot() call waiting on a shard that fail-stops was
 * never settled. ShardClient.failAll() rejected everything queued, waiting and in flight but
 * not the snapshot() calls; the worker answered a snapshot request on a failed core with a
 * lifecycle 'error', and dropped the request ids a queued request got back from
 * ShardCore.endSnapshot. The call stayed pending with the worker held, and DrawEngine.close(),
 * which waits for pending snapshot() calls, never resolved. Now failAll() rejects them too, and
 * the worker answers every request id.
 *
 * These tests run the real ShardClient and ShardCore in one thread: ShardThread is replaced by
 * an in-process stand-in that handles messages as workers/shard-worker.ts does. They assert
 * the expected behaviour (the call rejects with the shard's failure and the thread is no
 * longer held), so they fail until the bug is fixed.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ItemSpec } from '../../src/catalog.js';
import { PoolMeta } from '../../src/coordinator/pool-meta.js';
import { ShardClient, type ShardHooks } from '../../src/coordinator/shard-client.js';
import type { ShardThreadEvents } from '../../src/coordinator/shard-thread.js';
import { EngineError, errorFromWire, errorToWire } from '../../src/errors.js';
import { createMetricsBuffer, shardBlock } from '../../src/layout.js';
import { kOpCreate, kTag, type BatchMessage, type BatchReply, type InitMessage, type ShardConfig, type SnapshotJob, type ToWorkerLifecycle } from '../../src/protocol.js';
import { ShardCore } from '../../src/shard/shard-core.js';
import { snapshotReply } from '../../src/shard/snapshot-reply.js';
import { tmpDir } from '../helpers/tmp.js';

/** The in-process stand-ins for worker threads started by the tests. */
const fake = vi.hoisted(() => ({ threads: [] as unknown[] }));

vi.mock('../../src/coordinator/shard-thread.js', () => {
  /**
   * ShardThread without a thread: the messages go to a ShardCore the way the shard worker
   * passes them (asynchronously, one turn later), group commit included.
   */
  class InProcessThread {
    readonly threadId = 4242;
    readonly worker = undefined;
    readonly core: ShardCore;
    readonly events: ShardThreadEvents;
    held = false;
    terminated = false;

    constructor(core: ShardCore, events: ShardThreadEvents) {
      this.core = core;
      this.events = events;
    }

    static async start(shard: number, init: Omit<InitMessage, 'tag' | 'type' | 'port'>, events: ShardThreadEvents): Promise<InProcessThread> {
      const t = new InProcessThread(new ShardCore(init.config, init.pools, shardBlock(init.metrics, shard)), events);
      fake.threads.push(t);
      return t;
    }

    postBatch(msg: BatchMessage): void {
      setImmediate(() => {
        // onBatch + commitGroup of workers/shard-worker.ts, for a group of one.
        const r: BatchReply = this.core.apply(msg);
        try {
          this.core.commit();
        } catch (err) {
          r.error = errorToWire(err);
          r.indices = new Uint16Array(0);
        }
        this.events.reply(r);
      });
    }

    quiet(): void {}

    hold(on: boolean): void {
      this.held = on;
    }

    post(msg: ToWorkerLifecycle): void {
      setImmediate(() => {
        if (msg.type === 'snapshot') {
          try {
            this.#postSnapshot(this.core.requestSnapshot(msg.reqId), [msg.reqId]);
          } catch (err) {
            this.events.lifecycle({ tag: kTag, type: 'error', error: errorToWire(err) });
          }
        } else if (msg.type === 'snapshotDone') {
          const { job, reqIds } = this.core.endSnapshot(msg.seq, msg.error === null ? null : errorFromWire(msg.error));
          this.#postSnapshot(job, reqIds);
        }
      });
    }

    /** postSnapshot() of workers/shard-worker.ts: the same decision, from src. */
    #postSnapshot(job: SnapshotJob | 'skipped' | 'queued' | undefined, reqIds: number[]): void {
      const msg = snapshotReply(job, reqIds, this.core.failure);
      if (msg !== undefined) this.events.lifecycle(msg);
    }

    async close(): Promise<void> {
      await this.core.close();
      this.terminated = true;
    }

    async terminate(): Promise<void> {
      await this.core.close().catch(() => {});
      this.terminated = true;
    }
  }
  return { ShardThread: InProcessThread };
});

interface Thread {
  core: ShardCore;
  held: boolean;
}

const items: ItemSpec[] = [
  { id: 'ruby', weight: 1, quantity: -1 },
  { id: 'opal', weight: 2, quantity: -1 },
];

function config(dir: string): ShardConfig {
  return {
    shard: 0,
    wal: 'file',
    dir,
    sync: 'never',
    syncIntervalMs: 10,
    segmentBytes: 64 * 1024,
    epoch: 1,
    firstSeq: 1,
    seed: 1,
    shards: 1,
    snapshotEveryRecords: 0,
    idempotency: { keys: 100, draws: 10_000 },
    maxRequestId: 0,
    chain: null,
  };
}

/** Outcome of a promise once a few turns of the event loop have passed. */
async function outcome<T>(p: Promise<T>): Promise<'pending' | { value: T } | { error: unknown }> {
  let state: 'pending' | { value: T } | { error: unknown } = 'pending';
  p.then(
    (value) => (state = { value }),
    (error: unknown) => (state = { error }),
  );
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  return state;
}

const clients: ShardClient[] = [];

afterEach(async () => {
  // close() rejects whatever is still waiting (ERR_ENGINE_CLOSED): nothing is left dangling.
  for (const c of clients.splice(0)) await c.close().catch(() => {});
  fake.threads.length = 0;
});

async function startShard(writeSnapshot: ShardHooks['writeSnapshot']): Promise<{ client: ShardClient; thread: Thread; pool: PoolMeta }> {
  const metrics = createMetricsBuffer(1);
  const client = new ShardClient(0, { next: 1 }, 1000, metrics, { writeSnapshot, onUnexpectedExit: () => {} });
  clients.push(client);
  await client.start({ config: config(tmpDir('snapshot-hang')), pools: [], metrics });
  const thread = fake.threads[0] as Thread;
  const pool = new PoolMeta('gems', 0, 0, items.map((i) => i.id), false);
  await client.control(kOpCreate, pool, { type: 'create', id: 'gems', items });
  pool.ready = true;
  return { client, thread, pool };
}

describe('BUG: snapshot() after the shard fail-stops', () => {
  it('a snapshot() the failed shard refuses (lifecycle error) rejects with the failure and releases the thread', async () => {
    const { client, thread } = await startShard(() => Promise.resolve());
    // The core fails with no batch in flight (a background sync failure, say): the client
    // does not know yet, so snapshot() goes to the worker.
    const failure = new EngineError('ERR_DISK_FULL', 'background sync failed: ENOSPC');
    thread.core.fail(failure);
    const snap = client.snapshot();
    snap.catch(() => {});
    const got = await outcome(snap);
    expect(client.failure, 'the worker reported the failure').toMatchObject({ code: 'ERR_DISK_FULL', message: failure.message });
    expect(got, 'snapshot() settles with the failure').toEqual({ error: client.failure });
    expect(thread.held, 'the thread is no longer held for it').toBe(false);
  });

  it('a snapshot() queued behind a job in flight rejects when the shard fails before the job is written', async () => {
    let finishWrite: () => void = () => {};
    const { client, thread, pool } = await startShard(() => new Promise<void>((resolve) => (finishWrite = resolve)));
    await client.drawMany(pool, 10);
    const first = client.snapshot(); // a job, being written
    first.catch(() => {});
    expect(await outcome(first)).toBe('pending');
    const second = client.snapshot(); // queued behind it in the core
    second.catch(() => {});
    expect(await outcome(second)).toBe('pending');
    // A commit fails: the reply carries the failure, the client fails everything.
    const failure = new EngineError('ERR_SHARD_FAILED', 'shard 0 WAL sync failed: EIO');
    thread.core.fail(failure);
    const draw = client.drawMany(pool, 1);
    await expect(draw).rejects.toMatchObject({ code: 'ERR_SHARD_FAILED', message: failure.message });
    // The first job is written after all; the core hands the queued call back with no job.
    finishWrite();
    // (Whether the call of the job in flight resolves, as its file was written, or rejects with
    // the failure is the fix's choice; it must not stay pending either.)
    expect(await outcome(first), 'the snapshot() of the job in flight settles').not.toBe('pending');
    const got = await outcome(second);
    expect(got, 'the queued snapshot() settles with the failure').toEqual({ error: client.failure });
    expect(thread.held, 'the thread is no longer held for it').toBe(false);
  });
});
