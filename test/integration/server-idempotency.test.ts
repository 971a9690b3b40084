/**
 * Exactly-once draws over HTTP (DESIGN.md "Idempotent draws", issue 10 item 1 in the engine):
 * the Idempotency-Key header reaches the engine as `idempotencyKey`. The same key from two
 * concurrent requests draws once; a retried request after a server SIGKILL and restart returns
 * the original outcome; a key reused with another pool or count is 409 ERR_IDEMPOTENCY_MISMATCH;
 * and RewardPoolClient's retries after a dropped connection draw once.
 */
import { Pool } from 'undici';
import { describe, expect, it } from 'vitest';
import { RewardPoolClient } from '../../dist/src/client/index.js';
import { collect, KiB, useChildren, type DrawEngine } from '../helpers/engine.js';
import { startDropProxy } from '../helpers/drop-proxy.js';
import { bearer, cliPath, expectUnchanged, keys, listeningUrl, tokens, useServers, writeConfig } from '../helpers/server.js';
import { tmpDir } from '../helpers/tmp.js';

const serve = useServers();
const spawnChild = useChildren();

const CATALOG = [
  { id: 'gold', weight: 1, quantity: 1_000 },
  { id: 'mud', weight: 9, quantity: -1 },
];

type Json = Record<string, any>;

async function post(pool: Pool, path: string, key: string, body?: unknown): Promise<{ status: number; body: Json }> {
  const res = await pool.request({
    method: 'POST',
    path,
    headers: { ...bearer(tokens.draw), 'idempotency-key': key, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.statusCode, body: (await res.body.json()) as Json };
}

async function listening(engine: DrawEngine, app: Awaited<ReturnType<typeof serve>>['app']): Promise<{ url: string; pool: Pool }> {
  await engine.createPool('p', CATALOG);
  await engine.createPool('q', CATALOG);
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  const pool = new Pool(url, { connections: 8 });
  return { url, pool };
}

describe('Idempotency-Key', () => {
  it('the same key from concurrent requests draws once and returns one outcome', async () => {
    const { engine, app } = await serve({ dir: tmpDir('idem-concurrent'), shards: 2, segmentBytes: 256 * KiB });
    const { pool } = await listening(engine, app);
    try {
      const many = await Promise.all(Array.from({ length: 6 }, () => post(pool, '/v1/pools/p/draws', 'order-1', { count: 100, indices: true })));
      for (const r of many) expect(r).toEqual(many[0]);
      expect(many[0]!.status).toBe(200);
      const one = await Promise.all(Array.from({ length: 6 }, () => post(pool, '/v1/pools/q/draw', 'order-2')));
      for (const r of one) expect(r).toEqual(one[0]);
      expect(engine.metrics().draws).toBe(101);
    } finally {
      await pool.close();
    }
  });

  it('a key reused with another pool or another count is 409 ERR_IDEMPOTENCY_MISMATCH and changes nothing', async () => {
    const { engine, app } = await serve({ dir: tmpDir('idem-mismatch'), shards: 2, segmentBytes: 256 * KiB });
    const { pool } = await listening(engine, app);
    try {
      expect((await post(pool, '/v1/pools/p/draws', 'k-1', { count: 10 })).status).toBe(200);
      for (const [path, body] of [['/v1/pools/p/draws', { count: 11 }], ['/v1/pools/q/draws', { count: 10 }], ['/v1/pools/p/draw', undefined]] as const) {
        await expectUnchanged(engine, async () => {
          const r = await post(pool, path, 'k-1', body);
          expect(r.status, path).toBe(409);
          expect(r.body).toMatchObject({ code: 'ERR_IDEMPOTENCY_MISMATCH', status: 409 });
        });
      }
    } finally {
      await pool.close();
    }
  });
});

describe('after a crash', () => {
  it('a request retried after SIGKILL and restart of the server returns the original outcome', async () => {
    const dir = tmpDir('idem-kill');
    const config = writeConfig(dir, { engine: { dir: 'data', shards: 2, segmentBytes: 1 << 20 }, listen: { host: '127.0.0.1', port: 0 }, auth: { keys } });
    const start = async (): Promise<{ url: string; child: ReturnType<typeof spawnChild> }> => {
      const child = spawnChild(process.execPath, [cliPath, 'serve', '--config', config]);
      return { url: await listeningUrl(child), child };
    };
    const first = await start();
    let pool = new Pool(first.url);
    const admin = new RewardPoolClient({ url: first.url, token: tokens.admin });
    await admin.createPool('p', CATALOG);
    await admin.close();
    const many = await post(pool, '/v1/pools/p/draws', 'purchase-7', { count: 500, indices: true });
    const one = await post(pool, '/v1/pools/p/draw', 'purchase-8');
    expect([many.status, one.status]).toEqual([200, 200]);
    await pool.close();
    const died = collect(first.child);
    first.child.kill('SIGKILL');
    expect((await died).signal).toBe('SIGKILL');

    const second = await start();
    pool = new Pool(second.url);
    const reader = new RewardPoolClient({ url: second.url, token: tokens.read });
    try {
      const before = await reader.pool('p');
      expect(await post(pool, '/v1/pools/p/draws', 'purchase-7', { count: 500, indices: true })).toEqual(many);
      expect(await post(pool, '/v1/pools/p/draw', 'purchase-8')).toEqual(one);
      expect(await reader.pool('p')).toEqual(before);
      expect(before.lastRequestId).toBe(one.body.requestId);
    } finally {
      await reader.close();
      await pool.close();
      second.child.kill('SIGTERM');
      expect((await collect(second.child)).code).toBe(0);
    }
  });
});

describe('RewardPoolClient', () => {
  it('retries after a dropped connection draw once (coalesced draws, drawMany, an explicit key)', async () => {
    const { engine, app } = await serve({ dir: tmpDir('idem-client'), shards: 1, segmentBytes: 256 * KiB });
    const { url, pool } = await listening(engine, app);
    await pool.close();
    const target = new URL(url);
    const proxy = await startDropProxy({ host: target.hostname, port: Number(target.port) }, 3);
    const client = new RewardPoolClient({ url: proxy.url, token: tokens.all, retryDelayMs: 5 });
    try {
      const draws = await Promise.all(Array.from({ length: 50 }, () => client.draw('p')));
      const batch = await client.drawMany('p', 200);
      const keyed = await client.draw('p', { idempotencyKey: 'gift-1' });
      expect(proxy.dropped).toBe(3);
      expect(client.attempts).toBe(6);
      expect(engine.metrics().draws).toBe(251);
      const state = await engine.pool('p');
      expect(state.lastRequestId).toBe(keyed.requestId);
      // A retried keyed request draws nothing, though the ids sent with it stay unused: later
      // ids are larger, not necessarily the next ones.
      expect(batch.firstRequestId).toBeGreaterThan(draws[49]!.requestId);
      expect(new Set(draws.map((d) => d.requestId)).size).toBe(50);
      // An explicit key repeated by the caller: the original outcome; another count: the mismatch code.
      expect(await client.draw('p', { idempotencyKey: 'gift-1' })).toEqual(keyed);
      const again = await client.drawMany('p', 7, { idempotencyKey: 'bulk-1' });
      expect([...(await client.drawMany('p', 7, { idempotencyKey: 'bulk-1' })).indices]).toEqual([...again.indices]);
      await expect(client.drawMany('p', 8, { idempotencyKey: 'bulk-1' })).rejects.toMatchObject({ code: 'ERR_IDEMPOTENCY_MISMATCH' });
      expect(engine.metrics().draws).toBe(258);
    } finally {
      await client.close();
      await proxy.close();
    }
  });
});
