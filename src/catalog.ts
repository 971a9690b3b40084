import { asEngineError, EngineError, show } from './errors.js';

export interface ItemSpec {
  id: string;
  /** Positive safe integer. */
  weight: number;
  /** Integer >= 0, or -1 for unlimited. */
  quantity: number;
}

export const kMaxItems = 65_534;
export const kMaxIdLength = 128;
export const kMaxTotalWeight = 2 ** 48;

/**
 * Ids are stored as UTF-8, so they must be well-formed UTF-16 (no lone surrogates): '\uD800'
 * would come back from disk as U+FFFD, a different id, and two such ids as one.
 */
export function isValidId(id: unknown): id is string {
  return typeof id === 'string' && id.length >= 1 && id.length <= kMaxIdLength && id.isWellFormed();
}

/** The rule every id follows, for messages. */
export const kIdRule = `a well-formed string of 1-${kMaxIdLength} characters (no lone surrogates)`;

export function checkPoolId(poolId: unknown): string {
  if (!isValidId(poolId)) {
    throw new EngineError('ERR_INVALID_ARGUMENT', `poolId must be ${kIdRule}, got ${show(poolId)}`, {
      details: { poolId },
    });
  }
  return poolId;
}

export function isValidWeight(w: unknown): w is number {
  return typeof w === 'number' && Number.isSafeInteger(w) && w > 0 && w <= kMaxTotalWeight;
}

export function isValidQuantity(q: unknown): q is number {
  return typeof q === 'number' && Number.isSafeInteger(q) && q >= -1;
}

/**
 * Validate a catalog and return a normalized copy (each entry read once); errors are
 * ERR_INVALID_CONFIG naming the path, also when a getter or Proxy trap of the caller throws.
 */
export function validateCatalog(poolId: string, items: unknown): ItemSpec[] {
  try {
    return readCatalog(poolId, items);
  } catch (err) {
    throw asEngineError(err, 'ERR_INVALID_CONFIG', `pool ${show(poolId)}: items could not be read`, { poolId });
  }
}

function readCatalog(poolId: string, items: unknown): ItemSpec[] {
  const fail = (msg: string, value: unknown): never => {
    throw new EngineError('ERR_INVALID_CONFIG', `pool ${show(poolId)}: ${msg}, got ${show(value)}`, { details: { poolId, value } });
  };
  if (!Array.isArray(items)) fail('items must be an array', items);
  const list = items as unknown[];
  if (list.length < 1 || list.length > kMaxItems) fail(`items must hold 1 to ${kMaxItems} entries`, list.length);
  const seen = new Set<string>();
  const out: ItemSpec[] = new Array(list.length);
  let total = 0;
  for (let i = 0; i < list.length; i++) {
    const raw = list[i] as Partial<ItemSpec> | null;
    if (typeof raw !== 'object' || raw === null) fail(`items[${i}] must be an object`, raw);
    const { id, weight, quantity } = raw as Partial<ItemSpec>;
    if (!isValidId(id)) fail(`items[${i}].id must be ${kIdRule}`, id);
    if (seen.has(id as string)) fail(`items[${i}].id is a duplicate`, id);
    seen.add(id as string);
    if (!isValidWeight(weight)) fail(`items[${i}].weight must be a positive safe integer`, weight);
    if (!isValidQuantity(quantity)) fail(`items[${i}].quantity must be an integer >= 0 or -1 (unlimited)`, quantity);
    total += weight as number;
    out[i] = { id: id as string, weight: weight as number, quantity: quantity as number };
  }
  if (total > kMaxTotalWeight) fail(`total weight must be <= 2^48`, total);
  return out;
}

export interface ItemPatch {
  weight?: number;
  quantity?: number;
}

/** Validate an updateItem patch (each field read once); NaN marks a field left unchanged. */
export function validatePatch(poolId: string, itemId: string, patch: unknown): { weight: number; quantity: number } {
  try {
    return readPatch(poolId, itemId, patch);
  } catch (err) {
    throw asEngineError(err, 'ERR_INVALID_ARGUMENT', `updateItem(${show(poolId)}, ${show(itemId)}): patch could not be read`, { poolId, itemId });
  }
}

function readPatch(poolId: string, itemId: string, patch: unknown): { weight: number; quantity: number } {
  const fail = (msg: string, value: unknown): never => {
    throw new EngineError('ERR_INVALID_ARGUMENT', `updateItem(${show(poolId)}, ${show(itemId)}): ${msg}, got ${show(value)}`, {
      details: { poolId, itemId, value },
    });
  };
  if (typeof patch !== 'object' || patch === null) fail('patch must be an object', patch);
  const { weight, quantity } = patch as ItemPatch;
  if (weight === undefined && quantity === undefined) fail('patch must set weight and/or quantity', patch);
  if (weight !== undefined && !isValidWeight(weight)) fail('weight must be a positive safe integer', weight);
  if (quantity !== undefined && !isValidQuantity(quantity)) fail('quantity must be an integer >= 0 or -1 (unlimited)', quantity);
  return { weight: weight ?? NaN, quantity: quantity ?? NaN };
}

/** createPool's arguments checked: the catalog to create, or the error to reject with. */
export function checkCreate(poolId: unknown, items: unknown, exists: (id: string) => boolean): ItemSpec[] | EngineError {
  try {
    const id = checkPoolId(poolId);
    const catalog = validateCatalog(id, items);
    if (exists(id)) return new EngineError('ERR_POOL_EXISTS', `pool ${show(id)} already exists`, { details: { poolId: id } });
    return catalog;
  } catch (err) {
    return err as EngineError;
  }
}

/** updateItem's arguments checked against the pool's item ids: the update, or the error to reject with. */
export function checkUpdate(
  poolId: string,
  itemId: unknown,
  patch: unknown,
  itemIndex: ReadonlyMap<string, number>,
): { type: 'update'; itemIndex: number; weight: number; quantity: number } | EngineError {
  const index = typeof itemId === 'string' ? itemIndex.get(itemId) : undefined;
  if (index === undefined) return new EngineError('ERR_UNKNOWN_ITEM', `pool ${show(poolId)} has no item ${show(itemId)}`, { details: { poolId, itemId } });
  try {
    const { weight, quantity } = validatePatch(poolId, itemId as string, patch);
    return { type: 'update', itemIndex: index, weight, quantity };
  } catch (err) {
    return err as EngineError;
  }
}
