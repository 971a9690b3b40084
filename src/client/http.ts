/**
 * One HTTP exchange with the service over an undici Pool: JSON in, JSON out, problem+json
 * turned back into the EngineError the embedded engine would have thrown, and retries of
 * connection failures.
 *
 * What is retried, and why it is safe: only failures where no response arrived (connection
 * refused or reset, socket closed before the response, connect timeout), and only requests that
 * carry an Idempotency-Key: every draw does (the client makes one when the caller gave none), so
 * a draw that did happen before the connection dropped returns its original outcome on the
 * retry instead of drawing again. A request without a key (createPool, updateItem, snapshot,
 * the reads) is never retried: the rule stays one line long, and the caller decides.
 *
 * With several URLs (the nodes of a replication group): a node that answers ERR_NOT_LEADER
 * changed nothing, so any request goes again, to the leader it names or to the next URL, until
 * a leader answers or `failoverMs` have passed; a node that does not answer sends the next
 * request to the next URL.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Dispatcher } from 'undici';
import { codes, EngineError, messageOf, show, type ErrorCode } from '../errors.js';
import type { Endpoint, Endpoints } from './endpoints.js';

/** undici and socket error codes that mean "no response came back on this connection". */
const kConnectionFailures = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'UND_ERR_SOCKET', // "other side closed": the socket closed before a response
  'UND_ERR_CONNECT_TIMEOUT',
]);

export function isConnectionFailure(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && kConnectionFailures.has(code);
}

export interface RetryPolicy {
  /** Retries after the first attempt. */
  retries: number;
  /** Delay before the first retry, in ms; doubles each time. */
  minDelayMs: number;
  maxDelayMs: number;
}

/** Exponential backoff with full jitter: a crowd of clients does not retry in lockstep. */
export function backoffMs(attempt: number, policy: RetryPolicy): number {
  const cap = Math.min(policy.maxDelayMs, policy.minDelayMs * 2 ** attempt);
  return cap / 2 + Math.random() * (cap / 2);
}

export interface HttpRequest {
  method: 'GET' | 'POST' | 'PATCH';
  path: string;
  body?: unknown;
  /** Sent as the Idempotency-Key header; only requests with one are retried. */
  idempotencyKey?: string;
}

export interface HttpDeps {
  endpoints: Endpoints;
  authorization: string | undefined;
  retry: RetryPolicy;
  /** How long requests refused with ERR_NOT_LEADER go on looking for the leader. */
  failoverMs: number;
  /** Counts attempts, for tests and metrics. */
  onAttempt?: (req: HttpRequest, attempt: number) => void;
}

/** The EngineError a problem+json body describes (or ERR_INTERNAL / ERR_SERVICE_UNAVAILABLE). */
export function errorFromResponse(status: number, contentType: string | undefined, body: string, what: string): EngineError {
  let problem: { code?: unknown; detail?: unknown; type?: unknown; leader?: unknown } | undefined;
  if (contentType?.startsWith('application/problem+json')) {
    try {
      problem = JSON.parse(body) as typeof problem;
    } catch {
      problem = undefined;
    }
  }
  if (problem !== undefined && typeof problem.code === 'string' && Object.hasOwn(codes, problem.code)) {
    const detail = typeof problem.detail === 'string' ? problem.detail : codes[problem.code as ErrorCode];
    const leader = typeof problem.leader === 'string' ? { leader: problem.leader } : {};
    return new EngineError(problem.code as ErrorCode, detail, { details: { status, type: problem.type, ...leader } });
  }
  // Not one of ours: a proxy, a server of another version, a server shutting down below us.
  const excerpt = body.length > 200 ? `${body.slice(0, 200)}…` : body;
  const code: ErrorCode = status === 502 || status === 503 || status === 504 ? 'ERR_SERVICE_UNAVAILABLE' : 'ERR_INTERNAL';
  return new EngineError(code, `${what}: HTTP ${status} without a problem+json body we know: ${show(excerpt)}`, { details: { status } });
}

async function once(deps: HttpDeps, at: Endpoint, req: HttpRequest): Promise<unknown> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (deps.authorization !== undefined) headers.authorization = deps.authorization;
  if (req.idempotencyKey !== undefined) headers['idempotency-key'] = req.idempotencyKey;
  let body: string | undefined;
  if (req.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(req.body);
  }
  const res: Dispatcher.ResponseData = await at.pool.request({ method: req.method, path: at.basePath + req.path, headers, body });
  const text = await res.body.text();
  const what = `${req.method} ${req.path}`;
  if (res.statusCode >= 200 && res.statusCode < 300) {
    try {
      return JSON.parse(text) as unknown;
    } catch (err) {
      throw new EngineError('ERR_INTERNAL', `${what}: the response is not JSON: ${messageOf(err)}`, { cause: err });
    }
  }
  const contentType = res.headers['content-type'];
  throw errorFromResponse(res.statusCode, Array.isArray(contentType) ? contentType[0] : contentType, text, what);
}

/** Send, retrying connection failures per the policy when the request allows it, and following the leader. */
export async function send(deps: HttpDeps, req: HttpRequest): Promise<unknown> {
  const started = Date.now();
  let notLeader = 0;
  for (let attempt = 0; ; attempt++) {
    deps.onAttempt?.(req, attempt);
    const at = deps.endpoints.current;
    try {
      return await once(deps, at, req);
    } catch (err) {
      if (err instanceof EngineError) {
        if (err.code !== 'ERR_NOT_LEADER' || deps.endpoints.size === 1 || Date.now() - started >= deps.failoverMs) throw err;
        // Refused by a node that does not lead: nothing changed there, go again elsewhere.
        deps.endpoints.notLeader(at, err.details.leader as string | undefined);
        if (++notLeader >= deps.endpoints.size) await sleep(backoffMs(Math.min(notLeader - deps.endpoints.size, 5), deps.retry));
        continue;
      }
      const code = (err as { code?: unknown })?.code;
      if (code === 'UND_ERR_DESTROYED' || code === 'UND_ERR_CLOSED') {
        throw new EngineError('ERR_ENGINE_CLOSED', `${req.method} ${req.path}: the client is closed`, { cause: err });
      }
      // No response at all. Only connection failures are worth another try: a TLS
      // verification failure or a bad URL fails the same way every time.
      if (isConnectionFailure(err)) deps.endpoints.next(at);
      if (!isConnectionFailure(err) || req.idempotencyKey === undefined || attempt >= deps.retry.retries) {
        const tries = attempt + 1;
        throw new EngineError(
          'ERR_SERVICE_UNAVAILABLE',
          `${req.method} ${req.path}: no response from the service after ${tries} attempt${tries === 1 ? '' : 's'}: ${messageOf(err)}` +
            (req.idempotencyKey === undefined ? '' : ` (idempotency key ${show(req.idempotencyKey)}: retry with it to learn the outcome)`),
          { cause: err, details: { errno: code, attempts: tries, idempotencyKey: req.idempotencyKey } },
        );
      }
      await sleep(backoffMs(attempt, deps.retry));
    }
  }
}
