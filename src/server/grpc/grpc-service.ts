/**
 * The Go service's gRPC interface (`rewardpool.RewardPoolService`, rewardpool.proto beside this
 * file) on @grpc/grpc-js, over the same engine, API keys and TLS as the HTTP service. Loaded
 * only through ./index.ts's createGrpcServer (a dynamic import), so the HTTP service and the
 * engine never load grpc-js.
 *
 * Draw is a bidirectional stream: each DrawRequest is one engine.drawMany(pool, count) call,
 * issued as soon as it arrives (so a client's pipelined requests share group commits), and its
 * draws are written back in request order, one DrawResponse each, honouring the stream's
 * backpressure. A request that fails gets one response carrying the error.
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { EngineError, show, type ErrorCode } from '../../errors.js';
import { isWireIdempotencyKey } from '../../wire.js';
import { authorize, type Key, type Scope } from '../auth.js';
import type { ServedEngine } from '../context.js';

const kProto = fileURLToPath(new URL('../../../../src/server/grpc/rewardpool.proto', import.meta.url));

interface DrawRequest {
  count: number;
  pool: string;
  idempotency_key: string;
}
interface DrawResponse {
  request_id: number;
  item_id: string;
  error: string;
}

/** gRPC status of an EngineError code (the code itself travels in the details). */
const kGrpcStatus: Partial<Record<ErrorCode, grpc.status>> = {
  ERR_UNAUTHORIZED: grpc.status.UNAUTHENTICATED,
  ERR_FORBIDDEN: grpc.status.PERMISSION_DENIED,
  ERR_UNKNOWN_POOL: grpc.status.NOT_FOUND,
  ERR_INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  ERR_INVALID_REQUEST: grpc.status.INVALID_ARGUMENT,
  ERR_ENGINE_CLOSED: grpc.status.UNAVAILABLE,
  ERR_SHARD_FAILED: grpc.status.UNAVAILABLE,
  ERR_NOT_LEADER: grpc.status.UNAVAILABLE,
  ERR_DISK_FULL: grpc.status.RESOURCE_EXHAUSTED,
};

function grpcError(err: unknown): Partial<grpc.StatusObject> {
  if (err instanceof EngineError) return { code: kGrpcStatus[err.code] ?? grpc.status.INTERNAL, details: `${err.code}: ${err.message}` };
  return { code: grpc.status.INTERNAL, details: 'ERR_INTERNAL: the server failed unexpectedly' };
}

export interface GrpcServiceOptions {
  keys: readonly Key[];
  /** The pool of requests that name none (the Go service had exactly one). */
  defaultPool: string | undefined;
  maxDrawCount: number;
  tls: { cert: string | Buffer; key: string | Buffer } | undefined;
}

export class GrpcService {
  readonly #engine: ServedEngine;
  readonly #opts: GrpcServiceOptions;
  readonly #server = new grpc.Server();
  readonly #streams = new Set<{ closing: () => void }>();
  #closing = false;

  constructor(engine: ServedEngine, opts: GrpcServiceOptions) {
    this.#engine = engine;
    this.#opts = opts;
    const def = protoLoader.loadSync(kProto, { keepCase: true, longs: Number, defaults: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { rewardpool: { RewardPoolService: { service: grpc.ServiceDefinition } } };
    this.#server.addService(pkg.rewardpool.RewardPoolService.service, {
      GetState: (call: grpc.ServerUnaryCall<{ pool: string }, unknown>, callback: grpc.sendUnaryData<unknown>) => this.#getState(call, callback),
      Draw: (call: grpc.ServerDuplexStream<DrawRequest, DrawResponse>) => this.#draw(call),
    });
  }

  /** Bind and start; resolves with the bound port. */
  listen(host: string, port: number): Promise<number> {
    const creds = this.#opts.tls === undefined ? grpc.ServerCredentials.createInsecure() : grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(this.#opts.tls.cert), private_key: Buffer.from(this.#opts.tls.key) }]);
    const address = host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
    return new Promise((resolve, reject) => this.#server.bindAsync(address, creds, (err, bound) => (err ? reject(err) : resolve(bound))));
  }

  /**
   * Stop accepting calls, let every open Draw stream finish the requests it has received
   * (later ones are answered with ERR_ENGINE_CLOSED) and end it, then shut down; calls still
   * open after timeoutMs are cancelled.
   */
  close(timeoutMs = 30_000): Promise<void> {
    this.#closing = true;
    for (const s of this.#streams) s.closing();
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.#server.forceShutdown(), timeoutMs).unref();
      this.#server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  #authorize(metadata: grpc.Metadata, scope: Scope, what: string): EngineError | undefined {
    if (this.#opts.keys.length === 0) return undefined;
    const header = metadata.get('authorization')[0];
    const r = authorize(this.#opts.keys, typeof header === 'string' ? header : undefined, scope, what);
    return 'error' in r ? r.error : undefined;
  }

  #pool(name: string): string {
    const pool = name === '' ? this.#opts.defaultPool : name;
    if (pool === undefined) throw new EngineError('ERR_INVALID_ARGUMENT', 'the request names no pool and the server has no default pool (--grpc-default-pool)');
    return pool;
  }

  #getState(call: grpc.ServerUnaryCall<{ pool: string }, unknown>, callback: grpc.sendUnaryData<unknown>): void {
    const denied = this.#authorize(call.metadata, 'read', 'GetState');
    if (denied) return callback(grpcError(denied));
    let pool: string;
    try {
      pool = this.#pool(call.request.pool);
    } catch (err) {
      return callback(grpcError(err));
    }
    this.#engine.pool(pool).then(
      (s) => callback(null, { items: s.items.map((i) => ({ item_id: i.id, quantity: i.quantity, probability: i.weight })) }),
      (err: unknown) => callback(grpcError(err)),
    );
  }

  #draw(call: grpc.ServerDuplexStream<DrawRequest, DrawResponse>): void {
    const denied = this.#authorize(call.metadata, 'draw', 'Draw');
    if (denied) {
      call.emit('error', grpcError(denied));
      return;
    }
    // Requests are drawn as they arrive; `tail` orders their responses.
    let tail: Promise<void> = Promise.resolve();
    let ended = false;
    const finish = (): void => {
      if (ended) return;
      ended = true;
      this.#streams.delete(entry);
      void tail.then(() => call.end());
    };
    const entry = { closing: finish };
    this.#streams.add(entry);
    call.on('data', (req: DrawRequest) => {
      const outcome = this.#closing || ended ? Promise.reject(new EngineError('ERR_ENGINE_CLOSED', 'the server is shutting down')) : this.#drawOne(req);
      outcome.catch(() => {});
      tail = tail.then(() => outcome.then((r) => this.#writeDraws(call, r), (err: unknown) => this.#write(call, { request_id: 0, item_id: '', error: grpcError(err).details! })));
    });
    call.on('end', finish);
    call.on('cancelled', () => {
      ended = true;
      this.#streams.delete(entry);
    });
  }

  #drawOne(req: DrawRequest): Promise<{ first: number; items: readonly string[]; indices: Uint16Array }> {
    try {
      const pool = this.#pool(req.pool);
      const count = req.count <= 0 ? 1 : req.count;
      if (count > this.#opts.maxDrawCount) throw new EngineError('ERR_INVALID_REQUEST', `count must be at most ${this.#opts.maxDrawCount}, got ${count}`);
      const key = req.idempotency_key;
      if (key !== '' && !isWireIdempotencyKey(key)) throw new EngineError('ERR_INVALID_REQUEST', `idempotency_key must be 1-128 visible ASCII characters, got ${show(key)}`);
      return this.#engine.drawMany(pool, count, key === '' ? undefined : { idempotencyKey: key }).then((b) => ({ first: b.firstRequestId, items: b.items, indices: b.indices }));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async #writeDraws(call: grpc.ServerDuplexStream<DrawRequest, DrawResponse>, r: { first: number; items: readonly string[]; indices: Uint16Array }): Promise<void> {
    for (let i = 0; i < r.indices.length; i++) {
      const idx = r.indices[i]!;
      const empty = idx === 0xffff;
      await this.#write(call, { request_id: r.first + i, item_id: empty ? '' : r.items[idx]!, error: empty ? 'pool is empty' : '' });
    }
  }

  /** Write one response; wait for 'drain' when the stream's buffer is full. */
  #write(call: grpc.ServerDuplexStream<DrawRequest, DrawResponse>, msg: DrawResponse): Promise<void> | void {
    if (call.cancelled || call.writableEnded) return;
    if (call.write(msg)) return;
    return new Promise((resolve) => {
      const done = (): void => {
        call.off('drain', done);
        call.off('close', done);
        resolve();
      };
      call.once('drain', done);
      call.once('close', done);
    });
  }
}
