import { EngineError, errorToWire, storageError } from '../errors.js';
import {
  kBatchesIndex,
  kDrawsIndex,
  kEmptyDrawsIndex,
  kRecordsIndex,
  kRotationsIndex,
  kStateFailed,
  kStateIndex,
  kSyncNsIndex,
  kSyncsIndex,
  kWalBytesIndex,
} from '../layout.js';
import { Sfc32 } from '../prng.js';
import {
  type SnapshotJob,
  kOpDraw,
  kOpDrawKeyed,
  kOpStride,
  type BatchMessage,
  type BatchReply,
  type PoolInit,
  type ShardConfig,
} from '../protocol.js';
import { MessageBuilder, readMsgHeader } from '../replication/message.js';
import { kEmptyDraw } from '../selector.js';
import { SnapshotPlanner, type SnapshotSource } from './snapshot-planner.js';
import type { StreamMark } from '../wal/format.js';
import type { RecordSink, WalStats, WalWriter } from '../wal/writer.js';
import { openWalWriter } from './open-wal.js';
import { applyReplicated, logPublished, type ReplicaApplied } from './replica.js';
import { drawKeyed, runControl, unknownRefError, type PoolOpsContext } from './pool-ops.js';
import { ShardPools } from './shard-pools.js';

/**
 * Everything one shard does, without thread plumbing, so it can be tested directly: it owns
 * its pools' selectors, its PRNG and its WAL writer, applies batches in order, and turns a
 * storage failure into fail-stop (nothing more is acknowledged, ever). Under replication a
 * leader's records go to messages first (logged locally once the stream stored them), and a
 * follower applies its leader's messages.
 */
export class ShardCore {
  readonly config: ShardConfig;
  readonly #pools: ShardPools;
  #rng: Sfc32;
  /** The local WAL. */
  #wal: WalWriter;
  /** Where applied records go: the WAL, or a replicating leader's messages. */
  #sink: RecordSink;
  #builder: MessageBuilder | undefined;
  #term = 0;
  #nextMsgSeq = 1;
  /** The last stream message the local WAL holds (replication). */
  #mark: StreamMark | undefined;
  #metrics: BigInt64Array;
  #failure: EngineError | undefined;
  #published: WalStats = { bytes: 0, records: 0, syncs: 0, syncNs: 0, rotations: 0 };
  readonly #snap: SnapshotPlanner;
  /** What the pool operations (keyed draws, controls) reach of this shard. */
  readonly #ops: PoolOpsContext = {
    pools: () => this.#pools,
    rng: () => this.#rng,
    wal: () => this.#wal,
    sink: () => this.#sink,
    changed: (ref) => this.#snap.changed(ref),
  };

  constructor(config: ShardConfig, pools: PoolInit[], metrics: BigInt64Array, wal?: WalWriter) {
    this.config = config;
    this.#metrics = metrics;
    this.#snap = new SnapshotPlanner(config.replicated);
    this.#rng = config.seed === undefined ? Sfc32.fromCrypto() : Sfc32.fromSeed(config.seed, config.shard);
    this.#wal = wal ?? openWalWriter(config, (err) => this.fail(err));
    this.#sink = this.#wal;
    this.#pools = new ShardPools(config.idempotency);
    for (const p of pools) {
      this.#pools.load(p);
      this.#wal.registerPool(p.ref, p.id, p.itemIds.length);
    }
    this.#pools.maxRequestId = Math.max(this.#pools.maxRequestId, config.maxRequestId);
    this.#mark = config.mark;
    const chain = config.chain;
    if (chain) this.#snap.startFrom(chain, pools);
  }

  get failure(): EngineError | undefined {
    return this.#failure;
  }

  /** Enter fail-stop: nothing after this is acknowledged. */
  fail(err: EngineError): void {
    if (this.#failure) return;
    this.#failure = err;
    Atomics.store(this.#metrics, kStateIndex, BigInt(kStateFailed));
  }

  /**
   * Apply a batch: draws, creations, updates and state reads in op order, logged as they go.
   * The reply must not be sent before commit() succeeds.
   */
  apply(batch: BatchMessage): BatchReply {
    const reply: BatchReply = { type: 'done', id: batch.id, indices: new Uint16Array(0), controlResults: [], replayed: null, opErrors: null, error: null };
    if (this.#failure) {
      reply.error = errorToWire(this.#failure);
      return reply;
    }
    const ops = batch.ops;
    const nOps = ops.length / kOpStride;
    let slots = 0;
    for (let o = 0; o < nOps; o++) {
      const kind = ops[o * kOpStride];
      if (kind === kOpDraw || kind === kOpDrawKeyed) slots += ops[o * kOpStride + 2]!;
    }
    const out = new Uint16Array(slots);
    reply.indices = out;
    let at = 0;
    let drawn = 0;
    let empty = 0;
    let c = 0;
    let k = 0;
    try {
      for (let o = 0; o < nOps; o++) {
        const kind = ops[o * kOpStride]!;
        const ref = ops[o * kOpStride + 1]!;
        if (kind === kOpDraw) {
          const count = ops[o * kOpStride + 2]!;
          const first = ops[o * kOpStride + 3]!;
          const pool = this.#pools.get(ref);
          if (pool === undefined) {
            // Its creation failed earlier in this batch; the coordinator rejects this op.
            out.fill(kEmptyDraw, at, at + count);
            (reply.opErrors ??= []).push([o, errorToWire(unknownRefError(ref))]);
          } else {
            empty += pool.selector.drawInto(this.#rng, count, out, at);
            this.#sink.appendDraws(ref, first, out, at, count);
            this.#pools.drew(pool, first, count);
            this.#snap.changed(ref);
            drawn += count;
          }
          at += count;
        } else if (kind === kOpDrawKeyed) {
          const count = ops[o * kOpStride + 2]!;
          const outcome = drawKeyed(this.#ops, ref, batch.keys[k++]!, count, ops[o * kOpStride + 3]!, out, at);
          if (typeof outcome === 'number') {
            if (outcome >= 0) {
              drawn += count;
              empty += outcome;
            } else {
              (reply.replayed ??= []).push([o, -outcome]);
            }
          } else {
            out.fill(kEmptyDraw, at, at + count);
            (reply.opErrors ??= []).push([o, errorToWire(outcome)]);
          }
          at += count;
        } else {
          const control = batch.controls[c++]!;
          const result = runControl(this.#ops, kind, ref, control);
          if (control.type !== 'state' && !(result instanceof EngineError)) this.#snap.changed(ref);
          if (result instanceof EngineError) {
            reply.controlResults.push(null);
            (reply.opErrors ??= []).push([o, errorToWire(result)]);
          } else {
            reply.controlResults.push(result);
          }
        }
      }
    } catch (err) {
      this.fail(storageError(err, `shard ${this.config.shard} WAL append failed`));
      reply.error = errorToWire(this.#failure);
      return reply;
    }
    this.#count(drawn, empty);
    Atomics.add(this.#metrics, kBatchesIndex, 1n);
    return reply;
  }

  #count(drawn: number, empty: number): void {
    Atomics.add(this.#metrics, kDrawsIndex, BigInt(drawn));
    Atomics.add(this.#metrics, kEmptyDrawsIndex, BigInt(empty));
  }

  // ---- replication ----

  /** From now on this shard leads: its records go to messages numbered from nextMsgSeq. */
  lead(term: number, nextMsgSeq: number, maxMessageBytes: number): void {
    const builder = new MessageBuilder(this.config.shard, maxMessageBytes);
    for (const ref of this.#pools.refs()) {
      const p = this.#pools.get(ref)!;
      builder.registerPool(ref, p.id, p.itemIds.length);
    }
    this.#builder = builder;
    this.#sink = builder;
    this.#term = term;
    this.#nextMsgSeq = nextMsgSeq;
  }

  /** The messages of what was applied since the last call (leader). */
  takeMessages(): Buffer[] {
    if (this.#builder === undefined) return [];
    const msgs = this.#builder.take(this.#term, this.#nextMsgSeq);
    this.#nextMsgSeq += msgs.length;
    return msgs;
  }

  /** The stream stored this shard's messages (leader): log them locally, with their marks. */
  published(payloads: Uint8Array[], streamSeqs: number[]): void {
    if (this.#failure) throw this.#failure;
    try {
      payloads.forEach((payload, i) => {
        const h = logPublished(this.#wal, payload);
        this.#markAt({ term: h.term, groupSeq: h.msgSeq, streamSeq: streamSeqs[i]! });
      });
    } catch (err) {
      this.fail(storageError(err, `shard ${this.config.shard} WAL append failed`));
      throw this.#failure;
    }
    this.commit();
  }

  /**
   * A leader's message (follower): apply it, log it with a mark, make it durable. Returns what
   * it created and drew, or undefined for a message this shard already holds.
   */
  applyMessage(payload: Uint8Array, streamSeq: number): ReplicaApplied | undefined {
    if (this.#failure) throw this.#failure;
    const msgSeq = readMsgHeader(payload).msgSeq;
    if (this.#mark !== undefined && msgSeq <= this.#mark.groupSeq) return undefined;
    const expected = (this.#mark?.groupSeq ?? 0) + 1;
    if (msgSeq !== expected) {
      // Messages this shard needs are gone from the stream (trimmed behind a snapshot).
      throw new EngineError('ERR_REPLICATION_UNAVAILABLE', `replication: shard ${this.config.shard} needs message ${expected}, the stream continues at ${msgSeq}: reopen this node to start from the group's snapshot`, {
        details: { shard: this.config.shard, expected, got: msgSeq },
      });
    }
    let applied: ReplicaApplied;
    try {
      applied = applyReplicated(this.#pools, this.#wal, payload);
      this.#markAt({ term: applied.header.term, groupSeq: msgSeq, streamSeq });
    } catch (err) {
      this.fail(err instanceof EngineError && err.code === 'ERR_CORRUPT_WAL' ? err : storageError(err, `shard ${this.config.shard} could not apply replicated message ${msgSeq}`));
      throw this.#failure;
    }
    for (const ref of applied.changed) this.#snap.changed(ref);
    this.#count(applied.draws, applied.empty);
    this.commit();
    return applied;
  }

  #markAt(mark: StreamMark): void {
    this.#wal.appendMark(mark);
    this.#mark = mark;
    this.#nextMsgSeq = mark.groupSeq + 1;
  }

  /** Where the local WAL stands in the stream; the highest request id seen. */
  get position(): { mark: StreamMark | undefined; maxRequestId: number } {
    return { mark: this.#mark, maxRequestId: this.#pools.maxRequestId };
  }

  /** Make everything applied so far durable per the sync policy; throws (and fails the shard) if it cannot. */
  commit(): void {
    if (this.#failure) throw this.#failure;
    try {
      this.#wal.commit();
    } catch (err) {
      this.fail(storageError(err, `shard ${this.config.shard} WAL sync failed`));
      throw this.#failure;
    } finally {
      this.#publishWalStats();
    }
  }

  #publishWalStats(): void {
    const s = this.#wal.stats;
    const p = this.#published;
    const m = this.#metrics;
    if (s.records !== p.records) {
      Atomics.add(m, kRecordsIndex, BigInt(s.records - p.records));
      Atomics.add(m, kWalBytesIndex, BigInt(s.bytes - p.bytes));
    }
    if (s.syncs !== p.syncs) {
      Atomics.add(m, kSyncsIndex, BigInt(s.syncs - p.syncs));
      Atomics.add(m, kSyncNsIndex, BigInt(Math.round(s.syncNs - p.syncNs)));
    }
    if (s.rotations !== p.rotations) Atomics.add(m, kRotationsIndex, BigInt(s.rotations - p.rotations));
    this.#published = { ...s };
  }

  /** After a commit: the job of an automatic snapshot when one is due. */
  snapshotIfDue(): SnapshotJob | undefined {
    const every = this.config.snapshotEveryRecords;
    if (every === 0 || this.config.wal === 'none' || this.#failure || !this.#snap.idle) return undefined;
    if (this.#wal.stats.records - this.#snap.recordsAt < every) return undefined;
    const job = this.#snap.begin([], this.#snapshotSource);
    return job === 'skipped' ? undefined : job;
  }

  /** engine.snapshot(): a job, 'skipped' when nothing changed, or 'queued' behind the one in flight. */
  requestSnapshot(reqId: number): SnapshotJob | 'skipped' | 'queued' {
    if (this.config.wal === 'none') return 'skipped';
    if (this.#failure) throw this.#failure;
    if (!this.#snap.idle) {
      this.#snap.queue(reqId);
      return 'queued';
    }
    return this.#snap.begin([reqId], this.#snapshotSource);
  }

  /** The coordinator wrote the snapshot (error null) or failed to. Returns the next job if calls were waiting. */
  endSnapshot(seq: number, error: EngineError | null): { job: SnapshotJob | 'skipped' | undefined; reqIds: number[] } {
    const waiting = this.#snap.end(seq, error);
    if (waiting.length === 0 || this.#failure) return { job: undefined, reqIds: waiting };
    return { job: this.#snap.begin(waiting, this.#snapshotSource), reqIds: waiting };
  }

  /** What the snapshot planner reads of this shard. */
  readonly #snapshotSource: SnapshotSource = {
    records: () => this.#wal.stats.records,
    boundary: () => {
      // The boundary may rotate; a rotation that fails half-way (successor not named, or the
      // seal written but not synced) leaves the current segment unfit for more records: fail-stop,
      // as for a failure inside apply().
      try {
        return this.#wal.snapshotBoundary();
      } catch (err) {
        this.fail(storageError(err, `shard ${this.config.shard} WAL rotation for a snapshot failed`));
        throw this.#failure;
      } finally {
        this.#publishWalStats();
      }
    },
    refs: () => this.#pools.refs(),
    id: (ref) => this.#pools.get(ref)!.id,
    copy: (ref) => this.#pools.copy(this.#pools.get(ref)!),
    header: () => ({ epoch: this.config.epoch, shard: this.config.shard, shards: this.config.shards, maxRequestId: this.#pools.maxRequestId, replication: this.#mark }),
  };

  async close(): Promise<void> {
    try {
      // Fail-stop: after a storage failure nothing more is written, not even the seal (a
      // rotation that failed half-way leaves the writer pointing at a segment its position
      // does not belong to; sealing that would make the directory unopenable).
      if (this.#failure) this.#wal.abandon();
      else await this.#wal.close();
    } finally {
      this.#publishWalStats();
    }
  }
}
