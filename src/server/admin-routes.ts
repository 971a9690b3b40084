/**
 * Changing pools, snapshots and leadership (scope `admin`): POST /v1/pools, PATCH
 * /v1/pools/:pool/items/:item, POST /v1/snapshot, POST /v1/promote.
 */
import type { FastifyPluginCallback } from 'fastify';
import { kMaxTotalWeight, type ItemPatch, type ItemSpec } from '../catalog.js';
import type { ServiceContext } from './context.js';
import { bodyOrEmpty, emptyBodySchema, idSchema, poolStateSchema, protectedProblems } from './schemas.js';

const weightSchema = { type: 'integer', minimum: 1, maximum: kMaxTotalWeight } as const;
const quantitySchema = { type: 'integer', minimum: -1, maximum: Number.MAX_SAFE_INTEGER, description: '-1 = unlimited' } as const;

/** The catalog limit is the server's (limits.maxItems), so this schema is built per server. */
function createSchema(maxItems: number) {
  return {
    summary: 'Create a pool; 201 with its state once the creation is logged',
    tags: ['pools'],
    body: {
      type: 'object',
      additionalProperties: false,
      required: ['id', 'items'],
      properties: {
        id: idSchema,
        items: {
          type: 'array',
          minItems: 1,
          maxItems,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['id', 'weight', 'quantity'],
            properties: { id: idSchema, weight: weightSchema, quantity: quantitySchema },
          },
        },
      },
    },
    response: { 201: poolStateSchema, ...protectedProblems(409, 413) },
  } as const;
}

const updateSchema = {
  summary: 'Change an item’s weight and/or quantity, ordered with the pool’s draws; 200 with the pool’s state',
  tags: ['pools'],
  params: {
    type: 'object',
    additionalProperties: false,
    required: ['pool', 'item'],
    properties: { pool: idSchema, item: idSchema },
  },
  body: {
    type: 'object',
    additionalProperties: false,
    minProperties: 1,
    properties: { weight: weightSchema, quantity: quantitySchema },
  },
  response: { 200: poolStateSchema, ...protectedProblems(404, 413) },
} as const;

const snapshotSchema = {
  summary: 'Snapshot every shard now; 200 once every snapshot is durable',
  tags: ['admin'],
  body: emptyBodySchema,
  response: {
    200: { type: 'object', required: ['status'], properties: { status: { type: 'string', enum: ['ok'] } } },
    ...protectedProblems(413, 507),
  },
} as const;

const promoteSchema = {
  summary: 'Replication: make this follower the leader (it fences the old one out of the stream); 200 once it takes writes',
  tags: ['admin'],
  body: emptyBodySchema,
  response: {
    200: { type: 'object', required: ['status', 'role'], properties: { status: { type: 'string', enum: ['ok'] }, role: { type: 'string' }, term: { type: 'integer' } } },
    ...protectedProblems(413),
  },
} as const;

export const adminRoutes: FastifyPluginCallback<{ ctx: ServiceContext }> = (app, { ctx }, done) => {
  const { engine } = ctx;

  app.post<{ Body: { id: string; items: ItemSpec[] } }>(
    '/v1/pools',
    { schema: createSchema(ctx.limits.maxItems), config: { scope: 'admin' } },
    async (request, reply) => {
      const { id, items } = request.body;
      await engine.createPool(id, items);
      reply.code(201);
      return engine.pool(id);
    },
  );

  app.patch<{ Params: { pool: string; item: string }; Body: ItemPatch }>(
    '/v1/pools/:pool/items/:item',
    { schema: updateSchema, config: { scope: 'admin' } },
    async (request) => {
      const { pool, item } = request.params;
      await engine.updateItem(pool, item, request.body);
      return engine.pool(pool);
    },
  );

  app.post('/v1/snapshot', { schema: snapshotSchema, config: { scope: 'admin' }, preValidation: bodyOrEmpty }, async () => {
    await engine.snapshot();
    return { status: 'ok' as const };
  });

  app.post('/v1/promote', { schema: promoteSchema, config: { scope: 'admin' }, preValidation: bodyOrEmpty }, async () => {
    await engine.promote?.();
    const r = engine.metrics().replication;
    return { status: 'ok' as const, role: r?.role ?? 'leader', term: r?.term };
  });
  done();
};
