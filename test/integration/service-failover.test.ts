/**
 * The service in a replication group: two `serve` processes (leader and follower) on loopback
 * over a real three-server JetStream cluster, and a RewardPoolClient given both URLs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RewardPoolClient } from '../../dist/src/client/index.js';
import { startCluster, type NatsCluster } from '../helpers/nats-cluster.js';
import { until } from '../helpers/replica-node.js';
import { cliPath, listeningUrl } from '../helpers/server.js';
import { tmpDir } from '../helpers/tmp.js';

let cluster: NatsCluster;
const children: ChildProcess[] = [];

beforeAll(async () => {
  cluster = await startCluster({ label: 'nats-service' });
}, 90_000);

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await cluster?.stop();
});

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function serve(stream: string, role: 'leader' | 'follower', name: string): Promise<{ child: ChildProcess; url: string; stderr: () => string }> {
  const port = await freePort();
  const args = [cliPath, 'serve', '--dir', tmpDir(name), '--port', String(port), '--shards', '2', '--wal', 'file'];
  args.push('--nats', cluster.urls.join(','), '--stream', stream, '--role', role, '--auto-promote', '--lease-ms', '1000', '--node', name);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const url = await listeningUrl(child, 60_000);
  return { child, url, stderr: () => err };
}

async function json(url: string, init?: RequestInit): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(url, init);
  return { status: res.status, body: await res.json(), headers: res.headers };
}

describe('serve as leader and follower', () => {
  it('a follower answers writes 503 ERR_NOT_LEADER naming the leader; /readyz and /metrics show roles; the client follows the leader through a promotion over HTTP and a SIGKILL, and every acknowledged draw is kept', async () => {
    const stream = `svc${process.pid}`;
    const a = await serve(stream, 'leader', 'svc-a');
    const b = await serve(stream, 'follower', 'svc-b');
    const client = new RewardPoolClient({ url: [b.url, a.url], retries: 20, failoverTimeoutMs: 30_000 });
    try {
      // Sent to the follower first: refused, naming the leader; the client goes there.
      await client.createPool('p', [
        { id: 'x', weight: 1, quantity: 400_000 },
        { id: 'y', weight: 3, quantity: -1 },
      ]);
      const refused = await json(`${b.url}/v1/pools/p/draw`, { method: 'POST' });
      expect(refused.status).toBe(503);
      expect(refused.body).toMatchObject({ code: 'ERR_NOT_LEADER', leader: a.url });
      expect(refused.headers.get('retry-after')).not.toBeNull();
      await until('the follower to be ready', async () => ((await json(`${b.url}/readyz`)).status === 200 ? true : undefined));
      expect((await json(`${b.url}/readyz`)).body).toMatchObject({ status: 'ready', role: 'follower', leader: a.url, lagMessages: 0 });
      expect((await json(`${a.url}/readyz`)).body).toMatchObject({ status: 'ready', role: 'leader' });
      const metrics = await (await fetch(`${b.url}/metrics`)).text();
      expect(metrics).toMatch(/^rpe_replication_leader 0$/m);
      expect(metrics).toMatch(/^rpe_replication_lag_messages \d+$/m);

      // Load through the client while leadership moves twice.
      const acks: { requestId: number; itemId: string | null }[] = [];
      const failures: string[] = [];
      let on = true;
      const loop = async (): Promise<void> => {
        while (on) {
          try {
            acks.push(await client.draw('p'));
          } catch (err) {
            failures.push((err as { code?: string }).code ?? String(err));
          }
        }
      };
      const loops = Array.from({ length: 200 }, loop);
      await until('draws', () => (acks.length > 5000 ? true : undefined), 30_000);

      // 1. The follower is promoted over HTTP while the leader runs: the old leader is fenced
      //    out, and its serve process reopens it as a follower.
      const promoted = await json(`${b.url}/v1/promote`, { method: 'POST' });
      expect(promoted.body).toMatchObject({ status: 'ok', role: 'leader' });
      await until('the old leader to rejoin as a follower', async () => {
        const r = await json(`${a.url}/readyz`).catch(() => undefined);
        return r?.body?.role === 'follower' ? true : undefined;
      }, 60_000, 200);
      expect(a.stderr()).toMatch(/reopened as a follower/);
      const afterPromote = acks.length;
      await until('draws on the new leader', () => (acks.length > afterPromote + 5000 ? true : undefined), 30_000);

      // 2. The new leader is SIGKILLed: the rejoined node takes over when the lease expires.
      b.child.kill('SIGKILL');
      const afterKill = acks.length;
      await until('draws after the kill', () => (acks.length > afterKill + 5000 ? true : undefined), 60_000, 100);
      on = false;
      await Promise.all(loops);

      const state = await client.pool('p');
      const ids = new Set(acks.map((r) => r.requestId));
      expect(ids.size, 'every acknowledged draw has its own request id').toBe(acks.length);
      const x = acks.filter((r) => r.itemId === 'x').length;
      const y = acks.filter((r) => r.itemId === 'y').length;
      expect(state.items[0]!.drawn).toBeGreaterThanOrEqual(x);
      expect(state.items[1]!.drawn).toBeGreaterThanOrEqual(y);
      expect(state.items[0]!.quantity + state.items[0]!.drawn).toBe(400_000);
      expect(state.lastRequestId).toBeGreaterThanOrEqual(Math.max(...ids));
      expect((await json(`${a.url}/readyz`)).body).toMatchObject({ role: 'leader' });
      console.log(`[service-failover] ${acks.length} draws acknowledged through two changes of leader; failures seen by callers: ${JSON.stringify([...new Set(failures)])} (${failures.length})`);
    } finally {
      await client.close();
      a.child.kill('SIGTERM');
    }
  }, 240_000);
});
