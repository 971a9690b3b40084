/**
 * API keys with scopes. A key is given in the config as the token itself or as the hex SHA-256
 * digest of the token (so a config file need not hold secrets). Either way the server keeps
 * only digests, and checks a presented token by hashing it and comparing digests with
 * crypto.timingSafeEqual: both sides are 32 bytes whatever the token's length, so the
 * comparison's time tells nothing about how much of a token matched. Every key is compared
 * (no early exit), so the time does not tell which key matched either.
 *
 * The check is an onRequest hook: it runs before the body is read, so a request without the
 * right token costs the server no parsing and never reaches the engine.
 */
import * as crypto from 'node:crypto';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { EngineError, show } from '../errors.js';

export const kScopes = ['draw', 'read', 'admin', 'metrics'] as const;
export type Scope = (typeof kScopes)[number];

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The scope a route needs; routes without one are public. */
    scope?: Scope;
  }
}

export interface ApiKeyConfig {
  /** A name for logs and metrics; never secret. */
  id: string;
  /** The bearer token itself (at least 16 characters). Give this or `sha256`. */
  token?: string;
  /** Hex SHA-256 digest of the token (64 hex digits). Give this or `token`. */
  sha256?: string;
  scopes: Scope[];
}

export interface Key {
  id: string;
  digest: Buffer;
  scopes: ReadonlySet<Scope>;
}

export const kMinTokenLength = 16;
const kBearer = /^Bearer[ ]+([\x21-\x7e]+)[ ]*$/i;

function invalid(path: string, rule: string, value: unknown): never {
  throw new EngineError('ERR_INVALID_CONFIG', `${path} ${rule}, got ${show(value)}`, { details: { option: path } });
}

// crypto.hash (Node >= 20.12) hashes in one call, without a Hash object per request.
const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: 'buffer') => Buffer }).hash;

export function sha256(token: string): Buffer {
  return oneShot === undefined ? createHash('sha256').update(token, 'utf8').digest() : oneShot('sha256', token, 'buffer');
}

/** Validate `auth.keys` (messages name the path, e.g. `auth.keys[1].scopes`), keep digests only. */
export function compileKeys(keys: unknown, path = 'auth.keys'): Key[] {
  if (keys === undefined) return [];
  if (!Array.isArray(keys)) invalid(path, 'must be an array', keys);
  const ids = new Set<string>();
  return (keys as unknown[]).map((raw, i) => {
    const at = `${path}[${i}]`;
    if (typeof raw !== 'object' || raw === null) invalid(at, 'must be an object', raw);
    const k = raw as Record<string, unknown>;
    for (const field of Object.keys(k)) if (!['id', 'token', 'sha256', 'scopes'].includes(field)) invalid(`${at}.${field}`, 'is not a known field (id, token, sha256, scopes)', k[field]);
    if (typeof k.id !== 'string' || k.id.length === 0 || k.id.length > 128) invalid(`${at}.id`, 'must be a string of 1-128 characters', k.id);
    if (ids.has(k.id as string)) invalid(`${at}.id`, 'is a duplicate', k.id);
    ids.add(k.id as string);
    if ((k.token === undefined) === (k.sha256 === undefined)) invalid(at, 'must have exactly one of token and sha256', Object.keys(k));
    let digest: Buffer;
    if (k.token !== undefined) {
      if (typeof k.token !== 'string' || k.token.length < kMinTokenLength || !/^[\x21-\x7e]+$/.test(k.token)) {
        // Never echo a token, even a bad one.
        invalid(`${at}.token`, `must be a string of at least ${kMinTokenLength} visible ASCII characters`, '[redacted]');
      }
      digest = sha256(k.token as string);
    } else {
      if (typeof k.sha256 !== 'string' || !/^[0-9a-fA-F]{64}$/.test(k.sha256)) invalid(`${at}.sha256`, 'must be 64 hex digits (the SHA-256 of the token)', k.sha256);
      digest = Buffer.from(k.sha256 as string, 'hex');
    }
    if (!Array.isArray(k.scopes) || k.scopes.length === 0) invalid(`${at}.scopes`, `must be a non-empty array of ${kScopes.join(', ')}`, k.scopes);
    for (const s of k.scopes as unknown[]) if (!kScopes.includes(s as Scope)) invalid(`${at}.scopes`, `may only hold ${kScopes.join(', ')}`, s);
    return { id: k.id as string, digest, scopes: new Set(k.scopes as Scope[]) };
  });
}

/** The key whose digest matches the token, comparing against every key. */
function match(keys: readonly Key[], token: string): Key | undefined {
  const digest = sha256(token);
  let found: Key | undefined;
  for (const key of keys) if (timingSafeEqual(key.digest, digest) && found === undefined) found = key;
  return found;
}

/**
 * The key an `Authorization` header value authenticates for `scope`, or the coded error to
 * answer with (ERR_UNAUTHORIZED, ERR_FORBIDDEN). `what` names the operation in messages.
 */
export function authorize(keys: readonly Key[], header: string | undefined, scope: Scope, what: string): { key: Key } | { error: EngineError } {
  const m = header === undefined ? null : kBearer.exec(header);
  if (m === null) {
    const message = header === undefined ? 'no Authorization header; send Authorization: Bearer <token>' : 'the Authorization header is not "Bearer <token>"';
    return { error: new EngineError('ERR_UNAUTHORIZED', message) };
  }
  const key = match(keys, m[1]!);
  if (key === undefined) return { error: new EngineError('ERR_UNAUTHORIZED', 'the bearer token matches no configured API key') };
  if (!key.scopes.has(scope)) {
    return { error: new EngineError('ERR_FORBIDDEN', `API key ${show(key.id)} lacks the scope ${show(scope)} that ${what} needs`, { details: { scope } }) };
  }
  return { key };
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Id of the API key that authenticated the request (undefined on public routes or without keys). */
    apiKeyId?: string;
  }
}

/**
 * The onRequest hook. Without keys, every route is open: create-server.ts then refuses to
 * listen on anything but loopback.
 */
export function installAuth(app: FastifyInstance, keys: readonly Key[]): void {
  if (keys.length === 0) return;
  app.decorateRequest('apiKeyId', undefined);
  app.addHook('onRequest', (request: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void) => {
    const scope = request.routeOptions.config.scope;
    if (scope === undefined) return done();
    const result = authorize(keys, request.headers.authorization, scope, `${request.method} ${request.routeOptions.url}`);
    if ('error' in result) return done(result.error);
    request.apiKeyId = result.key.id;
    done();
  });
}
