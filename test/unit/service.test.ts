/**
 * The service's pure pieces, without sockets or threads: the indices wire encoding, idempotency
 * keys on the wire, loopback hosts, limits and server options, the serve config merge, API key
 * compilation, problem mapping, and the client's retry classification and backoff.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tmpDir } from '../helpers/tmp.js';
import { kMaxDrawMany } from '../../src/engine.js';
import { EngineError } from '../../src/errors.js';
import { backoffMs, errorFromResponse, isConnectionFailure } from '../../src/client/http.js';
import { compileKeys, sha256 } from '../../src/server/auth.js';
import { loadServeConfig } from '../../src/server/config.js';
import { fillLimits, fillServerOptions, isLoopback } from '../../src/server/options.js';
import { problemOf } from '../../src/server/problem.js';
import { decodeIndices, encodeIndices, isWireIdempotencyKey, kMaxDrawCount } from '../../src/wire.js';


function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as EngineError).code;
  }
  return undefined;
}

describe('indices on the wire', () => {
  it('round-trips through base64 of little-endian u16, empty draws included', () => {
    const seed = 1234;
    console.log(`seed ${seed}`);
    let x = seed;
    for (const n of [0, 1, 2, 3, 4, 5, 1000, 65_537]) {
      const a = new Uint16Array(n).map(() => ((x = (x * 1103515245 + 12345) >>> 0) % 3 === 0 ? 0xffff : x % 60_000));
      const text = encodeIndices(a);
      expect(Buffer.from(text, 'base64').length).toBe(2 * n);
      expect(decodeIndices(text, n)).toEqual(a);
    }
    const whole = new Uint16Array([1, 2, 3, 4]);
    expect(decodeIndices(encodeIndices(whole.subarray(1, 3)), 2)).toEqual(new Uint16Array([2, 3]));
    expect(Buffer.from(encodeIndices(new Uint16Array([0x0102])), 'base64')).toEqual(Buffer.from([0x02, 0x01]));
  });

  it('refuses a string that is not exactly count indices', () => {
    const text = encodeIndices(new Uint16Array([1, 2, 3]));
    expect(decodeIndices(text, 2)).toBeUndefined();
    expect(decodeIndices(text, 4)).toBeUndefined();
    expect(decodeIndices('', 1)).toBeUndefined();
    expect(decodeIndices('%%%%', 1)).toBeUndefined();
  });

  it('the count limit is the engine’s kMaxDrawMany', () => {
    expect(kMaxDrawCount).toBe(kMaxDrawMany);
  });

  it('idempotency keys are 1-128 visible ASCII characters', () => {
    for (const ok of ['a', 'order-42', 'k'.repeat(128), '!~', 'rpc-0f0e']) expect(isWireIdempotencyKey(ok), ok).toBe(true);
    for (const bad of ['', 'k'.repeat(129), 'two words', 'tab\t', 'é', '\n', 42, null]) expect(isWireIdempotencyKey(bad), String(bad)).toBe(false);
  });
});

describe('options', () => {
  it('loopback hosts', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1']) expect(isLoopback(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', 'example.com', '', '::2', 'localhost.evil.com']) expect(isLoopback(h), h).toBe(false);
  });

  it('limits: defaults, caps and messages naming the path', () => {
    expect(fillLimits(undefined)).toEqual({ bodyBytes: 8 * 1024 * 1024, maxDrawCount: 16_777_216, maxItems: 65_534 });
    expect(fillLimits({ maxItems: 10 }).maxItems).toBe(10);
    expect(() => fillLimits({ maxDrawCount: 16_777_217 })).toThrow('limits.maxDrawCount must be an integer from 1 to 16777216, got 16777217');
    expect(() => fillLimits({ maxItems: 65_535 })).toThrow('limits.maxItems must be an integer from 1 to 65534');
    expect(() => fillLimits({ body: 1 })).toThrow('limits.body is not a known field');
  });

  it('server options are checked eagerly', () => {
    expect(fillServerOptions(undefined)).toMatchObject({ keys: [], closeEngine: true, retryAfterSeconds: 1, shutdownTimeoutMs: 30_000, logger: false });
    expect(codeOf(() => fillServerOptions({ closeEngine: 'yes' }))).toBe('ERR_INVALID_CONFIG');
    expect(codeOf(() => fillServerOptions({ tls: { cert: 'x' } }))).toBe('ERR_INVALID_CONFIG');
    expect(codeOf(() => fillServerOptions({ retryAfterSeconds: -1 }))).toBe('ERR_INVALID_CONFIG');
    expect(() => fillServerOptions({ port: 1 })).toThrow('options.port is not a known field');
  });

  it('API keys keep digests only; a token and its digest authenticate alike', () => {
    const token = 'a-long-enough-token';
    const [a, b] = compileKeys([
      { id: 'a', token, scopes: ['read'] },
      { id: 'b', sha256: sha256(token).toString('hex').toUpperCase(), scopes: ['draw', 'read'] },
    ]);
    expect(a!.digest).toEqual(b!.digest);
    expect(JSON.stringify(a)).not.toContain(token);
    expect([...b!.scopes]).toEqual(['draw', 'read']);
  });
});

describe('serve config', () => {
  it('merges file and flags; file paths are relative to the file, flag paths to the working directory', () => {
    const scratch = tmpDir('serve-config');
    const file = join(scratch, 'c.json');
    writeFileSync(file, JSON.stringify({ engine: { dir: 'data', shards: 2 }, listen: { port: 9000 }, tls: { cert: 'c.pem', key: 'k.pem' }, server: { logLevel: 'info' } }));
    const c = loadServeConfig({ config: file, shards: '1', archive: true }, '/work');
    expect(c.engine).toEqual({ dir: join(scratch, 'data'), shards: 1, archive: true });
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 9000 });
    expect(c.tls).toEqual({ cert: join(scratch, 'c.pem'), key: join(scratch, 'k.pem') });
    expect(c.logLevel).toBe('info');
    const flags = loadServeConfig({ config: file, dir: 'elsewhere', port: '0', 'tls-cert': 'x.pem' }, '/work');
    expect(flags.engine.dir).toBe('/work/elsewhere');
    expect(flags.listen.port).toBe(0);
    expect(flags.tls!.cert).toBe('/work/x.pem');
  });

  it('defaults without a file', () => {
    const c = loadServeConfig({ wal: 'none' }, '/work');
    expect(c).toMatchObject({ listen: { host: '127.0.0.1', port: 8080 }, auth: { keys: [] }, tls: undefined, retryAfterSeconds: 1, shutdownTimeoutMs: 30_000, logLevel: 'warn' });
  });
});

describe('problems', () => {
  it('maps fastify’s errors to our codes, keeping client-error statuses', () => {
    const schema = Object.assign(new Error('body/count must be integer'), { validation: [{}], validationContext: 'body', statusCode: 400 });
    expect(problemOf(schema).problem).toMatchObject({ status: 400, code: 'ERR_INVALID_REQUEST', detail: 'body/count must be integer' });
    expect(problemOf(Object.assign(new Error('too big'), { code: 'FST_ERR_CTP_BODY_TOO_LARGE', statusCode: 413 })).problem).toMatchObject({ status: 413, code: 'ERR_PAYLOAD_TOO_LARGE' });
    expect(problemOf(Object.assign(new Error('media'), { statusCode: 415 })).problem).toMatchObject({ status: 415, code: 'ERR_INVALID_REQUEST' });
    expect(problemOf(new EngineError('ERR_DISK_FULL', 'full')).problem).toEqual({ type: 'urn:reward-pool-engine:error:ERR_DISK_FULL', title: 'disk full', status: 507, code: 'ERR_DISK_FULL', detail: 'full' });
    const internal = problemOf(new RangeError('boom'));
    expect(internal.internal).toBe(true);
    expect(internal.problem).toMatchObject({ status: 500, code: 'ERR_INTERNAL' });
    expect(internal.problem.detail).not.toContain('boom');
  });
});

describe('client retries', () => {
  it('retries only failures that left no response', () => {
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT']) expect(isConnectionFailure({ code }), code).toBe(true);
    for (const code of ['UND_ERR_HEADERS_TIMEOUT', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'ERR_INVALID_URL', undefined]) expect(isConnectionFailure({ code }), String(code)).toBe(false);
    expect(isConnectionFailure(null)).toBe(false);
  });

  it('backs off exponentially with jitter, within the cap', () => {
    const policy = { retries: 5, minDelayMs: 50, maxDelayMs: 400 };
    for (let attempt = 0; attempt < 8; attempt++) {
      const cap = Math.min(400, 50 * 2 ** attempt);
      for (let i = 0; i < 50; i++) {
        const d = backoffMs(attempt, policy);
        expect(d).toBeGreaterThanOrEqual(cap / 2);
        expect(d).toBeLessThanOrEqual(cap);
      }
    }
  });

  it('rebuilds EngineError from problem+json, and names responses that are not ours', () => {
    const p = JSON.stringify({ type: 'urn:reward-pool-engine:error:ERR_UNKNOWN_POOL', title: 'unknown pool', status: 404, code: 'ERR_UNKNOWN_POOL', detail: 'no pool with id "x"' });
    const err = errorFromResponse(404, 'application/problem+json; charset=utf-8', p, 'GET /v1/pools/x');
    expect(err).toBeInstanceOf(EngineError);
    expect(err).toMatchObject({ code: 'ERR_UNKNOWN_POOL', message: 'no pool with id "x"', details: { status: 404 } });
    expect(errorFromResponse(503, 'text/html', '<h1>down</h1>', 'w').code).toBe('ERR_SERVICE_UNAVAILABLE');
    expect(errorFromResponse(500, 'application/problem+json', '{"code":"toString"}', 'w').code).toBe('ERR_INTERNAL');
    expect(errorFromResponse(418, 'application/problem+json', '{bad', 'w').code).toBe('ERR_INTERNAL');
  });
});
