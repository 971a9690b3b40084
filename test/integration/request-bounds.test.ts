/**
 * The bounds of one call (README, Limits): the table says what the code enforces, and a call
 * just past each bound is refused with its code before anything is allocated for it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kMaxIdLength, kMaxItems, kMaxTotalWeight } from '../../dist/src/catalog.js';
import { fillOptions } from '../../dist/src/options.js';
import { fillReplication } from '../../dist/src/replication/options.js';
import { kDefaultLimits } from '../../dist/src/server/options.js';
import { kIdempotencyKeyPattern } from '../../dist/src/wire.js';
import { DrawEngine, kMaxDrawMany } from '../../dist/src/index.js';
import { root } from '../helpers/server.js';
import { tmpDir } from '../helpers/tmp.js';

/** The README's "Bounds of one call" rows: input -> the first number of its bound. */
function readmeBounds(): Map<string, number> {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const at = readme.indexOf('**Bounds of one call.**');
  expect(at).toBeGreaterThan(0);
  const rows = new Map<string, number>();
  for (const line of readme.slice(at).split('\n').slice(1)) {
    const m = /^\s*\| ([^|]+?) \| ([^|]+?) \|/.exec(line);
    if (m === null) {
      if (rows.size > 0) break;
      continue;
    }
    const n = /^(2\^\d+|\d[\d,]*)/.exec(m[2]!.trim());
    if (n === null) continue;
    rows.set(m[1]!, n[1]!.startsWith('2^') ? 2 ** Number(n[1]!.slice(2)) : Number(n[1]!.replaceAll(',', '')));
  }
  return rows;
}

describe('bounds of one call', () => {
  it('the README table states the bounds the code enforces', () => {
    const rows = readmeBounds();
    const defaults = fillOptions({ wal: 'none' });
    const keyMax = Number(/\{1,(\d+)\}/.exec(kIdempotencyKeyPattern)![1]);
    expect(Object.fromEntries(rows)).toEqual({
      '`drawMany` count': kMaxDrawMany,
      'catalog of `createPool`': kMaxItems,
      'pool and item ids': kMaxIdLength,
      "a pool's total weight": kMaxTotalWeight,
      'idempotency key': keyMax,
      'kept idempotency outcomes': defaults.idempotencyKeys,
      'draws queued per shard': defaults.maxPending,
      'HTTP request body': kDefaultLimits.bodyBytes,
      'HTTP draws per request': kDefaultLimits.maxDrawCount,
      'HTTP catalog': kDefaultLimits.maxItems,
      'replication message': fillReplication({ servers: ['nats://127.0.0.1:4222'], stream: 's' }, undefined).maxMessageBytes,
    });
    expect(defaults.idempotencyDraws).toBe(4_194_304);
  });

  let engine: DrawEngine;
  beforeAll(async () => {
    engine = await DrawEngine.open({ dir: tmpDir('bounds'), shards: 1, wal: 'file', segmentBytes: 1 << 20 });
    await engine.createPool('p', [
      { id: 'a', weight: 2 ** 47, quantity: -1 },
      { id: 'b', weight: 1, quantity: -1 },
    ]);
  });
  afterAll(() => engine?.close());

  const items = (n: number): { id: string; weight: number; quantity: number }[] => Array.from({ length: n }, (_, i) => ({ id: `i${i}`, weight: 1, quantity: 1 }));

  it.each([
    ['drawMany count', () => engine.drawMany('p', kMaxDrawMany + 1), 'ERR_INVALID_ARGUMENT', String(kMaxDrawMany + 1)],
    ['drawMany count 2^53', () => engine.drawMany('p', 2 ** 53), 'ERR_INVALID_ARGUMENT', String(2 ** 53)],
    ['catalog', () => engine.createPool('big', items(kMaxItems + 1)), 'ERR_INVALID_CONFIG', String(kMaxItems + 1)],
    ['pool id', () => engine.draw('x'.repeat(kMaxIdLength + 1)), 'ERR_INVALID_ARGUMENT', 'x'.repeat(kMaxIdLength + 1)],
    ['item id', () => engine.createPool('q', [{ id: 'y'.repeat(kMaxIdLength + 1), weight: 1, quantity: 1 }]), 'ERR_INVALID_CONFIG', 'y'.repeat(20)],
    ['total weight', () => engine.updateItem('p', 'b', { weight: 2 ** 47 + 1 }), 'ERR_INVALID_ARGUMENT', String(2 ** 47 + 1)],
    ['idempotency key', () => engine.draw('p', { idempotencyKey: 'k'.repeat(kMaxIdLength + 1) }), 'ERR_INVALID_ARGUMENT', 'k'.repeat(20)],
    ['keyed call larger than a segment', () => engine.drawMany('p', 1 << 21, { idempotencyKey: 'big' }), 'ERR_INVALID_ARGUMENT', String(1 << 21)],
  ] as const)('%s: refused with its code and the value, nothing allocated for it, nothing changed', async (_name, call, code, value) => {
    const before = { ids: engine.poolIds(), draws: engine.metrics().draws, state: await engine.pool('p') };
    const buffers = process.memoryUsage().arrayBuffers;
    const err = await call().then(
      () => undefined,
      (e: unknown) => e as { code?: string; message?: string },
    );
    expect(err?.code).toBe(code);
    expect(err?.message).toContain(value);
    // A refused 2^53-draw call did not reserve its indices first (that would be 16 PiB; 2^24+1 would be 32 MiB).
    expect(process.memoryUsage().arrayBuffers - buffers).toBeLessThan(8 << 20);
    expect({ ids: engine.poolIds(), draws: engine.metrics().draws, state: await engine.pool('p') }).toEqual(before);
  });
});
