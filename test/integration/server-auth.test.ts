/**
 * Access control: 401 for a missing, malformed or unknown token and 403 for a missing scope on
 * every protected route (the list is read from the server's own OpenAPI document and checked
 * against DESIGN.md), neither reaching the engine; keys given as digests; the loopback-only
 * rule without keys; TLS from a certificate and key.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EngineError, KiB } from '../helpers/engine.js';
import { bearer, createServer, expectUnchanged, keys, tokens, useServers, type Served } from '../helpers/server.js';
import { tmpDir } from '../helpers/tmp.js';
import { RewardPoolClient } from '../../dist/src/client/index.js';

const serve = useServers();

/** DESIGN.md's protected routes and their scopes (plus the live page's data route). */
const kProtected: Record<string, string> = {
  'GET /metrics': 'metrics',
  'GET /v1/pools': 'read',
  'POST /v1/pools': 'admin',
  'GET /v1/pools/{pool}': 'read',
  'POST /v1/pools/{pool}/draw': 'draw',
  'POST /v1/pools/{pool}/draws': 'draw',
  'PATCH /v1/pools/{pool}/items/{item}': 'admin',
  'POST /v1/snapshot': 'admin',
  'POST /v1/promote': 'admin',
  'GET /v1/stats': 'read',
};
const kPublic = ['GET /healthz', 'GET /readyz', 'GET /openapi.json', 'GET /', 'GET /dashboard/{file}'];

/** A valid request for each route (the one a token with the scope would get a 2xx for). */
function requestFor(route: string, n: number): { method: 'GET' | 'POST' | 'PATCH'; url: string; payload?: Record<string, unknown> } {
  const [method, path] = route.split(' ') as ['GET' | 'POST' | 'PATCH', string];
  const url = path.replace('{pool}', 'p').replace('{item}', 'a').replace('{file}', 'app.js');
  if (route === 'POST /v1/pools') return { method, url, payload: { id: `new-${n}`, items: [{ id: 'a', weight: 1, quantity: 1 }] } };
  if (route === 'POST /v1/pools/{pool}/draws') return { method, url, payload: { count: 3 } };
  if (route.startsWith('PATCH')) return { method, url, payload: { quantity: 5 } };
  return { method, url };
}

async function openServer(): Promise<Served> {
  const s = await serve({ dir: tmpDir('auth'), shards: 2, segmentBytes: 256 * KiB });
  await s.engine.createPool('p', [{ id: 'a', weight: 1, quantity: 100 }]);
  return s;
}

describe('scopes of every route', () => {
  it('the OpenAPI document lists exactly the protected and public routes of the design', async () => {
    const { app } = await openServer();
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json() as { paths: Record<string, Record<string, { 'x-scope'?: string }>> };
    const scopes: Record<string, string | undefined> = {};
    for (const [path, ops] of Object.entries(doc.paths)) for (const [m, op] of Object.entries(ops)) scopes[`${m.toUpperCase()} ${path}`] = op['x-scope'];
    expect(Object.fromEntries(Object.entries(scopes).filter(([, s]) => s !== undefined))).toEqual(kProtected);
    expect(Object.keys(scopes).filter((r) => scopes[r] === undefined).sort()).toEqual([...kPublic].sort());
  });

  it('401 without a token, with a malformed header or an unknown token; 403 without the scope; 2xx with it', async () => {
    const { app, engine } = await openServer();
    let n = 0;
    for (const [route, scope] of Object.entries(kProtected)) {
      const req = requestFor(route, n++);
      const inject = (headers: Record<string, string>) => app.inject({ ...req, headers });
      const wrongScope = Object.entries(tokens).find(([name]) => name !== 'all' && name !== scope)![1];
      const refusals: [Record<string, string>, number, string][] = [
        [{}, 401, 'no Authorization header'],
        [{ authorization: `Basic ${Buffer.from('u:p').toString('base64')}` }, 401, 'not "Bearer <token>"'],
        [{ authorization: 'Bearer' }, 401, 'not "Bearer <token>"'],
        [bearer('tok-unknown-0123456789abcdef'), 401, 'matches no configured API key'],
        [bearer(tokens.all.slice(0, -1)), 401, 'matches no configured API key'],
        [bearer(wrongScope), 403, `lacks the scope "${scope}"`],
      ];
      for (const [headers, status, detail] of refusals) {
        await expectUnchanged(engine, async () => {
          const res = await inject(headers);
          expect(res.statusCode, `${route} ${JSON.stringify(headers)}`).toBe(status);
          const body = res.json() as { code: string; detail: string };
          expect(body.code).toBe(status === 401 ? 'ERR_UNAUTHORIZED' : 'ERR_FORBIDDEN');
          expect(body.detail).toContain(detail);
          if (status === 401) expect(res.headers['www-authenticate']).toBe('Bearer realm="reward-pool-engine"');
        });
      }
      const ok = await inject(bearer((tokens as Record<string, string>)[scope]!));
      expect(ok.statusCode, `${route}: ${ok.body}`).toBeLessThan(300);
    }
  });

  it('a key given as a SHA-256 digest authenticates its token; the token is checked before the body is read', async () => {
    const { app, engine } = await openServer();
    expect((await app.inject({ method: 'GET', url: '/v1/pools', headers: bearer(tokens.read) })).statusCode).toBe(200);
    await expectUnchanged(engine, async () => {
      const big = await app.inject({ method: 'POST', url: '/v1/pools/p/draws', headers: { 'content-type': 'application/json' }, payload: `{"count": 1${' '.repeat(9 * 1024 * 1024)}}` });
      expect(big.statusCode).toBe(401);
      const bad = await app.inject({ method: 'POST', url: '/v1/pools/p/draws', headers: { 'content-type': 'application/json' }, payload: '{' });
      expect(bad.statusCode).toBe(401);
    });
  });

  it('public routes need no token', async () => {
    const { app } = await openServer();
    for (const route of kPublic) {
      const res = await app.inject(requestFor(route, 0));
      expect(res.statusCode, route).toBe(200);
    }
  });
});

describe('without keys', () => {
  it('every route is open, and listening is refused on anything but loopback', async () => {
    const { app, engine } = await serve({ dir: tmpDir('nokeys'), shards: 1, segmentBytes: 256 * KiB }, {});
    await engine.createPool('p', [{ id: 'a', weight: 1, quantity: -1 }]);
    expect((await app.inject({ method: 'POST', url: '/v1/pools/p/draws', payload: { count: 2 } })).statusCode).toBe(200);
    expect((await app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(200);
    for (const host of ['0.0.0.0', '::', '192.168.1.10', 'example.com']) {
      const err = await app.listen({ host, port: 0 }).then(() => undefined, (e: unknown) => e);
      expect(err, host).toBeInstanceOf(EngineError);
      expect((err as EngineError).code).toBe('ERR_INVALID_CONFIG');
      expect((err as EngineError).message).toContain('without API keys');
    }
    expect(app.server.listening).toBe(false);
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it('with keys, any host is allowed', async () => {
    const { app } = await openServer();
    const url = await app.listen({ host: '0.0.0.0', port: 0 });
    expect(url).toMatch(/:\d+$/);
  });
});

describe('key configuration', () => {
  const cases: [unknown, string][] = [
    [[{ id: 'a', token: 'short', scopes: ['read'] }], 'options.auth.keys[0].token must be a string of at least 16'],
    [[{ id: 'a', token: tokens.all, sha256: 'ab', scopes: ['read'] }], 'options.auth.keys[0] must have exactly one of token and sha256'],
    [[{ id: 'a', sha256: 'xyz', scopes: ['read'] }], 'options.auth.keys[0].sha256 must be 64 hex digits'],
    [[{ id: 'a', token: tokens.all, scopes: ['root'] }], 'options.auth.keys[0].scopes may only hold draw, read, admin, metrics'],
    [[{ id: 'a', token: tokens.all, scopes: [] }], 'options.auth.keys[0].scopes must be a non-empty array'],
    [[{ id: 'a', token: tokens.all, scopes: ['read'] }, { id: 'a', token: tokens.draw, scopes: ['draw'] }], 'options.auth.keys[1].id is a duplicate'],
    [[{ id: 'a', token: tokens.all, scopes: ['read'], role: 'x' }], 'options.auth.keys[0].role is not a known field'],
    ['all', 'options.auth.keys must be an array'],
  ];
  it.each(cases)('refuses %j', async (badKeys, message) => {
    const engine = { once() {} } as never;
    let err: unknown;
    try {
      createServer(engine, { auth: { keys: badKeys as never } });
    } catch (e) {
      err = e;
    }
    expect((err as EngineError).code).toBe('ERR_INVALID_CONFIG');
    expect((err as EngineError).message).toContain(message);
    expect((err as EngineError).message).not.toContain(tokens.all);
  });
});

describe('TLS', () => {
  it('serves HTTPS from a certificate and key; the client trusts a given CA', async () => {
    const dir = tmpDir('tls');
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    const { app, engine } = await serve({ dir: join(dir, 'data'), shards: 1, segmentBytes: 256 * KiB }, { auth: { keys }, tls: { cert: readFileSync(cert), key: readFileSync(key) } });
    await engine.createPool('p', [{ id: 'a', weight: 1, quantity: -1 }]);
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    expect(url).toMatch(/^https:/);
    const client = new RewardPoolClient({ url, token: tokens.all, ca: readFileSync(cert) });
    try {
      expect(await client.draw('p')).toEqual({ requestId: 1, itemId: 'a' });
    } finally {
      await client.close();
    }
    const untrusting = new RewardPoolClient({ url, token: tokens.all, retries: 0 });
    try {
      await expect(untrusting.poolIds()).rejects.toMatchObject({ code: 'ERR_SERVICE_UNAVAILABLE', message: expect.stringContaining('self-signed') });
    } finally {
      await untrusting.close();
    }
  });
});
