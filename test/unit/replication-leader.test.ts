import { afterEach, describe, expect, it } from 'vitest';
import type { ShardClient } from '../../src/coordinator/shard-client.js';
import type { EngineError } from '../../src/errors.js';
import type { AppliedReply, BatchReply } from '../../src/protocol.js';
import { MessageBuilder, readMsgHeader } from '../../src/replication/message.js';
import { fillReplication, type FilledReplication } from '../../src/replication/options.js';
import { Replication, type ReplicationHooks, type Role } from '../../src/replication/replication.js';
import { ShardStream } from '../../src/replication/shard-stream.js';
import { MemoryLog, publishHeaderBytes } from '../helpers/memory-log.js';

/*
 * Replication (replication.ts) taking over as a leader, and ShardStream (shard-stream.ts)
 * following a subject, on the in-memory log, with fake shard clients that apply what they are
 * given and record how they were told to lead.
 */

class FakeShard {
  readonly applied: { seq: number; term: number; msgSeq: number; fence: boolean }[] = [];
  readonly leads: { term: number; nextMsgSeq: number; maxMessageBytes: number }[] = [];
  readonly deposedWith: EngineError[] = [];
  readonly settled: { replies: BatchReply[] | undefined; seqs: number[] }[] = [];
  readonly failed: EngineError[] = [];
  #onSettle: (() => void) | undefined;
  constructor(readonly index: number) {}

  async replicate(payload: Uint8Array, streamSeq: number): Promise<AppliedReply> {
    const h = readMsgHeader(payload);
    this.applied.push({ seq: streamSeq, term: h.term, msgSeq: h.msgSeq, fence: h.fence });
    return { type: 'applied', streamSeq, msgSeq: h.msgSeq, term: h.term, duplicate: false, created: [], keyed: [], maxRequestId: 0, error: null };
  }
  async lead(term: number, nextMsgSeq: number, maxMessageBytes: number): Promise<void> {
    this.leads.push({ term, nextMsgSeq, maxMessageBytes });
  }
  depose(err: EngineError): void {
    this.deposedWith.push(err);
  }
  failReplies(_replies: BatchReply[], err: EngineError): void {
    this.failed.push(err);
    this.#onSettle?.();
  }
  block(): void {}
  settlePublished(replies: BatchReply[] | undefined, seqs: number[]): void {
    this.settled.push({ replies, seqs });
    this.#onSettle?.();
  }
  /** Resolves at the next settlePublished (or failReplies). */
  nextSettle(): Promise<void> {
    return new Promise((r) => (this.#onSettle = r));
  }
  get client(): ShardClient {
    return this as unknown as ShardClient;
  }
}

function hooks(): ReplicationHooks & { roles: [Role, number][]; ids: number[]; errors: EngineError[] } {
  const h = {
    roles: [] as [Role, number][],
    ids: [] as number[],
    errors: [] as EngineError[],
    learned: () => {},
    raiseIds: (next: number) => void h.ids.push(next),
    changed: (role: Role, term: number) => void h.roles.push([role, term]),
    error: (err: EngineError) => void h.errors.push(err),
  };
  return h;
}

const opened: Replication[] = [];

async function leader(log: MemoryLog, shards: FakeShard[], over: Record<string, unknown> = {}): Promise<{ r: Replication; opts: FilledReplication; h: ReturnType<typeof hooks> }> {
  const opts = fillReplication({ servers: ['nats://127.0.0.1:4222'], stream: 'rewards', node: 'node-a', leaseMs: 1000, ...over }, undefined);
  const h = hooks();
  const r = new Replication(log, opts, shards.map((s) => s.client), new Map(), 0, h);
  opened.push(r);
  await r.start();
  return { r, opts, h };
}

/** Messages of an earlier leader on shard k: `n` groups of one draw, term `term`. */
async function earlier(log: MemoryLog, k: number, term: number, n: number): Promise<void> {
  const b = new MessageBuilder(k, 64 * 1024);
  b.registerPool(1, 'gems', 3);
  for (let i = 1; i <= n; i++) {
    b.appendDraws(1, i, new Uint16Array([0]), 0, 1);
    const [m] = b.take(term, i);
    await log.publish(k, m!, `${term}.${k}.${i}`, log.subject(k).at(-1)?.seq ?? 0, 1000);
  }
}

afterEach(async () => {
  for (const r of opened.splice(0)) await r.close();
});

describe('Replication as a leader', () => {
  it('takes the lease, applies what the stream holds, fences every subject after it, then leads with the next group number', async () => {
    const log = new MemoryLog();
    await earlier(log, 0, 1, 2);
    const shards = [new FakeShard(0), new FakeShard(1)];
    const { r, opts, h } = await leader(log, shards);

    expect(r.role).toBe('leader');
    expect(r.term).toBe(1);
    expect((await log.leaseGet())?.value).toEqual({ node: 'node-a', term: 1, advertise: undefined, shards: 2 });
    // Shard 0 applied the earlier leader's two messages, then its own fence; shard 1 only its fence.
    expect(shards[0]!.applied).toEqual([
      { seq: 1, term: 1, msgSeq: 1, fence: false },
      { seq: 2, term: 1, msgSeq: 2, fence: false },
      { seq: expect.any(Number), term: 1, msgSeq: 3, fence: true },
    ]);
    expect(shards[1]!.applied).toEqual([{ seq: expect.any(Number), term: 1, msgSeq: 1, fence: true }]);
    const fences = log.attempts.filter((a) => a.msgId.startsWith('1.') && (a.msgId === '1.0.3' || a.msgId === '1.1.1'));
    expect(fences.map((a) => [a.shard, a.expectLast])).toEqual(expect.arrayContaining([[0, 2], [1, 0]]));
    expect(shards[0]!.leads).toEqual([{ term: 1, nextMsgSeq: 4, maxMessageBytes: expect.any(Number) }]);
    expect(shards[1]!.leads).toEqual([{ term: 1, nextMsgSeq: 2, maxMessageBytes: expect.any(Number) }]);
    expect(shards[0]!.leads[0]!.maxMessageBytes).toBeLessThanOrEqual(opts.maxMessageBytes);
    expect(h.roles).toEqual([['leader', 1]]);
    expect(h.ids).toEqual([1]);
  });

  it("a group published after the takeover chains on the fence; another node's fence then deposes every shard", async () => {
    const log = new MemoryLog();
    const shards = [new FakeShard(0)];
    const { r, h } = await leader(log, shards);
    const fenceSeq = log.subject(0).at(-1)!.seq;
    const b = new MessageBuilder(0, shards[0]!.leads[0]!.maxMessageBytes);
    b.registerPool(1, 'gems', 3);
    b.appendDraws(1, 1, new Uint16Array([2]), 0, 1);
    const replies = [{ type: 'done', id: 1 } as unknown as BatchReply];
    const settled = shards[0]!.nextSettle();
    r.publish(shards[0]!.client, { type: 'publish', messages: b.take(1, 2), replies });
    await settled;
    expect(shards[0]!.settled).toEqual([{ replies, seqs: [fenceSeq + 1] }]);
    expect(log.attempts.at(-1)).toMatchObject({ msgId: '1.0.2', expectLast: fenceSeq, outcome: fenceSeq + 1 });

    log.fence(0, '2.0.3');
    b.appendDraws(1, 2, new Uint16Array([1]), 0, 1);
    r.publish(shards[0]!.client, { type: 'publish', messages: b.take(1, 3), replies });
    await expect.poll(() => r.role).toBe('deposed');
    expect(shards[0]!.deposedWith.map((e) => e.code)).toEqual(['ERR_NOT_LEADER']);
    expect(shards[0]!.failed.map((e) => e.code)).toEqual(['ERR_NOT_LEADER']);
    expect(h.roles).toEqual([['leader', 1], ['deposed', 1]]);
  });
});

describe('regressions', () => {
  it('leader-messages-leave-room-for-nats-headers: a full message plus its publish headers fits max_payload = maxMessageBytes (both 1 MiB by default)', async () => {
    const log = new MemoryLog();
    const shards = [new FakeShard(0)];
    const { r, opts } = await leader(log, shards, { timeoutMs: 100 });
    log.maxPayload = opts.maxMessageBytes; // a NATS server's default max_payload is the option's default, 1 MiB
    expect(opts.maxMessageBytes).toBe(1 << 20);

    const size = shards[0]!.leads[0]!.maxMessageBytes;
    const b = new MessageBuilder(0, size);
    b.registerPool(1, 'gems', 3);
    const draws = 1_500_000; // one drawMany: more than a message holds
    b.appendDraws(1, 1, new Uint16Array(draws), 0, draws);
    const messages = b.take(1, 2);
    expect(messages.length).toBe(2);
    expect(messages[0]!.byteLength).toBeGreaterThan(size - 64); // full
    // The largest headers a publish of it can carry still fit.
    expect(messages[0]!.byteLength + publishHeaderBytes(`${2 ** 32 - 1}.255.${Number.MAX_SAFE_INTEGER}`, Number.MAX_SAFE_INTEGER)).toBeLessThanOrEqual(opts.maxMessageBytes);

    const settled = shards[0]!.nextSettle();
    r.publish(shards[0]!.client, { type: 'publish', messages, replies: [] });
    await settled;
    expect(shards[0]!.failed).toEqual([]);
    expect(log.attempts.slice(-2).map((a) => a.outcome)).toEqual([expect.any(Number), expect.any(Number)]);
  });
});

describe('MemoryLog max_payload (probe i)', () => {
  it('counts the headers: max_payload - 1 KiB with an id and an expectation is stored, exactly max_payload is refused', async () => {
    const log = new MemoryLog();
    log.maxPayload = 1 << 20;
    expect(await log.publish(0, new Uint8Array((1 << 20) - 1024), 'big', 0, 1000)).toBe(1);
    const err = await log.publish(0, new Uint8Array(1 << 20), 'exact', 1, 1000).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'unavailable', message: 'MAX_PAYLOAD_EXCEEDED' });
    expect(log.messages).toHaveLength(1);
  });
});

describe('ShardStream (a follower shard)', () => {
  it('applies the subject from after its mark, in order; applied(seq) resolves once that message is applied; an apply error stops it and rejects waiters', async () => {
    const log = new MemoryLog();
    await earlier(log, 0, 1, 3); // seqs 1, 2, 3
    const shard = new FakeShard(0);
    const learned: AppliedReply[] = [];
    const st = new ShardStream(shard.client, log, { term: 1, groupSeq: 1, streamSeq: 1 }, 0);
    await expect(st.applied(0)).resolves.toBeUndefined();
    await expect(st.applied(1)).resolves.toBeUndefined(); // the mark holds it already
    const waiting = st.applied(5);
    st.follow((r) => learned.push(r));
    await st.applied(3);
    expect(shard.applied.map((a) => a.seq)).toEqual([2, 3]);
    expect(learned.map((r) => r.streamSeq)).toEqual([2, 3]);
    expect(st.mark).toEqual({ term: 1, groupSeq: 3, streamSeq: 3 });
    expect(st.messages).toBe(2);

    // The next message cannot be applied: the shard reports an error.
    shard.replicate = async (payload, streamSeq) => ({
      ...(await FakeShard.prototype.replicate.call(shard, payload, streamSeq)),
      error: { code: 'ERR_CORRUPT_WAL', message: 'bad message' },
    });
    await earlier(log, 0, 2, 1);
    await expect(waiting).rejects.toMatchObject({ code: 'ERR_CORRUPT_WAL' });
    expect(st.failed?.code).toBe('ERR_CORRUPT_WAL');
    await expect(st.applied(4)).rejects.toMatchObject({ code: 'ERR_CORRUPT_WAL' });
    await st.stopFollowing();
  });
});

describe('ShardStream lag', () => {
  it('is 0 when caught up; a newer message seen in the stream makes it at least 1 message and as old as the last message applied; a shard that stops applying keeps growing older', async () => {
    const log = new MemoryLog();
    await earlier(log, 0, 1, 2); // seqs 1, 2
    const shard = new FakeShard(0);
    const st = new ShardStream(shard.client, log, undefined, 0);
    st.follow(() => {});
    await st.applied(2);
    const now = Date.now();
    expect(st.lag(now)).toEqual({ messages: 0, ms: 0 });
    // The shard stops applying (a stalled follower), while the leader goes on.
    let release!: () => void;
    const stalled = new Promise<void>((r) => (release = r));
    const replicate = shard.replicate.bind(shard);
    shard.replicate = async (payload, seq) => {
      await stalled;
      return replicate(payload, seq);
    };
    await earlier(log, 0, 2, 3); // seqs 3, 4, 5
    st.noteTail((await log.last(0))!.seq); // what the follower's periodic look finds
    const applied = st.appliedStoredAt;
    expect(applied).toBeGreaterThan(0);
    const later = applied + 5000;
    const lag = st.lag(later);
    expect(lag.messages).toBeGreaterThanOrEqual(1);
    expect(lag.ms).toBe(5000);
    expect(st.lag(later + 1000).ms).toBe(6000);
    release();
    await st.applied(5);
    expect(st.lag(Date.now())).toEqual({ messages: 0, ms: 0 });
    await st.stopFollowing();
  });
});

