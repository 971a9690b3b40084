import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { EngineError, errorFromWire } from '../errors.js';
import { kTag, type BatchMessage, type FromShardPort, type FromWorkerLifecycle, type InitMessage, type PublishedMessage, type ReplicateMessage, type ToWorkerLifecycle } from '../protocol.js';
import { workerEntry } from '../worker-path.js';

export interface ShardThreadEvents {
  /** A message on the shard's port: a batch reply, or a replication message. */
  reply(reply: FromShardPort): void;
  /** A lifecycle message after startup (snapshot jobs, a fatal error report). */
  lifecycle(msg: FromWorkerLifecycle): void;
  /** The worker exited or crashed after startup. */
  died(how: string): void;
}

/**
 * One shard's worker thread (cf. piscina's WorkerInfo): started with an init handshake that
 * ends when the worker says `ready` (its first segment open and mapped), batches over a
 * dedicated MessagePort, lifecycle over parentPort. Idle, neither keeps the process alive.
 */
export class ShardThread {
  readonly worker: Worker;
  readonly #port: MessagePort;
  #dead = false;

  private constructor(worker: Worker, port: MessagePort) {
    this.worker = worker;
    this.#port = port;
  }

  get threadId(): number {
    return this.worker.threadId;
  }

  static async start(shard: number, init: Omit<InitMessage, 'tag' | 'type' | 'port'>, events: ShardThreadEvents): Promise<ShardThread> {
    const worker = new Worker(workerEntry('shard-worker'), { name: `rpe-shard-${shard}` });
    const { port1, port2 } = new MessageChannel();
    const thread = new ShardThread(worker, port1);
    port1.on('message', (reply: FromShardPort) => events.reply(reply));
    port1.unref();
    try {
      await new Promise<void>((resolve, reject) => {
        const onMessage = (msg: FromWorkerLifecycle): void => {
          if (msg?.tag !== kTag) return;
          if (msg.type === 'ready') done(null);
          else if (msg.type === 'error') done(errorFromWire(msg.error));
        };
        const onExit = (code: number): void => done(new EngineError('ERR_SHARD_FAILED', `shard ${shard} exited with code ${code} during startup`, { details: { shard, code } }));
        const onError = (err: Error): void => done(new EngineError('ERR_SHARD_FAILED', `shard ${shard} failed during startup: ${err.message}`, { cause: err, details: { shard } }));
        const done = (err: EngineError | null): void => {
          worker.off('message', onMessage);
          worker.off('exit', onExit);
          worker.off('error', onError);
          if (err === null) resolve();
          else reject(err);
        };
        worker.on('message', onMessage);
        worker.on('exit', onExit);
        worker.on('error', onError);
        const msg: InitMessage = { tag: kTag, type: 'init', ...init, port: port2 };
        worker.postMessage(msg, [port2]);
      });
    } catch (err) {
      port1.close();
      await worker.terminate();
      throw err;
    }
    worker.on('message', (msg: FromWorkerLifecycle) => {
      if (msg?.tag === kTag) events.lifecycle(msg); // Node's own messages lack our tag
    });
    const died = (how: string): void => {
      if (thread.#dead) return;
      thread.#dead = true;
      events.died(how);
    };
    worker.on('error', (err) => died(`crashed: ${err.message}`));
    worker.on('exit', (code) => died(`exited unexpectedly with code ${code}`));
    worker.unref();
    return thread;
  }

  /** Send a batch, transferring its ops buffer; the port keeps the process alive while replies are due. */
  postBatch(msg: BatchMessage, firstInFlight: boolean): void {
    if (firstInFlight) this.#port.ref();
    this.#port.postMessage(msg, [msg.ops.buffer as ArrayBuffer]);
  }

  /** A replication message on the shard's port. */
  postPort(msg: PublishedMessage | ReplicateMessage): void {
    this.#port.postMessage(msg);
  }

  /** Nothing is in flight any more. */
  quiet(): void {
    this.#port.unref();
  }

  post(msg: ToWorkerLifecycle, transfer: ArrayBuffer[] = []): void {
    this.worker.postMessage(msg, transfer);
  }

  /** Keep the process alive (a snapshot is awaited) or not. */
  hold(on: boolean): void {
    if (on) this.worker.ref();
    else this.worker.unref();
  }

  /** Ask the worker to sync and release its segment, wait for it, then stop the thread. */
  async close(): Promise<void> {
    this.#dead = true; // its exit is expected from here on
    if (this.worker.threadId !== -1) {
      await new Promise<void>((resolve) => {
        const onMessage = (msg: FromWorkerLifecycle): void => {
          if (msg?.tag === kTag && (msg.type === 'closed' || msg.type === 'error')) done();
        };
        const done = (): void => {
          this.worker.off('message', onMessage);
          this.worker.off('exit', done);
          resolve();
        };
        this.worker.on('message', onMessage);
        this.worker.on('exit', done);
        this.worker.ref();
        this.worker.postMessage({ tag: kTag, type: 'close' } satisfies ToWorkerLifecycle);
      });
    }
    await this.terminate();
  }

  /** Stop the thread now. */
  async terminate(): Promise<void> {
    this.#dead = true;
    this.#port.close();
    await this.worker.terminate();
  }
}
