/**
 * One engine node in a child process (replication-child.ts) for the replication benchmark: its
 * events, request/reply over IPC with bounded waits, SIGKILL and a bounded graceful close.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ChildConfig, ChildMessage } from './replication-child.js';

/** How long a wait for a node's event or reply may take by default. */
export const kWaitMs = 30_000;

/** Child processes still alive: the benchmark's cleanup kills them whatever happened. */
export const liveNodes = new Set<ChildProcess>();

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)));
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

export class NodeProcess {
  readonly child: ChildProcess;
  readonly events: ChildMessage[] = [];
  readonly #waiters = new Set<() => void>();
  readonly #replies = new Map<number, (m: ChildMessage) => void>();
  readonly exited: Promise<void>;
  #nextId = 1;
  #exited = false;

  constructor(readonly cfg: ChildConfig) {
    const entry = fileURLToPath(new URL('./replication-child.js', import.meta.url));
    this.child = fork(entry, [JSON.stringify(cfg)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    liveNodes.add(this.child);
    // A failed spawn or a send to a process that is going: the waits see it as a fatal event.
    this.child.on('error', (err) => {
      this.events.push({ type: 'fatal', message: err.message });
      this.#wake();
    });
    this.child.on('message', (m: ChildMessage) => {
      if (m.type === 'reply') {
        this.#replies.get(m.id as number)?.(m);
        this.#replies.delete(m.id as number);
      } else {
        this.events.push(m);
      }
      this.#wake();
    });
    this.exited = new Promise((resolve) =>
      this.child.once('exit', () => {
        this.#exited = true;
        liveNodes.delete(this.child);
        this.#wake();
        resolve();
      }),
    );
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** The first event (past or future) matching `pred`; rejects on a fatal event, an exit or the timeout. */
  wait(pred: (m: ChildMessage) => boolean, what: string, ms = kWaitMs): Promise<ChildMessage> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`${this.cfg.node}: no ${what} within ${ms} ms`)), ms);
      const done = (result: ChildMessage | Error): void => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        if (result instanceof Error) reject(result);
        else resolve(result);
      };
      const check = (): void => {
        const hit = this.events.find(pred);
        const fatal = this.events.find((m) => m.type === 'fatal');
        if (hit !== undefined) done(hit);
        else if (fatal !== undefined) done(new Error(`${this.cfg.node} failed waiting for ${what}: ${String(fatal.message)}`));
        else if (this.#exited) done(new Error(`${this.cfg.node} exited waiting for ${what}`));
      };
      this.#waiters.add(check);
      check();
    });
  }

  request(cmd: string, extra: Record<string, unknown> = {}, ms = kWaitMs): Promise<ChildMessage> {
    const id = this.#nextId++;
    let onExit = (): void => {};
    const answer = new Promise<ChildMessage>((resolve, reject) => {
      this.#replies.set(id, (m) => (typeof m.error === 'string' ? reject(new Error(`${this.cfg.node}: ${cmd}: ${m.error}`)) : resolve(m)));
      onExit = (): void => {
        if (this.#exited && this.#replies.delete(id)) reject(new Error(`${this.cfg.node} exited before answering ${cmd}`));
      };
      this.#waiters.add(onExit);
    });
    if (!this.#exited) this.child.send({ cmd, id, ...extra }, (err) => err && this.#replies.get(id)?.({ type: 'reply', id, error: err.message }));
    onExit();
    return withTimeout(answer, ms, `${this.cfg.node}: ${cmd}`).finally(() => {
      this.#waiters.delete(onExit);
      this.#replies.delete(id);
    });
  }

  kill(): void {
    if (!this.#exited) this.child.kill('SIGKILL');
  }

  /** Close gracefully (bounded), else SIGKILL; resolves once the process is gone. */
  async close(): Promise<void> {
    if (!this.#exited) await this.request('close', {}, 15_000).catch(() => this.kill());
    this.kill();
    await withTimeout(this.exited, 5000, `${this.cfg.node}: exit`).catch(() => {});
  }

  errors(): string[] {
    return this.events.filter((m) => m.type === 'error').map((m) => `${this.cfg.node}: ${String(m.code)} ${String(m.message)}`);
  }
}
