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

/** A follower this many stream messages behind (or more) is not ready. */
export const kReadyLagMessages = 1000;

const readySchema = {
  summary: 'Readiness: 200 while the engine is open and (a replication follower) caught up, else 503',
  tags: ['health'],
  response: {
    200: {
      type: 'object',
      required: ['status', 'pools', 'failedShards'],
      properties: {
        status: { type: 'string', enum: ['ready'] },
        pools: { type: 'integer' },
        failedShards: { type: 'array', items: { type: 'integer' }, description: 'shards that stopped acknowledging (their pools answer 503)' },
        role: { type: 'string', enum: ['leader', 'follower'], description: 'with replication: this node leads (takes writes) or follows (reads only)' },
        term: { type: 'integer' },
        leader: { type: 'string', description: 'the leader\'s advertised address, when known' },
        lagMessages: { type: 'integer', description: 'follower: stream messages not applied yet' },
        lagMs: { type: 'number', description: 'follower: age of the newest message applied while more wait' },
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
    const ready = { status: 'ready' as const, pools: ctx.engine.poolIds().length, failedShards };
    const r = m.replication;
    if (r === undefined) return ready;
    if (r.role === 'deposed') throw new EngineError('ERR_NOT_LEADER', 'this node was deposed: another node leads; restart it as a follower', { details: { address: r.leaderAddress } });
    if (r.role === 'follower' && r.lagMessages >= kReadyLagMessages) {
      throw new EngineError('ERR_REPLICATION_UNAVAILABLE', `this follower is ${r.lagMessages} stream messages (${Math.round(r.lagMs)} ms) behind its leader`, { details: { address: r.leaderAddress } });
    }
    return { ...ready, role: r.role, term: r.term, leader: r.leaderAddress, lagMessages: r.lagMessages, lagMs: r.lagMs };
  });
  done();
};
