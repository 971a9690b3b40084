/**
 * The workload of the counted fault-injection tests (test/integration/fault-injection.test.ts):
 * several ShardCores driven in-process, as workers/shard-worker.ts drives one (group commit,
 * snapshots through the snapshot task, close), each on a FaultyStorage sharing one FaultPlan,
 * with a ledger of what was acknowledged; then the checks that a fault never costs an
 * acknowledged draw and always surfaces with its code.
 */
import type { ItemSpec } from '../../src/catalog.js';
import { EngineError, errorFromWire, errorToWire, type WireError } from '../../src/errors.js';
import { createMetricsBuffer, kStateFailed, kStateIndex, shardBlock } from '../../src/layout.js';
import { prepareDir, type PreparedDir } from '../../src/open.js';
import { fillOptions } from '../../src/options.js';
import type { PoolData } from '../../src/pool-state.js';
import { kOpCreate, kOpDraw, kOpUpdate, type BatchMessage, type Control, type PoolInit, type ShardConfig, type SnapshotJob } from '../../src/protocol.js';
import { recoverDir, type RecoveredState } from '../../src/recovery/recover.js';
import { kEmptyDraw } from '../../src/selector.js';
import { openWalWriter } from '../../src/shard/open-wal.js';
import { ShardCore } from '../../src/shard/shard-core.js';
import { runSnapshotTask } from '../../src/snapshot/task.js';
import type { Storage } from '../../src/storage/storage.js';
import type { WalWriter } from '../../src/wal/writer.js';
import { FaultPlan, FaultyStorage, type FaultEvent } from './faulty-storage.js';

export const kSegmentBytes = 8 * 1024;

export interface WorkloadOptions {
  wal: 'mmap' | 'file';
  shards: number;
  /** Cores closed at the end (engine.close()); otherwise left as a crash leaves them. */
  close: boolean;
  snapshotEveryRecords: number;
  /** Replace each shard's WAL writer (the checker's own tests: a writer that swallows errors). */
  wrapWal?: (wal: WalWriter) => WalWriter;
  /** Storage under each FaultyStorage (default: the real disk). */
  inner?: Storage;
  skipSyncs: boolean;
}

/** A pool's ledger: what the run did to it, and what was acknowledged. */
export interface PoolBook {
  id: string;
  shard: number;
  ref: number;
  /** State before this run (zeros for a pool the run creates). */
  base: { drawn: number[]; quantities: number[]; weights: number[]; lastRequestId: number };
  createdHere: boolean;
  createAcked: boolean;
  acked: number[];
  ackedMaxId: number;
  attemptedDraws: number;
  attemptedMaxId: number;
  /** Items a quantity update was sent for (their quantity is no longer base - drawn). */
  quantitySet: Set<number>;
  /** Item index -> [weight before, weight sent, acknowledged]. */
  weightSet: Map<number, [number, number, boolean]>;
}

type Op =
  | { kind: 'create'; book: PoolBook; items: ItemSpec[] }
  | { kind: 'draw'; book: PoolBook; count: number; first: number }
  | { kind: 'update'; book: PoolBook; item: number; weight: number; quantity: number };

export interface BatchLog {
  shard: number;
  id: number;
  /** The injected fault had already happened when the batch was applied. */
  faultBefore: boolean;
  /** The core had already failed when the batch was applied. */
  failedBefore: boolean;
  acked: boolean;
  error: WireError | null;
}

export interface ShardRun {
  shard: number;
  storage: FaultyStorage;
  metrics: BigInt64Array;
  core: ShardCore | undefined;
  startError?: unknown;
  /** The worker would have died (an exception out of its message loop). */
  died?: unknown;
  closeError?: unknown;
  closed: boolean;
  requestErrors: unknown[];
  snapshots: { error: WireError | null }[];
  batches: BatchLog[];
}

export interface RunResult {
  plan: FaultPlan;
  dir: string;
  shards: ShardRun[];
  books: Map<string, PoolBook>;
  /** Errors of the open-time steps (second-run scenario). */
  openError?: unknown;
  /** What the open-time recovery found (second-run scenario). */
  prepared?: RecoveredState;
}

export function gemItems(): ItemSpec[] {
  return [
    { id: 'ruby', weight: 1, quantity: -1 },
    { id: 'opal', weight: 2, quantity: 400 },
    { id: 'jade', weight: 3, quantity: 0 },
    { id: 'pearl', weight: 4, quantity: 3000 },
  ];
}

export function coinItems(): ItemSpec[] {
  return [
    { id: 'copper', weight: 5, quantity: -1 },
    { id: 'silver', weight: 1, quantity: 2000 },
  ];
}

export function newBook(id: string, shard: number, ref: number, items: ItemSpec[]): PoolBook {
  return {
    id,
    shard,
    ref,
    base: { drawn: items.map(() => 0), quantities: items.map((i) => i.quantity), weights: items.map((i) => i.weight), lastRequestId: 0 },
    createdHere: true,
    createAcked: false,
    acked: items.map(() => 0),
    ackedMaxId: 0,
    attemptedDraws: 0,
    attemptedMaxId: 0,
    quantitySet: new Set(),
    weightSet: new Map(),
  };
}

/** A book for a pool that exists before the run (recovered state). */
export function existingBook(p: PoolData, shard: number, ref: number): PoolBook {
  return {
    id: p.id,
    shard,
    ref,
    base: { drawn: [...p.drawn], quantities: [...p.quantities], weights: [...p.weights], lastRequestId: p.lastRequestId },
    createdHere: false,
    createAcked: true,
    acked: p.itemIds.map(() => 0),
    ackedMaxId: 0,
    attemptedDraws: 0,
    attemptedMaxId: 0,
    quantitySet: new Set(),
    weightSet: new Map(),
  };
}

function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function shardConfig(dir: string, opts: WorkloadOptions, shard: number, shards: number, epoch: number, firstSeq: number, maxRequestId: number, chain: ShardConfig['chain']): ShardConfig {
  return {
    shard,
    wal: opts.wal,
    dir,
    sync: 'always',
    syncIntervalMs: 10,
    segmentBytes: kSegmentBytes,
    epoch,
    firstSeq,
    seed: 1000 + shard,
    shards,
    snapshotEveryRecords: opts.snapshotEveryRecords,
    idempotency: { keys: 1000, draws: 100_000 },
    replicated: false,
    mark: undefined,
    maxRequestId,
    chain,
  };
}

/** The engine options of the workload, for prepareDir and DrawEngine.open. */
export function engineOptions(dir: string, opts: Pick<WorkloadOptions, 'wal' | 'snapshotEveryRecords'>, shards: number): Record<string, unknown> {
  return { dir, shards, wal: opts.wal, sync: 'always', segmentBytes: kSegmentBytes, snapshotEveryRecords: opts.snapshotEveryRecords, replayThreads: 1, seed: 1000 };
}

/**
 * Drives the shards of one run as the worker and the coordinator would, and keeps the ledger.
 */
export class Driver {
  readonly plan: FaultPlan;
  readonly dir: string;
  readonly opts: WorkloadOptions;
  readonly shards: ShardRun[] = [];
  readonly books = new Map<string, PoolBook>();
  #nextId: number;
  #nextBatch = 1;
  #nextSnapshotReq = 1;

  constructor(plan: FaultPlan, dir: string, opts: WorkloadOptions, firstRequestId = 1) {
    this.plan = plan;
    this.dir = dir;
    this.opts = opts;
    this.#nextId = firstRequestId;
  }

  /** Start shard k as a worker's 'init' does (the first segment open), on its own FaultyStorage. */
  start(k: number, shards: number, epoch: number, firstSeq: number, chain: ShardConfig['chain'], pools: PoolInit[]): ShardRun {
    const storage = new FaultyStorage(this.plan, `shard-${k}`, { inner: this.opts.inner, skipSyncs: this.opts.skipSyncs });
    const metrics = shardBlock(createMetricsBuffer(shards), k);
    const run: ShardRun = { shard: k, storage, metrics, core: undefined, closed: false, requestErrors: [], snapshots: [], batches: [] };
    this.shards[k] = run;
    this.plan.phase = 'start';
    const maxRequestId = this.#nextId - 1;
    const config = shardConfig(this.dir, this.opts, k, shards, epoch, firstSeq, maxRequestId, chain);
    try {
      let wal = openWalWriter(config, (err) => run.core?.fail(err), storage);
      if (this.opts.wrapWal) wal = this.opts.wrapWal(wal);
      run.core = new ShardCore(config, pools, metrics, wal);
    } catch (err) {
      run.startError = err;
    }
    return run;
  }

  nextRequestIds(count: number): number {
    const first = this.#nextId;
    this.#nextId += count;
    return first;
  }

  create(book: PoolBook, items: ItemSpec[]): Op {
    this.books.set(book.id, book);
    return { kind: 'create', book, items };
  }

  draw(book: PoolBook, count: number): Op {
    const first = this.nextRequestIds(count);
    book.attemptedDraws += count;
    book.attemptedMaxId = first + count - 1;
    return { kind: 'draw', book, count, first };
  }

  update(book: PoolBook, item: number, weight: number, quantity: number): Op {
    if (!Number.isNaN(quantity)) book.quantitySet.add(item);
    if (!Number.isNaN(weight)) {
      const before = book.weightSet.get(item)?.[1] ?? book.base.weights[item]!;
      book.weightSet.set(item, [before, weight, false]);
    }
    return { kind: 'update', book, item, weight, quantity };
  }

  /**
   * One group on shard k: the batches applied as they arrive, then one commit, then the
   * replies, then an automatic snapshot if one is due (commitGroup of shard-worker.ts), then
   * the next event-loop turn (where a spare segment gets prepared).
   */
  async group(k: number, batches: Op[][]): Promise<void> {
    const run = this.shards[k]!;
    const core = run.core;
    const logs: { log: BatchLog; ops: Op[]; indices: Uint16Array; opErrors: Set<number> }[] = [];
    for (const ops of batches) {
      const log: BatchLog = { shard: k, id: this.#nextBatch++, faultBefore: this.plan.fired !== undefined, failedBefore: core?.failure !== undefined, acked: false, error: null };
      run.batches.push(log);
      if (core === undefined || run.died !== undefined) {
        // No worker: the coordinator rejects the call.
        log.error = errorToWire(run.startError ?? run.died);
        continue;
      }
      this.plan.phase = 'apply';
      const reply = core.apply(message(log.id, ops));
      log.error = reply.error;
      logs.push({ log, ops, indices: reply.indices, opErrors: new Set((reply.opErrors ?? []).map(([o]) => o)) });
    }
    if (core === undefined || run.died !== undefined) return;
    this.plan.phase = 'commit';
    let commitError: WireError | null = null;
    try {
      core.commit();
    } catch (err) {
      commitError = errorToWire(err);
    }
    for (const { log, ops, indices, opErrors } of logs) {
      if (log.error === null && commitError !== null) log.error = commitError;
      if (log.error !== null) continue;
      log.acked = true;
      let at = 0;
      ops.forEach((op, o) => {
        const ok = !opErrors.has(o);
        if (op.kind === 'create') {
          if (ok) op.book.createAcked = true;
        } else if (op.kind === 'update') {
          if (ok) {
            const w = op.book.weightSet.get(op.item);
            if (w && w[1] === op.weight) w[2] = true;
          }
        } else {
          if (ok) {
            for (let i = at; i < at + op.count; i++) if (indices[i] !== kEmptyDraw) op.book.acked[indices[i]!]!++;
            op.book.ackedMaxId = Math.max(op.book.ackedMaxId, op.first + op.count - 1);
          }
          at += op.count;
        }
      });
    }
    this.plan.phase = 'snapshot-due';
    let due: SnapshotJob | undefined;
    try {
      due = core.snapshotIfDue();
    } catch (err) {
      // Out of commitGroup's setImmediate: uncaught, the worker exits.
      run.died = err;
    }
    if (due) this.#runJob(run, due);
    this.plan.phase = 'turn';
    await turn();
  }

  /** engine.snapshot() on shard k: requestSnapshot, the job written, snapshotDone. */
  async snapshot(k: number): Promise<void> {
    const run = this.shards[k]!;
    const core = run.core;
    if (core === undefined || run.died !== undefined) return;
    this.plan.phase = 'snapshot-request';
    try {
      const job = core.requestSnapshot(this.#nextSnapshotReq++);
      if (typeof job === 'object') this.#runJob(run, job);
    } catch (err) {
      // The worker posts a lifecycle 'error': the coordinator fails the shard's calls.
      run.requestErrors.push(err);
    }
    this.plan.phase = 'turn';
    await turn();
  }

  /** The coordinator's SnapshotWriter (runSnapshotTask, on the snapshot thread), then snapshotDone. */
  #runJob(run: ShardRun, first: SnapshotJob): void {
    let job: SnapshotJob | 'skipped' | undefined = first;
    while (typeof job === 'object') {
      this.plan.phase = 'snapshot-task';
      const r = runSnapshotTask(run.storage, { dir: this.dir, body: job.body, retention: job.retention, archive: false });
      const error = 'error' in r ? r.error : null;
      run.snapshots.push({ error });
      this.plan.phase = 'snapshot-done';
      job = run.core!.endSnapshot(job.body.coversBelow, error === null ? null : errorFromWire(error)).job;
    }
  }

  /** engine.close(): every live worker closes its core (failed ones too, as the worker does). */
  async close(): Promise<void> {
    for (const run of this.shards) {
      if (run.core === undefined || run.died !== undefined) continue;
      this.plan.phase = 'close';
      try {
        await run.core.close();
      } catch (err) {
        run.closeError = err;
      }
      run.closed = true;
    }
    this.plan.phase = 'after';
  }
}

function message(id: number, ops: Op[]): BatchMessage {
  const flat: number[] = [];
  const controls: Control[] = [];
  for (const op of ops) {
    if (op.kind === 'create') {
      flat.push(kOpCreate, op.book.ref, 0, 0);
      controls.push({ type: 'create', id: op.book.id, items: op.items });
    } else if (op.kind === 'draw') {
      flat.push(kOpDraw, op.book.ref, op.count, op.first);
    } else {
      flat.push(kOpUpdate, op.book.ref, 0, 0);
      controls.push({ type: 'update', itemIndex: op.item, weight: op.weight, quantity: op.quantity });
    }
  }
  return { type: 'batch', id, ops: Float64Array.from(flat), controls, keys: [] };
}

/** A fresh data directory after the first open's steps (first segments, base snapshots). */
export async function prepareFresh(dir: string, opts: WorkloadOptions): Promise<void> {
  const prepared = await prepareDir(fillOptions(engineOptions(dir, opts, opts.shards)));
  prepared.release();
}

/**
 * The main workload on a prepared fresh directory: per shard two pools and single draws in one
 * group; then on shard 0 engine.snapshot(), drawMany, updateItem (weight and quantity), a
 * rotation when a segment fills (8 KiB segments) and an automatic snapshot
 * (snapshotEveryRecords), while the other shards keep drawing a little; then close (or a crash).
 */
export async function mainWorkload(plan: FaultPlan, dir: string, opts: WorkloadOptions): Promise<RunResult> {
  const d = new Driver(plan, dir, opts);
  const n = opts.shards;
  for (let k = 0; k < n; k++) d.start(k, n, 1, 1, { seq: 1, files: [1], at: new Map() }, []);
  const gems = Array.from({ length: n }, (_, k) => newBook(`gems-${k}`, k, 0, gemItems()));
  const coins = Array.from({ length: n }, (_, k) => newBook(`coins-${k}`, k, 1, coinItems()));
  const each = async (f: (k: number) => Op[][]): Promise<void> => {
    for (let k = 0; k < n; k++) await d.group(k, f(k));
  };
  await each((k) => [[d.create(gems[k]!, gemItems()), d.create(coins[k]!, coinItems())]]);
  await each((k) => [[d.draw(gems[k]!, 1)], [d.draw(coins[k]!, 1)], [d.draw(gems[k]!, 1)]]);
  await d.snapshot(0);
  // Shard 0 does the heavy part; the others keep serving a little alongside.
  const light = (k: number): Op[][] => [[d.draw(k % 2 === 0 ? gems[k]! : coins[k]!, 50)]];
  const heavy = async (f: () => Op[][]): Promise<void> => {
    await d.group(0, f());
    for (let k = 1; k < n; k++) await d.group(k, light(k));
  };
  await heavy(() => [[d.draw(gems[0]!, 1500)], [d.draw(coins[0]!, 1500)]]);
  await heavy(() => [
    [d.update(gems[0]!, 2, 6, 500), d.draw(gems[0]!, 200)],
    [d.update(coins[0]!, 0, 2, NaN), d.draw(coins[0]!, 5)],
  ]);
  for (let r = 0; r < 3; r++) await heavy(() => [[d.draw(gems[0]!, 2500)], [d.draw(coins[0]!, 1500), d.draw(gems[0]!, 1)]]);
  if (opts.close) await d.close();
  return { plan, dir, shards: d.shards, books: d.books };
}

/**
 * A second run: the open-time steps (lock, recovery, first segments, base snapshots, retiring
 * what they cover) on counted storage, then one shard (fewer than the first run had: the other
 * shard directories are retired) serving a little (a new pool, draws, an update), then close.
 */
export async function secondRun(plan: FaultPlan, dir: string, opts: WorkloadOptions): Promise<RunResult> {
  const openStorage = new FaultyStorage(plan, 'open', { inner: opts.inner, skipSyncs: opts.skipSyncs });
  plan.phase = 'open';
  let prepared: PreparedDir;
  try {
    prepared = await prepareDir(fillOptions(engineOptions(dir, opts, 1)), undefined, openStorage);
  } catch (err) {
    return { plan, dir, shards: [], books: new Map(), openError: err };
  }
  try {
    const state = prepared.state;
    const d = new Driver(plan, dir, { ...opts, shards: 1 }, state.maxRequestId + 1);
    const pools = prepared.poolsByShard[0]!;
    const seq = prepared.baseSeqs![0]!;
    const inits: PoolInit[] = pools.map((p, ref) => ({ ...p, ref }));
    const books = pools.map((p, ref) => existingBook(p, 0, ref));
    for (const b of books) d.books.set(b.id, b);
    d.start(0, 1, state.epoch, seq, { seq, files: [seq], at: new Map(pools.map((p) => [p.id, seq])) }, inits);
    const fresh = newBook('fresh', 0, pools.length, coinItems());
    await d.group(0, [[d.create(fresh, coinItems())], ...books.map((b) => [d.draw(b, 300)])]);
    await d.group(0, [[d.update(books[0]!, 1, 9, 50), d.draw(books[0]!, 100)], [d.draw(fresh, 400)]]);
    await d.close();
    return { plan, dir, shards: d.shards, books: d.books, prepared: state };
  } finally {
    prepared.release();
  }
}

// ---- the checks ----

/** The code a fault must surface as (storageError in src/errors.ts). */
export function expectedCode(kind: FaultEvent['kind']): 'ERR_DISK_FULL' | 'ERR_SHARD_FAILED' {
  return kind === 'ENOSPC' ? 'ERR_DISK_FULL' : 'ERR_SHARD_FAILED';
}

/**
 * The code a caller sees for an error a shard raised: it crosses to the coordinator as
 * errorToWire/errorFromWire (an errno name that is no engine code becomes ERR_SHARD_FAILED).
 */
function codeOf(err: unknown): string {
  if (err === undefined || err === null) return 'none';
  return errorFromWire(errorToWire(err)).code;
}

function describe(f: FaultEvent): string {
  return `fault #${f.n} ${f.kind} on ${f.op} ${f.path.replace(/^.*\/_tmp\/[^/]+\//, '')} (${f.label}, ${f.phase})`;
}

/**
 * Faults the engine may absorb without an error, by design: a short write (the caller writes
 * the rest), exists answering false (the segment is then created afresh: the same empty file),
 * anything while a spare segment is prepared in the background (the rotation then creates its
 * segment in line and meets any lasting error itself), unlinking a spare (recovery removes
 * *.tmp files), and listing a shard directory for retention.
 * Whether they really cost nothing is what the reopen check says.
 */
export function absorbable(f: FaultEvent): boolean {
  if (f.kind === 'short' || f.op === 'exists' || f.op === 'isDirectory') return true;
  if (f.phase === 'turn') return true;
  if (f.op === 'unlink' && /\/spare-[^/]*\.tmp$/.test(f.path)) return true;
  // Only retention swallows a failed listing (every other one fails its step): nothing is
  // retired this time, the next snapshot does it.
  if (f.op === 'list' && (f.phase === 'snapshot-task' || f.phase === 'open')) return true;
  return false;
}

/**
 * (a) the shard whose operation failed acknowledges nothing after the failure and is failed;
 * (b) the error surfaces with the code of the fault; (c) the other shards keep serving.
 * Returns the violations (empty when the run is right).
 */
export function checkRun(r: RunResult): string[] {
  const out: string[] = [];
  const f = r.plan.fired;
  const faulted = f === undefined ? -1 : /^shard-(\d+)$/.exec(f.label) ? Number(/^shard-(\d+)$/.exec(f.label)![1]) : -1;
  if (f !== undefined && f.label === 'open') {
    const e = r.openError;
    if (e !== undefined) {
      // open() runs on the caller's thread: its error must be an EngineError itself.
      if (!(e instanceof EngineError)) out.push(`${describe(f)}: open failed with an uncoded error: ${String(e)}`);
      else if (e.code !== expectedCode(f.kind)) out.push(`${describe(f)}: open failed with ${e.code}, expected ${expectedCode(f.kind)}: ${e.message}`);
    } else if (!absorbable(f)) {
      out.push(`${describe(f)}: open succeeded and nothing reported the fault`);
    }
  } else if (r.openError !== undefined) {
    out.push(`open failed without a fault there: ${codeOf(r.openError)} ${String(r.openError)}`);
  }
  for (const s of r.shards) {
    const core = s.core;
    const failure = s.startError ?? core?.failure;
    if (s.shard !== faulted) {
      // (c) untouched shards serve everything.
      if (failure !== undefined) out.push(`shard ${s.shard} (no fault) failed: ${codeOf(failure)} ${String(failure)}`);
      for (const b of s.batches) if (!b.acked) out.push(`shard ${s.shard} (no fault): batch ${b.id} not acknowledged: ${b.error?.code} ${b.error?.message}`);
      for (const sn of s.snapshots) if (sn.error) out.push(`shard ${s.shard} (no fault): snapshot failed: ${sn.error.code} ${sn.error.message}`);
      if (s.requestErrors.length) out.push(`shard ${s.shard} (no fault): snapshot request failed: ${String(s.requestErrors[0])}`);
      if (s.closeError !== undefined) out.push(`shard ${s.shard} (no fault): close failed: ${String(s.closeError)}`);
      continue;
    }
    const fe = f!;
    const want = expectedCode(fe.kind);
    // (a) fail-stop: once failed, never an acknowledgement, and the metrics say failed.
    if (core?.failure !== undefined) {
      if (s.metrics[kStateIndex] !== BigInt(kStateFailed)) out.push(`${describe(fe)}: shard ${s.shard} failed but its metrics state is ${s.metrics[kStateIndex]}`);
      const wrong = s.batches.filter((b) => b.failedBefore && (b.acked || b.error?.code !== core.failure!.code));
      if (wrong.length > 0) out.push(`${describe(fe)}: batches ${wrong.map((b) => `${b.id} (acked ${b.acked}, ${b.error?.code})`).join(', ')} after the failure`);
    }
    if (absorbable(fe)) continue;
    // (b) the fault surfaced where it happened, with its code.
    const wal = ['start', 'apply', 'commit', 'snapshot-request', 'snapshot-due', 'snapshot-done'].includes(fe.phase);
    if (wal) {
      if (failure === undefined) out.push(`${describe(fe)}: the shard did not fail (no fail-stop)`);
      else if (codeOf(failure) !== want) out.push(`${describe(fe)}: the shard failed with ${codeOf(failure)}, expected ${want}: ${String(failure)}`);
      // Nothing acknowledged from the batch the fault hit on.
      const late = s.batches.filter((b) => b.faultBefore && b.acked).map((b) => b.id);
      if (late.length > 0) out.push(`${describe(fe)}: batches ${late.join(', ')} acknowledged after the fault`);
      const lastBefore = [...s.batches].reverse().find((b) => !b.faultBefore);
      if (fe.phase === 'apply' || fe.phase === 'commit') {
        if (lastBefore?.acked) out.push(`${describe(fe)}: batch ${lastBefore.id}, during which the fault happened, was acknowledged`);
      }
    } else if (fe.phase === 'snapshot-task') {
      const errs = s.snapshots.filter((sn) => sn.error !== null);
      if (errs.length === 0) out.push(`${describe(fe)}: the snapshot reported no error`);
      else if (codeOf(errs[0]!.error) !== want) out.push(`${describe(fe)}: the snapshot failed with ${errs[0]!.error!.code}, expected ${want}: ${errs[0]!.error!.message}`);
    } else if (fe.phase === 'close') {
      // A fault is the run's only one: the core was healthy until close.
      if (s.closeError === undefined) out.push(`${describe(fe)}: close succeeded`);
      else if (codeOf(s.closeError) !== want) out.push(`${describe(fe)}: close failed with ${codeOf(s.closeError)}, expected ${want}: ${String(s.closeError)}`);
    } else {
      out.push(`${describe(fe)}: unexpected phase`);
    }
  }
  return out;
}

/**
 * (d) reopening with the real disk recovers every acknowledged draw: per pool and item, drawn
 * at least what was acknowledged and at most what was attempted; lastRequestId at least the
 * highest acknowledged id; quantities conserved; acknowledged updates applied; and the
 * directory is never refused. Returns the violations and the recovered state.
 */
export async function checkReopen(r: RunResult, exactFor: (book: PoolBook) => boolean): Promise<{ violations: string[]; state: RecoveredState | undefined }> {
  const out: string[] = [];
  let state: RecoveredState;
  try {
    state = await recoverDir(r.dir, { replayThreads: 1 });
  } catch (err) {
    const f = r.plan.fired;
    return { violations: [`${f ? describe(f) : 'no fault'}: reopening refused the directory: ${codeOf(err)} ${(err as Error).message}`], state: undefined };
  }
  const where = r.plan.fired ? describe(r.plan.fired) : 'no fault';
  let maxAcked = 0;
  for (const b of r.books.values()) {
    maxAcked = Math.max(maxAcked, b.ackedMaxId);
    const p = state.pools.get(b.id);
    if (p === undefined) {
      if (b.createAcked) out.push(`${where}: pool ${b.id} was created (acknowledged) but is gone after reopening`);
      continue;
    }
    const exact = exactFor(b);
    let drawnHere = 0;
    for (let i = 0; i < b.acked.length; i++) {
      const d = p.drawn[i]! - b.base.drawn[i]!;
      drawnHere += d;
      if (d < b.acked[i]! || (exact && d !== b.acked[i]!)) out.push(`${where}: ${b.id}[${p.itemIds[i]}] drawn ${d} in this run after reopening, ${b.acked[i]} acknowledged`);
      const q0 = b.base.quantities[i]!;
      if (q0 >= 0 && !b.quantitySet.has(i) && p.quantities[i]! + d !== q0) out.push(`${where}: ${b.id}[${p.itemIds[i]}] quantity ${p.quantities[i]} + drawn ${d} != ${q0}`);
      if (p.quantities[i]! < -1 || (q0 === -1 && !b.quantitySet.has(i) && p.quantities[i] !== -1)) out.push(`${where}: ${b.id}[${p.itemIds[i]}] quantity ${p.quantities[i]}`);
      const w = b.weightSet.get(i);
      if (w === undefined && p.weights[i] !== b.base.weights[i]) out.push(`${where}: ${b.id}[${p.itemIds[i]}] weight ${p.weights[i]}, never updated from ${b.base.weights[i]}`);
      if (w !== undefined && p.weights[i] !== w[1] && (w[2] || p.weights[i] !== w[0])) out.push(`${where}: ${b.id}[${p.itemIds[i]}] weight ${p.weights[i]} (update ${w[0]} -> ${w[1]}, acknowledged: ${w[2]})`);
    }
    if (drawnHere > b.attemptedDraws) out.push(`${where}: ${b.id}: ${drawnHere} draws after reopening, only ${b.attemptedDraws} attempted`);
    if (p.lastRequestId < Math.max(b.ackedMaxId, b.base.lastRequestId)) out.push(`${where}: ${b.id}: lastRequestId ${p.lastRequestId} < acknowledged ${b.ackedMaxId}`);
    if (p.lastRequestId > Math.max(b.attemptedMaxId, b.base.lastRequestId)) out.push(`${where}: ${b.id}: lastRequestId ${p.lastRequestId} > attempted ${b.attemptedMaxId}`);
  }
  if (state.maxRequestId < maxAcked) out.push(`${where}: maxRequestId ${state.maxRequestId} < acknowledged ${maxAcked}`);
  return { violations: out, state };
}
