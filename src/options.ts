import { availableParallelism } from 'node:os';
import { asEngineError, EngineError, show } from './errors.js';
import type { WindowLimits } from './idempotency.js';
import { fillReplication, type FilledReplication, type ReplicationOptions } from './replication/options.js';

export type WalMode = 'mmap' | 'file' | 'none';
export type SyncMode = 'always' | 'interval' | 'never' | 'replicated';

export interface DrawEngineOptions {
  /** Data directory. Required unless `wal: 'none'`. */
  dir?: string;
  /** Number of shard worker threads. Default: `os.availableParallelism()`. */
  shards?: number;
  /** Where draws are logged. Default: `'mmap'`. */
  wal?: WalMode;
  /**
   * When a draw counts as acknowledged. `'replicated'` (with `replication`): once the stream
   * stored its record with a quorum of replicas. Default: `'always'` (`'replicated'` with
   * `replication`).
   */
  sync?: SyncMode;
  /** Background sync period in milliseconds for `sync: 'interval'`. Default: `10`. */
  syncIntervalMs?: number;
  /** Size of each WAL segment file in bytes (4 KiB .. 1 GiB). Default: `64 MiB`. */
  segmentBytes?: number;
  /** Records per shard between automatic snapshots; 0 = never. Default: `1_000_000`. */
  snapshotEveryRecords?: number;
  /** Threads decoding WAL segments on open. Default: `os.availableParallelism()`. */
  replayThreads?: number;
  /** PRNG seed; with one shard the outcome sequence is reproducible. Default: random. */
  seed?: number;
  /** Bound on draws queued or in flight per shard; past it callers wait. Default: `1_048_576`. */
  maxPending?: number;
  /** Move covered segments to `archive/` instead of deleting them. Default: `false`. */
  archive?: boolean;
  /** Called as WAL segments are replayed during open (done, total). Default: none. */
  recoveryProgress?: ((done: number, total: number) => void) | undefined;
  /**
   * Idempotency keys retained per pool: a repeated key within the newest this many keyed calls
   * of its pool returns the original outcome. Each costs its key plus ~100 bytes in the shard
   * and ~80 in the coordinator, and its draws' outcomes (2 bytes per draw), in memory and in
   * snapshots. Default: `100_000`.
   */
  idempotencyKeys?: number;
  /** Draw outcomes retained per pool across its keys (older keys go first; the newest key always stays). Default: `4_194_304`. */
  idempotencyDraws?: number;
  /** Replicate every shard's log to NATS JetStream and lead or follow (see ReplicationOptions). Default: none. */
  replication?: ReplicationOptions;
}

export interface FilledOptions {
  dir: string | undefined;
  shards: number;
  wal: WalMode;
  sync: SyncMode;
  syncIntervalMs: number;
  segmentBytes: number;
  snapshotEveryRecords: number;
  replayThreads: number;
  seed: number | undefined;
  maxPending: number;
  archive: boolean;
  recoveryProgress: ((done: number, total: number) => void) | undefined;
  idempotencyKeys: number;
  idempotencyDraws: number;
  replication: FilledReplication | undefined;
}

/** The idempotency window of these options. */
export function windowOf(opts: FilledOptions): WindowLimits {
  return { keys: opts.idempotencyKeys, draws: opts.idempotencyDraws };
}

export const kMinSegmentBytes = 4096;
export const kMaxSegmentBytes = 1 << 30;

export function defaultOptions(): FilledOptions {
  const cores = availableParallelism();
  return {
    dir: undefined,
    shards: cores,
    wal: 'mmap',
    sync: 'always',
    syncIntervalMs: 10,
    segmentBytes: 64 * 1024 * 1024,
    snapshotEveryRecords: 1_000_000,
    replayThreads: cores,
    seed: undefined,
    maxPending: 1 << 20,
    archive: false,
    recoveryProgress: undefined,
    idempotencyKeys: 100_000,
    idempotencyDraws: 1 << 22,
    replication: undefined,
  };
}

function invalid(path: string, rule: string, value: unknown): never {
  throw new EngineError('ERR_INVALID_CONFIG', `${path === '' ? 'options' : `options.${path}`} ${rule}, got ${show(value)}`, { details: { option: path, value } });
}

function int(o: Record<string, unknown>, key: string, min: number, max: number): void {
  const v = o[key];
  if (v === undefined) return;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    invalid(key, `must be an integer from ${min} to ${max}`, v);
  }
}

function oneOf(o: Record<string, unknown>, key: string, allowed: readonly string[]): void {
  const v = o[key];
  if (v !== undefined && !allowed.includes(v as string)) invalid(key, `must be one of ${allowed.map((a) => `'${a}'`).join(', ')}`, v);
}

const kKnown: readonly string[] = Object.keys(defaultOptions());

/**
 * Read every option exactly once into a plain record: a getter or Proxy could otherwise hand
 * validation one value and the engine another. A throwing getter or trap is ERR_INVALID_CONFIG.
 */
function readOnce(options: object): Record<string, unknown> {
  const o: Record<string, unknown> = Object.create(null);
  let key = '';
  try {
    for (key of Object.keys(options)) {
      if (!kKnown.includes(key)) {
        const value = (options as Record<string, unknown>)[key];
        throw new EngineError('ERR_INVALID_CONFIG', `options.${key} is not a known option (known: ${kKnown.join(', ')}), got ${show(value)}`, {
          details: { option: key, value },
        });
      }
    }
    // Known options are read whether own or inherited (an options class with getters).
    for (key of kKnown) o[key] = (options as Record<string, unknown>)[key];
  } catch (err) {
    if (err instanceof EngineError) throw err;
    throw asEngineError(err, 'ERR_INVALID_CONFIG', `options${key === '' ? '' : `.${key}`} could not be read`, { option: key });
  }
  return o;
}

/** Validate eagerly and merge with defaults; every message names the option and the value. */
export function fillOptions(options: unknown): FilledOptions {
  if (typeof options !== 'object' || options === null) invalid('', 'must be an object', options);
  const o = readOnce(options as object);
  oneOf(o, 'wal', ['mmap', 'file', 'none']);
  oneOf(o, 'sync', ['always', 'interval', 'never', 'replicated']);
  int(o, 'shards', 1, 256);
  int(o, 'syncIntervalMs', 1, 60_000);
  int(o, 'segmentBytes', kMinSegmentBytes, kMaxSegmentBytes);
  int(o, 'snapshotEveryRecords', 0, Number.MAX_SAFE_INTEGER);
  int(o, 'replayThreads', 1, 256);
  int(o, 'maxPending', 1, 1 << 30);
  int(o, 'idempotencyKeys', 1, 100_000_000);
  int(o, 'idempotencyDraws', 1, 2 ** 40);
  if (o.seed !== undefined && (typeof o.seed !== 'number' || !Number.isSafeInteger(o.seed))) invalid('seed', 'must be a safe integer', o.seed);
  if (o.archive !== undefined && typeof o.archive !== 'boolean') invalid('archive', 'must be a boolean', o.archive);
  if (o.recoveryProgress !== undefined && typeof o.recoveryProgress !== 'function') invalid('recoveryProgress', 'must be a function', o.recoveryProgress);
  const wal = (o.wal as WalMode | undefined) ?? 'mmap';
  if (o.dir !== undefined && (typeof o.dir !== 'string' || o.dir.length === 0)) invalid('dir', 'must be a non-empty string', o.dir);
  if (o.dir === undefined && wal !== 'none') invalid('dir', `is required unless wal is 'none'`, o.dir);
  const replication = o.replication === undefined ? undefined : fillReplication(o.replication, typeof o.dir === 'string' ? o.dir : undefined);
  if (replication !== undefined && wal === 'none') invalid('wal', "must be 'mmap' or 'file' with replication (a follower keeps its own copy)", o.wal);
  if (replication !== undefined && o.sync !== undefined && o.sync !== 'replicated') invalid('sync', "must be 'replicated' with replication", o.sync);
  if (replication === undefined && o.sync === 'replicated') invalid('sync', "'replicated' needs options.replication", o.sync);
  const filled = defaultOptions();
  for (const key of kKnown) {
    if (o[key] !== undefined) (filled as unknown as Record<string, unknown>)[key] = o[key];
  }
  filled.replication = replication;
  if (replication !== undefined) filled.sync = 'replicated';
  return filled;
}
