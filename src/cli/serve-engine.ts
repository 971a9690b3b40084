/**
 * The engine `serve` runs. Without replication it is the DrawEngine itself. With replication, a
 * leader that is deposed (another node fenced it out) closes its engine and opens it again as a
 * follower of the new leader, on the same directory, so the process goes on serving reads and
 * can be promoted later; meanwhile every call answers ERR_NOT_LEADER.
 */
import { EventEmitter } from 'node:events';
import { DrawEngine } from '../engine.js';
import { EngineError, messageOf } from '../errors.js';
import type { DrawBatch, DrawResult, EngineMetrics, ItemPatch, ItemSpec, PoolState } from '../index.js';
import type { DrawEngineOptions } from '../options.js';
import type { DrawOptions, ServedEngine } from '../server/context.js';

const kRejoinRetryMs = 1000;

export class ServeEngine extends EventEmitter implements ServedEngine {
  readonly #options: DrawEngineOptions;
  readonly #log: (line: string) => void;
  #engine: DrawEngine | undefined;
  #lastMetrics: EngineMetrics | undefined;
  #closing: Promise<void> | undefined;

  private constructor(options: DrawEngineOptions, engine: DrawEngine, log: (line: string) => void) {
    super();
    this.#options = options;
    this.#log = log;
    this.#attach(engine);
  }

  static async open(options: DrawEngineOptions, log: (line: string) => void): Promise<ServeEngine> {
    return new ServeEngine(options, await DrawEngine.open(options), log);
  }

  #attach(engine: DrawEngine): void {
    this.#engine = engine;
    engine.on('shardExit', ({ shard, error }) => this.#log(`shard ${shard} exited: ${messageOf(error)}`));
    engine.on('replicationError', ({ error }) => this.#log(`replication: ${messageOf(error)}`));
    engine.on('roleChange', ({ role, term, leader, leaderAddress }) => {
      this.#log(`replication: ${role} (term ${term}${leader === undefined ? '' : `, leader ${leader}${leaderAddress ? ` at ${leaderAddress}` : ''}`})`);
      if (role === 'deposed') void this.#rejoin(engine);
    });
  }

  /** Close the deposed engine, open it again as a follower; retried until it works or serve closes. */
  async #rejoin(deposed: DrawEngine): Promise<void> {
    if (this.#engine !== deposed || this.#closing) return;
    this.#lastMetrics = deposed.metrics();
    this.#engine = undefined;
    await deposed.close().catch(() => {});
    const options: DrawEngineOptions = { ...this.#options, replication: { ...this.#options.replication!, role: 'follower' } };
    while (!this.#closing) {
      try {
        const engine = await DrawEngine.open(options);
        if (this.#closing) {
          await engine.close();
          return;
        }
        this.#attach(engine);
        this.#log('replication: reopened as a follower');
        return;
      } catch (err) {
        this.#log(`replication: cannot reopen as a follower yet: ${messageOf(err)}`);
        await new Promise((r) => setTimeout(r, kRejoinRetryMs));
      }
    }
  }

  #current(): DrawEngine {
    if (this.#engine !== undefined) return this.#engine;
    if (this.#closing) throw new EngineError('ERR_ENGINE_CLOSED', 'the engine is closed');
    throw new EngineError('ERR_NOT_LEADER', 'this node was deposed and is reopening as a follower');
  }

  #call<T>(fn: (e: DrawEngine) => Promise<T>): Promise<T> {
    try {
      return fn(this.#current());
    } catch (err) {
      return Promise.reject(err);
    }
  }

  createPool(poolId: string, items: ItemSpec[]): Promise<void> {
    return this.#call((e) => e.createPool(poolId, items));
  }

  draw(poolId: string, options?: DrawOptions): Promise<DrawResult> {
    return this.#call((e) => e.draw(poolId, options));
  }

  drawMany(poolId: string, count: number, options?: DrawOptions): Promise<DrawBatch> {
    return this.#call((e) => e.drawMany(poolId, count, options));
  }

  updateItem(poolId: string, itemId: string, patch: ItemPatch): Promise<void> {
    return this.#call((e) => e.updateItem(poolId, itemId, patch));
  }

  pool(poolId: string): Promise<PoolState> {
    return this.#call((e) => e.pool(poolId));
  }

  snapshot(): Promise<void> {
    return this.#call((e) => e.snapshot());
  }

  poolIds(): string[] {
    return this.#engine?.poolIds() ?? [];
  }

  metrics(): EngineMetrics {
    const m = this.#engine?.metrics() ?? this.#lastMetrics!;
    if (this.#engine === undefined && m.replication !== undefined) return { ...m, replication: { ...m.replication, role: 'deposed' } };
    return m;
  }

  /** Promote this node (replication): POST /v1/promote. */
  promote(): Promise<void> {
    return this.#call((e) => e.promote());
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      try {
        await this.#engine?.close();
      } finally {
        this.emit('close');
      }
    })();
    return this.#closing;
  }
}
