/**
 * The parent's side of test/fixtures/model-host.mjs: a DrawEngine in a child process, driven
 * over IPC, that can be closed or SIGKILLed. Arguments are descriptors (`{ v: value }` for what
 * structured clone carries, `{ make: ... }` for values built in the child: Proxies, throwing
 * getters, symbols, functions).
 */
import { fork, type ChildProcess } from 'node:child_process';
import type { DrawEngineOptions, PoolState } from '../../dist/src/index.js';
import { fixture } from './engine.js';

export type Desc =
  | { v: unknown }
  | { make: 'proxy' | 'proxyArray' | 'revoked' | 'symbol' | 'function' }
  | { make: 'getter'; prop: string; base?: Record<string, unknown> }
  | { make: 'getterAt'; items: unknown[]; index: number }
  | { make: 'stringObject'; s: string }
  | { make: 'numberObject'; n: number }
  | { make: 'valueOf'; n: number }
  | { make: 'manyItems'; n: number }
  | { make: 'itemGetter'; prop: 'id' | 'weight' | 'quantity' };

export interface WireError {
  code: string | undefined;
  isEngineError: boolean;
  message: string;
  syncThrow?: boolean;
}

export interface WireBatch {
  firstRequestId: number;
  count: number;
  items: string[];
  indices: Uint16Array;
  countsOk: boolean;
  itemIdAtOk: boolean;
}

export type CallResult = { ok: true; value: unknown } | { ok: false; error: WireError };

export interface HostStates {
  poolIds: string[];
  states: PoolState[];
  records: number;
  draws: number;
}

export interface HostRecovery {
  maxRequestId: number;
  tornTails: unknown[];
  snapshotFallbacks: unknown[];
  removedSegments: unknown[];
  shards: number;
}

export interface EngineCall {
  method: 'createPool' | 'draw' | 'drawMany' | 'updateItem' | 'pool' | 'snapshot';
  args: Desc[];
}

interface Reply {
  id: number;
  ok: boolean;
  value?: unknown;
  error?: WireError;
}

export class EngineHost {
  readonly child: ChildProcess;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #nextId = 1;
  #gone: Promise<void>;
  #dead = false;
  /** `fire` outcomes, by call index, in the order they arrived. */
  readonly late: (CallResult & { late: number })[] = [];

  private constructor(child: ChildProcess) {
    this.child = child;
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    // Gone = exited AND the IPC channel drained (every message the child sent was delivered).
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const disconnected = new Promise<void>((r) => child.once('disconnect', () => r()));
    this.#gone = Promise.all([exited, disconnected]).then(() => {
      this.#dead = true;
      for (const p of this.#pending.values()) p.reject(new Error(`engine host exited (${child.exitCode ?? child.signalCode}); stderr: ${stderr.slice(-2000)}`));
      this.#pending.clear();
    });
    child.on('message', (m: Reply & { late?: number; ready?: number }) => {
      if (m.late !== undefined) {
        this.late.push(m as CallResult & { late: number });
        return;
      }
      const p = this.#pending.get(m.id);
      if (p === undefined) return;
      this.#pending.delete(m.id);
      if (m.ok) p.resolve(m.value);
      else p.reject(Object.assign(new Error(`host op failed: ${m.error?.code} ${m.error?.message}`), { wire: m.error }));
    });
  }

  /** Start a host process (it has not opened anything yet). */
  static async start(): Promise<EngineHost> {
    const child = fork(fixture('model-host.mjs'), [], { serialization: 'advanced', execArgv: [], stdio: ['ignore', 'inherit', 'pipe', 'ipc'] });
    const host = new EngineHost(child);
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`engine host exited (${code}) before it was ready`)));
    });
    return host;
  }

  #send<T>(msg: Record<string, unknown>): Promise<T> {
    if (this.#dead) return Promise.reject(new Error('engine host is gone'));
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, ...msg });
    });
  }

  open(options: DrawEngineOptions): Promise<HostRecovery> {
    return this.#send({ op: 'open', options });
  }

  close(): Promise<void> {
    return this.#send({ op: 'close' });
  }

  call(c: EngineCall): Promise<CallResult> {
    return this.#send({ op: 'call', method: c.method, args: c.args });
  }

  /** Issue every call in one turn of the child's event loop, then await them all. */
  burst(calls: EngineCall[]): Promise<CallResult[]> {
    return this.#send({ op: 'burst', calls });
  }

  /**
   * Issue every call, then close() at once (it drains them); `after` are called once close()
   * started. Resolves when the engine is closed.
   */
  burstClose(calls: EngineCall[], after: EngineCall[]): Promise<{ results: CallResult[]; after: CallResult[] }> {
    return this.#send({ op: 'burstClose', calls, after });
  }

  /** Issue every call and return at once; outcomes arrive in `late`. */
  fire(calls: EngineCall[]): Promise<number> {
    return this.#send({ op: 'fire', calls });
  }

  states(): Promise<HostStates> {
    return this.#send({ op: 'states' });
  }

  snapshot(): Promise<void> {
    return this.#send({ op: 'snapshot' });
  }

  /** A second DrawEngine.open of the same directory inside the host process. */
  openAgain(): Promise<{ opened: boolean; error?: WireError }> {
    return this.#send({ op: 'openAgain' });
  }

  /** SIGKILL (a crash: no close), and wait until every message it sent has been received. */
  async kill(): Promise<void> {
    if (!this.#dead) this.child.kill('SIGKILL');
    await this.#gone;
  }

  /** Close the engine if one is open, then let the process go. */
  async stop(): Promise<void> {
    if (this.#dead) return;
    this.child.disconnect();
    await this.#gone;
  }
}
