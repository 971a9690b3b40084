/**
 * The status of every error code (DESIGN.md "Service (HTTP)"): each code, raised by an engine
 * stand-in (the server only needs the ServedEngine interface), comes back as problem+json with
 * the design's status, 503s with Retry-After; an unexpected error is 500 ERR_INTERNAL without its
 * message. Then the real thing: a closed engine answers 503 and /readyz follows it.
 */
import { describe, expect, it } from 'vitest';
import { EngineError, KiB } from '../helpers/engine.js';
import { bearer, createServer, keys, tokens, useServers } from '../helpers/server.js';
import { tmpDir } from '../helpers/tmp.js';
import { errorCodes, type ErrorCode } from '../../dist/src/index.js';
import { kStatusByCode } from '../../dist/src/server/index.js';

const serve = useServers();

/** DESIGN.md's table of statuses; codes that no request can cause are 500. */
const kDesignStatus: Partial<Record<ErrorCode, number>> = {
  ERR_INVALID_ARGUMENT: 400,
  ERR_INVALID_CONFIG: 400,
  ERR_INVALID_REQUEST: 400,
  ERR_UNAUTHORIZED: 401,
  ERR_FORBIDDEN: 403,
  ERR_UNKNOWN_POOL: 404,
  ERR_UNKNOWN_ITEM: 404,
  ERR_POOL_EXISTS: 409,
  ERR_IDEMPOTENCY_MISMATCH: 409,
  ERR_PAYLOAD_TOO_LARGE: 413,
  ERR_ENGINE_CLOSED: 503,
  ERR_SHARD_FAILED: 503,
  ERR_NOT_LEADER: 503,
  ERR_REPLICATION_UNAVAILABLE: 503,
  ERR_DISK_FULL: 507,
};

/** An engine whose every call fails with `fail()`. */
function failingEngine(fail: () => unknown): never {
  const reject = () => Promise.reject(fail());
  return {
    createPool: reject,
    draw: reject,
    drawMany: reject,
    updateItem: reject,
    pool: reject,
    snapshot: reject,
    close: () => Promise.resolve(),
    poolIds: () => [],
    metrics: () => ({ shards: [] }),
    once: () => undefined,
  } as never;
}

describe('status of every code', () => {
  it('matches DESIGN.md for every code it names', () => {
    for (const [code, status] of Object.entries(kDesignStatus)) expect(kStatusByCode[code as ErrorCode], code).toBe(status);
    for (const code of Object.keys(errorCodes)) expect(kStatusByCode[code as ErrorCode], code).toBeGreaterThanOrEqual(400);
  });

  it.each(Object.keys(errorCodes) as ErrorCode[])('%s from the engine is its status, as problem+json (503 with Retry-After)', async (code) => {
    const app = createServer(failingEngine(() => new EngineError(code, `detail of ${code}`)), { auth: { keys }, retryAfterSeconds: 7 });
    try {
      const routes = [
        { method: 'POST' as const, url: '/v1/pools/p/draw' },
        { method: 'POST' as const, url: '/v1/pools/p/draws', payload: { count: 2 } },
        { method: 'GET' as const, url: '/v1/pools/p' },
        { method: 'PATCH' as const, url: '/v1/pools/p/items/i', payload: { weight: 2 } },
        { method: 'POST' as const, url: '/v1/snapshot' },
      ];
      for (const r of routes) {
        const res = await app.inject({ ...r, headers: bearer(tokens.all) });
        const status = kStatusByCode[code];
        expect(res.statusCode, `${r.method} ${r.url}`).toBe(status);
        expect(res.headers['content-type']).toBe('application/problem+json; charset=utf-8');
        expect(res.json()).toEqual({ type: `urn:reward-pool-engine:error:${code}`, title: errorCodes[code], status, code, detail: `detail of ${code}` });
        expect(res.headers['retry-after']).toBe(status === 503 ? '7' : undefined);
      }
    } finally {
      await app.close();
    }
  });

  it('an unexpected error is 500 ERR_INTERNAL and its message stays in the server log', async () => {
    const app = createServer(failingEngine(() => new TypeError('secret internals')), { auth: { keys } });
    try {
      const res = await app.inject({ method: 'POST', url: '/v1/pools/p/draw', headers: bearer(tokens.all) });
      expect(res.statusCode).toBe(500);
      expect(res.json()).toMatchObject({ code: 'ERR_INTERNAL', status: 500 });
      expect(res.body).not.toContain('secret');
    } finally {
      await app.close();
    }
  });
});

describe('a closed engine', () => {
  it('answers 503 ERR_ENGINE_CLOSED with Retry-After, and /readyz turns 503 while /healthz stays 200', async () => {
    const { app, engine } = await serve({ dir: tmpDir('closed'), shards: 2, segmentBytes: 256 * KiB }, { auth: { keys }, closeEngine: false });
    await engine.createPool('p', [{ id: 'a', weight: 1, quantity: -1 }]);
    expect((await app.inject({ method: 'GET', url: '/readyz' })).json()).toEqual({ status: 'ready', pools: 1, failedShards: [] });
    await engine.close();
    const draw = await app.inject({ method: 'POST', url: '/v1/pools/p/draw', headers: bearer(tokens.all) });
    expect(draw.statusCode).toBe(503);
    expect(draw.headers['retry-after']).toBe('1');
    expect(draw.json()).toMatchObject({ code: 'ERR_ENGINE_CLOSED', detail: 'the engine is closed' });
    const ready = await app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(503);
    expect(ready.json()).toMatchObject({ code: 'ERR_ENGINE_CLOSED' });
    expect((await app.inject({ method: 'GET', url: '/healthz' })).json()).toEqual({ status: 'ok' });
    // The scrape still answers (the engine figures are gone, the process figures are not).
    const metrics = await app.inject({ method: 'GET', url: '/metrics', headers: bearer(tokens.metrics) });
    expect(metrics.statusCode).toBe(200);
    expect(metrics.body).toContain('rpe_engine_open 0');
  });

  it('closing the server closes the engine (onClose), after which readyz cannot be asked', async () => {
    const { app, engine } = await serve({ dir: tmpDir('close'), shards: 1, segmentBytes: 256 * KiB });
    let closed = false;
    engine.once('close', () => (closed = true));
    await app.close();
    expect(closed).toBe(true);
    await expect(engine.draw('p')).rejects.toMatchObject({ code: 'ERR_ENGINE_CLOSED' });
  });
});
