/**
 * createGrpcServer(engine, options): the Go-compatible gRPC endpoint (issue 10 item 6). It
 * loads @grpc/grpc-js on first use (a dynamic import), so neither the HTTP service nor the
 * engine pays for it when it is not configured.
 */
import { EngineError, show } from '../../errors.js';
import { compileKeys, type ApiKeyConfig } from '../auth.js';
import type { ServedEngine } from '../context.js';
import { isLoopback } from '../options.js';
import { kMaxDrawCount } from '../../wire.js';

export interface GrpcServerOptions {
  /** Same keys as the HTTP service: GetState needs `read`, Draw needs `draw`. Default: none (loopback only). */
  auth?: { keys?: ApiKeyConfig[] };
  /** PEM certificate chain and key (contents). Default: plaintext. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Pool of requests that name none (Go clients never do). Default: none (such requests fail). */
  defaultPool?: string;
  /** Largest `count` of one DrawRequest. Default: 16,777,216. */
  maxDrawCount?: number;
}

export interface GrpcServer {
  /** The bound port. */
  port: number;
  /** Answer the requests already received on open streams, end them, stop. */
  close(timeoutMs?: number): Promise<void>;
}

/** Start the gRPC endpoint on host:port (0 = a free port). */
export async function createGrpcServer(engine: ServedEngine, host: string, port: number, options: GrpcServerOptions = {}): Promise<GrpcServer> {
  const keys = compileKeys(options.auth?.keys, 'grpc auth.keys');
  if (keys.length === 0 && !isLoopback(host)) {
    throw new EngineError('ERR_INVALID_CONFIG', `refusing to serve gRPC on ${show(host)} without API keys: configure auth.keys, or listen on a loopback address`, { details: { host } });
  }
  let GrpcService: typeof import('./grpc-service.js').GrpcService;
  try {
    ({ GrpcService } = await import('./grpc-service.js'));
  } catch (err) {
    // Optional peer dependencies: only those who serve gRPC install them.
    if ((err as NodeJS.ErrnoException)?.code !== 'ERR_MODULE_NOT_FOUND') throw err;
    throw new EngineError('ERR_INVALID_CONFIG', `the gRPC endpoint needs @grpc/grpc-js and @grpc/proto-loader: npm install @grpc/grpc-js @grpc/proto-loader (${(err as Error).message})`, {
      cause: err,
    });
  }
  const service = new GrpcService(engine, { keys, defaultPool: options.defaultPool, maxDrawCount: options.maxDrawCount ?? kMaxDrawCount, tls: options.tls });
  const bound = await service.listen(host, port);
  return { port: bound, close: (timeoutMs) => service.close(timeoutMs) };
}
