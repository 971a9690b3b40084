import { LogError, type LeaseEntry, type LeaseValue, type LogMessage, type NodePosition, type ReplicatedLog } from '../../src/replication/log.js';

/*
 * An in-memory ReplicatedLog with JetStream's semantics as test/integration/nats-probes.test.ts
 * found them on a real R3 cluster (nats-server 2.9):
 * - stream sequences are global: every subject (shard) shares one counter (probe a);
 * - a publish conditional on the subject's last sequence is refused ('wrong last sequence: <last>')
 *   when stale, and this check comes BEFORE the msgID dedupe: a retried publish with the same
 *   msgID and the same, now stale, expectation is refused, not acknowledged as a duplicate (b);
 *   with a current expectation a msgID seen within the duplicate window is a duplicate;
 * - trim purges one subject below a sequence, keeping the rest and the other subjects (f);
 * - the KV bucket (lease, positions) has one revision counter; create refuses an existing key and
 *   update is compare-and-set on the key's revision (d);
 * - max_payload (when set) bounds payload plus headers (i).
 * Faults: lost answers (stored, then the promise rejects 'unavailable'), unavailability (every
 * call rejects 'unavailable', nothing stored), another writer appending to a subject (a fence),
 * and one-off failures of a named operation. Time comes from Date.now, so fake timers drive it.
 */

export interface StoredMessage {
  seq: number;
  shard: number;
  payload: Uint8Array;
  storedAt: number;
  msgId: string | undefined;
}

export type PublishOutcome = number | 'refused' | 'unavailable' | 'lost' | 'duplicate';

export interface PublishAttempt {
  shard: number;
  msgId: string;
  expectLast: number;
  timeoutMs: number;
  outcome: PublishOutcome;
}

export type LogOp =
  | 'publish'
  | 'last'
  | 'at'
  | 'trim'
  | 'leaseGet'
  | 'leasePut'
  | 'positionPut'
  | 'positions'
  | 'snapshotPut'
  | 'snapshotGet';

interface KvEntry {
  value: unknown;
  revision: number;
  at: number;
}

/** Bytes of the headers nats-log's publish sends (the nats client's encoding: NATS/1.0, one line each, a blank line). */
export function publishHeaderBytes(msgId: string, expectLast: number): number {
  return Buffer.byteLength(`NATS/1.0\r\nNats-Msg-Id: ${msgId}\r\nNats-Expected-Last-Subject-Sequence: ${expectLast}\r\n\r\n`);
}

const kLeaseKey = 'leader';
const kPositionPrefix = 'pos.';

export class MemoryLog implements ReplicatedLog {
  /** The stream's messages, in stream order, every subject. */
  readonly messages: StoredMessage[] = [];
  /** Every publish as it was answered. */
  readonly attempts: PublishAttempt[] = [];
  /** Every call, in order (`publish:0`, `positionPut`, ...). */
  readonly calls: string[] = [];
  /** How long the stream remembers a msgID (nats-log.ts sets 2 min). */
  duplicateWindowMs = 120_000;
  /**
   * The server's max_payload, when set: it bounds payload PLUS the headers a publish adds
   * (probe i; the nats client refuses before sending, which nats-log.ts reports 'unavailable').
   */
  maxPayload: number | undefined;
  /** Called at the start of every publish, before it is answered (to change the world mid-group). */
  onPublish: ((shard: number, msgId: string, expectLast: number) => void) | undefined;
  closed = false;

  #lastSeq = 0;
  readonly #ids = new Map<string, { seq: number; at: number }>();
  #lose: { shard: number | undefined; left: number } = { shard: undefined, left: 0 };
  #unavailable = false;
  #unavailableUntil = 0;
  readonly #failNext = new Map<LogOp, number>();
  readonly #kv = new Map<string, KvEntry>();
  #kvRevision = 0;
  readonly #snapshots = new Map<number, Uint8Array>();
  readonly #watchers = new Set<(entry: LeaseEntry | undefined) => void>();
  readonly #wakers = new Set<() => void>();

  // ---- faults ----

  /** The next `n` publishes the stream stores (to `shard`, when given) lose their answer: stored, but rejected 'unavailable'. */
  loseAnswers(n: number, shard?: number): void {
    this.#lose = { shard, left: n };
  }

  /** While on, every call rejects with LogError('unavailable') and changes nothing. */
  setUnavailable(on: boolean): void {
    this.#unavailable = on;
  }

  /** Unavailable for `ms` from now (by Date.now). */
  unavailableFor(ms: number): void {
    this.#unavailableUntil = Date.now() + ms;
  }

  /** The next `n` calls of `op` reject with LogError('unavailable'), changing nothing. */
  failNext(op: LogOp, n = 1): void {
    this.#failNext.set(op, n);
  }

  /** Another writer appends to shard's subject, unconditionally (a new leader's fence): its stream sequence. */
  fence(shard: number, msgId = `other.${shard}.${this.#lastSeq + 1}`, payload: Uint8Array = new Uint8Array([0xfe])): number {
    return this.#store(shard, payload, msgId).seq;
  }

  // ---- inspection ----

  /** Shard's messages the stream holds, in order. */
  subject(shard: number): StoredMessage[] {
    return this.messages.filter((m) => m.shard === shard);
  }

  /** The last stream sequence the stream assigned (any subject). */
  get lastSeq(): number {
    return this.#lastSeq;
  }

  // ---- ReplicatedLog ----

  async publish(shard: number, payload: Uint8Array, msgId: string, expectLast: number, timeoutMs: number): Promise<number> {
    this.onPublish?.(shard, msgId, expectLast);
    const attempt = (outcome: PublishOutcome): void => {
      this.attempts.push({ shard, msgId, expectLast, timeoutMs, outcome });
    };
    try {
      this.#enter('publish', `publish:${shard}`);
    } catch (err) {
      attempt('unavailable');
      throw err;
    }
    if (this.maxPayload !== undefined && payload.byteLength + publishHeaderBytes(msgId, expectLast) > this.maxPayload) {
      attempt('unavailable');
      throw new LogError('unavailable', 'MAX_PAYLOAD_EXCEEDED');
    }
    const last = this.#lastOf(shard)?.seq ?? 0;
    // R3: the expected subject sequence is checked before the msgID dedupe (probe b).
    if (expectLast !== last) {
      attempt('refused');
      throw new LogError('refused', `wrong last sequence: ${last}`);
    }
    const seen = this.#ids.get(msgId);
    if (seen !== undefined && Date.now() - seen.at < this.duplicateWindowMs) {
      attempt('duplicate');
      return seen.seq;
    }
    const stored = this.#store(shard, payload, msgId);
    if (this.#lose.left > 0 && (this.#lose.shard === undefined || this.#lose.shard === shard)) {
      this.#lose.left--;
      attempt('lost');
      throw new LogError('unavailable', 'TIMEOUT');
    }
    attempt(stored.seq);
    return stored.seq;
  }

  async last(shard: number): Promise<LogMessage | undefined> {
    this.#enter('last', `last:${shard}`);
    const m = this.#lastOf(shard);
    return m && this.#view(m);
  }

  async at(shard: number, seq: number): Promise<LogMessage | undefined> {
    this.#enter('at', `at:${shard}:${seq}`);
    const m = this.messages.find((x) => x.seq === seq);
    return m !== undefined && m.shard === shard ? this.#view(m) : undefined;
  }

  follow(shard: number, from: number, onMessage: (m: LogMessage) => Promise<void>): { stop(): Promise<void> } {
    this.calls.push(`follow:${shard}:${from}`);
    let stopped = false;
    let next = Math.max(1, from);
    let wake: (() => void) | undefined;
    const waker = (): void => wake?.();
    this.#wakers.add(waker);
    const run = (async () => {
      while (!stopped) {
        // A trimmed start delivers from the first message the subject still holds.
        const m = this.messages.find((x) => x.shard === shard && x.seq >= next);
        if (m === undefined) {
          await new Promise<void>((r) => (wake = r));
          continue;
        }
        try {
          await onMessage(this.#view(m));
        } catch {
          return; // an error of onMessage ends the following
        }
        next = m.seq + 1;
      }
    })().finally(() => this.#wakers.delete(waker));
    return {
      stop: async () => {
        stopped = true;
        wake?.();
        await run;
      },
    };
  }

  async trim(shard: number, keepFrom: number): Promise<void> {
    this.#enter('trim', `trim:${shard}:${keepFrom}`);
    for (let i = this.messages.length - 1; i >= 0; i--) {
      const m = this.messages[i]!;
      if (m.shard === shard && m.seq < keepFrom) this.messages.splice(i, 1);
    }
  }

  async leaseGet(): Promise<LeaseEntry | undefined> {
    this.#enter('leaseGet', 'leaseGet');
    return this.#lease();
  }

  async leasePut(value: LeaseValue, revision: number): Promise<number | undefined> {
    this.#enter('leasePut', 'leasePut');
    const current = this.#kv.get(kLeaseKey);
    // create (revision 0) refuses an existing key; update is compare-and-set on its revision.
    if ((current?.revision ?? 0) !== revision) return undefined;
    const rev = this.#kvPut(kLeaseKey, { ...value });
    const entry = this.#lease();
    for (const w of this.#watchers) queueMicrotask(() => w(entry));
    return rev;
  }

  leaseWatch(onChange: (entry: LeaseEntry | undefined) => void): { stop(): void } {
    this.calls.push('leaseWatch');
    this.#watchers.add(onChange);
    const current = this.#lease();
    if (current !== undefined) queueMicrotask(() => onChange(current));
    return { stop: () => this.#watchers.delete(onChange) };
  }

  async positionPut(node: string, seqs: number[]): Promise<void> {
    this.#enter('positionPut', `positionPut:${node}:${seqs.join(',')}`);
    this.#kvPut(`${kPositionPrefix}${node}`, { node, seqs: [...seqs] });
  }

  async positions(): Promise<NodePosition[]> {
    this.#enter('positions', 'positions');
    const out: NodePosition[] = [];
    for (const [key, e] of this.#kv) {
      if (!key.startsWith(kPositionPrefix)) continue;
      const v = e.value as { node: string; seqs: number[] };
      out.push({ node: v.node, seqs: [...v.seqs], at: e.at });
    }
    return out;
  }

  /** Set a node's position as if recorded at `at` (ms, the store's clock): a node gone quiet. */
  setPosition(node: string, seqs: number[], at: number): void {
    this.#kvPut(`${kPositionPrefix}${node}`, { node, seqs: [...seqs] });
    this.#kv.get(`${kPositionPrefix}${node}`)!.at = at;
  }

  async snapshotPut(shard: number, data: Uint8Array): Promise<void> {
    this.#enter('snapshotPut', `snapshotPut:${shard}`);
    this.#snapshots.set(shard, Uint8Array.from(data));
  }

  async snapshotGet(shard: number): Promise<Uint8Array | undefined> {
    this.#enter('snapshotGet', `snapshotGet:${shard}`);
    const s = this.#snapshots.get(shard);
    return s && Uint8Array.from(s);
  }

  async close(): Promise<void> {
    this.calls.push('close');
    this.closed = true;
    this.#watchers.clear();
  }

  // ---- internals ----

  /** Record the call; throw as an unavailable stream would. */
  #enter(op: LogOp, call: string): void {
    this.calls.push(call);
    if (this.closed) throw new LogError('unavailable', 'CONNECTION_CLOSED');
    if (this.#unavailable || Date.now() < this.#unavailableUntil) throw new LogError('unavailable', 'TIMEOUT');
    const n = this.#failNext.get(op) ?? 0;
    if (n > 0) {
      this.#failNext.set(op, n - 1);
      throw new LogError('unavailable', `injected failure of ${op}`);
    }
  }

  #store(shard: number, payload: Uint8Array, msgId: string | undefined): StoredMessage {
    const m: StoredMessage = { seq: ++this.#lastSeq, shard, payload: Uint8Array.from(payload), storedAt: Date.now(), msgId };
    this.messages.push(m);
    if (msgId !== undefined) this.#ids.set(msgId, { seq: m.seq, at: m.storedAt });
    for (const w of this.#wakers) w();
    return m;
  }

  #lastOf(shard: number): StoredMessage | undefined {
    for (let i = this.messages.length - 1; i >= 0; i--) if (this.messages[i]!.shard === shard) return this.messages[i];
    return undefined;
  }

  #view(m: StoredMessage): LogMessage {
    const pending = this.messages.filter((x) => x.shard === m.shard && x.seq > m.seq).length;
    return { seq: m.seq, payload: m.payload, storedAt: m.storedAt, pending, msgId: m.msgId };
  }

  #kvPut(key: string, value: unknown): number {
    const revision = ++this.#kvRevision;
    this.#kv.set(key, { value, revision, at: Date.now() });
    return revision;
  }

  #lease(): LeaseEntry | undefined {
    const e = this.#kv.get(kLeaseKey);
    return e && { value: { ...(e.value as LeaseValue) }, revision: e.revision };
  }
}

/** `log` with some methods replaced (the others bound to it: its private state needs the real receiver). */
export function overriding(log: MemoryLog, over: Partial<ReplicatedLog>): ReplicatedLog {
  return new Proxy(log, {
    get(target, key) {
      if (Object.hasOwn(over, key)) return (over as Record<PropertyKey, unknown>)[key];
      const v: unknown = Reflect.get(target, key);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
