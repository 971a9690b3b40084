/**
 * Every error the engine raises is an EngineError with a stable `code`. Callers should match
 * on `err.code`; `instanceof` also works across duplicate installs thanks to the brand below.
 */
const kBrand = Symbol.for('reward-pool-engine.EngineError');

export const codes = {
  // configuration and arguments
  ERR_INVALID_CONFIG: 'invalid option or catalog',
  ERR_INVALID_ARGUMENT: 'invalid argument',
  // lookups
  ERR_UNKNOWN_POOL: 'unknown pool',
  ERR_UNKNOWN_ITEM: 'unknown item',
  ERR_POOL_EXISTS: 'pool already exists',
  // lifecycle
  ERR_ENGINE_CLOSED: 'engine is closed',
  ERR_DIR_LOCKED: 'directory is locked by another engine',
  ERR_SHARD_FAILED: 'shard failed',
  // storage
  ERR_CORRUPT_WAL: 'corrupt write-ahead log',
  ERR_CORRUPT_SNAPSHOT: 'corrupt snapshot',
  ERR_DISK_FULL: 'disk full',
  // idempotent draws and replication
  ERR_IDEMPOTENCY_MISMATCH: 'idempotency key reused with another pool or count',
  ERR_NOT_LEADER: 'this engine is not the leader',
  ERR_REPLICATION_UNAVAILABLE: 'replication is unavailable',
  // service (HTTP server and client)
  ERR_INVALID_REQUEST: 'invalid request',
  ERR_UNAUTHORIZED: 'missing or unknown API token',
  ERR_FORBIDDEN: 'the API token lacks the scope this route needs',
  ERR_PAYLOAD_TOO_LARGE: 'request body too large',
  ERR_SERVICE_UNAVAILABLE: 'the service could not be reached',
  ERR_INTERNAL: 'unexpected failure in the service',
} as const;

export type ErrorCode = keyof typeof codes;

export interface EngineErrorOptions {
  cause?: unknown;
  /** Machine-readable context: the offending value, file, offset, shard. */
  details?: Record<string, unknown>;
}

export class EngineError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message?: string, options: EngineErrorOptions = {}) {
    super(message ?? codes[code], options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'EngineError';
    this.code = code;
    this.details = options.details ?? {};
  }

  get [kBrand](): true {
    return true;
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    if (typeof value !== 'object' || value === null) return false;
    try {
      return (value as Record<symbol, unknown>)[kBrand] === true;
    } catch {
      return false; // a Proxy whose get trap throws is not one of ours
    }
  }
}

/** Errors lose class, name and code across postMessage, so they travel in this shape. */
export interface WireError {
  code: string;
  message: string;
  stack?: string;
  details?: Record<string, unknown>;
}

export function errorToWire(err: unknown): WireError {
  if (err instanceof EngineError) {
    return { code: err.code, message: err.message, stack: err.stack, details: err.details };
  }
  const e = err as { code?: unknown; message?: unknown; stack?: unknown };
  return {
    code: typeof e?.code === 'string' ? e.code : 'ERR_SHARD_FAILED',
    message: typeof e?.message === 'string' ? e.message : String(err),
    stack: typeof e?.stack === 'string' ? e.stack : undefined,
  };
}

export function errorFromWire(wire: WireError): EngineError {
  const code = (Object.hasOwn(codes, wire.code) ? wire.code : 'ERR_SHARD_FAILED') as ErrorCode;
  const err = new EngineError(code, wire.message, { details: wire.details });
  if (wire.stack) err.stack = wire.stack;
  return err;
}

/**
 * Render a user value for a message without dumping huge structures. Never throws: a caller's
 * Proxy or getter may throw from any trap, and an error message must still be built.
 */
export function show(value: unknown): string {
  try {
    if (typeof value === 'string') return JSON.stringify(value.length > 140 ? value.slice(0, 140) + '…' : value);
    if (typeof value === 'bigint') return `${value}n`;
    if (typeof value === 'number') return Object.is(value, -0) ? '-0' : String(value); // JSON would print NaN and Infinity as null
    if (typeof value === 'function') return '[function]';
    if (typeof value === 'symbol') return value.toString();
    if (value === undefined) return 'undefined';
  } catch {
    return '[unprintable value]';
  }
  let s: string | undefined;
  try {
    s = JSON.stringify(value);
  } catch {
    // cyclic, a throwing getter or a throwing Proxy trap
  }
  if (s === undefined) {
    try {
      s = String(value);
    } catch {
      return '[unprintable value]';
    }
  }
  return s.length > 140 ? s.slice(0, 140) + '…' : s;
}

/** The message of anything thrown, without ever throwing itself. */
export function messageOf(err: unknown): string {
  try {
    const m = (err as { message?: unknown } | null)?.message;
    if (typeof m === 'string') return m;
  } catch {
    // a throwing getter on a thrown object
  }
  return show(err);
}

/**
 * An error thrown while reading a caller's value (a getter, a Proxy trap) becomes the coded
 * error of the argument it came from; EngineErrors pass through unchanged.
 */
export function asEngineError(err: unknown, code: ErrorCode, what: string, details: Record<string, unknown> = {}): EngineError {
  if (err instanceof EngineError) return err;
  return new EngineError(code, `${what}: ${messageOf(err)}`, { cause: err, details });
}

/** Map an fs/msync failure to the contract: ENOSPC is ERR_DISK_FULL, anything else fails the shard. */
export function storageError(err: unknown, what: string): EngineError {
  if (err instanceof EngineError) return err;
  const e = err as { code?: string; message?: string };
  const errno = e?.code ?? /failed, (\d+)/.exec(e?.message ?? '')?.[1];
  const full = errno === 'ENOSPC' || errno === '28' || errno === 'EDQUOT' || errno === '122';
  return new EngineError(full ? 'ERR_DISK_FULL' : 'ERR_SHARD_FAILED', `${what}: ${e?.message ?? String(err)}`, {
    cause: err,
    details: { errno },
  });
}
