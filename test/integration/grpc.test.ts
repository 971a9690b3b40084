/**
 * The Go-compatible gRPC endpoint (issue 10 item 6): a client built from the Go service's own
 * proto (no pool field) reads the default pool's state and draws over a bidirectional stream;
 * the added pool and idempotency_key fields; API keys; errors; and a graceful close that answers
 * what a stream has sent.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterEach, describe, expect, it } from 'vitest';
import { createGrpcServer, type GrpcServer } from '../../dist/src/server/index.js';
import { DrawEngine, fixture, KiB, useEngines } from '../helpers/engine.js';
import { keys, root, tokens } from '../helpers/server.js';
import { tmpDir } from '../helpers/tmp.js';

const openEngine = useEngines();
const servers: GrpcServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close(1000);
});

type Client = grpc.Client & Record<string, any>;

function clientFor(protoFile: string, port: number): Client {
  const def = protoLoader.loadSync(protoFile, { keepCase: true, longs: Number, defaults: true });
  const pkg = grpc.loadPackageDefinition(def) as any;
  return new pkg.rewardpool.RewardPoolService(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
}
const goClient = (port: number): Client => clientFor(fixture('go-rewardpool.proto'), port);
const ourClient = (port: number): Client => clientFor(`${root}/src/server/grpc/rewardpool.proto`, port);

function meta(token?: string): grpc.Metadata {
  const m = new grpc.Metadata();
  if (token !== undefined) m.set('authorization', `Bearer ${token}`);
  return m;
}

function getState(client: Client, req: object, m: grpc.Metadata): Promise<any> {
  return new Promise((resolve, reject) => client.GetState(req, m, (err: Error | null, res: unknown) => (err ? reject(err) : resolve(res))));
}

/** Send the requests on one Draw stream, half-close, collect every response. */
function drawStream(client: Client, requests: object[], m: grpc.Metadata): Promise<any[]> {
  return new Promise((resolve, reject) => {
    const call = client.Draw(m);
    const out: unknown[] = [];
    call.on('data', (d: unknown) => out.push(d));
    call.on('error', reject);
    call.on('end', () => resolve(out));
    for (const r of requests) call.write(r);
    call.end();
  });
}

async function start(withKeys: boolean): Promise<{ engine: DrawEngine; port: number }> {
  const engine = await openEngine({ dir: tmpDir('grpc'), shards: 2, segmentBytes: 256 * KiB });
  await engine.createPool('main', [
    { id: 'gold', weight: 1, quantity: 10 },
    { id: 'mud', weight: 3, quantity: -1 },
  ]);
  await engine.createPool('other', [{ id: 'x', weight: 1, quantity: 2 }]);
  const server = await createGrpcServer(engine, '127.0.0.1', 0, { defaultPool: 'main', ...(withKeys ? { auth: { keys } } : {}) });
  servers.push(server);
  return { engine, port: server.port };
}

describe('gRPC RewardPoolService', () => {
  it('a client of the Go service reads the default pool and draws over a stream', async () => {
    const { engine, port } = await start(false);
    const client = goClient(port);
    try {
      expect(await getState(client, {}, meta())).toEqual({
        items: [
          { item_id: 'gold', quantity: 10, probability: 1 },
          { item_id: 'mud', quantity: -1, probability: 3 },
        ],
      });
      const out = await drawStream(client, [{ count: 5 }, {}, { count: 30 }], meta());
      expect(out).toHaveLength(36);
      expect(out.map((d) => d.request_id)).toEqual(Array.from({ length: 36 }, (_, i) => out[0].request_id + i));
      const state = await engine.pool('main');
      const tally = (id: string): number => out.filter((d) => d.item_id === id).length;
      expect(state.items.map((i) => i.drawn)).toEqual([tally('gold'), tally('mud')]);
      expect(out.every((d) => d.error === '' && d.item_id !== '')).toBe(true);
    } finally {
      client.close();
    }
  });

  it('the added fields: another pool, empty draws, idempotency keys, errors per request', async () => {
    const { engine, port } = await start(false);
    const client = ourClient(port);
    try {
      const out = await drawStream(client, [{ count: 3, pool: 'other' }, { count: 1, pool: 'nope' }, { count: 2, pool: 'main', idempotency_key: 'k-1' }, { count: 2, pool: 'main', idempotency_key: 'bad key' }], meta());
      expect(out.slice(0, 3).map((d) => [d.item_id, d.error])).toEqual([['x', ''], ['x', ''], ['', 'pool is empty']]);
      expect(out[3]).toMatchObject({ request_id: 0, item_id: '', error: expect.stringMatching(/^ERR_UNKNOWN_POOL: /) });
      expect(out.slice(4, 6).every((d) => d.error === '')).toBe(true);
      expect(out[6].error).toMatch(/^ERR_INVALID_REQUEST: idempotency_key/);
      expect(out).toHaveLength(7);
      expect((await engine.pool('other')).lastRequestId).toBe(out[2].request_id);
      await expect(getState(client, { pool: 'nope' }, meta())).rejects.toMatchObject({ code: grpc.status.NOT_FOUND, details: expect.stringContaining('ERR_UNKNOWN_POOL') });
    } finally {
      client.close();
    }
  });

  it('API keys: Draw needs draw, GetState needs read', async () => {
    const { engine, port } = await start(true);
    const client = goClient(port);
    try {
      await expect(getState(client, {}, meta())).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
      await expect(getState(client, {}, meta(tokens.draw))).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
      expect((await getState(client, {}, meta(tokens.read))).items).toHaveLength(2);
      await expect(drawStream(client, [{ count: 1 }], meta(tokens.read))).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
      await expect(drawStream(client, [{ count: 1 }], meta('tok-unknown-0123456789abcdef'))).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
      expect(engine.metrics().draws).toBe(0);
      expect(await drawStream(client, [{ count: 2 }], meta(tokens.draw))).toHaveLength(2);
    } finally {
      client.close();
    }
  });

  it('refuses a non-loopback host without keys', async () => {
    const engine = await openEngine({ wal: 'none', shards: 1 });
    await expect(createGrpcServer(engine, '0.0.0.0', 0)).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG' });
  });

  it('close() answers the requests a stream sent, then ends it', async () => {
    const engine = await openEngine({ dir: tmpDir('grpc-close'), shards: 1, segmentBytes: 256 * KiB });
    await engine.createPool('main', [{ id: 'mud', weight: 1, quantity: -1 }]);
    const server = await createGrpcServer(engine, '127.0.0.1', 0, { defaultPool: 'main' });
    const client = goClient(server.port);
    try {
      const out: any[] = [];
      const call = client.Draw(meta());
      const ended = new Promise<void>((resolve, reject) => {
        call.on('data', (d: unknown) => out.push(d));
        call.on('end', resolve);
        call.on('error', reject);
      });
      for (let i = 0; i < 20; i++) call.write({ count: 500 });
      // Let the requests reach the server, then close while their draws are being written.
      await new Promise((r) => setTimeout(r, 100));
      await server.close(5000);
      await ended;
      expect(out.length % 500).toBe(0);
      expect(out.length).toBe(engine.metrics().draws);
      expect(out.filter((d) => d.error === '').length).toBe(out.length);
    } finally {
      client.close();
    }
  });
});
