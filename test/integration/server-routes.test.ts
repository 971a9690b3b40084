/**
 * Every /v1 route through app.inject() against a real engine on real files: the success shape
 * of DESIGN.md "Service (HTTP)", the engine's errors as problem+json, schema rejections (wrong
 * types, missing and extra fields, limits, bad JSON, oversized bodies), and that every rejected
 * request left the engine as it was.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KiB, type DrawEngine } from '../helpers/engine.js';
import { bearer, createServer, expectUnchanged, keys, tokens, type ServiceApp } from '../helpers/server.js';
import { tmpDir } from '../helpers/tmp.js';
import { DrawEngine as Engine } from '../../dist/src/index.js';

let engine: DrawEngine;
let app: ServiceApp;
const auth = bearer(tokens.all);
const limits = { bodyBytes: 16 * KiB, maxDrawCount: 100_000, maxItems: 300 };

beforeAll(async () => {
  engine = await Engine.open({ dir: tmpDir('routes'), shards: 2, segmentBytes: 256 * KiB });
  app = createServer(engine, { auth: { keys }, limits });
  await app.ready();
  await engine.createPool('spring', [
    { id: 'diamond', weight: 10, quantity: 100 },
    { id: 'mud', weight: 70, quantity: -1 },
  ]);
  await engine.createPool('gone', [{ id: 'ghost', weight: 1, quantity: 0 }]);
  await engine.createPool('__proto__', [{ id: 'constructor', weight: 1, quantity: -1 }, { id: '__proto__', weight: 1, quantity: -1 }]);
});
afterAll(async () => {
  await app.close();
});

type Json = Record<string, any>;

async function call(method: 'GET' | 'POST' | 'PATCH', url: string, payload?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: Json; headers: Record<string, unknown> }> {
  const res = await app.inject({ method, url, headers: { ...auth, ...headers }, ...(payload === undefined ? {} : { payload: payload as string }) });
  return { status: res.statusCode, body: res.body === '' ? {} : (JSON.parse(res.body) as Json), headers: res.headers };
}

/** The request is refused with `status` and `code`, and the engine is unchanged. */
async function refused(status: number, code: string, method: 'GET' | 'POST' | 'PATCH', url: string, payload?: unknown, headers?: Record<string, string>): Promise<Json> {
  let res!: Awaited<ReturnType<typeof call>>;
  await expectUnchanged(engine, async () => {
    res = await call(method, url, payload, headers);
  });
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.body).toEqual({ type: `urn:reward-pool-engine:error:${code}`, title: expect.any(String), status, code, detail: expect.any(String) });
  return res.body;
}

const json = { 'content-type': 'application/json' };

describe('GET /v1/pools and /v1/pools/:pool', () => {
  it('lists pool ids and returns a PoolState', async () => {
    const list = await call('GET', '/v1/pools');
    expect(list.status).toBe(200);
    expect(list.body.pools.sort()).toEqual(engine.poolIds().sort());
    const s = await call('GET', '/v1/pools/spring');
    expect(s.status).toBe(200);
    expect(s.body).toEqual(await engine.pool('spring'));
  });

  it('pool ids that are JavaScript property names or need escaping are ordinary ids', async () => {
    const s = await call('GET', `/v1/pools/${encodeURIComponent('__proto__')}`);
    expect(s.body).toEqual(await engine.pool('__proto__'));
    await call('POST', '/v1/pools', { id: 'a/b c?#%', items: [{ id: 'x', weight: 1, quantity: 1 }] });
    const odd = await call('GET', `/v1/pools/${encodeURIComponent('a/b c?#%')}`);
    expect(odd.status).toBe(200);
    expect(odd.body.id).toBe('a/b c?#%');
    const long = '€'.repeat(128); // 128 code units, 1,152 characters percent-encoded
    expect((await call('POST', '/v1/pools', { id: long, items: [{ id: 'x', weight: 1, quantity: 1 }] })).status).toBe(201);
    expect((await call('GET', `/v1/pools/${encodeURIComponent(long)}`)).body.id).toBe(long);
  });

  it('404 ERR_UNKNOWN_POOL; 400 ERR_INVALID_REQUEST for an id over 128 code units', async () => {
    await refused(404, 'ERR_UNKNOWN_POOL', 'GET', '/v1/pools/nope');
    await refused(400, 'ERR_INVALID_REQUEST', 'GET', `/v1/pools/${'x'.repeat(129)}`);
    await refused(400, 'ERR_INVALID_REQUEST', 'GET', `/v1/pools/${encodeURIComponent('😀'.repeat(65))}`);
  });
});

describe('POST /v1/pools', () => {
  it('201 with the new pool’s state', async () => {
    const res = await call('POST', '/v1/pools', { id: 'autumn', items: [{ id: 'leaf', weight: 3, quantity: 7 }] });
    expect(res.status).toBe(201);
    expect(res.body).toEqual({ id: 'autumn', lastRequestId: 0, items: [{ id: 'leaf', weight: 3, quantity: 7, drawn: 0 }] });
    expect(engine.poolIds()).toContain('autumn');
  });

  it('409 ERR_POOL_EXISTS', async () => {
    await refused(409, 'ERR_POOL_EXISTS', 'POST', '/v1/pools', { id: 'spring', items: [{ id: 'x', weight: 1, quantity: 1 }] });
  });

  it('400 with the engine’s codes for catalogs the schema lets through', async () => {
    const dup = await refused(400, 'ERR_INVALID_CONFIG', 'POST', '/v1/pools', { id: 'd', items: [{ id: 'x', weight: 1, quantity: 1 }, { id: 'x', weight: 1, quantity: 1 }] });
    expect(dup.detail).toContain('duplicate');
    await refused(400, 'ERR_INVALID_CONFIG', 'POST', '/v1/pools', { id: 'd', items: [{ id: 'x', weight: 2 ** 48, quantity: 1 }, { id: 'y', weight: 1, quantity: 1 }] });
    await refused(400, 'ERR_INVALID_ARGUMENT', 'POST', '/v1/pools', { id: '\ud800', items: [{ id: 'x', weight: 1, quantity: 1 }] });
  });

  it('400 ERR_INVALID_REQUEST for schema failures', async () => {
    const item = { id: 'x', weight: 1, quantity: 1 };
    const cases: unknown[] = [
      { id: 'd' },
      { items: [item] },
      { id: 'd', items: [] },
      { id: 'd', items: [item], color: 'red' },
      { id: 'd', items: [{ ...item, color: 'red' }] },
      { id: 'd', items: [{ ...item, weight: '1' }] },
      { id: 'd', items: [{ ...item, weight: 0 }] },
      { id: 'd', items: [{ ...item, weight: 1.5 }] },
      { id: 'd', items: [{ ...item, quantity: -2 }] },
      { id: 'd', items: [{ id: 'x', weight: 1 }] },
      { id: 7, items: [item] },
      { id: '', items: [item] },
      { id: 'd', items: item },
      [],
      'd',
    ];
    for (const body of cases) await refused(400, 'ERR_INVALID_REQUEST', 'POST', '/v1/pools', JSON.stringify(body), json);
  });

  it('400 past the server’s catalog limit, before the engine sees it', async () => {
    const items = Array.from({ length: limits.maxItems + 1 }, (_, i) => ({ id: `i${i}`, weight: 1, quantity: 1 }));
    const body = await refused(400, 'ERR_INVALID_REQUEST', 'POST', '/v1/pools', { id: 'wide', items });
    expect(body.detail).toContain(`${limits.maxItems}`);
  });

  it('400 for bad JSON and an empty JSON body; 413 ERR_PAYLOAD_TOO_LARGE past the body limit', async () => {
    await refused(400, 'ERR_INVALID_REQUEST', 'POST', '/v1/pools', '{"id": "d", "items": [', json);
    await refused(400, 'ERR_INVALID_REQUEST', 'POST', '/v1/pools', '', json);
    await refused(400, 'ERR_INVALID_REQUEST', 'POST', '/v1/pools', '{"__proto__": {"x": 1}, "id": "d", "items": []}', json);
    const items = Array.from({ length: 250 }, (_, i) => ({ id: `${'n'.repeat(60)}${i}`, weight: 1, quantity: 1 }));
    await refused(413, 'ERR_PAYLOAD_TOO_LARGE', 'POST', '/v1/pools', { id: 'big', items });
  });
});

describe('POST /v1/pools/:pool/draw', () => {
  it('200 { requestId, itemId }, in request order', async () => {
    const a = await call('POST', '/v1/pools/spring/draw');
    const b = await call('POST', '/v1/pools/spring/draw', '{}', json);
    expect(a.status).toBe(200);
    expect(Object.keys(a.body).sort()).toEqual(['itemId', 'requestId']);
    expect(['diamond', 'mud']).toContain(a.body.itemId);
    expect(b.body.requestId).toBeGreaterThan(a.body.requestId);
  });

  it('an empty draw has itemId null', async () => {
    const res = await call('POST', '/v1/pools/gone/draw');
    expect(res.status).toBe(200);
    expect(res.body.itemId).toBeNull();
  });

  it('404 unknown pool; 400 for a body field, bad JSON or a bad Idempotency-Key', async () => {
    await refused(404, 'ERR_UNKNOWN_POOL', 'POST', '/v1/pools/nope/draw');
    await refused(400, 'ERR_INVALID_REQUEST', 'POST', '/v1/pools/spring/draw', '{"count": 2}', json);
    await refused(400, 'ERR_INVALID_REQUEST', 'POST', '/v1/pools/spring/draw', '{', json);
    await refused(400, 'ERR_INVALID_REQUEST', 'POST', '/v1/pools/spring/draw', undefined, { 'idempotency-key': 'k'.repeat(129) });
    await refused(400, 'ERR_INVALID_REQUEST', 'POST', '/v1/pools/spring/draw', undefined, { 'idempotency-key': 'two words' });
  });
});

describe('POST /v1/pools/:pool/draws', () => {
  it('200 { firstRequestId, count, items, counts, empty } with consecutive ids', async () => {
    const before = (await engine.pool('spring')).lastRequestId;
    const res = await call('POST', '/v1/pools/spring/draws', { count: 1000 });
    expect(res.status).toBe(200);
    expect(Object.keys(res.body).sort()).toEqual(['count', 'counts', 'empty', 'firstRequestId', 'items']);
    expect(res.body.count).toBe(1000);
    expect(res.body.items).toEqual(['diamond', 'mud']);
    const sum = Object.values(res.body.counts as Record<string, number>).reduce((a, n) => a + n, 0);
    expect(sum + res.body.empty).toBe(1000);
    const after = await engine.pool('spring');
    expect(after.lastRequestId).toBe(res.body.firstRequestId + 999);
    expect(res.body.firstRequestId).toBeGreaterThan(before);
  });

  it('with "indices": true, each draw’s item index as base64 little-endian u16 matching counts', async () => {
    const res = await call('POST', '/v1/pools/gone/draws', { count: 3, indices: true });
    expect(res.body).toMatchObject({ count: 3, counts: {}, empty: 3 });
    const empty = Buffer.from(res.body.indices, 'base64');
    expect([0, 1, 2].map((i) => empty.readUInt16LE(2 * i))).toEqual([0xffff, 0xffff, 0xffff]);
    const proto = await call('POST', `/v1/pools/${encodeURIComponent('__proto__')}/draws`, { count: 500, indices: true });
    const bytes = Buffer.from(proto.body.indices, 'base64');
    const tally = [0, 0];
    for (let i = 0; i < 500; i++) tally[bytes.readUInt16LE(2 * i)]!++;
    expect(proto.body.counts).toEqual(Object.fromEntries([['constructor', tally[0]], ['__proto__', tally[1]]].filter(([, n]) => (n as number) > 0)));
  });

  it('400 for counts out of range or of the wrong type, missing or extra fields; 404 unknown pool', async () => {
    for (const body of [{ count: 0 }, { count: -1 }, { count: 1.5 }, { count: '5' }, { count: limits.maxDrawCount + 1 }, {}, { count: 1, extra: true }, { count: 1, indices: 'yes' }, { count: null }]) {
      await refused(400, 'ERR_INVALID_REQUEST', 'POST', '/v1/pools/spring/draws', JSON.stringify(body), json);
    }
    await refused(400, 'ERR_INVALID_REQUEST', 'POST', '/v1/pools/spring/draws');
    await refused(400, 'ERR_INVALID_REQUEST', 'POST', '/v1/pools/spring/draws', 'count=5', { 'content-type': 'text/plain' });
    await refused(415, 'ERR_INVALID_REQUEST', 'POST', '/v1/pools/spring/draws', 'count=5', { 'content-type': 'application/x-www-form-urlencoded' });
    await refused(413, 'ERR_PAYLOAD_TOO_LARGE', 'POST', '/v1/pools/spring/draws', `{"count": 1${' '.repeat(limits.bodyBytes)}}`, json);
    await refused(404, 'ERR_UNKNOWN_POOL', 'POST', '/v1/pools/nope/draws', { count: 5 });
  });
});

describe('PATCH /v1/pools/:pool/items/:item', () => {
  it('200 with the pool’s state after the update', async () => {
    const res = await call('PATCH', '/v1/pools/autumn/items/leaf', { quantity: 50, weight: 9 });
    expect(res.status).toBe(200);
    expect(res.body.items).toEqual([{ id: 'leaf', weight: 9, quantity: 50, drawn: 0 }]);
    expect(await engine.pool('autumn')).toEqual(res.body);
  });

  it('404 unknown pool or item; 400 for bad patches', async () => {
    await refused(404, 'ERR_UNKNOWN_POOL', 'PATCH', '/v1/pools/nope/items/leaf', { quantity: 1 });
    await refused(404, 'ERR_UNKNOWN_ITEM', 'PATCH', '/v1/pools/autumn/items/bark', { quantity: 1 });
    for (const body of [{}, { weight: 0 }, { quantity: -2 }, { quantity: '3' }, { quantity: 1, color: 'red' }, []]) {
      await refused(400, 'ERR_INVALID_REQUEST', 'PATCH', '/v1/pools/autumn/items/leaf', JSON.stringify(body), json);
    }
    // Passes the schema, but the pool's total weight would exceed 2^48: the engine's own check.
    await refused(400, 'ERR_INVALID_ARGUMENT', 'PATCH', '/v1/pools/spring/items/mud', { weight: 2 ** 48 });
  });
});

describe('POST /v1/snapshot', () => {
  it('200 once every shard’s snapshot is durable', async () => {
    const before = engine.metrics().snapshots;
    await call('POST', '/v1/pools/spring/draws', { count: 10 });
    const res = await call('POST', '/v1/snapshot');
    expect(res).toMatchObject({ status: 200, body: { status: 'ok' } });
    expect(engine.metrics().snapshots).toBeGreaterThan(before);
  });

  it('400 for a body field', async () => {
    await refused(400, 'ERR_INVALID_REQUEST', 'POST', '/v1/snapshot', '{"now": true}', json);
  });
});

describe('unknown routes', () => {
  it('404 ERR_INVALID_REQUEST naming the route', async () => {
    const body = await refused(404, 'ERR_INVALID_REQUEST', 'GET', '/v2/pools');
    expect(body.detail).toBe('no route GET /v2/pools');
    await refused(404, 'ERR_INVALID_REQUEST', 'PATCH', '/v1/pools/spring');
  });
});
