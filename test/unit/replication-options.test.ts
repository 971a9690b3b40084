import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EngineError } from '../../src/errors.js';
import { fillReplication } from '../../src/replication/options.js';

/* options.ts fillReplication: defaults, and ERR_INVALID_CONFIG naming the option for every bad value. */

const base = { servers: ['nats://127.0.0.1:4222'], stream: 'rewards' };

/** fillReplication must throw ERR_INVALID_CONFIG naming `options.replication.<key>` and showing the value. */
function expectInvalid(value: unknown, key: string, shown: string): EngineError {
  let caught: unknown;
  try {
    fillReplication(value, 'data');
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected ${key} to be refused`).toBeInstanceOf(EngineError);
  const err = caught as EngineError;
  expect(err.code).toBe('ERR_INVALID_CONFIG');
  const name = key === '' ? 'options.replication' : `options.replication.${key}`;
  expect(err.message.startsWith(`${name} `), err.message).toBe(true);
  expect(err.message).toContain(shown);
  return err;
}

describe('fillReplication: defaults', () => {
  it('fills every default', () => {
    const filled = fillReplication(base, 'data/rewards');
    expect(filled).toEqual({
      servers: ['nats://127.0.0.1:4222'],
      stream: 'rewards',
      replicas: 3,
      role: 'leader',
      leaseMs: 3000,
      autoPromote: false,
      node: `${hostname()}:${resolve('data/rewards')}`.slice(-128),
      advertise: undefined,
      timeoutMs: 5000,
      maxMessageBytes: 1_048_576,
    });
    expect(filled.servers).not.toBe(base.servers); // a copy
  });

  it('keeps given values, and the bounds of every range', () => {
    const given = {
      servers: ['nats://a:4222', 'nats://b:4222'],
      stream: 'A-z_09',
      replicas: 1,
      role: 'follower' as const,
      leaseMs: 200,
      autoPromote: true,
      node: 'n'.repeat(128),
      advertise: 'https://10.0.0.6:8443',
      timeoutMs: 100,
      maxMessageBytes: 64 * 1024,
    };
    expect(fillReplication(given, undefined)).toEqual(given);
    const top = { ...base, replicas: 5, leaseMs: 600_000, timeoutMs: 600_000, maxMessageBytes: 64 * 1024 * 1024, stream: 's'.repeat(64) };
    expect(fillReplication(top, undefined)).toMatchObject(top);
  });

  it('names the node after the host and the absolute directory, keeping the last 128 characters', () => {
    const dir = `/${'d'.repeat(200)}/data`;
    const node = fillReplication(base, dir).node;
    expect(node).toHaveLength(128);
    expect(node.endsWith('/data')).toBe(true);
    expect(fillReplication(base, undefined).node).toBe(`${hostname()}:${resolve('.')}`.slice(-128));
  });

  it('reads each option once', () => {
    const reads = new Map<string, number>();
    const counted = new Proxy({ ...base, leaseMs: 1000 }, {
      get(target, key, receiver) {
        if (typeof key === 'string') reads.set(key, (reads.get(key) ?? 0) + 1);
        return Reflect.get(target, key, receiver) as unknown;
      },
    });
    fillReplication(counted, 'data');
    expect(Math.max(...reads.values())).toBe(1);
  });
});

describe('fillReplication: every bad value is ERR_INVALID_CONFIG naming the option', () => {
  it('the option itself', () => {
    for (const v of [null, undefined, 'nats://x', 5, true]) expectInvalid(v, '', 'must be an object');
    const err = expectInvalid({ ...base, server: 'x' }, 'server', 'is not a known option');
    expect(err.details).toEqual({ option: 'replication.server', value: 'x' });
  });

  it('servers', () => {
    const cases: [unknown, string][] = [
      [undefined, 'got undefined'],
      ['nats://x', 'got "nats://x"'],
      [[], 'got []'],
      [[''], 'got [""]'],
      [[5], 'got [5]'],
      [['nats://a', null], 'got ["nats://a",null]'],
      [['x'.repeat(512)], 'must be a non-empty array of NATS URLs'],
      [Array.from({ length: 65 }, (_, i) => `nats://h${i}`), 'must be a non-empty array of NATS URLs'],
    ];
    for (const [v, shown] of cases) {
      const err = expectInvalid({ ...base, servers: v }, 'servers', shown);
      expect(err.details.option).toBe('replication.servers');
    }
    expect(fillReplication({ ...base, servers: Array.from({ length: 64 }, (_, i) => `nats://h${i}`) }, 'd').servers).toHaveLength(64);
  });

  it('stream', () => {
    for (const v of [undefined, '', 'a.b', 'a b', 'a*', 's'.repeat(65), 5]) expectInvalid({ ...base, stream: v }, 'stream', 'must be 1-64 characters of A-Z a-z 0-9 _ -');
  });

  it('integers: replicas, leaseMs, timeoutMs, maxMessageBytes', () => {
    const cases: [string, unknown[], string][] = [
      ['replicas', [0, 6, 1.5, '3', Number.NaN, -1], 'must be an integer from 1 to 5'],
      ['leaseMs', [199, 600_001, 1000.5, Infinity, '3000'], 'must be an integer from 200 to 600000'],
      ['timeoutMs', [99, 600_001, null], 'must be an integer from 100 to 600000'],
      ['maxMessageBytes', [65_535, 64 * 1024 * 1024 + 1, 2 ** 53], `must be an integer from 65536 to ${64 * 1024 * 1024}`],
    ];
    for (const [key, values, rule] of cases) {
      for (const v of values) {
        const err = expectInvalid({ ...base, [key]: v }, key, rule);
        expect(err.details).toEqual({ option: `replication.${key}`, value: v });
      }
    }
    expectInvalid({ ...base, replicas: 0 }, 'replicas', 'got 0');
    expectInvalid({ ...base, leaseMs: Number.NaN }, 'leaseMs', 'got NaN');
  });

  it('role, autoPromote, node, advertise', () => {
    expectInvalid({ ...base, role: 'boss' }, 'role', `must be 'leader' or 'follower', got "boss"`);
    expectInvalid({ ...base, autoPromote: 'yes' }, 'autoPromote', 'must be a boolean, got "yes"');
    expectInvalid({ ...base, autoPromote: 1 }, 'autoPromote', 'must be a boolean');
    for (const v of ['', 'n'.repeat(129), 5]) expectInvalid({ ...base, node: v }, 'node', 'must be a string of 1-128 characters');
    for (const v of ['', 'h'.repeat(2049), 5]) expectInvalid({ ...base, advertise: v }, 'advertise', 'must be a URL string');
  });

  it('an option whose getter throws: ERR_INVALID_CONFIG naming it, the error as cause', () => {
    const boom = new Error('boom');
    const value = Object.defineProperty({ ...base }, 'leaseMs', {
      enumerable: true,
      get() {
        throw boom;
      },
    });
    const err = expectInvalid(value, 'leaseMs', 'could not be read: boom');
    expect(err.cause).toBe(boom);
    const keys = new Proxy(
      {},
      {
        ownKeys() {
          throw boom;
        },
      },
    );
    expect(expectInvalid(keys, '', 'could not be read').cause).toBe(boom);
  });
});

describe('regressions', () => {
  it('replication-servers-holes-and-getters: a sparse servers array, or one whose element throws, is ERR_INVALID_CONFIG', () => {
    const sparse = [, 'nats://a:4222'];
    const err = expectInvalid({ ...base, servers: sparse }, 'servers', 'must be a non-empty array of NATS URLs');
    expect(err.details.option).toBe('replication.servers');
    const boom = new Error('boom');
    const throwing = Object.defineProperty(['nats://a:4222', 'nats://b:4222'], 1, {
      get() {
        throw boom;
      },
    });
    const err2 = expectInvalid({ ...base, servers: throwing }, 'servers', 'could not be read: boom');
    expect(err2.cause).toBe(boom);
  });

  it("replication-role-null-is-refused: role null is ERR_INVALID_CONFIG, like every other option's null (it became 'leader')", () => {
    const err = expectInvalid({ ...base, role: null }, 'role', "must be 'leader' or 'follower', got null");
    expect(err.details).toEqual({ option: 'replication.role', value: null });
  });
});
