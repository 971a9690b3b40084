import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { EngineError } from '../../src/errors.js';
import { defaultOptions, fillOptions } from '../../src/options.js';

/** fillOptions(options) must throw ERR_INVALID_CONFIG naming `options.<name>` and the value. */
function expectInvalid(options: unknown, name: string, shown: string): EngineError {
  let caught: unknown;
  try {
    fillOptions(options);
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected fillOptions to throw').toBeInstanceOf(EngineError);
  const err = caught as EngineError;
  expect(err.code).toBe('ERR_INVALID_CONFIG');
  expect(err.message).toContain(`options.${name}`);
  expect(err.message).toContain(shown);
  expect(err.details).toMatchObject({ option: name });
  return err;
}

const dir = '_tmp/options-test';

describe('fillOptions: defaults', () => {
  it('fills every default (DESIGN.md) when only dir is given', () => {
    const cores = availableParallelism();
    expect(fillOptions({ dir })).toEqual({
      dir,
      shards: cores,
      wal: 'mmap',
      sync: 'always',
      syncIntervalMs: 10,
      segmentBytes: 64 * 1024 * 1024,
      snapshotEveryRecords: 1_000_000,
      replayThreads: cores,
      seed: undefined,
      maxPending: 1_048_576,
      archive: false,
      idempotencyKeys: 100_000,
      idempotencyDraws: 4_194_304,
    });
  });

  it('defaultOptions() returns a fresh object each time', () => {
    const a = defaultOptions();
    a.shards = 99;
    expect(defaultOptions().shards).not.toBe(99);
  });

  it('keeps given values and treats an explicit undefined as "use the default"', () => {
    const o = fillOptions({
      dir,
      shards: 3,
      wal: 'file',
      sync: 'interval',
      syncIntervalMs: 25,
      segmentBytes: 4096,
      snapshotEveryRecords: 0,
      replayThreads: 2,
      seed: -7,
      maxPending: 1,
      archive: true,
      idempotencyKeys: 5,
      idempotencyDraws: 9,
    });
    expect(o).toEqual({
      dir,
      shards: 3,
      wal: 'file',
      sync: 'interval',
      syncIntervalMs: 25,
      segmentBytes: 4096,
      snapshotEveryRecords: 0,
      replayThreads: 2,
      seed: -7,
      maxPending: 1,
      archive: true,
      idempotencyKeys: 5,
      idempotencyDraws: 9,
    });
    expect(fillOptions({ dir, shards: undefined }).shards).toBe(availableParallelism());
  });

  it("does not need dir with wal: 'none'", () => {
    const o = fillOptions({ wal: 'none' });
    expect(o.dir).toBeUndefined();
    expect(o.wal).toBe('none');
  });

  it('does not modify the caller object', () => {
    const input = { dir, shards: 2 };
    fillOptions(input);
    expect(input).toEqual({ dir, shards: 2 });
  });

  it('accepts the range limits', () => {
    expect(fillOptions({ dir, shards: 1 }).shards).toBe(1);
    expect(fillOptions({ dir, shards: 256 }).shards).toBe(256);
    expect(fillOptions({ dir, segmentBytes: 1 << 30 }).segmentBytes).toBe(1 << 30);
    expect(fillOptions({ dir, syncIntervalMs: 60_000 }).syncIntervalMs).toBe(60_000);
    expect(fillOptions({ dir, seed: 0 }).seed).toBe(0);
  });
});

describe('fillOptions: one test per option (ERR_INVALID_CONFIG, options.<name>, value)', () => {
  it('options itself must be an object', () => {
    for (const bad of [null, undefined, 5, 'x']) {
      expect(() => fillOptions(bad)).toThrow(EngineError);
      try {
        fillOptions(bad);
      } catch (err) {
        expect((err as EngineError).code).toBe('ERR_INVALID_CONFIG');
        expect((err as EngineError).message).toContain('options');
      }
    }
  });

  it('dir', () => {
    expectInvalid({ dir: '' }, 'dir', 'got ""');
    expectInvalid({ dir: 42 }, 'dir', 'got 42');
    expectInvalid({}, 'dir', 'required');
    expectInvalid({ wal: 'mmap' }, 'dir', 'got undefined');
    expectInvalid({ wal: 'file' }, 'dir', 'required');
  });

  it('shards', () => {
    expectInvalid({ dir, shards: 0 }, 'shards', 'got 0');
    expectInvalid({ dir, shards: 1.5 }, 'shards', 'got 1.5');
    expectInvalid({ dir, shards: 257 }, 'shards', 'got 257');
    expectInvalid({ dir, shards: '2' }, 'shards', 'got "2"');
    expectInvalid({ dir, shards: -1 }, 'shards', 'got -1');
  });

  it('wal', () => {
    const err = expectInvalid({ dir, wal: 'disk' }, 'wal', 'got "disk"');
    expect(err.message).toContain("'mmap', 'file', 'none'");
    expectInvalid({ dir, wal: true }, 'wal', 'got true');
  });

  it('sync', () => {
    const err = expectInvalid({ dir, sync: 'sometimes' }, 'sync', 'got "sometimes"');
    expect(err.message).toContain("'always', 'interval', 'never'");
    expectInvalid({ dir, sync: 1 }, 'sync', 'got 1');
  });

  it('syncIntervalMs', () => {
    expectInvalid({ dir, syncIntervalMs: 0 }, 'syncIntervalMs', 'got 0');
    expectInvalid({ dir, syncIntervalMs: 2.5 }, 'syncIntervalMs', 'got 2.5');
    expectInvalid({ dir, syncIntervalMs: 60_001 }, 'syncIntervalMs', 'got 60001');
  });

  it('segmentBytes', () => {
    const err = expectInvalid({ dir, segmentBytes: 4095 }, 'segmentBytes', 'got 4095');
    expect(err.message).toContain('4096');
    expectInvalid({ dir, segmentBytes: 2 ** 30 + 1 }, 'segmentBytes', `got ${2 ** 30 + 1}`);
    expectInvalid({ dir, segmentBytes: '64MiB' }, 'segmentBytes', 'got "64MiB"');
  });

  it('snapshotEveryRecords', () => {
    expectInvalid({ dir, snapshotEveryRecords: -1 }, 'snapshotEveryRecords', 'got -1');
    expectInvalid({ dir, snapshotEveryRecords: 0.5 }, 'snapshotEveryRecords', 'got 0.5');
  });

  it('replayThreads', () => {
    expectInvalid({ dir, replayThreads: 0 }, 'replayThreads', 'got 0');
    expectInvalid({ dir, replayThreads: 300 }, 'replayThreads', 'got 300');
  });

  it('seed', () => {
    expectInvalid({ dir, seed: 1.5 }, 'seed', 'got 1.5');
    expectInvalid({ dir, seed: '42' }, 'seed', 'got "42"');
    expectInvalid({ dir, seed: 2 ** 53 }, 'seed', 'got 9007199254740992');
  });

  it('maxPending', () => {
    expectInvalid({ dir, maxPending: 0 }, 'maxPending', 'got 0');
    expectInvalid({ dir, maxPending: 2 ** 30 + 1 }, 'maxPending', `got ${2 ** 30 + 1}`);
  });

  it('archive', () => {
    expectInvalid({ dir, archive: 'yes' }, 'archive', 'got "yes"');
    expectInvalid({ dir, archive: 1 }, 'archive', 'got 1');
  });

  it('idempotencyKeys', () => {
    expectInvalid({ dir, idempotencyKeys: 0 }, 'idempotencyKeys', 'got 0');
    expectInvalid({ dir, idempotencyKeys: 1.5 }, 'idempotencyKeys', 'got 1.5');
    expectInvalid({ dir, idempotencyKeys: '10' }, 'idempotencyKeys', 'got "10"');
  });

  it('idempotencyDraws', () => {
    expectInvalid({ dir, idempotencyDraws: 0 }, 'idempotencyDraws', 'got 0');
    expectInvalid({ dir, idempotencyDraws: 2 ** 41 }, 'idempotencyDraws', `got ${2 ** 41}`);
  });

  it('unknown key', () => {
    const err = expectInvalid({ dir, shard: 2 }, 'shard', 'got 2');
    expect(err.message).toContain('not a known option');
    expectInvalid({ dir, walMode: 'mmap' }, 'walMode', 'got "mmap"');
  });

  it('non-finite numbers are named as such in the message', () => {
    // JSON.stringify turns NaN and Infinity into "null", which hides the offending value.
    expectInvalid({ dir, shards: NaN }, 'shards', 'NaN');
    expectInvalid({ dir, syncIntervalMs: Infinity }, 'syncIntervalMs', 'Infinity');
  });
});
