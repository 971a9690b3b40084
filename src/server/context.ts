/**
 * What the route plugins share: the engine (through the narrow interface the service uses),
 * the limits, and the server's lifecycle flags. Passed to each plugin as its options.
 */
// Types only, from the public entry (erased at run time: nothing of the engine is loaded here).
import type { DrawBatch, DrawResult, EngineMetrics, ItemPatch, ItemSpec, PoolState } from '../index.js';

/** Options of idempotent draws (DESIGN.md "Idempotent draws"). */
export interface DrawOptions {
  /** 1-128 characters; a repeated call with the same key returns the original outcome. */
  idempotencyKey?: string;
}

/**
 * The engine methods the service calls. DrawEngine satisfies it; so can a wrapper (tests, a
 * follower that forwards writes).
 */
export interface ServedEngine {
  createPool(poolId: string, items: ItemSpec[]): Promise<void>;
  draw(poolId: string, options?: DrawOptions): Promise<DrawResult>;
  drawMany(poolId: string, count: number, options?: DrawOptions): Promise<DrawBatch>;
  updateItem(poolId: string, itemId: string, patch: ItemPatch): Promise<void>;
  pool(poolId: string): Promise<PoolState>;
  poolIds(): string[];
  snapshot(): Promise<void>;
  metrics(): EngineMetrics;
  /** Replication: a follower takes over (POST /v1/promote). */
  promote?(): Promise<void>;
  close(): Promise<void>;
  once(event: 'close', listener: () => void): unknown;
}

export interface Limits {
  /** Largest request body in bytes. */
  bodyBytes: number;
  /** Largest `count` of one POST /v1/pools/:pool/draws. */
  maxDrawCount: number;
  /** Largest catalog of one POST /v1/pools. */
  maxItems: number;
}

export interface ServiceContext {
  engine: ServedEngine;
  limits: Limits;
  /** Set when the server starts closing: readyz turns 503, new requests get 503. */
  closing: boolean;
  /** Set once the engine emitted 'close' (closed by the server or by its owner). */
  engineClosed: boolean;
  retryAfterSeconds: number;
  startedAt: number;
}
