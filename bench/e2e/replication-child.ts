/**
 * One node of a replication group for bench/e2e/replication.ts, in its own process so that its
 * event loop and worker threads are not the parent's. Forked with its config as argv[2] (JSON);
 * talks over IPC:
 *
 *   to the parent:  { type: 'open', role } | { type: 'role', role, term, at }
 *                   | { type: 'firstAck', at }   the first draw acknowledged while leading
 *                   | { type: 'sample', at, role, lagMessages, lagMs, draws, messages } every sampleMs
 *                   | { type: 'error', code, message, at }   the first of each code
 *                   | { type: 'reply', id, ... } | { type: 'fatal', message }
 *   commands:       promote | load {on} | pools {timeoutMs} | until {draws, timeoutMs} | close
 *
 * While it leads and `load` is on it keeps `inflight` draw() calls in flight on `pools`. Times
 * are Date.now() (one clock for every process of the machine).
 */
import { DrawEngine } from '../../src/index.js';

export interface ChildConfig {
  dir: string;
  servers: string[];
  stream: string;
  node: string;
  role: 'leader' | 'follower';
  autoPromote: boolean;
  leaseMs: number;
  timeoutMs: number;
  pools: string[];
  inflight: number;
  /** Draw while leading: from the start, or from a promotion on. */
  load: boolean;
  /** Send a metrics sample this often (0: never). */
  sampleMs: number;
}

export interface ChildMessage {
  type: string;
  [k: string]: unknown;
}

const cfg = JSON.parse(process.argv[2]!) as ChildConfig;
// Never outlive a lost parent by much.
setTimeout(() => process.exit(3), 600_000).unref();
const send = (msg: ChildMessage): void => {
  if (process.connected) process.send!(msg);
};
process.on('uncaughtException', (err) => {
  send({ type: 'fatal', message: String(err?.stack ?? err) });
  process.exit(4);
});
process.on('disconnect', () => process.exit(0));

let engine: DrawEngine;
try {
  engine = await DrawEngine.open({
    dir: cfg.dir,
    shards: 2,
    wal: 'mmap',
    replication: { servers: cfg.servers, stream: cfg.stream, role: cfg.role, leaseMs: cfg.leaseMs, autoPromote: cfg.autoPromote, timeoutMs: cfg.timeoutMs, node: cfg.node },
  });
} catch (err) {
  send({ type: 'fatal', message: `open: ${(err as { code?: string }).code ?? ''} ${(err as Error).message}` });
  process.exit(5);
}

let loadOn = cfg.load;
let running = 0;
let acked = 0;
let firstAck = false;
const errorsSeen = new Set<string>();

async function loop(pool: string): Promise<void> {
  running++;
  try {
    while (loadOn && engine.role === 'leader') {
      try {
        await engine.draw(pool);
        acked++;
        if (!firstAck) {
          firstAck = true;
          send({ type: 'firstAck', at: Date.now() });
        }
      } catch (err) {
        const code = (err as { code?: string }).code ?? String(err);
        if (!errorsSeen.has(code)) {
          errorsSeen.add(code);
          send({ type: 'error', code, message: (err as Error).message, at: Date.now() });
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  } finally {
    running--;
  }
}

async function startLoad(): Promise<void> {
  if (engine.role !== 'leader' || running > 0) return;
  for (const id of cfg.pools) if (!engine.poolIds().includes(id)) await engine.createPool(id, [{ id: 'common', weight: 9, quantity: -1 }, { id: 'rare', weight: 1, quantity: -1 }]);
  for (let i = 0; i < cfg.inflight; i++) void loop(cfg.pools[i % cfg.pools.length]!);
}

async function stopLoad(): Promise<void> {
  loadOn = false;
  for (let i = 0; i < 3000 && running > 0; i++) await new Promise((r) => setTimeout(r, 10));
}

engine.on('replicationError', ({ error }) => send({ type: 'error', code: (error as { code?: string }).code ?? 'replicationError', message: String((error as Error).message ?? error), at: Date.now() }));
engine.on('roleChange', (e) => {
  send({ type: 'role', role: e.role, term: e.term, at: Date.now() });
  if (e.role === 'leader' && loadOn) startLoad().catch((err: unknown) => send({ type: 'fatal', message: `load: ${String((err as Error).stack ?? err)}` }));
});

if (cfg.sampleMs > 0) {
  setInterval(() => {
    const m = engine.metrics();
    const r = m.replication!;
    send({ type: 'sample', at: Date.now(), role: r.role, lagMessages: r.lagMessages, lagMs: r.lagMs, draws: m.draws, messages: r.messages });
  }, cfg.sampleMs).unref();
}

/** Poll (1 ms) until the follower has no lag and at least `draws` draws; when each was first seen (lag: of its last stretch at 0). */
async function until(draws: number, timeoutMs: number): Promise<Record<string, unknown>> {
  const end = Date.now() + timeoutMs;
  let lagZeroAt: number | undefined;
  let drawsAt: number | undefined;
  for (;;) {
    const m = engine.metrics();
    const now = Date.now();
    if (m.replication!.lagMessages === 0) lagZeroAt ??= now;
    else lagZeroAt = undefined;
    if (m.draws >= draws) drawsAt ??= now;
    if (drawsAt !== undefined && lagZeroAt !== undefined) return { lagZeroAt, drawsAt, draws: m.draws, records: m.records, messages: m.replication!.messages };
    if (now > end) return { timedOut: true, draws: m.draws, lagMessages: m.replication!.lagMessages, lagZeroAt, drawsAt };
    await new Promise((r) => setTimeout(r, 1));
  }
}

process.on('message', (msg: { cmd: string; id: number; on?: boolean; draws?: number; timeoutMs?: number }) => {
  const reply = (extra: Record<string, unknown>): void => send({ type: 'reply', id: msg.id, ...extra });
  void (async () => {
    switch (msg.cmd) {
      case 'promote': {
        const at = Date.now();
        await engine.promote();
        reply({ startedAt: at, at: Date.now(), role: engine.role });
        break;
      }
      case 'load':
        if (msg.on) {
          loadOn = true;
          await startLoad();
        } else {
          await stopLoad();
        }
        reply({ acked, draws: engine.metrics().draws, role: engine.role });
        break;
      case 'pools': {
        const end = Date.now() + (msg.timeoutMs ?? 30_000);
        while (!cfg.pools.every((id) => engine.poolIds().includes(id)) && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
        if (!cfg.pools.every((id) => engine.poolIds().includes(id))) throw new Error(`pools ${cfg.pools.join(', ')} not applied; has ${engine.poolIds().join(', ')}`);
        reply({ pools: engine.poolIds() });
        break;
      }
      case 'until':
        reply(await until(msg.draws ?? 0, msg.timeoutMs ?? 30_000));
        break;
      case 'close':
        await stopLoad();
        await engine.close();
        reply({});
        process.exit(0);
        break;
      default:
        reply({ error: `unknown command ${msg.cmd}` });
    }
  })().catch((err: unknown) => reply({ error: (err as Error).message, code: (err as { code?: string }).code }));
});

send({ type: 'open', role: engine.role });
// A leader took the lease inside open(), before the roleChange listener was attached.
if (engine.role === 'leader' && loadOn) await startLoad();
