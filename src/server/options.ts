/**
 * Options of createServer(engine, options), validated eagerly with coded errors that name the
 * path (`limits.maxDrawCount must be an integer from 1 to 16777216, got 0`), as the engine
 * validates its own.
 */
import { isIP } from 'node:net';
import type { FastifyServerOptions } from 'fastify';
import { kMaxItems } from '../catalog.js';
import { EngineError, show } from '../errors.js';
import { kMaxDrawCount } from '../wire.js';
import { compileKeys, type ApiKeyConfig } from './auth.js';
import type { Limits } from './context.js';

export interface ServerOptions {
  /** API keys. Without any, every route is open and the server listens on loopback only. Default: none. */
  auth?: { keys?: ApiKeyConfig[] };
  /** PEM certificate chain and private key (contents, not paths): serve HTTPS. Default: plain HTTP. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Request limits, enforced before the engine sees a request. */
  limits?: Partial<Limits>;
  /** fastify's logger option (pino). Default: `false`. */
  logger?: FastifyServerOptions['logger'];
  /** Close the engine when the server closes (onClose). Default: `true`. */
  closeEngine?: boolean;
  /** Seconds in the Retry-After header of 503 responses. Default: `1`. */
  retryAfterSeconds?: number;
  /**
   * Longest wait, in milliseconds, for in-flight requests once close() started; connections
   * still busy after it are cut. Default: `30_000`.
   */
  shutdownTimeoutMs?: number;
}

export interface FilledServerOptions {
  keys: ReturnType<typeof compileKeys>;
  tls: { cert: string | Buffer; key: string | Buffer } | undefined;
  limits: Limits;
  logger: FastifyServerOptions['logger'];
  closeEngine: boolean;
  retryAfterSeconds: number;
  shutdownTimeoutMs: number;
}

/** 8 MiB: a catalog at the 65,534-item cap with ids of ~100 characters fits. */
export const kDefaultBodyBytes = 8 * 1024 * 1024;
export const kMaxBodyBytes = 1024 * 1024 * 1024;

export const kDefaultLimits: Readonly<Limits> = { bodyBytes: kDefaultBodyBytes, maxDrawCount: kMaxDrawCount, maxItems: kMaxItems };

const kLimitRanges: Record<keyof Limits, [number, number]> = {
  bodyBytes: [1024, kMaxBodyBytes],
  maxDrawCount: [1, kMaxDrawCount],
  maxItems: [1, kMaxItems],
};

export function invalid(path: string, rule: string, value: unknown): never {
  throw new EngineError('ERR_INVALID_CONFIG', `${path} ${rule}, got ${show(value)}`, { details: { option: path, value } });
}

export function checkInt(path: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) invalid(path, `must be an integer from ${min} to ${max}`, value);
  return value;
}

export function checkObject(path: string, value: unknown, known: readonly string[]): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) invalid(path, 'must be an object', value);
  const o = value as Record<string, unknown>;
  for (const key of Object.keys(o)) if (!known.includes(key)) invalid(`${path}.${key}`, `is not a known field (known: ${known.join(', ')})`, o[key]);
  return o;
}

export function fillLimits(limits: unknown, path = 'limits'): Limits {
  if (limits === undefined) return { ...kDefaultLimits };
  const o = checkObject(path, limits, Object.keys(kLimitRanges));
  const out = { ...kDefaultLimits };
  for (const [key, [min, max]] of Object.entries(kLimitRanges) as [keyof Limits, [number, number]][]) {
    if (o[key] !== undefined) out[key] = checkInt(`${path}.${key}`, o[key], min, max);
  }
  return out;
}

export function fillServerOptions(options: unknown): FilledServerOptions {
  const o = checkObject('options', options ?? {}, ['auth', 'tls', 'limits', 'logger', 'closeEngine', 'retryAfterSeconds', 'shutdownTimeoutMs']);
  const auth = o.auth === undefined ? {} : checkObject('options.auth', o.auth, ['keys']);
  let tls: FilledServerOptions['tls'];
  if (o.tls !== undefined) {
    const t = checkObject('options.tls', o.tls, ['cert', 'key']);
    for (const k of ['cert', 'key'] as const) {
      if (typeof t[k] !== 'string' && !Buffer.isBuffer(t[k])) invalid(`options.tls.${k}`, 'must be PEM text (a string or Buffer)', k === 'key' ? '[redacted]' : t[k]);
    }
    tls = { cert: t.cert as string | Buffer, key: t.key as string | Buffer };
  }
  if (o.closeEngine !== undefined && typeof o.closeEngine !== 'boolean') invalid('options.closeEngine', 'must be a boolean', o.closeEngine);
  return {
    keys: compileKeys(auth.keys, 'options.auth.keys'),
    tls,
    limits: fillLimits(o.limits, 'options.limits'),
    logger: (o.logger ?? false) as FastifyServerOptions['logger'],
    closeEngine: (o.closeEngine as boolean | undefined) ?? true,
    retryAfterSeconds: o.retryAfterSeconds === undefined ? 1 : checkInt('options.retryAfterSeconds', o.retryAfterSeconds, 0, 3600),
    shutdownTimeoutMs: o.shutdownTimeoutMs === undefined ? 30_000 : checkInt('options.shutdownTimeoutMs', o.shutdownTimeoutMs, 0, 3_600_000),
  };
}

/**
 * Hosts that only this machine can reach: 127.0.0.0/8, ::1, ::ffff:127.x and `localhost`.
 * Anything else (0.0.0.0, ::, a LAN address, a name) may be reachable from elsewhere.
 */
export function isLoopback(host: string): boolean {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (h === 'localhost') return true;
  const family = isIP(h);
  if (family === 4) return h.startsWith('127.');
  if (family === 6) return h === '::1' || /^(0{1,4}:){7}0{0,3}1$/.test(h) || /^::ffff:127\./i.test(h);
  return false;
}
