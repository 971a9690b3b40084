import type { ShardClient } from '../coordinator/shard-client.js';
import { EngineError } from '../errors.js';
import type { PublishRequest } from '../protocol.js';
import { LogError, type ReplicatedLog } from './log.js';
import { readMsgHeader } from './message.js';

const kRetryMs = 100;
/** One attempt's bound; a lost answer is retried (same message id) until the group's own bound. */
const kAttemptMs = 2000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref());

/** What a leader's publishing of one shard reads and moves. */
export interface PublishSlot {
  /** The stream sequence of the subject's last message, as this leader wrote it. */
  lastSeq: number;
  /** Messages and bytes the stream stored (or, on a follower, the shard applied). */
  messages: number;
  bytes: number;
}

export interface PublishContext {
  log: ReplicatedLog;
  timeoutMs: number;
  /** False once this node no longer leads (or is closing): stop, answer ERR_NOT_LEADER. */
  leading(): boolean;
  /** The stream refused this leader: someone else fenced the subject. */
  deposed(err: EngineError): void;
}

/**
 * Publish one group of a leader shard, message by message, each conditional on the subject's
 * last sequence being the one this leader wrote last, and answer its callers once all are
 * stored. A publish whose answer is lost is retried with the same message id: a refusal then
 * may mean the first attempt was stored (the subject's last message has our id) or that
 * another node fenced the subject (anything else): then this leader is deposed, and its callers
 * get ERR_NOT_LEADER, or ERR_REPLICATION_UNAVAILABLE (unknown outcome) when some of the group is
 * or may be in the stream. Past `timeoutMs` the callers get ERR_REPLICATION_UNAVAILABLE and the
 * shard takes no new writes, but the group is still published when the stream is back, and
 * logged once stored.
 */
export async function publishGroup(ctx: PublishContext, shard: ShardClient, slot: PublishSlot, req: PublishRequest): Promise<void> {
  const k = shard.index;
  let failed = false;
  const unavailable = new EngineError('ERR_REPLICATION_UNAVAILABLE', `the replication stream did not store shard ${k}'s records within ${ctx.timeoutMs} ms`, {
    details: { shard: k, timeoutMs: ctx.timeoutMs },
  });
  const timer = setTimeout(() => {
    failed = true;
    shard.failReplies(req.replies, unavailable);
    shard.block(unavailable);
  }, ctx.timeoutMs).unref();
  const seqs: number[] = [];
  /** A publish of this message went unanswered: it may be in the stream. */
  let lost = false;
  const stop = (err: EngineError): void => {
    clearTimeout(timer);
    if (failed) return;
    // ERR_NOT_LEADER says nothing changed (a client sends the call again to the next leader);
    // once part of the group is, or may be, in the stream the next leader applies it.
    if (seqs.length === 0 && !lost) shard.failReplies(req.replies, err);
    else {
      const unknown = new EngineError('ERR_REPLICATION_UNAVAILABLE', `${err.message}; the stream may hold some of shard ${k}'s records of these calls: their outcome is unknown`, {
        cause: err,
        details: { shard: k },
      });
      shard.failReplies(req.replies, unknown);
    }
  };
  for (const msg of req.messages) {
    const h = readMsgHeader(msg);
    const msgId = `${h.term}.${k}.${h.msgSeq}`;
    lost = false;
    for (let attempt = 0; ; attempt++) {
      if (!ctx.leading()) {
        stop(new EngineError('ERR_NOT_LEADER', 'this engine no longer leads', { details: { shard: k } }));
        return;
      }
      try {
        slot.lastSeq = await ctx.log.publish(k, msg, msgId, slot.lastSeq, Math.min(ctx.timeoutMs, kAttemptMs));
        seqs.push(slot.lastSeq);
        slot.messages++;
        slot.bytes += msg.byteLength;
        break;
      } catch (err) {
        if (err instanceof LogError && err.kind === 'refused') {
          const last = await ctx.log.last(k).catch(() => undefined);
          if (last?.msgId === msgId) {
            slot.lastSeq = last.seq;
            seqs.push(last.seq);
            slot.messages++;
            slot.bytes += msg.byteLength;
            break;
          }
          if (last !== undefined) {
            const deposed = new EngineError('ERR_NOT_LEADER', `the stream refused shard ${k}'s records: another node leads`, { details: { shard: k } });
            stop(deposed);
            ctx.deposed(deposed);
            return;
          }
        } else {
          lost = true;
        }
        await sleep(Math.min(1000, kRetryMs * 2 ** Math.min(attempt, 4)));
      }
    }
  }
  clearTimeout(timer);
  shard.settlePublished(failed ? undefined : req.replies, seqs);
  if (failed) shard.block(undefined);
}
