import { createHash } from 'node:crypto';
import { EngineError, messageOf } from '../errors.js';
import { LogError, type LeaseEntry, type LeaseValue, type LogMessage, type NodePosition, type ReplicatedLog } from './log.js';
import type { FilledReplication } from './options.js';

type Nats = typeof import('nats');
type NatsConnection = import('nats').NatsConnection;
type JetStreamClient = import('nats').JetStreamClient;
type JetStreamManager = import('nats').JetStreamManager;
type KV = import('nats').KV;
type ObjectStore = import('nats').ObjectStore;

const kLeaseKey = 'leader';
/** Keys of the nodes' positions in the lease bucket: `pos.<hash of the node name>`. */
const kPositionPrefix = 'pos.';
/** How long the stream remembers message ids: a retried publish within it is a duplicate. */
const kDuplicateWindowMs = 120_000;

/** How long a follower waits before making a failed consumer again. */
const kRefollowMs = 250;

/** onMessage failed: the following ends (not a consumer error to retry). */
class FollowEnded {
  constructor(readonly cause: unknown) {}
}

/**
 * The replicated log on NATS JetStream: a stream `<name>` with subjects `<name>.s.<shard>`
 * (R replicas, file storage), a key-value bucket `<name>_lease` (the lease, and each node's
 * position in the stream), and an object store
 * `<name>_snap` for the shards' snapshots. Created when missing. The nats client is loaded
 * only here, when replication is configured.
 */
export class NatsLog implements ReplicatedLog {
  readonly #nats: Nats;
  readonly #nc: NatsConnection;
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #kv: KV;
  readonly #os: ObjectStore;
  readonly #stream: string;

  private constructor(nats: Nats, nc: NatsConnection, js: JetStreamClient, jsm: JetStreamManager, kv: KV, os: ObjectStore, stream: string) {
    this.#nats = nats;
    this.#nc = nc;
    this.#js = js;
    this.#jsm = jsm;
    this.#kv = kv;
    this.#os = os;
    this.#stream = stream;
  }

  static async connect(opts: FilledReplication): Promise<NatsLog> {
    let nats: Nats;
    try {
      nats = await import('nats');
    } catch (err) {
      throw new EngineError('ERR_INVALID_CONFIG', `replication needs the nats package: ${messageOf(err)}`, { cause: err });
    }
    let nc: NatsConnection;
    try {
      nc = await nats.connect({
        servers: opts.servers,
        name: `reward-pool-engine ${opts.node}`,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 200,
        timeout: Math.min(opts.timeoutMs, 5000),
        pingInterval: 2000,
      });
    } catch (err) {
      throw new EngineError('ERR_REPLICATION_UNAVAILABLE', `cannot reach NATS at ${opts.servers.join(', ')}: ${messageOf(err)}`, { cause: err, details: { servers: opts.servers } });
    }
    const maxPayload = nc.info?.max_payload;
    if (maxPayload !== undefined && opts.maxMessageBytes > maxPayload) {
      await nc.close().catch(() => {});
      throw new EngineError('ERR_INVALID_CONFIG', `options.replication.maxMessageBytes must be at most the NATS servers' max_payload (${maxPayload}), got ${opts.maxMessageBytes}`, {
        details: { option: 'replication.maxMessageBytes', value: opts.maxMessageBytes, maxPayload },
      });
    }
    try {
      const jsm = await nc.jetstreamManager({ timeout: opts.timeoutMs });
      const name = opts.stream;
      try {
        await jsm.streams.info(name);
      } catch {
        await jsm.streams.add({
          name,
          subjects: [`${name}.s.*`],
          num_replicas: opts.replicas,
          storage: nats.StorageType.File,
          duplicate_window: nats.nanos(kDuplicateWindowMs),
          discard: nats.DiscardPolicy.Old,
        });
      }
      const js = nc.jetstream({ timeout: opts.timeoutMs });
      const kv = await js.views.kv(`${name}_lease`, { replicas: opts.replicas, history: 1 });
      const os = await js.views.os(`${name}_snap`, { replicas: opts.replicas });
      return new NatsLog(nats, nc, js, jsm, kv, os, name);
    } catch (err) {
      await nc.close().catch(() => {});
      throw new EngineError('ERR_REPLICATION_UNAVAILABLE', `cannot set up the replication stream ${opts.stream}: ${messageOf(err)}`, { cause: err });
    }
  }

  #subject(shard: number): string {
    return `${this.#stream}.s.${shard}`;
  }

  async publish(shard: number, payload: Uint8Array, msgId: string, expectLast: number, timeoutMs: number): Promise<number> {
    try {
      const ack = await this.#js.publish(this.#subject(shard), payload, { msgID: msgId, expect: { lastSubjectSequence: expectLast }, timeout: timeoutMs });
      return ack.seq;
    } catch (err) {
      const text = messageOf(err);
      if (/wrong last sequence/i.test(text)) throw new LogError('refused', text, { cause: err });
      throw new LogError('unavailable', text, { cause: err });
    }
  }

  async last(shard: number): Promise<LogMessage | undefined> {
    return this.#get({ last_by_subj: this.#subject(shard) });
  }

  async at(shard: number, seq: number): Promise<LogMessage | undefined> {
    const m = await this.#get({ seq });
    return m?.subject === this.#subject(shard) ? m : undefined;
  }

  async #get(query: { seq: number } | { last_by_subj: string }): Promise<(LogMessage & { subject: string }) | undefined> {
    try {
      const m = await this.#jsm.streams.getMessage(this.#stream, query);
      return { seq: m.seq, subject: m.subject, payload: m.data, storedAt: m.time.getTime(), pending: 0, msgId: m.header?.get('Nats-Msg-Id') || undefined };
    } catch (err) {
      if (/no message found|not found/i.test(messageOf(err))) return undefined;
      throw new LogError('unavailable', messageOf(err), { cause: err });
    }
  }

  follow(shard: number, from: number, onMessage: (m: LogMessage) => Promise<void>): { stop(): Promise<void> } {
    let stopped = false;
    let messages: { stop(): void } | undefined;
    let next = Math.max(1, from);
    const run = (async () => {
      // A consumer that fails (no quorum, a lost connection) is made again from the next
      // message; an error of onMessage ends the following.
      while (!stopped) {
        try {
          const consumer = await this.#js.consumers.get(this.#stream, {
            filterSubjects: this.#subject(shard),
            deliver_policy: this.#nats.DeliverPolicy.StartSequence,
            opt_start_seq: next,
          });
          if (stopped) return;
          const iter = await consumer.consume({ max_messages: 64 });
          messages = iter;
          for await (const m of iter) {
            if (stopped) break;
            const msg: LogMessage = {
              seq: m.seq,
              payload: m.data,
              storedAt: Math.floor(m.info.timestampNanos / 1e6),
              // Those the server still holds for us (not those in our buffer: the stream's newest
              // message, looked at now and then, shows those).
              pending: m.info.pending,
              msgId: m.headers?.get('Nats-Msg-Id') || undefined,
            };
            try {
              await onMessage(msg);
            } catch (err) {
              stopped = true;
              iter.stop();
              throw new FollowEnded(err);
            }
            next = m.seq + 1;
          }
        } catch (err) {
          if (err instanceof FollowEnded) return;
        }
        if (!stopped) await new Promise((r) => setTimeout(r, kRefollowMs).unref());
      }
    })();
    return {
      stop: async () => {
        stopped = true;
        messages?.stop();
        await run;
      },
    };
  }

  async trim(shard: number, keepFrom: number): Promise<void> {
    await this.#jsm.streams.purge(this.#stream, { filter: this.#subject(shard), seq: keepFrom });
  }

  async leaseGet(): Promise<LeaseEntry | undefined> {
    const e = await this.#kv.get(kLeaseKey);
    if (e === null || e.operation !== 'PUT') return undefined;
    return { value: e.json<LeaseValue>(), revision: e.revision };
  }

  async leasePut(value: LeaseValue, revision: number): Promise<number | undefined> {
    const data = new TextEncoder().encode(JSON.stringify(value));
    try {
      return revision === 0 ? await this.#kv.create(kLeaseKey, data) : await this.#kv.update(kLeaseKey, data, revision);
    } catch (err) {
      const text = messageOf(err);
      if (/wrong last sequence|key exists/i.test(text)) return undefined;
      throw new LogError('unavailable', text, { cause: err });
    }
  }

  leaseWatch(onChange: (entry: LeaseEntry | undefined) => void): { stop(): void } {
    let iter: { stop(): void } | undefined;
    let stopped = false;
    void (async () => {
      const w = await this.#kv.watch({ key: kLeaseKey });
      iter = w;
      if (stopped) w.stop();
      for await (const e of w) onChange(e.operation === 'PUT' ? { value: e.json<LeaseValue>(), revision: e.revision } : undefined);
    })().catch(() => {});
    return {
      stop: () => {
        stopped = true;
        iter?.stop();
      },
    };
  }

  async positionPut(node: string, seqs: number[]): Promise<void> {
    const key = `${kPositionPrefix}${createHash('sha256').update(node).digest('hex').slice(0, 32)}`;
    await this.#kv.put(key, new TextEncoder().encode(JSON.stringify({ node, seqs })));
  }

  async positions(): Promise<NodePosition[]> {
    // The keys from the bucket stream's subject list, one request with a deadline; not
    // kv.keys(), whose iterator has none and can wait forever (seen once in CI, under load).
    const bucket = `${this.#stream}_lease`;
    const prefix = `$KV.${bucket}.`;
    const info = await this.#jsm.streams.info(`KV_${bucket}`, { subjects_filter: `${prefix}${kPositionPrefix}>` });
    const keys = Object.keys(info.state.subjects ?? {}).map((subject) => subject.slice(prefix.length));
    const out: NodePosition[] = [];
    for (const key of keys) {
      const e = await this.#kv.get(key);
      if (e === null || e.operation !== 'PUT') continue;
      const v = e.json<{ node: string; seqs: number[] }>();
      out.push({ node: v.node, seqs: v.seqs, at: e.created.getTime() });
    }
    return out;
  }

  async snapshotPut(shard: number, data: Uint8Array): Promise<void> {
    await this.#os.putBlob({ name: `shard-${shard}` }, data);
  }

  async snapshotGet(shard: number): Promise<Uint8Array | undefined> {
    return (await this.#os.getBlob(`shard-${shard}`)) ?? undefined;
  }

  async close(): Promise<void> {
    await this.#nc.drain().catch(() => this.#nc.close());
  }
}
