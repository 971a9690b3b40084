import { readFile } from 'node:fs/promises';
import type { ShardClient } from '../coordinator/shard-client.js';
import { asEngineError, EngineError, messageOf } from '../errors.js';
import type { AppliedReply, PublishRequest } from '../protocol.js';
import type { StreamMark } from '../wal/format.js';
import { LogError, type LeaseEntry, type LeaseValue, type ReplicatedLog } from './log.js';
import { fenceMessage } from './message.js';
import type { FilledReplication } from './options.js';
import { publishGroup, type PublishContext } from './publisher.js';
import { freshWindowMs, PositionReporter, trimPoint } from './positions.js';
import { ShardStream } from './shard-stream.js';

export type Role = 'leader' | 'follower' | 'deposed';

export interface ReplicationHooks {
  /** A follower shard applied a message: route to the pools it created, index its keys. */
  learned(reply: AppliedReply): void;
  /** Request ids start at least here from now on. */
  raiseIds(next: number): void;
  /** The role changed (or the leader did). */
  changed(role: Role, term: number): void;
  /** Something in the background failed (a lease renewal, an automatic promotion); it is retried. */
  error(err: EngineError): void;
}

export interface ReplicationMetrics {
  role: Role;
  term: number;
  /** The node holding the lease, and where its service is (when it says). */
  leader: string | undefined;
  leaderAddress: string | undefined;
  /** Follower: messages of the stream not applied yet, over all shards, and how old the oldest is. */
  lagMessages: number;
  lagMs: number;
  /** Stream messages this node published (leader) or applied (follower), and their bytes: draws / messages is the draws per publish. */
  messages: number;
  bytes: number;
}

/** How often a follower looks at each subject's newest message (for its lag). */
const kTailLookMs = 1000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref());

/**
 * Room left in maxMessageBytes for the headers of a publish (Nats-Msg-Id, the expected last
 * subject sequence: about 120 bytes): NATS's max_payload bounds payload plus headers, and the
 * client refuses a larger publish every time (nats-probes.test.ts, probe i), so a message of
 * exactly maxMessageBytes would be retried forever against a server whose max_payload is
 * maxMessageBytes (1 MiB, both defaults).
 */
const kPublishHeaderRoom = 1024;

/**
 * Leading and following (DESIGN.md "Replication and failover"). A follower's shards apply the
 * stream's messages as they come (each shard its own subject). A leader's shards hand each group
 * to publish(): every message is published on the shard's subject on the condition that the
 * subject's last sequence is the one this leader last wrote, so once another node has fenced
 * the stream (takeover()) nothing of the old leader is stored, and it is deposed. The lease
 * (a key-value entry renewed with compare-and-set) says who leads; a follower may take over
 * when it expires (autoPromote) or when told to (promote()).
 */
export class Replication {
  readonly #log: ReplicatedLog;
  readonly #opts: FilledReplication;
  readonly #shards: readonly ShardClient[];
  readonly #hooks: ReplicationHooks;
  readonly #state: ShardStream[];
  readonly #publishing: PublishContext;
  readonly #positions: PositionReporter;
  role: Role = 'follower';
  term = 0;
  #leader: LeaseValue | undefined;
  #leaseSeenAt = Date.now();
  /** The lease revision this node saw last (0: none). */
  #seenRevision = 0;
  #checking = false;
  #tails: NodeJS.Timeout | undefined;
  #looking = false;
  #renewing = false;
  #revision = 0;
  #renew: NodeJS.Timeout | undefined;
  #watch: { stop(): void } | undefined;
  #expiry: NodeJS.Timeout | undefined;
  #promoting: Promise<void> | undefined;
  #closed = false;

  constructor(log: ReplicatedLog, opts: FilledReplication, shards: readonly ShardClient[], marks: Map<number, StreamMark>, maxRequestId: number, hooks: ReplicationHooks) {
    this.#log = log;
    this.#opts = opts;
    this.#shards = shards;
    this.#hooks = hooks;
    this.#state = shards.map((s, k) => new ShardStream(s, log, marks.get(k), maxRequestId));
    this.#positions = new PositionReporter(log, opts.node, () => this.#seqs());
    this.#publishing = {
      log,
      timeoutMs: opts.timeoutMs,
      leading: () => !this.#closed && this.role === 'leader',
      deposed: (err) => this.#depose(err),
    };
  }

  /** Follow the stream on every shard and watch the lease; a leader then takes over. */
  async start(): Promise<void> {
    const lease = await this.#log.leaseGet();
    if (lease !== undefined && lease.value.shards !== this.#shards.length) {
      throw new EngineError('ERR_INVALID_CONFIG', `options.shards must be ${lease.value.shards} in replication group ${this.#opts.stream} (its leader runs ${lease.value.shards}), got ${this.#shards.length}`, {
        details: { option: 'shards', value: this.#shards.length, expected: lease.value.shards },
      });
    }
    this.#watch = this.#log.leaseWatch((entry) => this.#onLease(entry));
    this.#positions.start();
    for (const st of this.#state) st.follow((reply) => this.#hooks.learned(reply));
    if (this.#opts.role === 'leader') {
      await this.#takeover(false);
    } else {
      this.#hooks.changed('follower', this.term);
      this.#expiry = setInterval(() => this.#checkExpiry(), Math.max(50, this.#opts.leaseMs / 4)).unref();
      this.#tails = setInterval(() => void this.#lookAtTails(), kTailLookMs).unref();
    }
  }

  // ---- the lease ----

  #onLease(entry: LeaseEntry | undefined): void {
    this.#leaseSeenAt = Date.now();
    this.#seenRevision = entry?.revision ?? 0;
    const before = this.#leader;
    this.#leader = entry?.value;
    if (entry === undefined) return;
    const other = entry.value.node !== this.#opts.node;
    if (this.role === 'follower' && other && (before?.node !== entry.value.node || before?.term !== entry.value.term)) {
      this.term = entry.value.term;
      this.#hooks.changed('follower', this.term);
    }
    if (this.role === 'leader' && (entry.value.node !== this.#opts.node || entry.value.term !== this.term)) {
      this.#depose(new EngineError('ERR_NOT_LEADER', `the lease was taken by ${entry.value.node} (term ${entry.value.term})`, { details: { leader: entry.value.node } }));
    }
  }

  /**
   * autoPromote: once the lease has gone leaseMs without a change this node saw, read it again
   * (a watch may have missed renewals) and take over only from that very revision.
   */
  #checkExpiry(): void {
    if (this.#closed || this.role !== 'follower' || !this.#opts.autoPromote || this.#promoting || this.#checking) return;
    if (Date.now() - this.#leaseSeenAt <= this.#opts.leaseMs) return;
    this.#checking = true;
    void (async () => {
      const now = await this.#log.leaseGet();
      if (now !== undefined && now.revision !== this.#seenRevision) {
        this.#onLease(now);
        return;
      }
      await this.#promote(now ?? null);
    })()
      // No quorum, or another node was quicker: look again at the next tick.
      .catch((err: unknown) => this.#hooks.error(asEngineError(err, 'ERR_REPLICATION_UNAVAILABLE', 'automatic promotion failed')))
      .finally(() => (this.#checking = false));
  }

  /** A follower takes over now, whoever holds the lease. */
  promote(): Promise<void> {
    return this.#promote(undefined);
  }

  #promote(expired: LeaseEntry | null | undefined): Promise<void> {
    if (this.role === 'leader') return Promise.resolve();
    if (this.role === 'deposed') return Promise.reject(new EngineError('ERR_NOT_LEADER', 'this engine was deposed: reopen it as a follower'));
    this.#promoting ??= this.#takeover(true, expired).finally(() => (this.#promoting = undefined));
    return this.#promoting;
  }

  /**
   * Take the lease (a new term), fence every shard's subject with a message the old leader's
   * next publish cannot follow, having applied everything before it, and lead. Without `force`,
   * a lease another node renews keeps this one a follower (ERR_NOT_LEADER). With `expired`
   * (the entry autoPromote found unrenewed), only that revision is replaced.
   */
  async #takeover(force: boolean, expired?: LeaseEntry | null): Promise<void> {
    try {
      for (;;) {
        let current = expired === undefined ? await this.#log.leaseGet() : (expired ?? undefined);
        if (!force && current !== undefined && current.value.node !== this.#opts.node) {
          await this.#waitExpiry(current);
        } else if (force && expired === undefined) {
          current = await this.#log.leaseGet();
        }
        const term = (current?.value.term ?? 0) + 1;
        const value: LeaseValue = { node: this.#opts.node, term, advertise: this.#opts.advertise, shards: this.#shards.length };
        const rev = await this.#log.leasePut(value, current?.revision ?? 0);
        if (rev === undefined) {
          if (expired !== undefined) throw new EngineError('ERR_NOT_LEADER', 'the lease changed while this node was taking over');
          continue; // someone wrote the lease meanwhile: look again
        }
        this.#revision = rev;
        this.term = term;
        break;
      }
    } catch (err) {
      if (err instanceof EngineError) throw err;
      throw new EngineError('ERR_REPLICATION_UNAVAILABLE', `cannot take the lease of replication group ${this.#opts.stream}: ${messageOf(err)}`, { cause: err });
    }
    clearInterval(this.#expiry);
    await Promise.all(this.#shards.map((_, k) => this.#fence(k)));
    this.#hooks.raiseIds(Math.max(...this.#state.map((s) => s.maxRequestId)) + 1);
    this.role = 'leader';
    this.#renew = setInterval(() => void this.#renewLease(), Math.max(50, Math.floor(this.#opts.leaseMs / 3))).unref();
    this.#hooks.changed('leader', this.term);
  }

  /** Wait until another node's lease goes leaseMs without renewal, or refuse. */
  async #waitExpiry(entry: LeaseEntry): Promise<void> {
    const seenRevision = entry.revision;
    await sleep(this.#opts.leaseMs + 50);
    const now = await this.#log.leaseGet();
    if (now !== undefined && now.revision !== seenRevision) {
      throw new EngineError('ERR_NOT_LEADER', `${now.value.node} holds the lease (term ${now.value.term}) and renews it: open as a follower, or promote()`, {
        details: { leader: now.value.node, address: now.value.advertise },
      });
    }
  }

  async #fence(k: number): Promise<void> {
    const st = this.#state[k]!;
    for (;;) {
      const last = await this.#log.last(k);
      await st.applied(last?.seq ?? 0);
      const msgSeq = (st.mark?.groupSeq ?? 0) + 1;
      const fence = fenceMessage(this.term, k, msgSeq);
      let seq: number;
      try {
        seq = await this.#log.publish(k, fence, `${this.term}.${k}.${msgSeq}`, last?.seq ?? 0, this.#opts.timeoutMs);
      } catch (err) {
        if (err instanceof LogError && err.kind === 'refused') continue; // a message came in meanwhile
        throw new EngineError('ERR_REPLICATION_UNAVAILABLE', `cannot fence shard ${k}'s stream: ${messageOf(err)}`, { cause: err });
      }
      await st.applied(seq);
      await st.stopFollowing();
      st.lastSeq = seq;
      await this.#shards[k]!.lead(this.term, msgSeq + 1, this.#opts.maxMessageBytes - kPublishHeaderRoom);
      return;
    }
  }

  async #renewLease(): Promise<void> {
    if (this.role !== 'leader' || this.#closed || this.#renewing) return;
    this.#renewing = true;
    try {
      const rev = await this.#log.leasePut({ node: this.#opts.node, term: this.term, advertise: this.#opts.advertise, shards: this.#shards.length }, this.#revision);
      if (rev === undefined) this.#depose(new EngineError('ERR_NOT_LEADER', 'another node took the lease'));
      else this.#revision = rev;
    } catch (err) {
      // No quorum: the next renewal tries again; the fence keeps a new leader safe meanwhile.
      this.#hooks.error(asEngineError(err, 'ERR_REPLICATION_UNAVAILABLE', 'lease renewal failed'));
    } finally {
      this.#renewing = false;
    }
  }

  // ---- leading ----

  /** A leader shard's group: publish its messages in order; answer its callers once stored. */
  publish(shard: ShardClient, req: PublishRequest): void {
    void publishGroup(this.#publishing, shard, this.#state[shard.index]!, req);
  }

  /** Writes are refused on any node but the leader: the error says who leads, when known. */
  notLeader(): EngineError | undefined {
    if (this.role === 'leader') return undefined;
    const leader = this.#leader;
    const where = leader === undefined ? 'no leader is known' : `${leader.node} leads (term ${leader.term})${leader.advertise ? ` at ${leader.advertise}` : ''}`;
    const what = this.role === 'deposed' ? 'this engine was deposed' : this.#promoting ? 'this engine is taking over' : 'this engine is a follower';
    return new EngineError('ERR_NOT_LEADER', `${what}: ${where}`, { details: { role: this.role, leader: leader?.node, address: leader?.advertise } });
  }

  /** A shard of this node failed: a leader steps down (the follower has everything it acknowledged). */
  shardFailed(k: number, err: EngineError): void {
    this.#depose(new EngineError('ERR_NOT_LEADER', `shard ${k} failed (${err.message}): this engine stops leading`, { cause: err, details: { shard: k } }));
  }

  /**
   * A leader's full snapshot of shard k is on disk: upload it, then trim the subject behind the
   * snapshot uploaded before it, and behind every live node's position (a node that was away
   * longer starts from the uploaded snapshot when it comes back).
   */
  async snapshotWritten(k: number, mark: StreamMark, path: string): Promise<void> {
    if (this.role !== 'leader' || this.#closed) return;
    const st = this.#state[k]!;
    await this.#log.snapshotPut(k, await readFile(path));
    const previous = st.uploaded;
    st.uploaded = mark;
    if (previous === undefined) return;
    const point = await trimPoint(this.#log, this.#opts.node, this.#seqs(), k, previous.streamSeq + 1, freshWindowMs(this.#opts.leaseMs));
    if (point > 1) await this.#log.trim(k, point);
  }

  #depose(err: EngineError): void {
    if (this.role !== 'leader') return;
    this.role = 'deposed';
    clearInterval(this.#renew);
    for (const s of this.#shards) s.depose(err);
    this.#hooks.changed('deposed', this.term);
  }

  /** A follower learns each subject's newest message now and then: a stalled shard shows its lag. */
  async #lookAtTails(): Promise<void> {
    if (this.role !== 'follower' || this.#closed || this.#looking) return;
    this.#looking = true;
    try {
      await Promise.all(this.#state.map(async (st, k) => st.noteTail((await this.#log.last(k))?.seq ?? 0)));
    } catch {
      // No answer: the lag stays as last known.
    } finally {
      this.#looking = false;
    }
  }

  /** Each shard's position: the stream sequence of the last message its WAL holds. */
  #seqs(): number[] {
    return this.#state.map((s) => s.mark?.streamSeq ?? 0);
  }

  metrics(): ReplicationMetrics {
    const following = this.role !== 'leader';
    const now = Date.now();
    const lags = following ? this.#state.map((s) => s.lag(now)) : [];
    return {
      role: this.role,
      term: this.term,
      leader: this.#leader?.node,
      leaderAddress: this.#leader?.advertise,
      lagMessages: lags.reduce((a, l) => a + l.messages, 0),
      lagMs: lags.reduce((a, l) => Math.max(a, l.ms), 0),
      messages: this.#state.reduce((a, s) => a + s.messages, 0),
      bytes: this.#state.reduce((a, s) => a + s.bytes, 0),
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#renew);
    clearInterval(this.#expiry);
    clearInterval(this.#tails);
    this.#positions.stop();
    this.#watch?.stop();
    await Promise.all(this.#state.map((s) => s.stopFollowing()));
    await this.#log.close();
  }
}
