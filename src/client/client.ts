/**
 * RewardPoolClient: the embedded DrawEngine's methods, over HTTP. Same method names, same
 * result shapes (a drawMany resolves with a real DrawBatch), same EngineError codes, so code
 * moves between embedded and remote by changing the line that builds the engine:
 *
 *   const engine = await DrawEngine.open({ dir });                        // embedded
 *   const engine = new RewardPoolClient({ url: 'http://rewards:8080', token }); // remote
 *
 * Arguments are checked here with the engine's own rules (src/catalog.ts), so a bad call fails
 * with the code the embedded engine gives (ERR_INVALID_ARGUMENT, ERR_INVALID_CONFIG) without a
 * round trip; the server's schemas would call it ERR_INVALID_REQUEST.
 *
 * Differences, all documented in docs/wire.md: poolIds() and metrics() return promises (they
 * need a round trip); a draw whose connection failed after all retries rejects with
 * ERR_SERVICE_UNAVAILABLE; idempotency keys must be visible ASCII (they travel in a header).
 */
import { checkPoolId, isValidId, validateCatalog, validatePatch, type ItemPatch, type ItemSpec } from '../catalog.js';
// The module the main entry re-exports: batches from here are `instanceof DrawBatch` for
// `import { DrawBatch } from 'reward-pool-engine'`, without loading the engine itself.
import { DrawBatch } from '../draw-batch.js';
import { EngineError, show } from '../errors.js';
// Types only (erased at run time): the client never loads the engine.
import type { DrawResult, EngineMetrics, PoolState } from '../index.js';
import { isWireIdempotencyKey, kMaxDrawCount } from '../wire.js';
import { DrawCoalescer, newIdempotencyKey } from './coalescer.js';
import { Endpoints } from './endpoints.js';
import { send, type HttpDeps, type HttpRequest } from './http.js';
import { parseDrawResult, parseDrawsResponse, parseMetrics, parsePoolIds, parsePoolState, type DrawsResponse } from './wire-types.js';

export interface RewardPoolClientOptions {
  /**
   * Base URL of the service, e.g. `http://127.0.0.1:8080` (a path prefix is kept), or the URLs
   * of a replication group's nodes: requests go to the leader (followers name it).
   */
  url: string | string[];
  /** Bearer token of an API key. Default: none (a server without keys). */
  token?: string;
  /** Connections to the server. Default: `16`. */
  connections?: number;
  /** Retries of a connection failure (draws only: they carry an idempotency key). Default: `5`. */
  retries?: number;
  /** First retry delay in ms, doubled per retry (with jitter). Default: `50`. */
  retryDelayMs?: number;
  /** Longest retry delay in ms. Default: `2000`. */
  maxRetryDelayMs?: number;
  /** Most draw() calls of one pool sent as one request (larger groups are split). Default: `65_536`. */
  maxCoalesce?: number;
  /** TLS: a CA to trust (PEM), e.g. for a self-signed server certificate. Default: the system's. */
  ca?: string | Buffer;
  /** With several URLs: how long a request refused with ERR_NOT_LEADER looks for the leader (ms). Default: `15_000`. */
  failoverTimeoutMs?: number;
}

/** Options of draw() and drawMany(), as the embedded engine takes them. */
export interface DrawOptions {
  /** 1-128 visible ASCII characters; a repeated call with the same key returns the original outcome. */
  idempotencyKey?: string;
}

/** Run fn, turning a synchronous throw into a rejection (async methods never throw). */
function reject<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return fn();
  } catch (err) {
    return Promise.reject(err);
  }
}

function option(name: string, value: unknown, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new EngineError('ERR_INVALID_CONFIG', `options.${name} must be an integer from ${min} to ${max}, got ${show(value)}`, { details: { option: name, value } });
  }
  return value;
}

const path = (poolId: string): string => `/v1/pools/${encodeURIComponent(poolId)}`;

export class RewardPoolClient {
  readonly #endpoints: Endpoints;
  readonly #http: HttpDeps;
  readonly #coalescer: DrawCoalescer;
  #closing: Promise<void> | undefined;
  /** HTTP attempts made, retries included (diagnostics and tests). */
  attempts = 0;

  constructor(options: RewardPoolClientOptions) {
    if (typeof options !== 'object' || options === null) throw new EngineError('ERR_INVALID_CONFIG', `options must be an object, got ${show(options)}`);
    if (options.token !== undefined && (typeof options.token !== 'string' || !/^[\x21-\x7e]+$/.test(options.token))) {
      throw new EngineError('ERR_INVALID_CONFIG', 'options.token must be a string of visible ASCII characters', { details: { option: 'token' } });
    }
    const connections = option('connections', options.connections, 1, 1024, 16);
    const failoverMs = option('failoverTimeoutMs', options.failoverTimeoutMs, 0, 600_000, 15_000);
    this.#endpoints = new Endpoints(options.url, { connections, ca: options.ca });
    this.#http = {
      endpoints: this.#endpoints,
      failoverMs,
      authorization: options.token === undefined ? undefined : `Bearer ${options.token}`,
      retry: {
        retries: option('retries', options.retries, 0, 100, 5),
        minDelayMs: option('retryDelayMs', options.retryDelayMs, 1, 60_000, 50),
        maxDelayMs: option('maxRetryDelayMs', options.maxRetryDelayMs, 1, 600_000, 2000),
      },
      onAttempt: () => {
        this.attempts++;
      },
    };
    this.#coalescer = new DrawCoalescer({
      maxGroup: option('maxCoalesce', options.maxCoalesce, 1, kMaxDrawCount, 65_536),
      drawMany: (pool, count, key) => this.#drawMany(pool, count, key),
    });
  }

  /** Group requests the coalescer sent (one per pool per turn, retries aside). */
  get coalescedRequests(): number {
    return this.#coalescer.requests;
  }

  #send(req: HttpRequest): Promise<unknown> {
    return send(this.#http, req);
  }

  /** Calls made after close() started fail as the embedded engine's do; calls made before still run. */
  #checkOpen(): void {
    if (this.#closing !== undefined) throw new EngineError('ERR_ENGINE_CLOSED', 'the client is closed');
  }

  #checkKey(options: DrawOptions | undefined, method: string): string | undefined {
    if (options === undefined) return undefined;
    if (typeof options !== 'object' || options === null) throw new EngineError('ERR_INVALID_ARGUMENT', `${method}(): options must be an object, got ${show(options)}`);
    const key = options.idempotencyKey;
    if (key === undefined) return undefined;
    if (!isWireIdempotencyKey(key)) {
      throw new EngineError('ERR_INVALID_ARGUMENT', `${method}(): idempotencyKey must be 1-128 visible ASCII characters (it travels in an HTTP header), got ${show(key)}`, {
        details: { idempotencyKey: key },
      });
    }
    return key;
  }

  async #drawMany(poolId: string, count: number, key: string): Promise<DrawsResponse> {
    const what = `POST ${path(poolId)}/draws`;
    const body = await this.#send({ method: 'POST', path: `${path(poolId)}/draws`, body: { count, indices: true }, idempotencyKey: key });
    return parseDrawsResponse(body, count, what);
  }

  createPool(poolId: string, items: ItemSpec[]): Promise<void> {
    return reject(async () => {
      this.#checkOpen();
      checkPoolId(poolId);
      const catalog = validateCatalog(poolId, items);
      await this.#send({ method: 'POST', path: '/v1/pools', body: { id: poolId, items: catalog } });
    });
  }

  /**
   * One draw. Calls on one pool in one event-loop turn travel as one request; a call with an
   * idempotencyKey travels alone, with that key.
   */
  draw(poolId: string, options?: DrawOptions): Promise<DrawResult> {
    // The hot path (no options, a valid id, open) allocates nothing but the call's promise.
    if (options === undefined && this.#closing === undefined && isValidId(poolId)) return this.#coalescer.add(poolId);
    return reject(() => {
      this.#checkOpen();
      checkPoolId(poolId);
      const key = this.#checkKey(options, 'draw');
      if (key === undefined) return this.#coalescer.add(poolId);
      return this.#send({ method: 'POST', path: `${path(poolId)}/draw`, idempotencyKey: key }).then((b) => parseDrawResult(b, `POST ${path(poolId)}/draw`));
    });
  }

  /** `count` draws with consecutive request ids, as a DrawBatch. */
  drawMany(poolId: string, count: number, options?: DrawOptions): Promise<DrawBatch> {
    return reject(async () => {
      this.#checkOpen();
      checkPoolId(poolId);
      if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 1 || count > kMaxDrawCount) {
        throw new EngineError('ERR_INVALID_ARGUMENT', `drawMany(${show(poolId)}): count must be an integer from 1 to ${kMaxDrawCount}, got ${show(count)}`, {
          details: { poolId, count },
        });
      }
      const key = this.#checkKey(options, 'drawMany') ?? newIdempotencyKey();
      const r = await this.#drawMany(poolId, count, key);
      return new DrawBatch(r.firstRequestId, r.items, r.indices);
    });
  }

  updateItem(poolId: string, itemId: string, patch: ItemPatch): Promise<void> {
    return reject(async () => {
      this.#checkOpen();
      checkPoolId(poolId);
      if (!isValidId(itemId)) throw new EngineError('ERR_UNKNOWN_ITEM', `pool ${show(poolId)} has no item ${show(itemId)}`, { details: { poolId, itemId } });
      const checked = validatePatch(poolId, itemId, patch);
      const body: ItemPatch = {};
      if (!Number.isNaN(checked.weight)) body.weight = checked.weight;
      if (!Number.isNaN(checked.quantity)) body.quantity = checked.quantity;
      await this.#send({ method: 'PATCH', path: `${path(poolId)}/items/${encodeURIComponent(itemId)}`, body });
    });
  }

  pool(poolId: string): Promise<PoolState> {
    return reject(async () => {
      this.#checkOpen();
      checkPoolId(poolId);
      return parsePoolState(await this.#send({ method: 'GET', path: path(poolId) }), `GET ${path(poolId)}`);
    });
  }

  /** Ids of every pool (a promise: unlike the embedded engine's, it needs a round trip). */
  poolIds(): Promise<string[]> {
    return reject(async () => {
      this.#checkOpen();
      return parsePoolIds(await this.#send({ method: 'GET', path: '/v1/pools' }), 'GET /v1/pools');
    });
  }

  /** The engine's counters (needs the read scope; a promise, see poolIds). */
  metrics(): Promise<EngineMetrics> {
    return reject(async () => {
      this.#checkOpen();
      return parseMetrics(await this.#send({ method: 'GET', path: '/v1/stats' }), 'GET /v1/stats');
    });
  }

  /** Snapshot every shard of the server's engine; resolves once each is durable. */
  snapshot(): Promise<void> {
    return reject(async () => {
      this.#checkOpen();
      await this.#send({ method: 'POST', path: '/v1/snapshot' });
    });
  }

  /**
   * Send the draws still waiting for this turn, wait for every request in flight, then close
   * the connections. Idempotent; later calls reject with ERR_ENGINE_CLOSED.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#coalescer.drain();
      await this.#endpoints.close();
    })();
    return this.#closing;
  }
}
