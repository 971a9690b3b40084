/**
 * GET /openapi.json: an OpenAPI 3.1 document built from the routes themselves. An onRoute hook
 * (installed before any route plugin) records each route's method, URL, schema and scope as
 * fastify registers it, so the document uses the very schema objects the routes validate and
 * serialize with: no schema text is written twice, and a route cannot be missing from it.
 * OpenAPI 3.1 schemas are JSON Schema, so the route schemas go in unchanged.
 */
import type { FastifyInstance, FastifyPluginCallback, RouteOptions } from 'fastify';
import type { Scope } from './auth.js';
import { bodyOrEmpty, problemSchema } from './schemas.js';

interface RecordedRoute {
  method: string;
  url: string;
  schema: Record<string, unknown>;
  scope: Scope | undefined;
  /** The route accepts a request without a body (its preValidation is bodyOrEmpty). */
  optionalBody: boolean;
}

export interface RouteRecorder {
  routes: RecordedRoute[];
}

/** Start recording routes; call before registering any route plugin. */
export function recordRoutes(app: FastifyInstance): RouteRecorder {
  const recorder: RouteRecorder = { routes: [] };
  app.addHook('onRoute', (route: RouteOptions) => {
    const schema = route.schema as Record<string, unknown> | undefined;
    if (schema === undefined) return;
    const pre = route.preValidation;
    const optionalBody = pre === bodyOrEmpty || (Array.isArray(pre) && pre.includes(bodyOrEmpty));
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    // HEAD routes fastify adds for each GET carry the same schema; the document lists GET.
    for (const method of methods) {
      if (method === 'HEAD') continue;
      recorder.routes.push({ method: method.toLowerCase(), url: route.url, schema, scope: route.config?.scope, optionalBody });
    }
  });
  return recorder;
}

/** `/v1/pools/:pool` -> `/v1/pools/{pool}`. */
function openApiPath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

type Json = Record<string, unknown>;

function parameters(schema: Json | undefined, where: 'path' | 'header'): Json[] {
  if (schema === undefined) return [];
  const props = (schema.properties ?? {}) as Record<string, Json>;
  const required = new Set((schema.required ?? []) as string[]);
  return Object.entries(props).map(([name, s]) => ({
    name: where === 'header' ? name.replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase()) : name,
    in: where,
    required: where === 'path' || required.has(name),
    ...(typeof s.description === 'string' ? { description: s.description } : {}),
    schema: s,
  }));
}

function responses(schema: Json): Json {
  const out: Json = {};
  for (const [status, s] of Object.entries((schema.response ?? {}) as Record<string, Json>)) {
    const problem = s === problemSchema;
    const text = s.type === 'string';
    const type = problem ? 'application/problem+json' : text ? 'text/plain' : 'application/json';
    out[status] = { description: problem ? 'problem details (docs/errors.md)' : 'success', content: { [type]: { schema: problem ? { $ref: '#/components/schemas/Problem' } : s } } };
  }
  return out;
}

export function buildOpenApi(recorder: RouteRecorder, info: { title: string; version: string }): Json {
  const paths: Record<string, Json> = {};
  for (const r of recorder.routes) {
    const s = r.schema;
    const op: Json = {
      operationId: `${r.method}${openApiPath(r.url).replace(/[{}]/g, '').replace(/(^|[/_-])([a-z0-9])/g, (_m, _s: string, c: string) => c.toUpperCase())}`,
      ...(typeof s.summary === 'string' ? { summary: s.summary } : {}),
      ...(Array.isArray(s.tags) ? { tags: s.tags } : {}),
      parameters: [...parameters(s.params as Json | undefined, 'path'), ...parameters(s.headers as Json | undefined, 'header')],
      responses: responses(s),
      security: r.scope === undefined ? [] : [{ bearer: [r.scope] }],
    };
    if (r.scope !== undefined) op['x-scope'] = r.scope;
    if (s.body !== undefined) op.requestBody = { required: !r.optionalBody, content: { 'application/json': { schema: s.body } } };
    (paths[openApiPath(r.url)] ??= {})[r.method] = op;
  }
  return {
    openapi: '3.1.0',
    info: { ...info, description: 'reward-pool-engine draw service (DESIGN.md "Service (HTTP)"; wire format: docs/wire.md)' },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    paths,
    components: {
      schemas: { Problem: problemSchema },
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'API key token; scopes: draw, read, admin, metrics' } },
    },
  };
}

const openApiSchema = {
  summary: 'This document (OpenAPI 3.1)',
  tags: ['meta'],
  response: { 200: { type: 'object', additionalProperties: true, description: 'the OpenAPI document' } },
} as const;

export const openApiRoutes: FastifyPluginCallback<{ recorder: RouteRecorder; info: { title: string; version: string } }> = (app, { recorder, info }, done) => {
  let doc: Json | undefined;
  app.get('/openapi.json', { schema: openApiSchema }, async () => (doc ??= buildOpenApi(recorder, info)));
  done();
};
