/**
 * Draws (scope `draw`): POST /v1/pools/:pool/draw and POST /v1/pools/:pool/draws. Both take
 * an optional Idempotency-Key header, passed to the engine as `idempotencyKey`.
 *
 * The draws response is DESIGN.md's `{ firstRequestId, count, items, counts, empty }`; with
 * `"indices": true` in the body it also carries `indices`, the per-draw item indices (base64
 * of little-endian u16, 0xFFFF = empty; see docs/wire.md), which RewardPoolClient turns back
 * into a DrawBatch.
 */
import type { FastifyPluginCallback, FastifyRequest } from 'fastify';
import type { DrawBatch } from '../index.js';
import { encodeIndices } from '../wire.js';
import type { DrawOptions, ServiceContext } from './context.js';
import { bodyOrEmpty, emptyBodySchema, idempotencyHeadersSchema, poolParamsSchema, protectedProblems } from './schemas.js';

const drawSchema = {
  summary: 'One draw: { requestId, itemId } (itemId null when nothing is available)',
  tags: ['draws'],
  params: poolParamsSchema,
  headers: idempotencyHeadersSchema,
  body: emptyBodySchema,
  response: {
    200: {
      type: 'object',
      required: ['requestId', 'itemId'],
      properties: { requestId: { type: 'integer' }, itemId: { type: ['string', 'null'] } },
    },
    ...protectedProblems(404, 409, 413, 507),
  },
} as const;

/** `count` is capped by the server's limit (limits.maxDrawCount), so this is built per server. */
function drawsSchema(maxDrawCount: number) {
  return {
    summary: '`count` draws with consecutive request ids, summarized (and, on request, each draw’s item index)',
    tags: ['draws'],
    params: poolParamsSchema,
    headers: idempotencyHeadersSchema,
    body: {
      type: 'object',
      additionalProperties: false,
      required: ['count'],
      properties: {
        count: { type: 'integer', minimum: 1, maximum: maxDrawCount },
        indices: { type: 'boolean', description: 'also return each draw’s item index (docs/wire.md)' },
      },
    },
    response: {
      200: {
        type: 'object',
        required: ['firstRequestId', 'count', 'items', 'counts', 'empty'],
        properties: {
          firstRequestId: { type: 'integer', description: 'ids are firstRequestId .. firstRequestId + count - 1, in order' },
          count: { type: 'integer' },
          items: { type: 'array', items: { type: 'string' }, description: 'the pool’s item ids, by index' },
          counts: { type: 'object', additionalProperties: { type: 'integer' }, description: 'item id -> successful draws (items drawn at least once)' },
          empty: { type: 'integer', description: 'empty draws (nothing was available)' },
          indices: { type: 'string', contentEncoding: 'base64', description: 'little-endian u16 item index per draw, 0xFFFF = empty (only with "indices": true)' },
        },
      },
      ...protectedProblems(404, 409, 413, 507),
    },
  } as const;
}

function drawOptions(request: FastifyRequest): DrawOptions | undefined {
  const key = request.headers['idempotency-key'];
  return typeof key === 'string' ? { idempotencyKey: key } : undefined;
}

/** The summary of a batch, with null-prototype counts: item ids are keys here, any id is safe. */
export function summarize(batch: DrawBatch, withIndices: boolean): Record<string, unknown> {
  const counts: Record<string, number> = Object.create(null);
  let empty = 0;
  for (const [id, n] of batch.counts()) {
    if (id === null) empty = n;
    else counts[id] = n;
  }
  const out: Record<string, unknown> = { firstRequestId: batch.firstRequestId, count: batch.count, items: batch.items, counts, empty };
  if (withIndices) out.indices = encodeIndices(batch.indices);
  return out;
}

export const drawRoutes: FastifyPluginCallback<{ ctx: ServiceContext }> = (app, { ctx }, done) => {
  const { engine } = ctx;

  app.post<{ Params: { pool: string } }>('/v1/pools/:pool/draw', { schema: drawSchema, config: { scope: 'draw' }, preValidation: bodyOrEmpty }, (request) =>
    engine.draw(request.params.pool, drawOptions(request)),
  );

  app.post<{ Params: { pool: string }; Body: { count: number; indices?: boolean } }>(
    '/v1/pools/:pool/draws',
    { schema: drawsSchema(ctx.limits.maxDrawCount), config: { scope: 'draw' } },
    async (request) => {
      const { count, indices } = request.body;
      const batch = await engine.drawMany(request.params.pool, count, drawOptions(request));
      return summarize(batch, indices === true);
    },
  );
  done();
};
