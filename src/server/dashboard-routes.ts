/**
 * The live page: GET / (public: the page holds no data) and its two static files, plus
 * GET /v1/stats (scope `read`), the one data endpoint the page polls. The page asks for a token
 * and keeps it in sessionStorage; the engine figures come from engine.metrics() (a synchronous
 * read of the shared counters) and each shown pool's stock from engine.pool().
 *
 * The static files are plain HTML/JS/CSS read once from src/server/dashboard/ (shipped in the
 * package; no build step) and served from memory with a strict Content-Security-Policy, so
 * nothing but our own script can run where the token lives.
 */
import { readFileSync } from 'node:fs';
import type { FastifyPluginCallback } from 'fastify';
import type { ServiceContext } from './context.js';
import { poolStateSchema, problems, protectedProblems } from './schemas.js';

/** Pools whose stock the page shows (by id order); the rest are counted. */
export const kStatsPools = 100;

const kAssetDir = new URL('../../../src/server/dashboard/', import.meta.url);
const kAssets = {
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
} as const;
type AssetName = keyof typeof kAssets;

const kCsp = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const shardStatsSchema = {
  type: 'object',
  properties: Object.fromEntries(
    ['draws', 'emptyDraws', 'batches', 'records', 'walBytes', 'syncs', 'syncTimeMs', 'rotations', 'pending', 'restarts', 'snapshots'].map((k) => [k, { type: 'number' }]),
  ),
} as const;

const statsSchema = {
  summary: 'What the live page shows: engine counters overall and per shard, and the stock of up to 100 pools',
  tags: ['dashboard'],
  response: {
    200: {
      type: 'object',
      required: ['at', 'uptimeSeconds', 'engine', 'pools', 'poolCount'],
      properties: {
        at: { type: 'number', description: 'server time, ms since the epoch' },
        uptimeSeconds: { type: 'number' },
        engine: {
          type: 'object',
          properties: {
            ...shardStatsSchema.properties,
            walBytesPerDraw: { type: 'number' },
            shards: { type: 'array', items: { type: 'object', properties: { ...shardStatsSchema.properties, failed: { type: 'boolean' } } } },
          },
        },
        pools: { type: 'array', items: poolStateSchema, description: `the first ${kStatsPools} pools by id` },
        poolCount: { type: 'integer' },
      },
    },
    ...protectedProblems(),
  },
} as const;

const pageSchema = {
  summary: 'The live dashboard (HTML); its data comes from GET /v1/stats with a read token',
  tags: ['dashboard'],
  response: { 200: { type: 'string' }, ...problems() },
} as const;

const assetSchema = {
  summary: 'The dashboard’s script and style sheet',
  tags: ['dashboard'],
  params: { type: 'object', additionalProperties: false, required: ['file'], properties: { file: { type: 'string', enum: Object.keys(kAssets) } } },
  response: { 200: { type: 'string' }, ...problems(404) },
} as const;

export const dashboardRoutes: FastifyPluginCallback<{ ctx: ServiceContext }> = (app, { ctx }, done) => {
  const html = readFileSync(new URL('index.html', kAssetDir), 'utf8');
  const assets = new Map<string, string>(Object.keys(kAssets).map((name) => [name, readFileSync(new URL(name, kAssetDir), 'utf8')]));

  app.get('/', { schema: pageSchema }, async (_request, reply) => {
    reply.type('text/html; charset=utf-8').header('content-security-policy', kCsp).header('cache-control', 'no-cache');
    return html;
  });

  app.get<{ Params: { file: AssetName } }>('/dashboard/:file', { schema: assetSchema }, async (request, reply) => {
    reply.type(kAssets[request.params.file]).header('cache-control', 'no-cache');
    return assets.get(request.params.file);
  });

  app.get('/v1/stats', { schema: statsSchema, config: { scope: 'read' } }, async () => {
    const { engine } = ctx;
    const engineMetrics = engine.metrics();
    const ids = engine.poolIds().sort();
    const pools = await Promise.all(ids.slice(0, kStatsPools).map((id) => engine.pool(id)));
    return { at: Date.now(), uptimeSeconds: (Date.now() - ctx.startedAt) / 1000, engine: engineMetrics, pools, poolCount: ids.length };
  });
  done();
};
