import { describe, expect, it } from 'vitest';
import { checkPoolId, kMaxIdLength, kMaxItems, kMaxTotalWeight, validateCatalog, validatePatch } from '../../src/catalog.js';
import { EngineError } from '../../src/errors.js';

/** Run fn, expect an EngineError with `code` whose message contains every fragment. */
function expectError(fn: () => unknown, code: string, ...fragments: string[]): EngineError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected a throw').toBeInstanceOf(EngineError);
  const err = caught as EngineError;
  expect(err.code).toBe(code);
  for (const f of fragments) expect(err.message).toContain(f);
  return err;
}

const ok = [
  { id: 'diamond', weight: 10, quantity: 100 },
  { id: 'mud', weight: 70, quantity: -1 },
];

describe('validateCatalog: accepted catalogs', () => {
  it('returns a normalized copy holding only id, weight and quantity', () => {
    const input = [
      { id: 'diamond', weight: 10, quantity: 100, extra: 'x' },
      { id: 'mud', weight: 70, quantity: -1 },
      { id: 'none-left', weight: 1, quantity: 0 },
    ];
    const out = validateCatalog('spring', input);
    expect(out).toEqual([
      { id: 'diamond', weight: 10, quantity: 100 },
      { id: 'mud', weight: 70, quantity: -1 },
      { id: 'none-left', weight: 1, quantity: 0 },
    ]);
    expect(out).not.toBe(input);
    expect(out[0]).not.toBe(input[0]);
  });

  it('accepts the limits: 1 item, 65,534 items, 128-character ids, total weight exactly 2^48', () => {
    expect(validateCatalog('p', [{ id: 'a', weight: 1, quantity: 0 }])).toHaveLength(1);
    const many = Array.from({ length: kMaxItems }, (_, i) => ({ id: `i${i}`, weight: 1, quantity: -1 }));
    expect(validateCatalog('p', many)).toHaveLength(65_534);
    expect(validateCatalog('p', [{ id: 'x'.repeat(128), weight: 1, quantity: 1 }])[0]!.id).toHaveLength(128);
    expect(
      validateCatalog('p', [
        { id: 'a', weight: 2 ** 47, quantity: 1 },
        { id: 'b', weight: 2 ** 47, quantity: 1 },
      ]),
    ).toHaveLength(2);
    expect(validateCatalog('p', [{ id: 'a', weight: 2 ** 48, quantity: 1 }])).toHaveLength(1);
  });

  it('exports the documented limits', () => {
    expect(kMaxItems).toBe(65_534);
    expect(kMaxIdLength).toBe(128);
    expect(kMaxTotalWeight).toBe(2 ** 48);
  });
});

describe('validateCatalog: rejected catalogs (ERR_INVALID_CONFIG naming the value)', () => {
  it('items is not an array', () => {
    const err = expectError(() => validateCatalog('spring', { id: 'a' }), 'ERR_INVALID_CONFIG', 'items must be an array', '{"id":"a"}', '"spring"');
    expect(err.details).toMatchObject({ poolId: 'spring' });
    expectError(() => validateCatalog('spring', 'abc'), 'ERR_INVALID_CONFIG', 'items must be an array', '"abc"');
    expectError(() => validateCatalog('spring', undefined), 'ERR_INVALID_CONFIG', 'items must be an array', 'undefined');
  });

  it('empty catalog', () => {
    expectError(() => validateCatalog('spring', []), 'ERR_INVALID_CONFIG', '1 to 65534', 'got 0');
  });

  it('more than 65,534 items', () => {
    const many = Array.from({ length: kMaxItems + 1 }, (_, i) => ({ id: `i${i}`, weight: 1, quantity: -1 }));
    expectError(() => validateCatalog('spring', many), 'ERR_INVALID_CONFIG', '65534', 'got 65535');
  });

  it('an entry that is not an object', () => {
    expectError(() => validateCatalog('spring', [ok[0], null]), 'ERR_INVALID_CONFIG', 'items[1]', 'null');
    expectError(() => validateCatalog('spring', [7]), 'ERR_INVALID_CONFIG', 'items[0]', 'got 7');
  });

  it('empty item id', () => {
    expectError(() => validateCatalog('spring', [{ id: '', weight: 1, quantity: 1 }]), 'ERR_INVALID_CONFIG', 'items[0].id', 'got ""');
  });

  it('item id longer than 128 characters', () => {
    const long = 'y'.repeat(129);
    expectError(() => validateCatalog('spring', [ok[0], { id: long, weight: 1, quantity: 1 }]), 'ERR_INVALID_CONFIG', 'items[1].id', `"${long}"`);
  });

  it('non-string item id', () => {
    expectError(() => validateCatalog('spring', [{ id: 42, weight: 1, quantity: 1 }]), 'ERR_INVALID_CONFIG', 'items[0].id', 'got 42');
    expectError(() => validateCatalog('spring', [{ weight: 1, quantity: 1 }]), 'ERR_INVALID_CONFIG', 'items[0].id', 'got undefined');
  });

  it('duplicate item id', () => {
    expectError(
      () => validateCatalog('spring', [ok[0], ok[1], { id: 'diamond', weight: 5, quantity: 5 }]),
      'ERR_INVALID_CONFIG',
      'items[2].id',
      'duplicate',
      '"diamond"',
    );
  });

  it.each([
    ['0', 0, 'got 0'],
    ['negative', -5, 'got -5'],
    ['non-integer', 1.5, 'got 1.5'],
    ['unsafe integer', 2 ** 53, 'got 9007199254740992'],
    ['above 2^48 on its own', 2 ** 48 + 1, 'got 281474976710657'],
    ['a string', '10', 'got "10"'],
  ])('weight %s', (_name, weight, fragment) => {
    const err = expectError(
      () => validateCatalog('spring', [ok[0], { id: 'bad', weight, quantity: 1 }]),
      'ERR_INVALID_CONFIG',
      'items[1].weight',
      fragment as string,
    );
    expect(err.details).toMatchObject({ poolId: 'spring', value: weight });
  });

  it('weight NaN or Infinity: the message names the value as NaN / Infinity', () => {
    // JSON.stringify renders both as "null", which would hide the offending value.
    expectError(() => validateCatalog('spring', [{ id: 'a', weight: NaN, quantity: 1 }]), 'ERR_INVALID_CONFIG', 'items[0].weight', 'NaN');
    expectError(() => validateCatalog('spring', [{ id: 'a', weight: Infinity, quantity: 1 }]), 'ERR_INVALID_CONFIG', 'items[0].weight', 'Infinity');
  });

  it.each([
    ['-2', -2, 'got -2'],
    ['1.5', 1.5, 'got 1.5'],
    ['missing', undefined, 'got undefined'],
    ['a string', '5', 'got "5"'],
  ])('quantity %s', (_name, quantity, fragment) => {
    expectError(
      () => validateCatalog('spring', [{ id: 'bad', weight: 1, quantity }]),
      'ERR_INVALID_CONFIG',
      'items[0].quantity',
      fragment as string,
    );
  });

  it('total weight above 2^48', () => {
    const items = [
      { id: 'a', weight: 2 ** 47, quantity: 1 },
      { id: 'b', weight: 2 ** 47, quantity: 1 },
      { id: 'c', weight: 1, quantity: 1 },
    ];
    expectError(() => validateCatalog('spring', items), 'ERR_INVALID_CONFIG', 'total weight', '2^48', String(2 ** 48 + 1));
  });

  it('counts the weight of exhausted items too (total is over the catalog, not availability)', () => {
    const items = [
      { id: 'a', weight: 2 ** 48, quantity: 0 },
      { id: 'b', weight: 1, quantity: -1 },
    ];
    expectError(() => validateCatalog('spring', items), 'ERR_INVALID_CONFIG', 'total weight');
  });
});

describe('validatePatch (ERR_INVALID_ARGUMENT)', () => {
  it('returns NaN for fields left unchanged', () => {
    expect(validatePatch('p', 'i', { weight: 5 })).toEqual({ weight: 5, quantity: NaN });
    expect(validatePatch('p', 'i', { quantity: -1 })).toEqual({ weight: NaN, quantity: -1 });
    expect(validatePatch('p', 'i', { quantity: 0, weight: 2 ** 48 })).toEqual({ weight: 2 ** 48, quantity: 0 });
  });

  it('patch that is not an object', () => {
    expectError(() => validatePatch('spring', 'gold', null), 'ERR_INVALID_ARGUMENT', '"spring"', '"gold"', 'got null');
    expectError(() => validatePatch('spring', 'gold', 5), 'ERR_INVALID_ARGUMENT', 'got 5');
  });

  it('patch with neither field', () => {
    expectError(() => validatePatch('spring', 'gold', {}), 'ERR_INVALID_ARGUMENT', 'weight and/or quantity', 'got {}');
    expectError(() => validatePatch('spring', 'gold', { weight: undefined }), 'ERR_INVALID_ARGUMENT', 'weight and/or quantity');
  });

  it.each([
    [0, 'got 0'],
    [-3, 'got -3'],
    [2.5, 'got 2.5'],
    [2 ** 53, 'got 9007199254740992'],
    ['7', 'got "7"'],
  ])('bad weight %s', (weight, fragment) => {
    const err = expectError(() => validatePatch('spring', 'gold', { weight }), 'ERR_INVALID_ARGUMENT', 'weight', fragment);
    expect(err.details).toMatchObject({ poolId: 'spring', itemId: 'gold', value: weight });
  });

  it.each([
    [-2, 'got -2'],
    [0.5, 'got 0.5'],
    [null, 'got null'],
  ])('bad quantity %s', (quantity, fragment) => {
    expectError(() => validatePatch('spring', 'gold', { quantity }), 'ERR_INVALID_ARGUMENT', 'quantity', fragment);
  });

  it('a bad quantity is rejected even with a good weight', () => {
    expectError(() => validatePatch('spring', 'gold', { weight: 3, quantity: -7 }), 'ERR_INVALID_ARGUMENT', 'quantity', 'got -7');
  });
});

describe('checkPoolId (ERR_INVALID_ARGUMENT)', () => {
  it('returns a valid id', () => {
    expect(checkPoolId('spring')).toBe('spring');
    expect(checkPoolId('p'.repeat(128))).toBe('p'.repeat(128));
  });

  it.each([
    ['empty', '', 'got ""'],
    ['129 characters', 'q'.repeat(129), `"${'q'.repeat(129)}"`],
    ['a number', 12, 'got 12'],
    ['undefined', undefined, 'got undefined'],
    ['null', null, 'got null'],
  ])('rejects %s', (_name, id, fragment) => {
    const err = expectError(() => checkPoolId(id), 'ERR_INVALID_ARGUMENT', 'poolId', fragment);
    expect(err.details).toEqual({ poolId: id });
  });
});
