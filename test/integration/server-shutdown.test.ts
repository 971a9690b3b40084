/**
 * Graceful shutdown under load: `reward-pool-engine serve` in a child process, thousands of
 * draws in flight from this process over 48 keep-alive connections plus a RewardPoolClient,
 * then SIGTERM. Every request sent gets an HTTP response (200, or 503 ERR_ENGINE_CLOSED with
 * `Connection: close` once closing), the child exits 0, and after a restart every pool holds
 * exactly the draws that were acknowledged: none lost, and none performed without an answer.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { Client } from 'undici';
import { RewardPoolClient } from '../../dist/src/client/index.js';
import { collect, DrawEngine, useChildren } from '../helpers/engine.js';
import { cliPath, keys, listeningUrl, tokens, writeConfig } from '../helpers/server.js';
import { tmpDir } from '../helpers/tmp.js';

const spawnChild = useChildren();

const POOLS: Record<string, { id: string; weight: number; quantity: number }[]> = {
  alpha: [
    { id: 'gold', weight: 1, quantity: 3_000 },
    { id: 'silver', weight: 4, quantity: 40_000 },
    { id: 'mud', weight: 10, quantity: -1 },
  ],
  beta: [
    { id: 'x', weight: 1, quantity: 500 },
    { id: 'y', weight: 1, quantity: 500 },
  ],
};

/** Acknowledged draws: per pool, per item id (null = empty) a count, and every request id. */
class Acks {
  counts = new Map<string, Map<string | null, number>>();
  ids = new Map<string, number[]>();
  add(pool: string, firstRequestId: number, perItem: Iterable<[string | null, number]>): void {
    const c = this.counts.get(pool) ?? new Map<string | null, number>();
    this.counts.set(pool, c);
    let n = 0;
    for (const [item, k] of perItem) {
      c.set(item, (c.get(item) ?? 0) + k);
      n += k;
    }
    const ids = this.ids.get(pool) ?? [];
    this.ids.set(pool, ids);
    for (let i = 0; i < n; i++) ids.push(firstRequestId + i);
  }
}

interface Tally {
  ok: number;
  refused: number;
  /** Connections the server ended with `Connection: close` on a 200 sent while closing. */
  endedAfterOk: number;
  other: string[];
}

/** One keep-alive connection sending draws back to back until the server says it is closing. */
async function connectionLoop(url: string, worker: number, acks: Acks, tally: Tally): Promise<void> {
  const client = new Client(url, { pipelining: 1 });
  const pools = Object.keys(POOLS);
  try {
    for (let round = 0; ; round++) {
      const pool = pools[(worker + round) % pools.length]!;
      const many = round % 3 !== 0;
      const count = 1 + ((worker * 7919 + round * 104_729) % 400);
      const res = await client.request({
        method: 'POST',
        path: `/v1/pools/${pool}/${many ? 'draws' : 'draw'}`,
        headers: { authorization: `Bearer ${tokens.draw}`, ...(many ? { 'content-type': 'application/json' } : {}) },
        ...(many ? { body: JSON.stringify({ count }) } : {}),
      });
      const body = (await res.body.json()) as Record<string, any>;
      if (res.statusCode === 200) {
        tally.ok++;
        if (many) acks.add(pool, body.firstRequestId, [...Object.entries(body.counts as Record<string, number>), [null, body.empty]]);
        else acks.add(pool, body.requestId, [[body.itemId, 1]]);
        // Sent while closing: the server ends this connection; a new one would be refused.
        if (res.headers.connection === 'close') {
          tally.endedAfterOk++;
          return;
        }
      } else if (res.statusCode === 503 && body.code === 'ERR_ENGINE_CLOSED') {
        tally.refused++;
        expect(res.headers.connection).toBe('close');
        expect(res.headers['retry-after']).toBe('1');
        return;
      } else {
        tally.other.push(`${res.statusCode} ${JSON.stringify(body)}`);
        return;
      }
    }
  } catch (err) {
    tally.other.push(`connection ${worker}: ${(err as { code?: string }).code ?? ''} ${(err as Error).message}`);
  } finally {
    await client.destroy();
  }
}

/** RewardPoolClient: bursts of coalesced draw() calls until the service stops answering. */
async function clientLoop(url: string, acks: Acks, tally: Tally): Promise<void> {
  const client = new RewardPoolClient({ url, token: tokens.draw, retries: 2, retryDelayMs: 10 });
  try {
    for (;;) {
      const results = await Promise.allSettled(Array.from({ length: 2000 }, () => client.draw('alpha')));
      let stop = false;
      for (const r of results) {
        if (r.status === 'fulfilled') acks.add('alpha', r.value.requestId, [[r.value.itemId, 1]]);
        else if (['ERR_ENGINE_CLOSED', 'ERR_SERVICE_UNAVAILABLE'].includes(r.reason.code)) stop = true;
        else tally.other.push(`client: ${r.reason.code} ${r.reason.message}`);
      }
      if (stop) return;
    }
  } finally {
    await client.close();
  }
}

describe('serve: SIGTERM under load', () => {
  it('answers every request it received, exits 0, and keeps exactly the acknowledged draws', async () => {
    const dir = tmpDir('shutdown');
    const config = writeConfig(dir, {
      engine: { dir: 'data', shards: 2, segmentBytes: 1 << 20, sync: 'always' },
      listen: { host: '127.0.0.1', port: 0 },
      auth: { keys },
    });
    const child = spawnChild(process.execPath, [cliPath, 'serve', '--config', config]);
    const done = collect(child);
    const url = await listeningUrl(child);
    const admin = new RewardPoolClient({ url, token: tokens.admin });
    for (const [id, items] of Object.entries(POOLS)) await admin.createPool(id, items);
    await admin.close();

    const acks = new Acks();
    const tally: Tally = { ok: 0, refused: 0, endedAfterOk: 0, other: [] };
    const loops = [...Array.from({ length: 48 }, (_, w) => connectionLoop(url, w, acks, tally)), clientLoop(url, acks, tally)];
    // Let the load build up, then ask the server to stop while requests are in flight.
    await sleep(400);
    const okBeforeSignal = tally.ok;
    child.kill('SIGTERM');
    await Promise.all(loops);
    const { code, signal, stdout, stderr } = await done;
    console.log(`responses: ${tally.ok} ok (${okBeforeSignal} before SIGTERM), ${tally.refused} refused while closing, ${tally.endedAfterOk} connections ended after a 200; other: ${tally.other.length}`);

    expect({ code, signal }, stderr).toEqual({ code: 0, signal: null });
    expect(stdout).toContain('closed');
    expect(tally.other).toEqual([]);
    expect(okBeforeSignal).toBeGreaterThan(20);
    // Every connection ended by the server's word (a 503, or a 200 with Connection: close), none by a cut.
    expect(tally.refused + tally.endedAfterOk).toBe(48);

    const engine = await DrawEngine.open({ dir: `${dir}/data`, shards: 1 });
    try {
      for (const [pool, items] of Object.entries(POOLS)) {
        const state = await engine.pool(pool);
        const acked = acks.counts.get(pool) ?? new Map();
        for (const item of state.items) expect(item.drawn, `${pool}/${item.id}`).toBe(acked.get(item.id) ?? 0);
        for (const [i, item] of state.items.entries()) {
          if (items[i]!.quantity >= 0) expect(item.quantity).toBe(items[i]!.quantity - item.drawn);
        }
        const ids = acks.ids.get(pool) ?? [];
        expect(new Set(ids).size).toBe(ids.length);
        expect(state.lastRequestId).toBe(ids.reduce((a, b) => Math.max(a, b), 0));
      }
      const total = [...acks.ids.values()].reduce((a, ids) => a + ids.length, 0);
      console.log(`acknowledged draws: ${total}`);
      expect(total).toBeGreaterThan(2000);
    } finally {
      await engine.close();
    }
  });
});
