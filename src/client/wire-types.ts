/**
 * Shapes of the service's responses as the client checks them: a response that does not match
 * is ERR_INTERNAL (the wire format is broken), never a half-built result.
 */
import { EngineError, show } from '../errors.js';
import type { DrawResult, EngineMetrics, PoolState } from '../index.js';
import { decodeIndices } from '../wire.js';

export const kEmptyDrawIndex = 0xffff;

/** POST /v1/pools/:pool/draws with "indices": true, decoded. */
export interface DrawsResponse {
  firstRequestId: number;
  count: number;
  items: string[];
  indices: Uint16Array;
}

function bad(what: string, value: unknown): never {
  throw new EngineError('ERR_INTERNAL', `the service answered ${what} with an unexpected body: ${show(value)}`);
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isId = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

export function parseDrawsResponse(body: unknown, count: number, what: string): DrawsResponse {
  if (!isRecord(body) || !isId(body.firstRequestId) || body.count !== count || !Array.isArray(body.items) || typeof body.indices !== 'string') bad(what, body);
  const items = body.items as unknown[];
  if (!items.every((i) => typeof i === 'string')) bad(what, body);
  const indices = decodeIndices(body.indices as string, count);
  if (indices === undefined) bad(`${what} (indices)`, (body.indices as string).slice(0, 40));
  for (let i = 0; i < indices.length; i++) {
    const idx = indices[i]!;
    if (idx !== kEmptyDrawIndex && idx >= items.length) bad(`${what} (index ${idx} of ${items.length} items)`, idx);
  }
  return { firstRequestId: body.firstRequestId as number, count, items: items as string[], indices };
}

export function parseDrawResult(body: unknown, what: string): DrawResult {
  if (!isRecord(body) || !isId(body.requestId) || !(body.itemId === null || typeof body.itemId === 'string')) bad(what, body);
  return { requestId: body.requestId as number, itemId: body.itemId as string | null };
}

export function parsePoolState(body: unknown, what: string): PoolState {
  if (!isRecord(body) || typeof body.id !== 'string' || !isId(body.lastRequestId) || !Array.isArray(body.items)) bad(what, body);
  const items = (body.items as unknown[]).map((it) => {
    if (!isRecord(it) || typeof it.id !== 'string' || typeof it.weight !== 'number' || typeof it.quantity !== 'number' || typeof it.drawn !== 'number') bad(what, it);
    return { id: it.id as string, weight: it.weight as number, quantity: it.quantity as number, drawn: it.drawn as number };
  });
  return { id: body.id as string, lastRequestId: body.lastRequestId as number, items };
}

export function parsePoolIds(body: unknown, what: string): string[] {
  if (!isRecord(body) || !Array.isArray(body.pools) || !body.pools.every((p) => typeof p === 'string')) bad(what, body);
  return body.pools as string[];
}

export function parseMetrics(body: unknown, what: string): EngineMetrics {
  if (!isRecord(body) || !isRecord(body.engine) || !Array.isArray(body.engine.shards)) bad(what, body);
  return body.engine as unknown as EngineMetrics;
}
