/**
 * Nodes of a replication group as child processes (test/fixtures/replica-node.mjs), driven over
 * IPC, and the checks of what they acknowledged against a leader's state.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { POOLS } from '../fixtures/replica-pools.mjs';
import { fixture } from './engine.js';

export interface NodeConfig {
  dir: string;
  stream: string;
  servers: string[];
  role: 'leader' | 'follower';
  node: string;
  ackFile: string;
  autoPromote?: boolean;
  leaseMs?: number;
  timeoutMs?: number;
  advertise?: string;
  shards?: number;
  inflight?: number;
  snapshotEveryRecords?: number;
  /** Draw while leading (from the start, or from a promotion on). */
  load?: boolean;
}

interface PoolStateLike {
  id: string;
  lastRequestId: number;
  items: { id: string; weight: number; quantity: number; drawn: number }[];
}

export type States = Record<string, PoolStateLike>;

export interface NodeEvent {
  type: string;
  [k: string]: unknown;
}

const live = new Set<ReplicaNode>();
process.once('exit', () => {
  for (const n of live) n.child.kill('SIGKILL');
});

export class ReplicaNode {
  readonly cfg: NodeConfig;
  readonly child: ChildProcess;
  readonly events: NodeEvent[] = [];
  readonly exited: Promise<number | null>;
  #nextId = 1;
  readonly #pending = new Map<number, (msg: NodeEvent) => void>();
  readonly #watchers = new Set<() => void>();

  private constructor(cfg: NodeConfig) {
    this.cfg = cfg;
    this.child = fork(fixture('replica-node.mjs'), [JSON.stringify(cfg)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    live.add(this);
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => {
      live.delete(this);
      this.#wake();
      resolve(code);
    }));
    this.child.on('message', (msg: NodeEvent) => {
      if (msg.type === 'reply') {
        this.#pending.get(msg.id as number)?.(msg);
        this.#pending.delete(msg.id as number);
      } else {
        this.events.push(msg);
      }
      this.#wake();
    });
  }

  /** Start a node; resolves once its engine is open (rejects with the child's reason if it is not). */
  static async start(cfg: NodeConfig, timeoutMs = 60_000): Promise<ReplicaNode> {
    const node = new ReplicaNode(cfg);
    const ev = await node.waitEvent((e) => e.type === 'open' || e.type === 'fatal', timeoutMs, 'open');
    if (ev.type === 'fatal') throw new Error(`node ${cfg.node} did not open: ${String(ev.message)}`);
    return node;
  }

  #wake(): void {
    for (const w of [...this.#watchers]) w();
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The first event matching `pred` (past or future), bounded. */
  waitEvent(pred: (e: NodeEvent) => boolean, timeoutMs: number, what: string): Promise<NodeEvent> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const hit = this.events.find(pred);
        if (hit !== undefined) done(() => resolve(hit));
        else if (!this.running) done(() => reject(new Error(`node ${this.cfg.node} exited waiting for ${what}; events: ${JSON.stringify(this.events.slice(-5))}`)));
      };
      const timer = setTimeout(() => done(() => reject(new Error(`node ${this.cfg.node}: no ${what} within ${timeoutMs} ms; events: ${JSON.stringify(this.events.slice(-5))}`))), timeoutMs);
      const done = (fn: () => void): void => {
        clearTimeout(timer);
        this.#watchers.delete(check);
        fn();
      };
      this.#watchers.add(check);
      check();
    });
  }

  waitRole(role: string, timeoutMs: number): Promise<NodeEvent> {
    return this.waitEvent((e) => e.type === 'role' && e.role === role, timeoutMs, `role ${role}`);
  }

  /** Send a command; resolves with the reply (rejects on an error reply, a dead child or a timeout). */
  request(cmd: string, extra: Record<string, unknown> = {}, timeoutMs = 60_000): Promise<NodeEvent> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`node ${this.cfg.node}: no answer to ${cmd} within ${timeoutMs} ms`)), timeoutMs);
      const onExit = (): void => {
        if (!this.running && this.#pending.has(id)) {
          clearTimeout(timer);
          this.#pending.delete(id);
          this.#watchers.delete(onExit);
          reject(new Error(`node ${this.cfg.node} exited before answering ${cmd}`));
        }
      };
      this.#watchers.add(onExit);
      this.#pending.set(id, (msg) => {
        clearTimeout(timer);
        this.#watchers.delete(onExit);
        if (typeof msg.error === 'string') reject(Object.assign(new Error(`node ${this.cfg.node}: ${cmd}: ${msg.error}`), { code: msg.code }));
        else resolve(msg);
      });
      this.child.send({ cmd, id, ...extra });
    });
  }

  async states(): Promise<{ states: States; metrics: any; role: string; recovery: any }> {
    const r = await this.request('state');
    return r as unknown as { states: States; metrics: any; role: string; recovery: any };
  }

  signal(sig: NodeJS.Signals): void {
    this.child.kill(sig);
  }

  async kill(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }
}

export const kAckFields = 5;

/** The whole records of an ack file (a record cut by a kill is left out). */
export function readAcks(file: string): Float64Array {
  if (!existsSync(file)) return new Float64Array(0);
  const buf = readFileSync(file);
  const whole = Math.floor(buf.length / (8 * kAckFields)) * kAckFields;
  const copy = new Float64Array(whole);
  new Uint8Array(copy.buffer).set(buf.subarray(0, whole * 8));
  return copy;
}

export interface Tally {
  records: number;
  draws: number;
  maxRequestId: number;
  minRequestId: number;
  /** Per pool index: acknowledged draws per item index, last slot = empty draws; and the highest id. */
  pools: { counts: number[]; maxRequestId: number }[];
}

/** Sum up ack records (from one or more files); `from` skips the first records. */
export function tally(acks: Float64Array[], from = 0): Tally {
  const t: Tally = { records: 0, draws: 0, maxRequestId: 0, minRequestId: Infinity, pools: POOLS.map(([, items]: [string, unknown[]]) => ({ counts: new Array(items.length + 1).fill(0), maxRequestId: 0 })) };
  for (const a of acks) {
    for (let i = from * kAckFields; i < a.length; i += kAckFields) {
      const [id, p, item, count] = [a[i]!, a[i + 1]!, a[i + 2]!, a[i + 3]!];
      const pool = t.pools[p]!;
      pool.counts[item < 0 ? pool.counts.length - 1 : item]! += count;
      pool.maxRequestId = Math.max(pool.maxRequestId, id);
      t.maxRequestId = Math.max(t.maxRequestId, id);
      t.minRequestId = Math.min(t.minRequestId, id - count + 1);
      t.records++;
      t.draws += count;
    }
  }
  return t;
}

/**
 * Every acknowledged draw is in `states`: per item, drawn >= acknowledged; per pool, the last
 * request id >= the highest acknowledged; and conservation: quantity + drawn = the initial
 * quantity of every limited item.
 */
export function expectContains(states: States, acked: Tally, label: string): void {
  POOLS.forEach(([id, items]: [string, { id: string; quantity: number }[]], p: number) => {
    const s = states[id];
    const a = acked.pools[p]!;
    if (s === undefined) {
      expect(a.counts.every((c) => c === 0), `${label}: pool ${id} is missing but has acknowledged draws`).toBe(true);
      return;
    }
    items.forEach((item, i) => {
      const got = s.items[i]!;
      expect(got.id).toBe(item.id);
      expect(got.drawn, `${label}: ${id}/${item.id} drawn ${got.drawn} < acknowledged ${a.counts[i]}`).toBeGreaterThanOrEqual(a.counts[i]!);
      if (item.quantity >= 0) expect(got.quantity + got.drawn, `${label}: ${id}/${item.id} conservation`).toBe(item.quantity);
    });
    expect(s.lastRequestId, `${label}: ${id} lastRequestId`).toBeGreaterThanOrEqual(a.maxRequestId);
  });
}

/** Resolves once `fn` returns a value other than undefined; rejects after timeoutMs. */
export async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000, everyMs = 50): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
