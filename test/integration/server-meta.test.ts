/**
 * The routes around the API: /metrics (Prometheus text from the engine's shared counters per
 * shard, latency histogram by route pattern, a registry per server), /openapi.json (every route
 * with the schemas it validates with), /healthz, /readyz, /v1/stats and the page's files.
 */
import { describe, expect, it } from 'vitest';
import { KiB } from '../helpers/engine.js';
import { DrawEngine } from '../../dist/src/index.js';
import { bearer, createServer, keys, tokens, useServers, type ServiceApp } from '../helpers/server.js';
import { tmpDir } from '../helpers/tmp.js';

const serve = useServers();

/** `name{labels} value` lines of a Prometheus text exposition. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

async function scrape(app: ServiceApp): Promise<Map<string, number>> {
  const res = await app.inject({ method: 'GET', url: '/metrics', headers: bearer(tokens.metrics) });
  expect(res.statusCode).toBe(200);
  expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
  return samples(res.body);
}

describe('/metrics', () => {
  it('mirrors engine.metrics() per shard at each scrape', async () => {
    const { app, engine } = await serve({ dir: tmpDir('metrics'), shards: 2, segmentBytes: 256 * KiB });
    for (const id of ['a', 'b', 'c', 'd']) await engine.createPool(id, [{ id: 'x', weight: 1, quantity: 1000 }]);
    for (const id of ['a', 'b', 'c', 'd']) await app.inject({ method: 'POST', url: `/v1/pools/${id}/draws`, headers: bearer(tokens.draw), payload: { count: 1500 } });
    await engine.snapshot();
    const s = await scrape(app);
    const m = engine.metrics();
    for (let k = 0; k < 2; k++) {
      const shard = m.shards[k]!;
      expect(s.get(`rpe_draws_total{shard="${k}"}`)).toBe(shard.draws);
      expect(s.get(`rpe_empty_draws_total{shard="${k}"}`)).toBe(shard.emptyDraws);
      expect(s.get(`rpe_wal_bytes_total{shard="${k}"}`)).toBe(shard.walBytes);
      expect(s.get(`rpe_syncs_total{shard="${k}"}`)).toBe(shard.syncs);
      expect(s.get(`rpe_sync_seconds_total{shard="${k}"}`)).toBeCloseTo(shard.syncTimeMs / 1000, 9);
      expect(s.get(`rpe_snapshots_total{shard="${k}"}`)).toBe(shard.snapshots);
      expect(s.get(`rpe_pending_draws{shard="${k}"}`)).toBe(0);
      expect(s.get(`rpe_shard_failed{shard="${k}"}`)).toBe(0);
      expect(s.get(`rpe_shard_restarts_total{shard="${k}"}`)).toBe(0);
    }
    expect(m.draws).toBe(6000);
    expect(m.emptyDraws).toBe(2000);
    expect(s.get('rpe_pools')).toBe(4);
    expect(s.get('rpe_engine_open')).toBe(1);
    expect([...s.keys()].some((k) => k.startsWith('rpe_process_cpu'))).toBe(true);
    const drawsCount = s.get('rpe_http_request_duration_seconds_count{method="POST",route="/v1/pools/:pool/draws",status_code="200"}');
    expect(drawsCount).toBe(4);
  });

  it('each server has its own registry; unmatched URLs share one label', async () => {
    const one = await serve({ dir: tmpDir('m1'), shards: 1, segmentBytes: 256 * KiB });
    const two = await serve({ dir: tmpDir('m2'), shards: 1, segmentBytes: 256 * KiB });
    for (let i = 0; i < 3; i++) await one.app.inject({ method: 'GET', url: `/scan-${i}` });
    const a = await scrape(one.app);
    const b = await scrape(two.app);
    expect(a.get('rpe_http_request_duration_seconds_count{method="GET",route="unmatched",status_code="404"}')).toBe(3);
    expect([...b.keys()].some((k) => k.includes('unmatched'))).toBe(false);
  });
});

describe('/openapi.json', () => {
  it('is an OpenAPI 3.1 document of every route, with the schemas the routes validate with', async () => {
    const engine = await DrawEngine.open({ wal: 'none', shards: 1 });
    const app = createServer(engine, { auth: { keys } });
    // Every route fastify registers (HEAD twins aside), recorded independently of the server's own recorder.
    const known: string[] = [];
    app.addHook('onRoute', (r) => {
      for (const method of [r.method].flat()) if (method !== 'HEAD') known.push(`${method} ${r.url.replace(/:(\w+)/g, '{$1}')}`);
    });
    await app.ready();
    const res = await app.inject({ method: 'GET', url: '/openapi.json' });
    await app.close();
    expect(res.statusCode).toBe(200);
    const doc = res.json() as { openapi: string; paths: Record<string, Record<string, any>>; components: any };
    expect(doc.openapi).toBe('3.1.0');
    const documented = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((method) => `${method.toUpperCase()} ${p}`));
    expect(known.length).toBe(15);
    expect(documented.sort()).toEqual(known.sort());
    const draws = doc.paths['/v1/pools/{pool}/draws']!.post;
    expect(draws.requestBody.content['application/json'].schema.properties.count).toEqual({ type: 'integer', minimum: 1, maximum: 16_777_216 });
    expect(draws.parameters.map((p: { name: string; in: string }) => `${p.in}:${p.name}`)).toEqual(['path:pool', 'header:Idempotency-Key']);
    expect(draws.security).toEqual([{ bearer: ['draw'] }]);
    expect(Object.keys(draws.responses)).toEqual(expect.arrayContaining(['200', '400', '401', '403', '404', '409', '413', '503', '507']));
    expect(draws.responses['404'].content['application/problem+json'].schema).toEqual({ $ref: '#/components/schemas/Problem' });
    expect(doc.paths['/v1/pools/{pool}/draw']!.post.requestBody.required).toBe(false);
    expect(doc.paths['/healthz']!.get.security).toEqual([]);
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
  });
});

describe('/healthz, /readyz, /v1/stats and the page', () => {
  it('report liveness, readiness and what the page shows', async () => {
    const { app, engine } = await serve({ dir: tmpDir('stats'), shards: 2, segmentBytes: 256 * KiB });
    await engine.createPool('p', [{ id: 'x', weight: 1, quantity: 10 }, { id: 'y', weight: 1, quantity: -1 }]);
    await engine.drawMany('p', 20);
    expect((await app.inject({ method: 'GET', url: '/healthz' })).json()).toEqual({ status: 'ok' });
    expect((await app.inject({ method: 'GET', url: '/readyz' })).json()).toEqual({ status: 'ready', pools: 1, failedShards: [] });
    const stats = (await app.inject({ method: 'GET', url: '/v1/stats', headers: bearer(tokens.read) })).json();
    expect(stats.engine.draws).toBe(20);
    expect(stats.engine.shards).toHaveLength(2);
    expect(stats.pools).toEqual([await engine.pool('p')]);
    expect(stats.poolCount).toBe(1);
    const page = await app.inject({ method: 'GET', url: '/' });
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.body).toContain('<script type="module" src="/dashboard/app.js">');
    expect((await app.inject({ method: 'GET', url: '/dashboard/app.js' })).headers['content-type']).toMatch(/^text\/javascript/);
    expect((await app.inject({ method: 'GET', url: '/dashboard/style.css' })).headers['content-type']).toMatch(/^text\/css/);
    expect((await app.inject({ method: 'GET', url: '/dashboard/..%2Fpackage.json' })).statusCode).toBe(400);
  });

  it('/v1/stats shows the first 100 pools by id and counts the rest', async () => {
    const { app, engine } = await serve({ dir: tmpDir('stats100'), shards: 2, segmentBytes: 256 * KiB }, { auth: { keys } });
    await Promise.all(Array.from({ length: 130 }, (_, i) => engine.createPool(`p${String(i).padStart(3, '0')}`, [{ id: 'x', weight: 1, quantity: 1 }])));
    const stats = (await app.inject({ method: 'GET', url: '/v1/stats', headers: bearer(tokens.read) })).json();
    expect(stats.poolCount).toBe(130);
    expect(stats.pools.map((p: { id: string }) => p.id)).toEqual(Array.from({ length: 100 }, (_, i) => `p${String(i).padStart(3, '0')}`));
  });
});
