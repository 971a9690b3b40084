/** Liveness and readiness, public (load balancers and orchestrators call them without a token). */
import type { FastifyPluginCallback } from 'fastify';
import { EngineError } from '../errors.js';
import type { ServiceContext } from './context.js';
import { problems } from './schemas.js';

const healthSchema = {
  summary: 'Liveness: 200 while the process serves',
  tags: ['health'],
  response: { 200: { type: 'object', required: ['status'], properties: { status: { type: 'string', enum: ['ok'] } } } },
} as const;

const readySchema = {
  summary: 'Readiness: 200 while the engine is open, else 503',
  tags: ['health'],
  response: {
    200: {
      type: 'object',
      required: ['status', 'pools', 'failedShards'],
      properties: {
        status: { type: 'string', enum: ['ready'] },
        pools: { type: 'integer' },
        failedShards: { type: 'array', items: { type: 'integer' }, description: 'shards that stopped acknowledging (their pools answer 503)' },
      },
    },
    ...problems(),
  },
} as const;

export const healthRoutes: FastifyPluginCallback<{ ctx: ServiceContext }> = (app, { ctx }, done) => {
  app.get('/healthz', { schema: healthSchema }, async () => ({ status: 'ok' as const }));

  app.get('/readyz', { schema: readySchema }, async () => {
    if (ctx.closing || ctx.engineClosed) {
      throw new EngineError('ERR_ENGINE_CLOSED', ctx.engineClosed ? 'the engine is closed' : 'the server is shutting down');
    }
    const m = ctx.engine.metrics();
    const failedShards: number[] = [];
    m.shards.forEach((s, k) => s.failed && failedShards.push(k));
    return { status: 'ready' as const, pools: ctx.engine.poolIds().length, failedShards };
  });
  done();
};
