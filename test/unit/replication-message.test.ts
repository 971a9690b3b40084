import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { pack, unpack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { EngineError } from '../../src/errors.js';
import { applyReplicated } from '../../src/shard/replica.js';
import { ShardPools } from '../../src/shard/shard-pools.js';
import { NullWalWriter } from '../../src/wal/writer.js';
import {
  fenceMessage,
  forEachRecord,
  kMsgHeaderBytes,
  kMsgMagic,
  kMsgVersion,
  MessageBuilder,
  readMsgHeader,
  type MessageHeader,
} from '../../src/replication/message.js';
import {
  kCreateHeaderBytes,
  kDrawHeaderBytes,
  kEmpty8,
  kEmpty16,
  kKeyedDrawHeaderBytes,
  kPoolRefHeaderBytes,
  kRecCreatePool,
  kRecDraw16,
  kRecDraw8,
  kRecKeyedDraw,
  kRecordFrameBytes,
  kRecPoolRef,
  kRecUpdateItem,
  recordBytes,
} from '../../src/wal/format.js';

/*
 * message.ts: the replicated message format and MessageBuilder's chunking. Every message must
 * decode on its own (a follower that starts from a snapshot reads the stream from the middle),
 * so each one defines the pool refs it uses before using them; records must round-trip.
 */

/** A logical record as a reader sees it; draws one per draw, so splitting is invisible. */
type Event =
  | { kind: 'create'; ref: number; id: string }
  | { kind: 'update'; ref: number; itemIndex: number; weight: number; quantity: number }
  | { kind: 'draw'; ref: number; requestId: number; index: number }
  | { kind: 'keyed'; ref: number; first: number; key: string; indices: number[] };

interface Pool {
  ref: number;
  id: string;
  itemCount: number;
}

const decodeIndex = (v: number, width: number): number => (width === 1 && v === kEmpty8 ? kEmpty16 : v);

/**
 * Decode one message alone, as a follower does: a ref must be defined (PoolRef or CreatePool)
 * earlier in the same message, with the pool's id and item count. Throws otherwise.
 */
function decodeAlone(msg: Uint8Array, pools: Map<number, Pool>): { header: MessageHeader; events: Event[]; visited: number } {
  const defined = new Set<number>();
  const events: Event[] = [];
  let visited = 0;
  const use = (ref: number): Pool => {
    if (!defined.has(ref)) throw new Error(`message ${readMsgHeader(msg).msgSeq}: ref ${ref} used before it is defined in this message`);
    return pools.get(ref)!;
  };
  const header = forEachRecord(msg, (type, body) => {
    visited++;
    switch (type) {
      case kRecPoolRef: {
        const ref = body.readUInt32LE(4);
        const pool = pools.get(ref)!;
        expect(body.toString('utf8', kPoolRefHeaderBytes)).toBe(pool.id);
        expect(body.readUInt32LE(8)).toBe(pool.itemCount);
        defined.add(ref);
        break;
      }
      case kRecCreatePool: {
        const ref = body.readUInt32LE(4);
        const { id } = unpack(body.subarray(kCreateHeaderBytes)) as { id: string };
        defined.add(ref);
        events.push({ kind: 'create', ref, id });
        break;
      }
      case kRecDraw8:
      case kRecDraw16: {
        const ref = body.readUInt32LE(4);
        const pool = use(ref);
        const width = type === kRecDraw8 ? 1 : 2;
        expect(width).toBe(pool.itemCount < 255 ? 1 : 2);
        const first = body.readDoubleLE(8);
        const count = body.readUInt32LE(16);
        expect(body.length).toBe(kDrawHeaderBytes + count * width);
        for (let i = 0; i < count; i++) {
          const v = width === 1 ? body[kDrawHeaderBytes + i]! : body.readUInt16LE(kDrawHeaderBytes + 2 * i);
          events.push({ kind: 'draw', ref, requestId: first + i, index: decodeIndex(v, width) });
        }
        break;
      }
      case kRecKeyedDraw: {
        const ref = body.readUInt32LE(4);
        use(ref);
        const width = body.readUInt8(1);
        const keyLen = body.readUInt16LE(2);
        const count = body.readUInt32LE(16);
        const key = body.toString('utf8', kKeyedDrawHeaderBytes, kKeyedDrawHeaderBytes + keyLen);
        const at = kKeyedDrawHeaderBytes + keyLen;
        const indices = Array.from({ length: count }, (_, i) => decodeIndex(width === 1 ? body[at + i]! : body.readUInt16LE(at + 2 * i), width));
        events.push({ kind: 'keyed', ref, first: body.readDoubleLE(8), key, indices });
        break;
      }
      case kRecUpdateItem: {
        const ref = body.readUInt32LE(4);
        use(ref);
        events.push({ kind: 'update', ref, itemIndex: body.readUInt32LE(8), weight: body.readDoubleLE(16), quantity: body.readDoubleLE(24) });
        break;
      }
      default:
        throw new Error(`unexpected record type ${type}`);
    }
  });
  return { header, events, visited };
}

const gems: Pool = { ref: 1, id: 'gems', itemCount: 3 };
const wide: Pool = { ref: 2, id: 'a-pool-with-many-items-and-a-longer-id', itemCount: 300 };
const coins: Pool = { ref: 3, id: 'coins', itemCount: 2 };
const poolMap = new Map([gems, wide, coins].map((p) => [p.ref, p]));

type Op =
  | { kind: 'draws'; ref: number; indices: number[] }
  | { kind: 'update'; ref: number; itemIndex: number; weight: number; quantity: number }
  | { kind: 'keyed'; ref: number; key: string; indices: number[] };

/** Apply ops to a builder (coins created first, like a createPool in the group) and the events a reader must see. */
function build(b: MessageBuilder, ops: Op[], firstId = 1): Event[] {
  for (const p of [gems, wide, coins]) b.registerPool(p.ref, p.id, p.itemCount);
  const expected: Event[] = [];
  b.appendCreate(coins.ref, pack({ id: coins.id, items: [{ id: 'copper', weight: 1, quantity: -1 }, { id: 'silver', weight: 1, quantity: -1 }] }));
  expected.push({ kind: 'create', ref: coins.ref, id: coins.id });
  let next = firstId;
  for (const op of ops) {
    switch (op.kind) {
      case 'draws': {
        // Offset into a larger array, as the shard does with its reply buffer.
        const arr = new Uint16Array(op.indices.length + 3);
        arr.set(op.indices, 2);
        b.appendDraws(op.ref, next, arr, 2, op.indices.length);
        op.indices.forEach((index, i) => expected.push({ kind: 'draw', ref: op.ref, requestId: next + i, index }));
        next += op.indices.length;
        break;
      }
      case 'update':
        b.appendUpdate(op.ref, op.itemIndex, op.weight, op.quantity);
        expected.push({ ...op });
        break;
      case 'keyed': {
        const arr = new Uint16Array(op.indices.length + 1);
        arr.set(op.indices, 1);
        b.appendKeyedDraws(op.ref, next, Buffer.from(op.key, 'utf8'), arr, 1, op.indices.length);
        expected.push({ kind: 'keyed', ref: op.ref, first: next, key: op.key, indices: op.indices });
        next += op.indices.length;
        break;
      }
    }
  }
  return expected;
}

/** Check every message alone (size, header, refs) and return what they say, in order. */
function readAll(messages: Uint8Array[], maxBytes: number, term: number, shard: number, firstSeq: number): Event[] {
  const events: Event[] = [];
  messages.forEach((m, i) => {
    expect(m.byteLength).toBeLessThanOrEqual(maxBytes);
    const { header, events: e, visited } = decodeAlone(m, poolMap);
    expect(header).toEqual({ term, shard, msgSeq: firstSeq + i, records: visited, fence: false });
    expect(visited).toBeGreaterThan(0);
    events.push(...e);
  });
  return events;
}

const indexOf = (p: Pool): fc.Arbitrary<number> => fc.oneof({ arbitrary: fc.integer({ min: 0, max: p.itemCount - 1 }), weight: 9 }, { arbitrary: fc.constant(kEmpty16), weight: 1 });
const poolArb = fc.constantFrom(gems, wide, coins);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: poolArb.chain((p) => fc.array(indexOf(p), { minLength: 1, maxLength: 600 }).map((indices): Op => ({ kind: 'draws', ref: p.ref, indices }))), weight: 5 },
  {
    arbitrary: poolArb.chain((p) =>
      fc.record({
        itemIndex: fc.integer({ min: 0, max: p.itemCount - 1 }),
        weight: fc.oneof(fc.integer({ min: 1, max: 1e9 }), fc.constant(Number.NaN)),
        quantity: fc.oneof(fc.integer({ min: -1, max: 1e6 }), fc.constant(Number.NaN)),
      }).map((u): Op => ({ kind: 'update', ref: p.ref, ...u })),
    ),
    weight: 2,
  },
  {
    arbitrary: poolArb.chain((p) =>
      fc.record({ key: fc.string({ minLength: 1, maxLength: 24 }), indices: fc.array(indexOf(p), { minLength: 1, maxLength: 40 }) }).map((k): Op => ({ kind: 'keyed', ref: p.ref, ...k })),
    ),
    weight: 2,
  },
);

describe('MessageBuilder', () => {
  it('one small group is one message under the limit, numbered and checksummed', () => {
    const b = new MessageBuilder(4, 64 * 1024);
    expect(b.empty).toBe(true);
    const expected = build(b, [
      { kind: 'draws', ref: 1, indices: [0, 1, 2, kEmpty16] },
      { kind: 'update', ref: 2, itemIndex: 299, weight: 7, quantity: Number.NaN },
      { kind: 'keyed', ref: 3, key: 'order-1', indices: [1, 0] },
    ]);
    expect(b.empty).toBe(false);
    const messages = b.take(9, 41);
    expect(messages).toHaveLength(1);
    expect(readAll(messages, 64 * 1024, 9, 4, 41)).toEqual(expected);
    expect(b.empty).toBe(true);
    expect(b.take(9, 42)).toEqual([]);
  });

  it('every message of a take decodes on its own: refs defined again in each, records round-trip (property)', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), fc.integer({ min: 400, max: 4096 }), (ops, maxBytes) => {
        const b = new MessageBuilder(1, maxBytes);
        const expected = build(b, ops, 1000);
        const messages = b.take(2, 7);
        expect(readAll(messages, maxBytes, 2, 1, 7)).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });

  it('a large draw call is split across messages with consecutive request ids, each message full but within the limit', () => {
    const maxBytes = 64 * 1024;
    const b = new MessageBuilder(0, maxBytes);
    const indices = Array.from({ length: 200_000 }, (_, i) => i % 3);
    const expected = build(b, [{ kind: 'draws', ref: 1, indices }], 5000);
    const messages = b.take(1, 1);
    expect(messages.length).toBe(4); // 200,000 one-byte draws in 64 KiB messages
    expect(readAll(messages, maxBytes, 1, 0, 1)).toEqual(expected);
    for (const m of messages.slice(0, -1)) expect(m.byteLength).toBeGreaterThan(maxBytes - 64);
  });

  it('refs are defined again after each take (the next group is its own message)', () => {
    const b = new MessageBuilder(0, 64 * 1024);
    build(b, [{ kind: 'draws', ref: 1, indices: [0] }]);
    b.take(1, 1);
    b.appendDraws(1, 50, new Uint16Array([2]), 0, 1);
    const [second] = b.take(1, 2);
    expect(decodeAlone(second!, poolMap).events).toEqual([{ kind: 'draw', ref: 1, requestId: 50, index: 2 }]);
  });

  it('refuses a record larger than a message, and a ref never registered', () => {
    const b = new MessageBuilder(0, 1024);
    b.registerPool(1, 'gems', 3);
    expect(b.maxRecordBytes).toBeLessThan(1024);
    const big = new Uint16Array(2000);
    let err: unknown;
    try {
      b.appendKeyedDraws(1, 1, Buffer.from('k'), big, 0, big.length);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(EngineError);
    expect(err).toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    expect(() => b.appendDraws(9, 1, new Uint16Array([0]), 0, 1)).toThrow(/pool ref 9 was never registered/);
  });
});

describe('message header, records and fences', () => {
  function oneMessage(): Buffer {
    const b = new MessageBuilder(2, 64 * 1024);
    build(b, [{ kind: 'draws', ref: 1, indices: [0, 1] }]);
    return Buffer.from(b.take(5, 12)[0]!);
  }

  const corrupt = (buf: Uint8Array): string => {
    try {
      forEachRecord(buf, () => {});
    } catch (err) {
      expect(err).toBeInstanceOf(EngineError);
      expect((err as EngineError).code).toBe('ERR_CORRUPT_WAL');
      return (err as Error).message;
    }
    throw new Error('expected ERR_CORRUPT_WAL');
  };

  it('reads back its header, with the layout of the diagram', () => {
    const m = oneMessage();
    expect(readMsgHeader(m)).toEqual({ term: 5, shard: 2, msgSeq: 12, records: 3, fence: false }); // create, ref, draws
    expect(m.readUInt32LE(0)).toBe(kMsgMagic);
    expect(m.readUInt16LE(4)).toBe(kMsgVersion);
    expect(m.readUInt32LE(28)).toBe(crc32(m.subarray(0, 28)));
  });

  it('any flipped header byte is a checksum (or magic) error', () => {
    const m = oneMessage();
    for (let i = 0; i < kMsgHeaderBytes; i++) {
      const bad = Buffer.from(m);
      bad[i]! ^= 0x10;
      expect(corrupt(bad)).toMatch(/bad magic|header checksum mismatch/);
    }
    expect(corrupt(m.subarray(0, 20))).toMatch(/bad magic/);
  });

  it('an unknown version with a valid checksum is refused', () => {
    const m = oneMessage();
    m.writeUInt16LE(kMsgVersion + 1, 4);
    m.writeUInt32LE(crc32(m.subarray(0, 28)), 28);
    expect(corrupt(m)).toBe(`replicated message: unsupported version ${kMsgVersion + 1}`);
  });

  it('a damaged or cut record is refused', () => {
    const m = oneMessage();
    const body = Buffer.from(m);
    body[kMsgHeaderBytes + kRecordFrameBytes + 1]! ^= 1; // inside the first record's body
    expect(corrupt(body)).toMatch(/record 0 checksum mismatch/);
    const last = m.length - 1;
    expect(corrupt(m.subarray(0, last - 4))).toMatch(/record \d (length|cut off)/);
    const zero = Buffer.from(m);
    zero.writeUInt32LE(0, kMsgHeaderBytes);
    expect(corrupt(zero)).toMatch(/record 0 length 0/);
  });

  it('a fence carries term, shard and number, no records, and decodes to nothing', () => {
    const f = fenceMessage(7, 3, 99);
    expect(f.byteLength).toBe(kMsgHeaderBytes);
    expect(readMsgHeader(f)).toEqual({ term: 7, shard: 3, msgSeq: 99, records: 0, fence: true });
    let visits = 0;
    expect(forEachRecord(f, () => visits++)).toMatchObject({ fence: true, records: 0 });
    expect(visits).toBe(0);
    expect(readMsgHeader(oneMessage()).fence).toBe(false);
    // msgSeq is a double: numbers beyond 2^32 survive.
    expect(readMsgHeader(fenceMessage(1, 0, 2 ** 40 + 1)).msgSeq).toBe(2 ** 40 + 1);
  });
});

describe('regressions', () => {
  it('message-builder-ref-defined-before-flush: a record that starts a new message defines its ref there (update, keyed)', () => {
    // 128-byte messages: header 32, PoolRef 'gems' 24, 20 one-byte draws 48 -> 104 used; an
    // update (40) or keyed record then needs a new message, which must define the ref again.
    for (const last of ['update', 'keyed'] as const) {
      const maxBytes = 128;
      const b = new MessageBuilder(0, maxBytes);
      b.registerPool(1, 'gems', 3);
      b.appendDraws(1, 1, new Uint16Array(20), 0, 20);
      const expected: Event[] = Array.from({ length: 20 }, (_, i) => ({ kind: 'draw', ref: 1, requestId: 1 + i, index: 0 }));
      if (last === 'update') {
        b.appendUpdate(1, 2, 5, 6);
        expected.push({ kind: 'update', ref: 1, itemIndex: 2, weight: 5, quantity: 6 });
      } else {
        b.appendKeyedDraws(1, 21, Buffer.from('key'), new Uint16Array([1, 2]), 0, 2);
        expected.push({ kind: 'keyed', ref: 1, first: 21, key: 'key', indices: [1, 2] });
      }
      const messages = b.take(1, 1);
      expect(messages).toHaveLength(2);
      expect(readAll(messages, maxBytes, 1, 0, 1)).toEqual(expected);
      // What a follower does with the second message alone (it started from a snapshot).
      const pools = new ShardPools({ keys: 100, draws: 1000 });
      pools.create(0, 'gems', [{ id: 'a', weight: 1, quantity: -1 }, { id: 'b', weight: 1, quantity: -1 }, { id: 'c', weight: 1, quantity: -1 }]);
      const applied = applyReplicated(pools, new NullWalWriter(), messages[1]!);
      expect(applied.changed).toEqual(new Set([0]));
    }
  });

  it('message-builder-keyed-record-with-its-ref: a keyed record maxRecordBytes allows fits in one message with its ref', () => {
    const maxBytes = 64 * 1024;
    const b = new MessageBuilder(0, maxBytes);
    const longId = '\u{1F381}'.repeat(64); // 128 UTF-16 units, 256 UTF-8 bytes
    const pools = new Map([[1, { ref: 1, id: longId, itemCount: 3 }]]);
    b.registerPool(1, longId, 3);
    const key = Buffer.from('k');
    // The largest keyed call the shard would accept (shard-core checks maxRecordBytes).
    const count = b.maxRecordBytes - kRecordFrameBytes - kKeyedDrawHeaderBytes - key.length;
    expect(recordBytes(kKeyedDrawHeaderBytes + key.length + count)).toBeLessThanOrEqual(b.maxRecordBytes);
    const indices = new Uint16Array(count).fill(1);
    b.appendKeyedDraws(1, 1, key, indices, 0, count);
    const messages = b.take(1, 1);
    expect(messages).toHaveLength(1);
    expect(messages[0]!.byteLength).toBeLessThanOrEqual(maxBytes);
    const { events } = decodeAlone(messages[0]!, pools);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ kind: 'keyed', ref: 1, first: 1, key: 'k' });
  });
});
