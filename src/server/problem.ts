/**
 * Every error response is `application/problem+json` (RFC 9457) built here and only here:
 * handlers throw (or reject with) EngineErrors, fastify raises its own errors for schemas,
 * bodies and URLs, and this module maps each to a status and a body
 * `{ type, title, status, code, detail }` whose `code` is an EngineError code (ERR_NOT_LEADER
 * adds `leader`: the leader's address, when known).
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { codes, EngineError, type ErrorCode } from '../errors.js';

/** HTTP status of each code (DESIGN.md "Service (HTTP)"). */
export const kStatusByCode: Readonly<Record<ErrorCode, number>> = {
  ERR_INVALID_CONFIG: 400,
  ERR_INVALID_ARGUMENT: 400,
  ERR_INVALID_REQUEST: 400,
  ERR_UNAUTHORIZED: 401,
  ERR_FORBIDDEN: 403,
  ERR_UNKNOWN_POOL: 404,
  ERR_UNKNOWN_ITEM: 404,
  ERR_POOL_EXISTS: 409,
  ERR_IDEMPOTENCY_MISMATCH: 409,
  ERR_PAYLOAD_TOO_LARGE: 413,
  ERR_ENGINE_CLOSED: 503,
  ERR_SHARD_FAILED: 503,
  ERR_NOT_LEADER: 503,
  ERR_REPLICATION_UNAVAILABLE: 503,
  ERR_SERVICE_UNAVAILABLE: 503,
  ERR_DISK_FULL: 507,
  // Raised only by open() or by a bug: nothing a request can cause.
  ERR_DIR_LOCKED: 500,
  ERR_CORRUPT_WAL: 500,
  ERR_CORRUPT_SNAPSHOT: 500,
  ERR_INTERNAL: 500,
};

export interface Problem {
  type: string;
  title: string;
  status: number;
  code: ErrorCode;
  detail: string;
  /** ERR_NOT_LEADER: where the leader's service is, when it advertises an address. */
  leader?: string;
}

export function problemType(code: string): string {
  return `urn:reward-pool-engine:error:${code}`;
}

export function problem(code: ErrorCode, detail: string, status = kStatusByCode[code]): Problem {
  return { type: problemType(code), title: codes[code], status, code, detail };
}

/** What fastify's own errors (schemas, bodies, URLs) mean in our codes. */
function fromFastify(err: FastifyError): Problem | undefined {
  if (err.validation !== undefined) {
    // fastify's message names the part of the request: "body/count must be <= 1000".
    return problem('ERR_INVALID_REQUEST', err.message);
  }
  const status = err.statusCode;
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || status === 413) return problem('ERR_PAYLOAD_TOO_LARGE', err.message);
  // Bad JSON, empty JSON body, unsupported media type (415), bad URL, invalid header: the
  // request itself is wrong. Keep fastify's status when it is a client error.
  if (typeof status === 'number' && status >= 400 && status < 500) return problem('ERR_INVALID_REQUEST', err.message, status);
  return undefined;
}

/**
 * Status and body for anything a request can fail with. Unknown errors are 500 ERR_INTERNAL
 * (and logged): they are bugs, and their messages may hold details not meant for clients.
 */
export function problemOf(err: unknown): { problem: Problem; internal: boolean } {
  if (err instanceof EngineError) {
    const p = problem(err.code, err.message);
    const address = (err.details as { address?: unknown } | undefined)?.address;
    if (err.code === 'ERR_NOT_LEADER' && typeof address === 'string') p.leader = address;
    return { problem: p, internal: false };
  }
  const p = fromFastify(err as FastifyError);
  if (p !== undefined) return { problem: p, internal: false };
  return { problem: problem('ERR_INTERNAL', 'the server failed unexpectedly; its log has the details'), internal: true };
}

export interface ProblemOptions {
  /** Seconds in the `Retry-After` header of 503 responses. */
  retryAfterSeconds: number;
}

export function sendProblem(reply: FastifyReply, p: Problem, opts: ProblemOptions): FastifyReply {
  if (p.status === 503) reply.header('retry-after', String(opts.retryAfterSeconds));
  if (p.status === 401) reply.header('www-authenticate', 'Bearer realm="reward-pool-engine"');
  return reply.code(p.status).type('application/problem+json').send(p);
}

/** One error handler, one not-found handler: handlers never build error bodies. */
export function installProblemHandlers(app: FastifyInstance, opts: ProblemOptions): void {
  app.setErrorHandler((err: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const { problem: p, internal } = problemOf(err);
    if (internal) request.log.error({ err }, 'unexpected error');
    return sendProblem(reply, p, opts);
  });
  app.setNotFoundHandler((request: FastifyRequest, reply: FastifyReply) => {
    const path = request.url.split('?')[0]!;
    sendProblem(reply, problem('ERR_INVALID_REQUEST', `no route ${request.method} ${path.length > 200 ? `${path.slice(0, 200)}…` : path}`, 404), opts);
  });
}
