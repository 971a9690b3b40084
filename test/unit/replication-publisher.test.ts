import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ShardClient } from '../../src/coordinator/shard-client.js';
import { EngineError } from '../../src/errors.js';
import type { BatchReply, PublishRequest } from '../../src/protocol.js';
import { LogError } from '../../src/replication/log.js';
import { MessageBuilder, readMsgHeader } from '../../src/replication/message.js';
import { publishGroup, type PublishContext, type PublishSlot } from '../../src/replication/publisher.js';
import { MemoryLog } from '../helpers/memory-log.js';

/*
 * publishGroup (publisher.ts) against the in-memory log, with a fake ShardClient that only
 * records what publishGroup asks of it: failReplies, block, settlePublished.
 */

type ShardEvent =
  | { type: 'fail'; replies: BatchReply[]; err: EngineError }
  | { type: 'block'; err: EngineError | undefined }
  | { type: 'settle'; replies: BatchReply[] | undefined; seqs: number[] };

class FakeShard {
  readonly events: ShardEvent[] = [];
  constructor(readonly index: number) {}
  failReplies(replies: BatchReply[], err: EngineError): void {
    this.events.push({ type: 'fail', replies, err });
  }
  block(err: EngineError | undefined): void {
    this.events.push({ type: 'block', err });
  }
  settlePublished(replies: BatchReply[] | undefined, seqs: number[]): void {
    this.events.push({ type: 'settle', replies, seqs: [...seqs] });
  }
  get client(): ShardClient {
    return this as unknown as ShardClient;
  }
  get types(): string[] {
    return this.events.map((e) => e.type);
  }
}

interface Ctx extends PublishContext {
  leads: boolean;
  deposedWith: EngineError[];
}

function context(log: MemoryLog, timeoutMs = 1000): Ctx {
  const ctx: Ctx = {
    log,
    timeoutMs,
    leads: true,
    deposedWith: [],
    leading: () => ctx.leads,
    deposed: (err) => {
      ctx.deposedWith.push(err);
    },
  };
  return ctx;
}

function slot(lastSeq = 0): PublishSlot {
  return { lastSeq, messages: 0, bytes: 0 };
}

/** A group of `n` messages of shard k, numbered from `firstMsgSeq` under `term`: one draw each. */
function group(k: number, term: number, firstMsgSeq: number, n: number): PublishRequest {
  const b = new MessageBuilder(k, 64 * 1024);
  b.registerPool(7, 'gems', 3);
  const messages: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    b.appendDraws(7, 100 + i, new Uint16Array([i % 3]), 0, 1);
    messages.push(...b.take(term, firstMsgSeq + i));
  }
  expect(messages).toHaveLength(n);
  const replies = [{ type: 'done', id: firstMsgSeq } as unknown as BatchReply, { type: 'done', id: firstMsgSeq + 1 } as unknown as BatchReply];
  return { type: 'publish', messages, replies };
}

const idOf = (k: number, msg: Uint8Array): string => {
  const h = readMsgHeader(msg);
  return `${h.term}.${k}.${h.msgSeq}`;
};

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe('MemoryLog models the probed JetStream semantics', () => {
  it('stream sequences are global across subjects; a stale expectation is refused naming the last sequence', async () => {
    const log = new MemoryLog();
    expect(await log.publish(0, new Uint8Array([1]), 'a', 0, 100)).toBe(1);
    expect(await log.publish(1, new Uint8Array([2]), 'b', 0, 100)).toBe(2);
    expect(await log.publish(0, new Uint8Array([3]), 'c', 1, 100)).toBe(3);
    for (const stale of [0, 1, 2, 99]) {
      const err = await log.publish(0, new Uint8Array([9]), `s${stale}`, stale, 100).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(LogError);
      expect(err).toMatchObject({ kind: 'refused', message: 'wrong last sequence: 3' });
    }
    expect(log.messages.map((m) => [m.seq, m.shard])).toEqual([[1, 0], [2, 1], [3, 0]]);
  });

  it('a retry with the same msgID and a stale expectation is refused (R3), a duplicate with a current one', async () => {
    const log = new MemoryLog();
    await log.publish(0, new Uint8Array([1]), 'a', 0, 100);
    log.loseAnswers(1);
    const lost = await log.publish(0, new Uint8Array([2]), 'rec-7', 1, 100).catch((e: unknown) => e);
    expect(lost).toMatchObject({ kind: 'unavailable' });
    expect(log.subject(0).map((m) => m.msgId)).toEqual(['a', 'rec-7']);
    const retry = await log.publish(0, new Uint8Array([2]), 'rec-7', 1, 100).catch((e: unknown) => e);
    expect(retry).toMatchObject({ kind: 'refused', message: 'wrong last sequence: 2' });
    expect((await log.last(0))?.msgId).toBe('rec-7');
    expect(await log.publish(0, new Uint8Array([2]), 'rec-7', 2, 100)).toBe(2);
    expect(log.attempts.map((a) => a.outcome)).toEqual([1, 'lost', 'refused', 'duplicate']);
    expect(log.messages).toHaveLength(2);
  });

  it('trim purges one subject below a sequence and keeps the others; at() answers only for its subject', async () => {
    const log = new MemoryLog();
    for (let i = 0; i < 4; i++) {
      await log.publish(0, new Uint8Array([i]), `0.${i}`, log.subject(0).at(-1)?.seq ?? 0, 100);
      await log.publish(1, new Uint8Array([i]), `1.${i}`, log.subject(1).at(-1)?.seq ?? 0, 100);
    }
    await log.trim(0, 5);
    expect(log.subject(0).map((m) => m.seq)).toEqual([5, 7]);
    expect(log.subject(1).map((m) => m.seq)).toEqual([2, 4, 6, 8]);
    expect(await log.at(0, 3)).toBeUndefined();
    expect(await log.at(0, 4)).toBeUndefined(); // shard 1's message
    expect((await log.at(1, 4))?.msgId).toBe('1.1');
    expect((await log.at(0, 5))?.pending).toBe(1);
  });

  it('lease: create refuses an existing key, update is compare-and-set on the revision', async () => {
    const log = new MemoryLog();
    const v = { node: 'a', term: 1, advertise: undefined, shards: 2 };
    const r1 = await log.leasePut(v, 0);
    expect(r1).toBeGreaterThan(0);
    expect(await log.leasePut({ ...v, node: 'b' }, 0)).toBeUndefined();
    const r2 = await log.leasePut({ ...v, term: 2 }, r1!);
    expect(r2).toBeGreaterThan(r1!);
    expect(await log.leasePut({ ...v, node: 'b' }, r1!)).toBeUndefined();
    expect(await log.leaseGet()).toEqual({ value: { ...v, term: 2 }, revision: r2 });
  });
});

describe('publishGroup', () => {
  it('stores the messages in order, each conditional on the last sequence it wrote, and settles the replies', async () => {
    const log = new MemoryLog();
    const ctx = context(log);
    const shard = new FakeShard(0);
    const req = group(0, 3, 10, 3);
    // Another shard's subject moves the global sequence meanwhile; this subject's chain is its own.
    log.onPublish = (k) => {
      if (k === 0) log.fence(1, `1.${log.lastSeq}`);
    };
    const s = slot();
    await publishGroup(ctx, shard.client, s, req);

    const mine = log.subject(0);
    expect(mine.map((m) => m.seq)).toEqual([2, 4, 6]);
    expect(mine.map((m) => m.msgId)).toEqual(['3.0.10', '3.0.11', '3.0.12']);
    expect(mine.map((m) => Buffer.from(m.payload))).toEqual(req.messages.map((m) => Buffer.from(m)));
    expect(log.attempts.map((a) => a.expectLast)).toEqual([0, 2, 4]);
    expect(shard.events).toEqual([{ type: 'settle', replies: req.replies, seqs: [2, 4, 6] }]);
    expect(s).toEqual({ lastSeq: 6, messages: 3, bytes: req.messages.reduce((a, m) => a + m.byteLength, 0) });
    expect(ctx.deposedWith).toEqual([]);
    expect(vi.getTimerCount()).toBe(0); // the group's timeout was cleared
  });

  it('bounds each attempt by min(timeoutMs, 2000)', async () => {
    const log = new MemoryLog();
    await publishGroup(context(log, 600_000), new FakeShard(0).client, slot(), group(0, 1, 1, 1));
    await publishGroup(context(log, 500), new FakeShard(0).client, slot(1), group(0, 1, 2, 1));
    expect(log.attempts.map((a) => a.timeoutMs)).toEqual([2000, 500]);
  });

  it('a lost answer, then a retry refused whose subject ends with our msgId: stored once, no deposition', async () => {
    const log = new MemoryLog();
    const ctx = context(log);
    const shard = new FakeShard(0);
    const req = group(0, 2, 1, 3);
    let n = 0;
    log.onPublish = () => {
      if (++n === 2) log.loseAnswers(1); // the second message is stored, its answer lost
    };
    const s = slot();
    const done = publishGroup(ctx, shard.client, s, req);
    await vi.advanceTimersByTimeAsync(100); // the retry's backoff
    await done;

    expect(log.attempts.map((a) => a.outcome)).toEqual([1, 'lost', 'refused', 3]);
    expect(log.attempts[2]).toMatchObject({ msgId: idOf(0, req.messages[1]!), expectLast: 1 });
    expect(log.subject(0).map((m) => m.msgId)).toEqual(req.messages.map((m) => idOf(0, m)));
    expect(log.attempts[3]!.expectLast).toBe(2); // chained on the recovered sequence
    expect(shard.events).toEqual([{ type: 'settle', replies: req.replies, seqs: [1, 2, 3] }]);
    expect(s.lastSeq).toBe(3);
    expect(s.messages).toBe(3);
    expect(ctx.deposedWith).toEqual([]);
  });

  it('a lost answer whose message was not stored is retried with the same id and stored once', async () => {
    const log = new MemoryLog();
    const shard = new FakeShard(0);
    log.failNext('publish', 2);
    const done = publishGroup(context(log), shard.client, slot(), group(0, 1, 5, 1));
    await vi.advanceTimersByTimeAsync(100 + 200);
    await done;
    expect(log.attempts.map((a) => [a.msgId, a.outcome])).toEqual([
      ['1.0.5', 'unavailable'],
      ['1.0.5', 'unavailable'],
      ['1.0.5', 1],
    ]);
    expect(shard.types).toEqual(['settle']);
  });

  it("a refusal with another node's message deposes: ERR_NOT_LEADER, replies failed, nothing settled", async () => {
    const log = new MemoryLog();
    const ctx = context(log);
    const shard = new FakeShard(0);
    const req = group(0, 1, 1, 2);
    log.fence(0, '2.0.1'); // the new leader's fence
    await publishGroup(ctx, shard.client, slot(), req);

    expect(ctx.deposedWith).toHaveLength(1);
    expect(ctx.deposedWith[0]).toMatchObject({ code: 'ERR_NOT_LEADER', details: { shard: 0 } });
    expect(shard.types).toEqual(['fail']);
    const fail = shard.events[0] as Extract<ShardEvent, { type: 'fail' }>;
    expect(fail.replies).toBe(req.replies);
    expect(fail.err.code).toBe('ERR_NOT_LEADER');
    expect(log.subject(0).map((m) => m.msgId)).toEqual(['2.0.1']); // nothing of ours
    expect(log.attempts).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('unavailable past timeoutMs: replies fail ERR_REPLICATION_UNAVAILABLE and the shard blocks; once back, stored, settled without replies, unblocked', async () => {
    const log = new MemoryLog();
    const ctx = context(log, 1000);
    const shard = new FakeShard(3);
    const req = group(3, 1, 1, 2);
    log.setUnavailable(true);
    const s = slot();
    let finished = false;
    const done = publishGroup(ctx, shard.client, s, req).then(() => (finished = true));

    await vi.advanceTimersByTimeAsync(999);
    expect(shard.events).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(shard.types).toEqual(['fail', 'block']);
    const fail = shard.events[0] as Extract<ShardEvent, { type: 'fail' }>;
    expect(fail.replies).toBe(req.replies);
    expect(fail.err).toMatchObject({ code: 'ERR_REPLICATION_UNAVAILABLE', details: { shard: 3, timeoutMs: 1000 } });
    expect((shard.events[1] as Extract<ShardEvent, { type: 'block' }>).err).toBe(fail.err);

    // Still trying, with a bounded backoff, long after the callers were answered.
    await vi.advanceTimersByTimeAsync(30_000);
    expect(finished).toBe(false);
    expect(log.messages).toEqual([]);
    const tries = log.attempts.length;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(log.attempts.length - tries).toBeGreaterThanOrEqual(9); // at most 1 s apart
    expect(log.attempts.length - tries).toBeLessThanOrEqual(11);

    log.setUnavailable(false);
    await vi.advanceTimersByTimeAsync(1000);
    await done;
    expect(finished).toBe(true);
    expect(log.subject(3).map((m) => m.msgId)).toEqual(['1.3.1', '1.3.2']);
    expect(shard.events.slice(2)).toEqual([
      { type: 'settle', replies: undefined, seqs: [1, 2] },
      { type: 'block', err: undefined },
    ]);
    expect(s.lastSeq).toBe(2);
    expect(ctx.deposedWith).toEqual([]);
  });

  it('unavailable for less than timeoutMs: stored when back, the replies settled, never blocked', async () => {
    const log = new MemoryLog();
    const shard = new FakeShard(0);
    log.unavailableFor(500);
    const done = publishGroup(context(log, 1000), shard.client, slot(), group(0, 1, 1, 1));
    await vi.advanceTimersByTimeAsync(800);
    await done;
    expect(shard.types).toEqual(['settle']);
    expect((shard.events[0] as Extract<ShardEvent, { type: 'settle' }>).replies).toBeDefined();
    expect(log.messages).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(5000);
    expect(shard.types).toEqual(['settle']); // the timeout was cleared
  });

  it('leading() false before the first publish: ERR_NOT_LEADER, nothing published, nothing settled, no deposition', async () => {
    const log = new MemoryLog();
    const ctx = context(log);
    ctx.leads = false;
    const shard = new FakeShard(0);
    const req = group(0, 1, 1, 2);
    await publishGroup(ctx, shard.client, slot(), req);
    expect(log.attempts).toEqual([]);
    expect(shard.types).toEqual(['fail']);
    expect((shard.events[0] as Extract<ShardEvent, { type: 'fail' }>).err).toMatchObject({ code: 'ERR_NOT_LEADER', details: { shard: 0 } });
    expect(ctx.deposedWith).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('leading() turning false while the stream is unavailable stops the retries (unanswered attempts may be stored: an unknown outcome)', async () => {
    const log = new MemoryLog();
    const ctx = context(log, 5000);
    const shard = new FakeShard(0);
    log.setUnavailable(true);
    const done = publishGroup(ctx, shard.client, slot(), group(0, 1, 1, 1));
    await vi.advanceTimersByTimeAsync(350);
    ctx.leads = false;
    await vi.advanceTimersByTimeAsync(1000);
    await done;
    const tries = log.attempts.length;
    expect(shard.types).toEqual(['fail']);
    const err = (shard.events[0] as Extract<ShardEvent, { type: 'fail' }>).err;
    expect(err.code).toBe('ERR_REPLICATION_UNAVAILABLE');
    expect(err.message).toMatch(/^this engine no longer leads; .*outcome is unknown$/);
    expect((err.cause as EngineError).code).toBe('ERR_NOT_LEADER');
    log.setUnavailable(false);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(log.attempts.length).toBe(tries);
    expect(log.messages).toEqual([]);
    expect(shard.types).toEqual(['fail']); // the group's timeout was cleared too
  });

  it('leading() turning false after the callers timed out does not answer them twice', async () => {
    const log = new MemoryLog();
    const ctx = context(log, 1000);
    const shard = new FakeShard(0);
    log.setUnavailable(true);
    const done = publishGroup(ctx, shard.client, slot(), group(0, 1, 1, 1));
    await vi.advanceTimersByTimeAsync(1500);
    ctx.leads = false;
    await vi.advanceTimersByTimeAsync(1000);
    await done;
    expect(shard.types).toEqual(['fail', 'block']);
  });
});

describe('regressions', () => {
  /*
   * ERR_NOT_LEADER promises "nothing was changed" (docs/errors.md), and RewardPoolClient sends a
   * request refused with it again to the next leader. A leader deposed while some of the group
   * is (or may be) in the stream must not say so: the next leader applies those records.
   */
  const failOf = (shard: FakeShard): EngineError => {
    expect(shard.types).toEqual(['fail']);
    return (shard.events[0] as Extract<ShardEvent, { type: 'fail' }>).err;
  };

  it('publisher-deposed-after-part-stored: fenced after the group\'s first message was stored, the callers get an unknown outcome, not ERR_NOT_LEADER', async () => {
    const log = new MemoryLog();
    const ctx = context(log);
    const shard = new FakeShard(0);
    const req = group(0, 1, 1, 2);
    let n = 0;
    log.onPublish = () => {
      if (++n === 2) log.fence(0, '2.0.2'); // a new leader applied message 1, then fenced
    };
    await publishGroup(ctx, shard.client, slot(), req);
    expect(log.subject(0).map((m) => m.msgId)).toEqual(['1.0.1', '2.0.2']);
    expect(ctx.deposedWith.map((e) => e.code)).toEqual(['ERR_NOT_LEADER']);
    const err = failOf(shard);
    expect(err.code).toBe('ERR_REPLICATION_UNAVAILABLE');
    expect(err.message).toMatch(/outcome is unknown/);
    expect(err.details).toMatchObject({ shard: 0 });
  });

  it('publisher-deposed-after-lost-answer: a stored message whose answer was lost, then a fence: unknown outcome, not ERR_NOT_LEADER', async () => {
    const log = new MemoryLog();
    const ctx = context(log);
    const shard = new FakeShard(0);
    log.loseAnswers(1);
    log.onPublish = () => {
      if (log.attempts.length === 1) log.fence(0, '2.0.2'); // before the retry
    };
    const done = publishGroup(ctx, shard.client, slot(), group(0, 1, 1, 1));
    await vi.advanceTimersByTimeAsync(100);
    await done;
    expect(log.attempts.map((a) => a.outcome)).toEqual(['lost', 'refused']);
    expect(log.subject(0).map((m) => m.msgId)).toEqual(['1.0.1', '2.0.2']);
    expect(ctx.deposedWith).toHaveLength(1);
    expect(failOf(shard).code).toBe('ERR_REPLICATION_UNAVAILABLE');
  });

  it('publisher-not-leading-after-part-stored: leading() turning false mid-group with a message stored: unknown outcome', async () => {
    const log = new MemoryLog();
    const ctx = context(log);
    const shard = new FakeShard(0);
    log.onPublish = () => {
      ctx.leads = false; // the lease was taken while the first message was in flight
    };
    await publishGroup(ctx, shard.client, slot(), group(0, 1, 1, 2));
    expect(log.subject(0)).toHaveLength(1);
    expect(failOf(shard).code).toBe('ERR_REPLICATION_UNAVAILABLE');
    expect(ctx.deposedWith).toEqual([]);
  });
});
