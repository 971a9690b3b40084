import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { codes, EngineError, errorFromWire, errorToWire, show, storageError, type ErrorCode } from '../../src/errors.js';

/** The codes DESIGN.md fixes, in its order. */
const kDesignCodes = [
  'ERR_INVALID_CONFIG',
  'ERR_INVALID_ARGUMENT',
  'ERR_UNKNOWN_POOL',
  'ERR_UNKNOWN_ITEM',
  'ERR_POOL_EXISTS',
  'ERR_ENGINE_CLOSED',
  'ERR_DIR_LOCKED',
  'ERR_CORRUPT_WAL',
  'ERR_CORRUPT_SNAPSHOT',
  'ERR_SHARD_FAILED',
  'ERR_DISK_FULL',
  'ERR_IDEMPOTENCY_MISMATCH',
  'ERR_NOT_LEADER',
  'ERR_REPLICATION_UNAVAILABLE',
];

/** The service's own codes (HTTP server and client), DESIGN.md "Service (HTTP)" and docs/wire.md. */
const kServiceCodes = [
  'ERR_INVALID_REQUEST',
  'ERR_UNAUTHORIZED',
  'ERR_FORBIDDEN',
  'ERR_PAYLOAD_TOO_LARGE',
  'ERR_SERVICE_UNAVAILABLE',
  'ERR_INTERNAL',
];

describe('codes', () => {
  it('has exactly the 14 codes of DESIGN.md and the 6 of the service', () => {
    expect(Object.keys(codes)).toHaveLength(20);
    expect(Object.keys(codes).sort()).toEqual([...kDesignCodes, ...kServiceCodes].sort());
  });

  it('each key is the code an EngineError built from it carries, with a default message', () => {
    for (const key of Object.keys(codes) as ErrorCode[]) {
      const err = new EngineError(key);
      expect(err.code).toBe(key);
      expect(err.name).toBe('EngineError');
      expect(err.message).toBe(codes[key]);
      expect(typeof codes[key]).toBe('string');
      expect(codes[key].length).toBeGreaterThan(0);
      expect(err.details).toEqual({});
    }
  });
});

describe('EngineError', () => {
  it('is an Error and an EngineError, keeps message, details and cause', () => {
    const cause = new Error('root');
    const err = new EngineError('ERR_UNKNOWN_POOL', 'no pool with id "x"', { cause, details: { poolId: 'x' } });
    expect(err).toBeInstanceOf(Error);
    expect(err).toBeInstanceOf(EngineError);
    expect(err.message).toBe('no pool with id "x"');
    expect(err.details).toEqual({ poolId: 'x' });
    expect(err.cause).toBe(cause);
    expect(err.stack).toContain('no pool with id');
  });

  it('has no cause property when none was given', () => {
    expect('cause' in new EngineError('ERR_DISK_FULL')).toBe(false);
  });

  it('instanceof recognizes a look-alike from a duplicate install (Symbol.for brand)', () => {
    const brand = Symbol.for('reward-pool-engine.EngineError');
    const lookAlike = { code: 'ERR_UNKNOWN_POOL', message: 'x', [brand]: true };
    expect(lookAlike instanceof EngineError).toBe(true);
    class OtherCopy extends Error {
      get [brand](): true {
        return true;
      }
    }
    expect(new OtherCopy('y') instanceof EngineError).toBe(true);
  });

  it('instanceof rejects plain errors and non-objects', () => {
    expect(new Error('x') instanceof EngineError).toBe(false);
    expect(Object.assign(new Error('x'), { code: 'ERR_UNKNOWN_POOL' }) instanceof EngineError).toBe(false);
    expect({ [Symbol.for('reward-pool-engine.EngineError')]: 'yes' } instanceof EngineError).toBe(false);
    expect((null as unknown) instanceof EngineError).toBe(false);
    expect(('ERR_UNKNOWN_POOL' as unknown) instanceof EngineError).toBe(false);
  });
});

describe('errorToWire / errorFromWire', () => {
  it('round-trips code, message, details and stack through structured clone', () => {
    const err = new EngineError('ERR_CORRUPT_WAL', '/d/shard-0/0000000001.wal at offset 96: record checksum mismatch', {
      details: { file: '/d/shard-0/0000000001.wal', offset: 96, reason: 'record checksum mismatch' },
    });
    // What postMessage does to the wire form.
    const wire = structuredClone(errorToWire(err));
    const back = errorFromWire(wire);
    expect(back).toBeInstanceOf(EngineError);
    expect(back.code).toBe('ERR_CORRUPT_WAL');
    expect(back.message).toBe(err.message);
    expect(back.details).toEqual(err.details);
    expect(back.stack).toBe(err.stack);
  });

  it('round-trips every code', () => {
    for (const code of Object.keys(codes) as ErrorCode[]) {
      const back = errorFromWire(structuredClone(errorToWire(new EngineError(code, `m-${code}`, { details: { n: 1 } }))));
      expect(back.code).toBe(code);
      expect(back.message).toBe(`m-${code}`);
      expect(back.details).toEqual({ n: 1 });
    }
  });

  it('a plain error keeps its message and string code on the wire', () => {
    const plain = Object.assign(new Error('boom'), { code: 'EIO' });
    const wire = errorToWire(plain);
    expect(wire).toMatchObject({ code: 'EIO', message: 'boom' });
    expect(wire.stack).toContain('boom');
  });

  it('a thrown non-error becomes ERR_SHARD_FAILED with its text', () => {
    expect(errorToWire('oops')).toMatchObject({ code: 'ERR_SHARD_FAILED', message: 'oops' });
    expect(errorToWire(undefined)).toMatchObject({ code: 'ERR_SHARD_FAILED', message: 'undefined' });
  });

  it('an unknown code comes back as ERR_SHARD_FAILED', () => {
    const back = errorFromWire({ code: 'EIO', message: 'io' });
    expect(back.code).toBe('ERR_SHARD_FAILED');
    expect(back.message).toBe('io');
    expect(back.details).toEqual({});
  });

  it('a code that is an Object.prototype property name is not mistaken for a known code', () => {
    for (const code of ['toString', 'constructor', 'hasOwnProperty', '__proto__']) {
      expect(errorFromWire({ code, message: 'm' }).code).toBe('ERR_SHARD_FAILED');
    }
  });
});

describe('storageError', () => {
  it('maps ENOSPC and EDQUOT to ERR_DISK_FULL, keeping the cause and naming the operation', () => {
    const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    const err = storageError(enospc, 'cannot create segment /d/shard-0/0000000002.wal');
    expect(err.code).toBe('ERR_DISK_FULL');
    expect(err.message).toContain('cannot create segment /d/shard-0/0000000002.wal');
    expect(err.message).toContain('no space left on device');
    expect(err.cause).toBe(enospc);
    expect(err.details).toEqual({ errno: 'ENOSPC' });
    expect(storageError(Object.assign(new Error('quota'), { code: 'EDQUOT' }), 'w').code).toBe('ERR_DISK_FULL');
  });

  it("maps msync's 'msync() failed, 28' message form (errno 28 = ENOSPC) to ERR_DISK_FULL", () => {
    const err = storageError(new Error('msync() failed, 28'), 'msync of segment 3 failed');
    expect(err.code).toBe('ERR_DISK_FULL');
    expect(err.message).toContain('msync() failed, 28');
    expect(err.details).toEqual({ errno: '28' });
    expect(storageError(new Error('mmap failed, 122'), 'map').code).toBe('ERR_DISK_FULL');
  });

  it('maps other failures to ERR_SHARD_FAILED', () => {
    expect(storageError(Object.assign(new Error('EIO: i/o error'), { code: 'EIO' }), 'write').code).toBe('ERR_SHARD_FAILED');
    expect(storageError(new Error('msync() failed, 5'), 'sync').code).toBe('ERR_SHARD_FAILED');
    expect(storageError(new Error('msync() failed, 280'), 'sync').code).toBe('ERR_SHARD_FAILED');
    expect(storageError('weird', 'op').message).toContain('weird');
  });

  it('passes an EngineError through unchanged', () => {
    const original = new EngineError('ERR_DISK_FULL', 'already mapped');
    expect(storageError(original, 'again')).toBe(original);
  });
});

describe('show', () => {
  it('renders values for messages, shortening long ones', () => {
    expect(show('abc')).toBe('"abc"');
    expect(show(12)).toBe('12');
    expect(show(undefined)).toBe('undefined');
    expect(show(null)).toBe('null');
    expect(show(10n)).toBe('10n');
    expect(show(() => 1)).toBe('[function]');
    expect(show({ a: [1, 2] })).toBe('{"a":[1,2]}');
    expect(show('z'.repeat(500)).length).toBeLessThan(150);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(typeof show(cyclic)).toBe('string');
  });

  it('renders non-finite numbers as themselves, not as null', () => {
    expect(show(NaN)).toBe('NaN');
    expect(show(Infinity)).toBe('Infinity');
    expect(show(-Infinity)).toBe('-Infinity');
  });
});

describe('docs/errors.md', () => {
  const text = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  const lines = text.split('\n');

  it('has a | Code | Description | How to solve | table', () => {
    expect(lines.map((l) => l.trim())).toContain('| Code | Description | How to solve |');
  });

  const rows = lines.filter((l) => /^\|\s*`?ERR_/.test(l));
  const documented = rows.map((l) => /^\|\s*`?(ERR_[A-Z_]+)`?\s*\|/.exec(l)![1]!);

  it('documents every code of src/errors.ts', () => {
    for (const code of Object.keys(codes)) expect(documented, `${code} missing from docs/errors.md`).toContain(code);
  });

  it('documents no code that src/errors.ts lacks, and none twice', () => {
    for (const code of documented) expect(Object.keys(codes), `${code} documented but not in codes`).toContain(code);
    expect(new Set(documented).size).toBe(documented.length);
    expect(documented).toHaveLength(Object.keys(codes).length);
  });

  it('fills the description and how-to-solve cells of every row', () => {
    for (const row of rows) {
      const cells = row.split('|').slice(1, -1).map((c) => c.trim());
      expect(cells, row).toHaveLength(3);
      expect(cells[1]!.length, `description of ${cells[0]}`).toBeGreaterThan(20);
      expect(cells[2]!.length, `how to solve ${cells[0]}`).toBeGreaterThan(20);
    }
  });
});
