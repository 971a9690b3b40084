import type { EngineError } from '../errors.js';
import { kTag, type PoolInit, type ShardConfig, type SnapshotJob } from '../protocol.js';
import type { SnapshotBody, SnapshotPool } from '../snapshot/format.js';
import type { StreamMark } from '../wal/format.js';

/** Every so many snapshots, or when the chain spans more files than this, write a full one. */
const kFullSnapshotEvery = 8;
const kMaxChainFiles = 8;

/** What the planner reads of its shard. */
export interface SnapshotSource {
  /** WAL records written so far. */
  records(): number;
  /** Seq of the first segment a snapshot taken now does not cover (may rotate). */
  boundary(): number;
  /** Refs of the shard's pools, ascending. */
  refs(): number[];
  id(ref: number): string;
  /** A copy of the pool's state (typed arrays, transferred to the writer). */
  copy(ref: number): SnapshotPool;
  header(): { epoch: number; shard: number; shards: number; maxRequestId: number; replication: StreamMark | undefined };
}

interface InFlightJob {
  seq: number;
  at: Map<number, number>;
  files: number[];
  full: boolean;
  recordsAt: number;
  dirty: Set<number>;
}

/**
 * Which pools a shard's next snapshot holds and which files it keeps: incremental snapshots of
 * the pools changed since the last one plus a manifest of where every pool's latest state is;
 * a full one every kFullSnapshotEvery, or when the chain spans more than kMaxChainFiles files.
 * One job at a time; engine.snapshot() calls arriving meanwhile wait for the next. Under
 * replication every snapshot is full: it is what a new follower starts from.
 */
export class SnapshotPlanner {
  readonly #alwaysFull: boolean;
  /** Seq of the newest written snapshot of this shard (0 = none yet). */
  #seq = 0;
  /** Files of its chain. */
  #files: number[] = [];
  /** Pool ref -> snapshot seq holding its latest written state. */
  #at = new Map<number, number>();
  /** Pools changed since the snapshot being built or written. */
  #dirty = new Set<number>();
  /** WAL record count covered by the newest snapshot. */
  recordsAt = 0;
  #sinceFull = 0;
  #job: InFlightJob | undefined;
  #waiting: number[] = [];

  constructor(alwaysFull = false) {
    this.#alwaysFull = alwaysFull;
  }

  /** The chain the shard starts from (pools missing from its manifest count as changed). */
  startFrom(chain: NonNullable<ShardConfig['chain']>, pools: PoolInit[]): void {
    this.#seq = chain.seq;
    this.#files = chain.files;
    for (const p of pools) {
      const at = chain.at.get(p.id);
      if (at !== undefined) this.#at.set(p.ref, at);
      else this.#dirty.add(p.ref);
    }
  }

  changed(ref: number): void {
    this.#dirty.add(ref);
  }

  /** No job in flight. */
  get idle(): boolean {
    return this.#job === undefined;
  }

  queue(reqId: number): void {
    this.#waiting.push(reqId);
  }

  /**
   * Copy the state at a segment boundary; everything else (encoding, writing, fsync, retiring
   * covered files) happens on another thread. The copy is the only pause the draws see.
   */
  begin(reqIds: number[], src: SnapshotSource): SnapshotJob | 'skipped' {
    const recordsNow = src.records();
    if (this.#dirty.size === 0 && recordsNow === this.recordsAt) return 'skipped';
    const seq = src.boundary();
    if (seq === this.#seq) return 'skipped';
    const refs = src.refs();
    const distinctFiles = new Set(this.#at.values()).size;
    const full = this.#alwaysFull || this.#files.length === 0 || this.#sinceFull >= kFullSnapshotEvery - 1 || distinctFiles > kMaxChainFiles;
    const included = full ? refs : refs.filter((r) => this.#dirty.has(r) || !this.#at.has(r));
    const includedSet = new Set(included);
    const at = refs.map((r) => (includedSet.has(r) ? seq : this.#at.get(r)!));
    const files = [...new Set(at.concat(seq))].sort((a, b) => a - b);
    const body: SnapshotBody = {
      ...src.header(),
      coversBelow: seq,
      kind: full ? 'full' : 'incremental',
      createdAt: Date.now(),
      manifest: { poolIds: refs.map((r) => src.id(r)), at },
      pools: included.map((r) => src.copy(r)),
    };
    this.#job = { seq, at: new Map(refs.map((r, i) => [r, at[i]!])), files, full, recordsAt: recordsNow, dirty: this.#dirty };
    this.#dirty = new Set();
    return {
      tag: kTag,
      type: 'snapshotJob',
      reqIds,
      body,
      // Keep the new chain and the current one (the fallback if the new one is ever damaged),
      // and the WAL from the current one on.
      retention: { keepSnapshots: [...new Set(files.concat(this.#files))], deleteSegmentsBelow: this.#seq, snapshotsBelow: seq },
    };
  }

  /** The job at `seq` was written (error null) or not. Returns the snapshot() calls that waited. */
  end(seq: number, error: EngineError | null): number[] {
    const job = this.#job;
    this.#job = undefined;
    if (job !== undefined && job.seq === seq) {
      if (error === null) {
        this.#seq = job.seq;
        this.#files = job.files;
        this.#at = job.at;
        this.#sinceFull = job.full ? 0 : this.#sinceFull + 1;
        this.recordsAt = job.recordsAt;
      } else {
        for (const r of job.dirty) this.#dirty.add(r);
      }
    }
    const waiting = this.#waiting;
    this.#waiting = [];
    return waiting;
  }
}
