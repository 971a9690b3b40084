/**
 * `reward-pool-engine/server`: the draw service. Importing it loads fastify and prom-client;
 * the main entry `reward-pool-engine` loads neither.
 */
export { createServer, type ServiceApp } from './create-server.js';
export type { ServerOptions } from './options.js';
export type { ApiKeyConfig, Scope } from './auth.js';
export type { Limits, ServedEngine, DrawOptions } from './context.js';
export { kStatusByCode, type Problem } from './problem.js';
export { loadServeConfig, type ServeConfig } from './config.js';
export { createGrpcServer, type GrpcServer, type GrpcServerOptions } from './grpc/index.js';
