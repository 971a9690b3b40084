/**
 * JSON schemas shared by several route plugins and by the OpenAPI document (openapi.ts reads
 * them from the routes, so each schema is written once). Route-specific schemas live beside
 * their handlers. Every body schema sets `additionalProperties: false`; the ajv instance is
 * configured to reject (not strip) extra fields and never to coerce types (create-server.ts).
 */
import { kMaxIdLength } from '../catalog.js';
import { kIdempotencyKeyPattern } from '../wire.js';

/** A pool or item id: 1-128 UTF-16 code units (ajv counts code units: `unicode: false`). */
export const idSchema = { type: 'string', minLength: 1, maxLength: kMaxIdLength } as const;

export const poolParamsSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['pool'],
  properties: { pool: idSchema },
} as const;

export const itemStateSchema = {
  type: 'object',
  required: ['id', 'weight', 'quantity', 'drawn'],
  properties: {
    id: { type: 'string' },
    weight: { type: 'integer' },
    quantity: { type: 'integer', description: '-1 = unlimited' },
    drawn: { type: 'integer', description: 'successful draws of this item over the pool’s whole life' },
  },
} as const;

/** The engine's PoolState. */
export const poolStateSchema = {
  type: 'object',
  required: ['id', 'lastRequestId', 'items'],
  properties: {
    id: { type: 'string' },
    lastRequestId: { type: 'integer', description: 'request id of the pool’s latest draw (0 before any)' },
    items: { type: 'array', items: itemStateSchema },
  },
} as const;

/** RFC 9457 problem details, as every error response carries them (problem.ts). */
export const problemSchema = {
  type: 'object',
  required: ['type', 'title', 'status', 'code', 'detail'],
  properties: {
    type: { type: 'string', description: 'urn:reward-pool-engine:error:<code>' },
    title: { type: 'string', description: 'the code’s short description' },
    status: { type: 'integer' },
    code: { type: 'string', description: 'EngineError code (docs/errors.md)' },
    detail: { type: 'string', description: 'what was wrong, with which value' },
    leader: { type: 'string', description: 'ERR_NOT_LEADER: the address the replication leader advertises, when known' },
  },
} as const;

/** Optional `Idempotency-Key` header of the draw routes (header names arrive lower-cased). */
export const idempotencyHeadersSchema = {
  type: 'object',
  properties: {
    'idempotency-key': {
      type: 'string',
      pattern: kIdempotencyKeyPattern,
      description: 'the engine’s idempotencyKey: 1-128 visible ASCII characters; a retry with the same key returns the original outcome',
    },
  },
} as const;

/**
 * Error responses of a route, for fastify's serializer and the OpenAPI document: every route
 * can answer 400 (bad request), 500 and 503 (engine closed or shard failed); callers add theirs.
 */
export function problems(...statuses: number[]): Record<string, typeof problemSchema> {
  const out: Record<string, typeof problemSchema> = {};
  for (const s of [400, ...statuses, 500, 503].sort((a, b) => a - b)) out[String(s)] = problemSchema;
  return out;
}

/** Error responses of a route that needs a scope: adds 401 and 403. */
export function protectedProblems(...statuses: number[]): Record<string, typeof problemSchema> {
  return problems(401, 403, ...statuses);
}

/** An empty JSON object body (routes that take no input still refuse fields). */
export const emptyBodySchema = { type: 'object', additionalProperties: false, properties: {} } as const;

/**
 * preValidation hook for routes whose body is optional: a request without a body validates as
 * `{}`, and one with a body must match the route's schema (no field slips through unseen).
 */
export function bodyOrEmpty(request: { body: unknown }, _reply: unknown, done: () => void): void {
  if (request.body === undefined || request.body === null) request.body = {};
  done();
}
