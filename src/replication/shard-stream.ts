import type { ShardClient } from '../coordinator/shard-client.js';
import { type EngineError, errorFromWire } from '../errors.js';
import type { AppliedReply } from '../protocol.js';
import type { StreamMark } from '../wal/format.js';
import type { ReplicatedLog } from './log.js';
import type { PublishSlot } from './publisher.js';

/**
 * One shard's place in the stream: the last message its local WAL holds, its following of the
 * subject (a follower, or a node catching up before it leads) and its publishing slot (a leader).
 */
export class ShardStream implements PublishSlot {
  readonly #shard: ShardClient;
  readonly #log: ReplicatedLog;
  mark: StreamMark | undefined;
  maxRequestId: number;
  /** Messages of the subject not applied yet, as the consumer last saw. */
  pending = 0;
  /** When the stream stored the last message applied. */
  appliedStoredAt = 0;
  /** The newest message of the subject this node knows of (a delivery, or a look at the stream). */
  #tailSeq = 0;
  #followingSince = 0;
  lastSeq = 0;
  messages = 0;
  bytes = 0;
  /** Leader: the mark of the snapshot last uploaded. */
  uploaded: StreamMark | undefined;
  /** The shard could not apply a message: it applies nothing more. */
  failed: EngineError | undefined;
  #follower: { stop(): Promise<void> } | undefined;
  #waiters: { seq: number; resolve: () => void; reject: (err: unknown) => void }[] = [];

  constructor(shard: ShardClient, log: ReplicatedLog, mark: StreamMark | undefined, maxRequestId: number) {
    this.#shard = shard;
    this.#log = log;
    this.mark = mark;
    this.maxRequestId = maxRequestId;
  }

  /** Apply the subject's messages after the mark as they come; `learned` hears what each created. */
  follow(learned: (reply: AppliedReply) => void): void {
    this.#followingSince = Date.now();
    this.#follower = this.#log.follow(this.#shard.index, (this.mark?.streamSeq ?? 0) + 1, async (m) => {
      const reply = await this.#shard.replicate(m.payload, m.seq);
      if (reply.error !== null) {
        const err = errorFromWire(reply.error);
        this.failed = err;
        for (const w of this.#waiters.splice(0)) w.reject(err);
        throw err;
      }
      if (!reply.duplicate) {
        this.mark = { term: reply.term, groupSeq: reply.msgSeq, streamSeq: m.seq };
        learned(reply);
      }
      this.maxRequestId = Math.max(this.maxRequestId, reply.maxRequestId);
      this.messages++;
      this.bytes += m.payload.byteLength;
      this.pending = m.pending;
      this.appliedStoredAt = m.storedAt;
      this.noteTail(m.seq);
      if (this.#waiters.length === 0) return;
      const done = this.#waiters.filter((w) => w.seq <= m.seq);
      this.#waiters = this.#waiters.filter((w) => w.seq > m.seq);
      for (const w of done) w.resolve();
    });
  }

  /** The subject holds a message at stream sequence `seq`. */
  noteTail(seq: number): void {
    if (seq > this.#tailSeq) this.#tailSeq = seq;
  }

  /**
   * How far behind the stream this shard is: messages known not applied yet (at least one when
   * the subject's newest message is past the mark), and for how long (since the last message
   * applied was stored; 0 when caught up). A shard that stopped applying keeps growing older.
   */
  lag(now: number): { messages: number; ms: number } {
    const behind = this.pending > 0 || this.#tailSeq > (this.mark?.streamSeq ?? 0);
    if (!behind) return { messages: 0, ms: 0 };
    return { messages: Math.max(1, this.pending), ms: Math.max(0, now - (this.appliedStoredAt || this.#followingSince)) };
  }

  /** Resolves once the shard applied the message at stream sequence `seq` (0: at once). */
  applied(seq: number): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    if (seq === 0 || (this.mark?.streamSeq ?? 0) >= seq) return Promise.resolve();
    return new Promise((resolve, reject) => this.#waiters.push({ seq, resolve, reject }));
  }

  async stopFollowing(): Promise<void> {
    const f = this.#follower;
    this.#follower = undefined;
    await f?.stop();
  }
}
