/**
 * createServer(engine, options): the draw service as a fastify instance, routes registered,
 * not yet listening. The caller listens (`await app.listen({ host, port })`) and closes
 * (`await app.close()`: stop accepting, answer what is in flight, then close the engine).
 */
import { readFileSync } from 'node:fs';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { EngineError, show } from '../errors.js';
import { installAuth } from './auth.js';
import { adminRoutes } from './admin-routes.js';
import type { ServedEngine, ServiceContext } from './context.js';
import { dashboardRoutes } from './dashboard-routes.js';
import { drawRoutes } from './draw-routes.js';
import { healthRoutes } from './health-routes.js';
import { createServiceMetrics, metricsRoutes } from './metrics-routes.js';
import { openApiRoutes, recordRoutes } from './openapi.js';
import { fillServerOptions, isLoopback, type ServerOptions } from './options.js';
import { installProblemHandlers, problem, sendProblem } from './problem.js';
import { poolRoutes } from './pool-routes.js';

const kPackage = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { name: string; version: string };

/** Encoded ids: 128 UTF-16 units of 3-byte UTF-8, percent-encoded, is 1,152 characters. */
const kMaxParamLength = 2048;
/** How long idle keep-alive connections stay open once close() started (see installLifecycle). */
const kIdleGraceMs = 1000;

export type ServiceApp = FastifyInstance;

const kAjvLogger = {
  log: (...args: unknown[]): void => console.log(...args),
  warn: (...args: unknown[]): void => {
    if (typeof args[0] === 'string' && args[0].startsWith('DEPRECATED: option unicode')) return;
    console.warn(...args);
  },
  error: (...args: unknown[]): void => console.error(...args),
};

export function createServer(engine: ServedEngine, options: ServerOptions = {}): ServiceApp {
  const opts = fillServerOptions(options);
  const app = Fastify({
    logger: opts.logger,
    bodyLimit: opts.limits.bodyBytes,
    ...(opts.tls === undefined ? {} : { https: { cert: opts.tls.cert, key: opts.tls.key } }),
    routerOptions: { maxParamLength: kMaxParamLength },
    // Requests that arrive while closing are answered by our own hook below, with a
    // problem+json body and Retry-After, instead of fastify's fixed JSON.
    return503OnClosing: false,
    ajv: {
      customOptions: {
        // Reject what does not match instead of fixing it: an extra field is an error (not
        // silently dropped), "5" is not a count, and a missing field gets no default.
        removeAdditional: false,
        coerceTypes: false,
        useDefaults: false,
        // String lengths in UTF-16 code units, as the engine counts ids. Ajv 8 still honours
        // this option but warns that it is deprecated on every compile; only that warning is
        // dropped.
        unicode: false,
        logger: kAjvLogger,
      },
    },
  }) as unknown as ServiceApp;

  const ctx: ServiceContext = { engine, limits: opts.limits, closing: false, engineClosed: false, retryAfterSeconds: opts.retryAfterSeconds, startedAt: Date.now() };
  engine.once('close', () => {
    ctx.engineClosed = true;
  });
  const problemOpts = { retryAfterSeconds: opts.retryAfterSeconds };

  installProblemHandlers(app, problemOpts);
  const recorder = recordRoutes(app);
  const metrics = createServiceMetrics(ctx);

  // While closing, answer at once (the engine is about to close) and ask for a new connection.
  app.addHook('onRequest', (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    if (!ctx.closing) return done();
    reply.header('connection', 'close');
    sendProblem(reply, problem('ERR_ENGINE_CLOSED', `the server is shutting down; ${request.method} ${request.routeOptions.url ?? request.url} was not run`), problemOpts);
  });
  // A response sent while closing ends its connection, so the client opens a new one (to
  // another instance) rather than sending more on a connection about to close: HTTP/1.1 has no
  // GOAWAY, and a request written onto a connection as the server closes it is lost.
  app.addHook('onSend', (_request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (err: null, payload: unknown) => void) => {
    if (ctx.closing) reply.header('connection', 'close');
    done(null, payload);
  });
  installAuth(app, opts.keys);
  app.addHook('onResponse', metrics.onResponse);

  app.register(healthRoutes, { ctx });
  app.register(poolRoutes, { ctx });
  app.register(adminRoutes, { ctx });
  app.register(drawRoutes, { ctx });
  app.register(metricsRoutes, { metrics });
  app.register(dashboardRoutes, { ctx });
  app.register(openApiRoutes, { recorder, info: { title: kPackage.name, version: kPackage.version } });

  installLifecycle(app, ctx, opts.shutdownTimeoutMs, opts.closeEngine);
  guardListen(app, opts.keys.length > 0);
  return app;
}

/**
 * Graceful close. fastify's own onClose step (it runs before ours) stops accepting and waits
 * for every connection to end; then our onClose closes the engine (which drains its queues).
 *
 * Idle keep-alive connections need care. Node's server.close() closes them at once, but
 * "idle" means the server has no request on it, not that the client sent none: a request
 * written just before is reset unread, and the client cannot tell whether it ran (HTTP/1.1
 * has no GOAWAY). So close() first waits kIdleGraceMs (in preClose, before fastify closes the
 * server): meanwhile every request is answered 503 ERR_ENGINE_CLOSED with `Connection: close`,
 * so a client with a request on its way gets an answer and its connection ends cleanly. Only
 * then does server.close() stop accepting and close what is still idle; after
 * shutdownTimeoutMs whatever is left is cut.
 */
function installLifecycle(app: ServiceApp, ctx: ServiceContext, shutdownTimeoutMs: number, closeEngine: boolean): void {
  let deadline: NodeJS.Timeout | undefined;
  app.addHook('preClose', async () => {
    ctx.closing = true;
    if (!app.server.listening) return;
    deadline = setTimeout(() => {
      app.log.warn(`connections still busy ${shutdownTimeoutMs} ms after close(): cutting them`);
      (app.server as { closeAllConnections?: () => void }).closeAllConnections?.();
    }, shutdownTimeoutMs).unref();
    await new Promise((resolve) => setTimeout(resolve, Math.min(kIdleGraceMs, shutdownTimeoutMs)).unref());
  });
  app.addHook('onClose', async () => {
    clearTimeout(deadline);
    if (closeEngine && !ctx.engineClosed) await ctx.engine.close();
  });
}

/**
 * Without API keys every route is open, so the server must not be reachable from another
 * machine. fastify has no hook before listen(), so listen() itself is wrapped: a non-loopback
 * host rejects with ERR_INVALID_CONFIG before any socket is bound.
 */
function guardListen(app: ServiceApp, hasKeys: boolean): void {
  if (hasKeys) return;
  const listen = app.listen.bind(app) as (...args: unknown[]) => unknown;
  (app as { listen: unknown }).listen = (...args: unknown[]): unknown => {
    const first = args[0];
    const host = typeof first === 'object' && first !== null && typeof (first as { host?: unknown }).host === 'string' ? (first as { host: string }).host : 'localhost';
    if (!isLoopback(host)) {
      const err = new EngineError(
        'ERR_INVALID_CONFIG',
        `refusing to listen on ${show(host)} without API keys: every route would be open to the network; configure auth.keys, or listen on a loopback address (127.0.0.1, ::1, localhost)`,
        { details: { host } },
      );
      const cb = args.find((a) => typeof a === 'function') as ((err: Error) => void) | undefined;
      if (cb !== undefined) {
        process.nextTick(cb, err);
        return undefined;
      }
      return Promise.reject(err);
    }
    return listen(...args);
  };
}
