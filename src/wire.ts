/**
 * The binary part of the HTTP wire format (docs/wire.md), shared by the server and the client
 * and loaded by neither the engine nor its workers: a DrawBatch's per-draw item indices travel
 * as base64 of the little-endian bytes of its Uint16Array (0xFFFF = empty draw). Two bytes per
 * draw before base64, 2.67 after: ten times less than a JSON array of numbers, and decoding is a
 * copy, not a parse.
 */
import { endianness } from 'node:os';

const kLittleEndian = endianness() === 'LE';

/** base64 of the indices' bytes in little-endian order. */
export function encodeIndices(indices: Uint16Array): string {
  const bytes = Buffer.from(indices.buffer, indices.byteOffset, indices.byteLength);
  if (kLittleEndian) return bytes.toString('base64');
  return Buffer.from(bytes).swap16().toString('base64');
}

/**
 * The indices a base64 string carries, or undefined when it is not `count` little-endian u16s.
 * The result owns a fresh, aligned buffer (a Buffer from the pool may start at an odd offset).
 */
export function decodeIndices(base64: string, count: number): Uint16Array | undefined {
  if (base64.length !== Math.ceil((count * 2) / 3) * 4) return undefined;
  const bytes = Buffer.from(base64, 'base64');
  if (bytes.length !== count * 2) return undefined;
  const out = new Uint16Array(count);
  const view = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  bytes.copy(view);
  if (!kLittleEndian) view.swap16();
  return out;
}

/**
 * An Idempotency-Key travels in an HTTP header, whose value is bytes: visible ASCII only
 * (0x21-0x7E), 1-128 characters, so what the server reads is what the client sent.
 */
export const kIdempotencyKeyPattern = '^[\\x21-\\x7e]{1,128}$';
const kKeyRe = new RegExp(kIdempotencyKeyPattern);

export function isWireIdempotencyKey(key: unknown): key is string {
  return typeof key === 'string' && kKeyRe.test(key);
}

/**
 * Most draws one request may ask for: the engine's kMaxDrawMany (2^24), repeated here so the
 * client need not load the engine module (test/unit/wire.test.ts checks that they agree).
 */
export const kMaxDrawCount = 16_777_216;
