/**
 * RewardPoolClient against a real server on loopback: the same results as the embedded engine
 * for a seeded one-shard run (request ids, items, DrawBatch contents, states, error codes and
 * messages), coalescing of draw() calls (counted as HTTP requests at the server), retries of
 * dropped connections that reuse the request's idempotency key, and close().
 */
import { createServer as createHttpServer } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { DrawBatch, DrawEngine, type ItemSpec } from '../../dist/src/index.js';
import { RewardPoolClient } from '../../dist/src/client/index.js';
import { allStates, EngineError, KiB, useEngines } from '../helpers/engine.js';
import { headerValues, startDropProxy, type DropProxy } from '../helpers/drop-proxy.js';
import { createServer, keys, tokens, type ServiceApp } from '../helpers/server.js';
import { tmpDir } from '../helpers/tmp.js';

const openEngine = useEngines();
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

interface Remote {
  engine: DrawEngine;
  app: ServiceApp;
  url: string;
  port: number;
  client: RewardPoolClient;
  /** HTTP requests the server received, by route pattern. */
  hits: Map<string, number>;
}

async function remote(engineOptions: Parameters<typeof DrawEngine.open>[0], clientOptions: Partial<ConstructorParameters<typeof RewardPoolClient>[0]> = {}): Promise<Remote> {
  const engine = await openEngine(engineOptions);
  const app = createServer(engine, { auth: { keys } });
  const hits = new Map<string, number>();
  app.addHook('onRequest', (request, _reply, done) => {
    const route = `${request.method} ${request.routeOptions.url}`;
    hits.set(route, (hits.get(route) ?? 0) + 1);
    done();
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  const client = new RewardPoolClient({ url, token: tokens.all, ...clientOptions });
  cleanups.push(() => app.close(), () => client.close());
  return { engine, app, url, port: Number(new URL(url).port), client, hits };
}

const CATALOG: ItemSpec[] = [
  { id: 'gold', weight: 1, quantity: 40 },
  { id: 'silver', weight: 5, quantity: 400 },
  { id: 'mud', weight: 20, quantity: -1 },
];

/** Settle a call as { ok } or { code, message }, for comparing embedded and remote outcomes. */
async function outcome(p: Promise<unknown>): Promise<unknown> {
  try {
    const v = await p;
    return { ok: v instanceof DrawBatch ? { first: v.firstRequestId, count: v.count, items: v.items, indices: [...v.indices] } : v };
  } catch (err) {
    expect(err).toBeInstanceOf(EngineError);
    return { code: (err as EngineError).code, message: (err as EngineError).message };
  }
}

describe('client vs embedded engine', () => {
  it('a seeded one-shard run gives the same ids, items, batches, states and errors', async () => {
    const seed = 20261128;
    console.log(`seed ${seed}`);
    const embedded = await openEngine({ dir: tmpDir('embedded'), shards: 1, seed, segmentBytes: 256 * KiB });
    const { client, engine } = await remote({ dir: tmpDir('remote'), shards: 1, seed, segmentBytes: 256 * KiB });
    // The same program against both: only the engine object differs.
    const program = async (e: DrawEngine | RewardPoolClient): Promise<unknown[]> => {
      const out: unknown[] = [];
      out.push(await outcome(e.createPool('p', CATALOG)));
      out.push(await outcome(e.createPool('__proto__', [{ id: 'constructor', weight: 2, quantity: 3 }])));
      for (let i = 0; i < 20; i++) out.push(await outcome(e.draw('p')));
      out.push(await Promise.all(Array.from({ length: 500 }, () => outcome(e.draw('p')))));
      out.push(await outcome(e.drawMany('p', 10_000)));
      out.push(await outcome(e.updateItem('p', 'gold', { quantity: 50, weight: 3 })));
      out.push(await Promise.all(Array.from({ length: 5 }, () => outcome(e.draw('__proto__')))));
      out.push(await outcome(e.drawMany('p', 300)));
      out.push(await outcome(e.pool('p')), await outcome(e.pool('__proto__')), await e.poolIds());
      const bad: (() => Promise<unknown>)[] = [
        () => e.draw('nope'),
        () => e.draw(''),
        () => e.draw(7 as never),
        () => e.drawMany('p', 0),
        () => e.drawMany('p', 2 ** 24 + 1),
        () => e.drawMany('nope', 3),
        () => e.createPool('p', CATALOG),
        () => e.createPool('z', []),
        () => e.createPool('z', [{ id: 'a', weight: 0, quantity: 1 }]),
        () => e.updateItem('p', 'nope', { quantity: 1 }),
        () => e.updateItem('nope', 'gold', { quantity: 1 }),
        () => e.updateItem('p', 'gold', {}),
        () => e.updateItem('p', 'gold', { quantity: -5 }),
        () => e.pool('nope'),
      ];
      for (const call of bad) out.push(await outcome(call()));
      return out;
    };
    const local = await program(embedded);
    const over = await program(client);
    expect(over).toEqual(local);
    expect(await allStates(engine)).toEqual(await allStates(embedded));
    const batch = await client.drawMany('p', 4);
    expect(batch).toBeInstanceOf(DrawBatch);
    expect(batch.counts()).toBeInstanceOf(Map);
  });
});

describe('coalescing', () => {
  it('draw() calls on one pool in one turn travel as one request; call i gets firstRequestId + i', async () => {
    const { client, engine, hits } = await remote({ dir: tmpDir('coalesce'), shards: 2, segmentBytes: 256 * KiB });
    await engine.createPool('p', CATALOG);
    await engine.createPool('q', CATALOG);
    const results = await Promise.all(Array.from({ length: 1000 }, () => client.draw('p')));
    expect(hits.get('POST /v1/pools/:pool/draws')).toBe(1);
    expect(hits.get('POST /v1/pools/:pool/draw')).toBeUndefined();
    const first = results[0]!.requestId;
    expect(results.map((r) => r.requestId)).toEqual(Array.from({ length: 1000 }, (_, i) => first + i));
    // Two pools: one request each. Calls made from promise continuations of the same turn join.
    const mixed = await Promise.all([
      ...Array.from({ length: 10 }, () => client.draw('p')),
      ...Array.from({ length: 10 }, () => Promise.resolve().then(() => client.draw('q'))),
    ]);
    expect(mixed).toHaveLength(20);
    expect(hits.get('POST /v1/pools/:pool/draws')).toBe(3);
    // A call with its own key travels alone, with that key.
    await Promise.all([client.draw('p', { idempotencyKey: 'order-1' }), client.draw('p', { idempotencyKey: 'order-2' }), client.draw('p')]);
    expect(hits.get('POST /v1/pools/:pool/draw')).toBe(2);
    expect(hits.get('POST /v1/pools/:pool/draws')).toBe(4);
    expect(engine.metrics().draws).toBe(1023);
  });

  it('groups larger than maxCoalesce are split; every call of a failed group rejects with the code', async () => {
    const { client, engine, hits } = await remote({ dir: tmpDir('split'), shards: 1, segmentBytes: 256 * KiB }, { maxCoalesce: 100 });
    await engine.createPool('p', CATALOG);
    const results = await Promise.all(Array.from({ length: 250 }, () => client.draw('p')));
    expect(hits.get('POST /v1/pools/:pool/draws')).toBe(3);
    expect(new Set(results.map((r) => r.requestId)).size).toBe(250);
    const errors = await Promise.all(Array.from({ length: 5 }, () => client.draw('nope').catch((e: EngineError) => e.code)));
    expect(errors).toEqual(Array(5).fill('ERR_UNKNOWN_POOL'));
  });
});

describe('retries', () => {
  async function behindProxy(drops: number): Promise<{ r: Remote; proxy: DropProxy; client: RewardPoolClient }> {
    const r = await remote({ dir: tmpDir('retry'), shards: 1, segmentBytes: 256 * KiB });
    await r.engine.createPool('p', CATALOG);
    const proxy = await startDropProxy({ host: '127.0.0.1', port: r.port }, drops);
    const client = new RewardPoolClient({ url: proxy.url, token: tokens.all, retryDelayMs: 5 });
    cleanups.push(() => proxy.close(), () => client.close());
    return { r, proxy, client };
  }

  it('a draw whose response was lost is retried on a new connection with the same idempotency key', async () => {
    const { proxy, client } = await behindProxy(1);
    const [a, b] = await Promise.all([client.draw('p'), client.draw('p')]);
    expect(b!.requestId).toBe(a!.requestId + 1);
    expect(proxy.dropped).toBe(1);
    expect(client.attempts).toBe(2);
    const sent = headerValues(proxy.requests, 'idempotency-key');
    expect(sent).toHaveLength(2);
    expect(sent[0]).toMatch(/^rpc-[0-9a-f-]{36}$/);
    expect(sent[1]).toBe(sent[0]);
    // drawMany and an explicit key: the same.
    proxy.dropNext(2);
    await client.drawMany('p', 50);
    await client.draw('p', { idempotencyKey: 'purchase-42' });
    // Connections are reused, so count keys rather than rely on the order of the recordings.
    const tally = new Map<string, number>();
    for (const k of headerValues(proxy.requests, 'idempotency-key')) tally.set(k, (tally.get(k) ?? 0) + 1);
    expect([...tally.values()]).toEqual([2, 2, 2]);
    expect(tally.get('purchase-42')).toBe(2);
    // A read carries no key: not retried.
    proxy.dropNext(1);
    await expect(client.pool('p')).rejects.toMatchObject({ code: 'ERR_SERVICE_UNAVAILABLE', details: { attempts: 1 } });
  });

  it('requests without a key are not retried; a server that stays unreachable is ERR_SERVICE_UNAVAILABLE after the retries', async () => {
    const { proxy, client } = await behindProxy(1);
    const err = await client.updateItem('p', 'gold', { quantity: 1 }).catch((e: EngineError) => e);
    expect(err).toMatchObject({ code: 'ERR_SERVICE_UNAVAILABLE' });
    expect(client.attempts).toBe(1);
    expect(proxy.dropped).toBe(1);
    await proxy.close();
    const gone = new RewardPoolClient({ url: proxy.url, retries: 3, retryDelayMs: 1 });
    cleanups.push(() => gone.close());
    const unreachable = await gone.draw('p').catch((e: EngineError) => e);
    expect(unreachable).toMatchObject({ code: 'ERR_SERVICE_UNAVAILABLE', details: { errno: 'ECONNREFUSED', attempts: 4 } });
    expect((unreachable as EngineError).message).toContain('idempotency key');
  });

  it('a response that is not ours: 502 from a proxy is ERR_SERVICE_UNAVAILABLE, a malformed body ERR_INTERNAL', async () => {
    let status = 502;
    const fake = createHttpServer((_req, res) => {
      res.writeHead(status, { 'content-type': status === 200 ? 'application/json' : 'text/html' });
      res.end(status === 200 ? '{"requestId": "one"}' : '<h1>Bad Gateway</h1>');
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => fake.close(resolve)));
    const client = new RewardPoolClient({ url: `http://127.0.0.1:${(fake.address() as { port: number }).port}` });
    cleanups.push(() => client.close());
    await expect(client.draw('p', { idempotencyKey: 'k1' })).rejects.toMatchObject({ code: 'ERR_SERVICE_UNAVAILABLE', details: { status: 502 } });
    status = 200;
    await expect(client.draw('p', { idempotencyKey: 'k1' })).rejects.toMatchObject({ code: 'ERR_INTERNAL' });
  });
});

describe('close()', () => {
  it('sends the draws of the current turn, then refuses new calls with ERR_ENGINE_CLOSED', async () => {
    const { engine, url } = await remote({ dir: tmpDir('close'), shards: 1, segmentBytes: 256 * KiB });
    await engine.createPool('p', CATALOG);
    const client = new RewardPoolClient({ url, token: tokens.all });
    const pending = Array.from({ length: 10 }, () => client.draw('p'));
    const closed = client.close();
    await expect(client.draw('p')).rejects.toMatchObject({ code: 'ERR_ENGINE_CLOSED' });
    expect(await Promise.all(pending)).toHaveLength(10);
    await closed;
    await client.close();
    await expect(client.poolIds()).rejects.toMatchObject({ code: 'ERR_ENGINE_CLOSED' });
  });

  it('checks its options and arguments like the engine', () => {
    expect(() => new RewardPoolClient({ url: 'ftp://x' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CONFIG' }));
    expect(() => new RewardPoolClient({ url: 'http://x', connections: 0 })).toThrow(/options\.connections must be an integer from 1 to 1024, got 0/);
    const client = new RewardPoolClient({ url: 'http://127.0.0.1:9' });
    cleanups.push(() => client.close());
    return expect(client.draw('p', { idempotencyKey: 'has space' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });
});
