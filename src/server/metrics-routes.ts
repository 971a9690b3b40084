/**
 * GET /metrics (scope `metrics`): Prometheus text exposition from a registry owned by this
 * server (never prom-client's global default registry, so two servers in one process, or a
 * host application's own metrics, never collide).
 *
 * Engine figures are not mirrored on every draw: they live in the engine's shared counters
 * already, so each scrape reads engine.metrics() once (a synchronous Atomics read of every
 * shard's block) and sets the per-shard series from it. Request latency is a histogram
 * observed in an onResponse hook, labelled by route pattern (never by raw URL: bounded
 * cardinality).
 */
import type { FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import promClient from 'prom-client';
import type { EngineMetrics, ShardMetrics } from '../index.js';
import type { ServiceContext } from './context.js';
import { protectedProblems } from './schemas.js';

const { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } = promClient;

/** Cumulative per-shard counters: name, help, field of ShardMetrics, scale. */
const kShardCounters: [string, string, keyof ShardMetrics, number][] = [
  ['rpe_draws_total', 'Draws acknowledged by the shard, empty draws included', 'draws', 1],
  ['rpe_empty_draws_total', 'Draws that found nothing available', 'emptyDraws', 1],
  ['rpe_batches_total', 'Batches the shard ran (one message from the coordinator each)', 'batches', 1],
  ['rpe_wal_records_total', 'WAL records appended', 'records', 1],
  ['rpe_wal_bytes_total', 'WAL bytes appended', 'walBytes', 1],
  ['rpe_syncs_total', 'WAL syncs (msync/fdatasync), one per group commit', 'syncs', 1],
  ['rpe_sync_seconds_total', 'Time spent in WAL syncs', 'syncTimeMs', 1e-3],
  ['rpe_wal_rotations_total', 'WAL segment rotations', 'rotations', 1],
  ['rpe_snapshots_total', 'Snapshots written and durable', 'snapshots', 1],
  ['rpe_shard_restarts_total', 'Times the shard worker was restarted after dying', 'restarts', 1],
];

export interface ServiceMetrics {
  registry: InstanceType<typeof Registry>;
  /** onResponse hook: one latency observation per request. */
  onResponse(request: FastifyRequest, reply: FastifyReply, done: () => void): void;
}

export function createServiceMetrics(ctx: ServiceContext): ServiceMetrics {
  const registry = new Registry();
  // One read of the engine per scrape, shared by every series collected in that scrape.
  let cached: { at: number; m: EngineMetrics } | undefined;
  const read = (): EngineMetrics | undefined => {
    if (ctx.engineClosed) return undefined;
    const now = performance.now();
    if (cached === undefined || now - cached.at > 5) cached = { at: now, m: ctx.engine.metrics() };
    return cached.m;
  };

  for (const [name, help, field, scale] of kShardCounters) {
    new Counter({
      name,
      help,
      labelNames: ['shard'],
      registers: [registry],
      collect() {
        const m = read();
        if (m === undefined) return;
        // The engine's counters are the truth: set (reset + inc) rather than accumulate.
        this.reset();
        m.shards.forEach((s, k) => this.inc({ shard: String(k) }, (s[field] as number) * scale));
      },
    });
  }
  new Gauge({
    name: 'rpe_pending_draws',
    help: 'Draws queued for or in flight to the shard',
    labelNames: ['shard'],
    registers: [registry],
    collect() {
      const m = read();
      if (m !== undefined) m.shards.forEach((s, k) => this.set({ shard: String(k) }, s.pending));
    },
  });
  new Gauge({
    name: 'rpe_shard_failed',
    help: '1 when the shard stopped acknowledging (storage failure or too many restarts)',
    labelNames: ['shard'],
    registers: [registry],
    collect() {
      const m = read();
      if (m !== undefined) m.shards.forEach((s, k) => this.set({ shard: String(k) }, s.failed ? 1 : 0));
    },
  });
  new Gauge({
    name: 'rpe_engine_open',
    help: '1 while the engine is open and the server is not shutting down',
    registers: [registry],
    collect() {
      this.set(ctx.engineClosed || ctx.closing ? 0 : 1);
    },
  });
  new Gauge({
    name: 'rpe_pools',
    help: 'Pools the engine holds',
    registers: [registry],
    collect() {
      if (!ctx.engineClosed) this.set(ctx.engine.poolIds().length);
    },
  });
  const replication: [string, string, (r: NonNullable<EngineMetrics['replication']>) => number][] = [
    ['rpe_replication_leader', '1 while this node leads its replication group (takes writes)', (r) => (r.role === 'leader' ? 1 : 0)],
    ['rpe_replication_term', 'Leadership term this node leads or follows', (r) => r.term],
    ['rpe_replication_lag_messages', 'Follower: stream messages not applied yet', (r) => r.lagMessages],
    ['rpe_replication_lag_seconds', 'Follower: age of the newest message applied while more wait', (r) => r.lagMs / 1000],
    ['rpe_replication_messages', 'Stream messages published (leader) or applied (follower) since open', (r) => r.messages],
  ];
  for (const [name, help, value] of replication) {
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        const r = read()?.replication;
        if (r !== undefined) this.set(value(r));
      },
    });
  }
  collectDefaultMetrics({ register: registry, prefix: 'rpe_' });

  const latency = new Histogram({
    name: 'rpe_http_request_duration_seconds',
    help: 'Time from receiving a request to the end of its response, by route pattern',
    labelNames: ['method', 'route', 'status_code'],
    buckets: [0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });

  return {
    registry,
    onResponse(request, reply, done) {
      // Unmatched URLs share one label value, so a scanner cannot grow the series without bound.
      const route = request.routeOptions.url ?? 'unmatched';
      latency.observe({ method: request.method, route, status_code: String(reply.statusCode) }, reply.elapsedTime / 1000);
      done();
    },
  };
}

const metricsSchema = {
  summary: 'Prometheus text exposition (engine counters per shard, request latency by route)',
  tags: ['admin'],
  response: { 200: { type: 'string' }, ...protectedProblems() },
} as const;

export const metricsRoutes: FastifyPluginCallback<{ metrics: ServiceMetrics }> = (app, { metrics }, done) => {
  app.get('/metrics', { schema: metricsSchema, config: { scope: 'metrics' } }, async (_request, reply) => {
    const text = await metrics.registry.metrics();
    reply.type(metrics.registry.contentType);
    return text;
  });
  done();
};
