/**
 * The replicated log as the engine uses it: one subject per shard in a stream, a lease entry,
 * and a store of snapshots. The NATS JetStream implementation is nats-log.ts; the interface
 * keeps the replication logic testable without servers.
 */

/** A message of a shard's subject as the stream holds it. */
export interface LogMessage {
  /** Stream sequence. */
  seq: number;
  payload: Uint8Array;
  /** When the stream stored it (ms since the epoch). */
  storedAt: number;
  /** Messages of the subject after this one, as the consumer saw it. */
  pending: number;
  /** The Nats-Msg-Id it was published with. */
  msgId: string | undefined;
}

/** What a failed publish means. */
export type PublishFailure =
  /** The stream refused the expected last sequence: someone else wrote this subject. */
  | 'refused'
  /** No answer, no quorum, no connection: may have been stored; retry with the same id. */
  | 'unavailable';

export class LogError extends Error {
  readonly kind: PublishFailure;
  constructor(kind: PublishFailure, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
  }
}

/** The lease entry: who leads, for which term, where its service is. */
export interface LeaseValue {
  node: string;
  term: number;
  advertise: string | undefined;
  shards: number;
}

export interface LeaseEntry {
  value: LeaseValue;
  revision: number;
}

export interface NodePosition {
  node: string;
  seqs: number[];
  at: number;
}

export interface ReplicatedLog {
  /** Append to shard's subject if its last stream sequence is `expectLast` (0: empty). Rejects with LogError. */
  publish(shard: number, payload: Uint8Array, msgId: string, expectLast: number, timeoutMs: number): Promise<number>;
  /** The last message of shard's subject, or undefined when it has none. */
  last(shard: number): Promise<LogMessage | undefined>;
  /** Shard's message at stream sequence `seq`, or undefined when the stream no longer holds it (trimmed). */
  at(shard: number, seq: number): Promise<LogMessage | undefined>;
  /** Deliver shard's messages from stream sequence `from` on, in order, awaiting `onMessage` for each. */
  follow(shard: number, from: number, onMessage: (m: LogMessage) => Promise<void>): { stop(): Promise<void> };
  /** Drop shard's messages below stream sequence `keepFrom`. */
  trim(shard: number, keepFrom: number): Promise<void>;

  leaseGet(): Promise<LeaseEntry | undefined>;
  /** Create (revision 0) or replace at `revision` (compare and set); the new revision, or undefined when it lost the race. */
  leasePut(value: LeaseValue, revision: number): Promise<number | undefined>;
  /** Called with every change of the lease (the current one first). */
  leaseWatch(onChange: (entry: LeaseEntry | undefined) => void): { stop(): void };

  /** Record where `node` stands in each shard's subject (stream sequences, by shard). */
  positionPut(node: string, seqs: number[]): Promise<void>;
  /** Every node's last recorded position, with when the store took it (ms, by the store's clock). */
  positions(): Promise<NodePosition[]>;

  snapshotPut(shard: number, data: Uint8Array): Promise<void>;
  snapshotGet(shard: number): Promise<Uint8Array | undefined>;

  close(): Promise<void>;
}
