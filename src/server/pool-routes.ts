/** Reading pools: GET /v1/pools and GET /v1/pools/:pool (scope `read`). */
import type { FastifyPluginCallback } from 'fastify';
import type { ServiceContext } from './context.js';
import { poolParamsSchema, poolStateSchema, protectedProblems } from './schemas.js';

const listSchema = {
  summary: 'Ids of every pool',
  tags: ['pools'],
  response: {
    200: { type: 'object', required: ['pools'], properties: { pools: { type: 'array', items: { type: 'string' } } } },
    ...protectedProblems(),
  },
} as const;

const getSchema = {
  summary: 'A pool’s state, read in order with its draws',
  tags: ['pools'],
  params: poolParamsSchema,
  response: { 200: poolStateSchema, ...protectedProblems(404) },
} as const;

export const poolRoutes: FastifyPluginCallback<{ ctx: ServiceContext }> = (app, { ctx }, done) => {
  app.get('/v1/pools', { schema: listSchema, config: { scope: 'read' } }, async () => ({ pools: ctx.engine.poolIds() }));

  app.get<{ Params: { pool: string } }>('/v1/pools/:pool', { schema: getSchema, config: { scope: 'read' } }, (request) => ctx.engine.pool(request.params.pool));
  done();
};
