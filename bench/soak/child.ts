/**
 * The soak's child: opens (or recovers) a data directory, makes sure the fixed pools exist, then
 * keeps drawMany(), draw(), weight updates and pool creation in flight until the soak SIGKILLs
 * it (or, when told to, calls close() under load and waits to be killed). Every request is
 * printed before it is issued and every acknowledgement once received (see workload.ts for the
 * lines). Usage: node child.js '<ChildConfig as JSON>'
 */
import { writeSync } from 'node:fs';
import { DrawEngine, type DrawBatch } from '../../src/index.js';
import { between, createdCatalog, kFixedPools, mulberry32, type ChildConfig } from './workload.js';

const cfg = JSON.parse(process.argv[2] ?? '') as ChildConfig;
const rand = mulberry32(cfg.seed);

// Never outlive the soak for long, whatever happens to it. Also what keeps the process alive
// after close(), until the kill.
setTimeout(() => process.exit(70), 60_000);

/** One line with synchronous write(2) calls (retried on EAGAIN): a printed ack is an ack. */
function out(line: string): void {
  const buf = Buffer.from(`${line}\n`);
  let off = 0;
  while (off < buf.length) {
    try {
      off += writeSync(1, buf, off, buf.length - off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
    }
  }
}

out('opening');
const engine = await DrawEngine.open({
  dir: cfg.dir,
  wal: cfg.wal,
  sync: cfg.sync,
  syncIntervalMs: 5,
  shards: cfg.shards,
  segmentBytes: cfg.segmentBytes,
  ...(cfg.snapshotEveryRecords === undefined ? {} : { snapshotEveryRecords: cfg.snapshotEveryRecords }),
  seed: cfg.seed,
  replayThreads: 2,
});
out(`open ${engine.recovery.maxRequestId}`);

let closing = false;

function fail(pool: string, err: unknown): void {
  const e = err as { code?: string; message?: string };
  out(`fail ${pool} ${e?.code ?? 'unknown'} ${String(e?.message ?? err).replace(/\n/g, ' ')}`);
}

const have = new Set(engine.poolIds());
for (const [id, items] of kFixedPools) {
  if (have.has(id)) {
    out(`exists ${id}`);
    continue;
  }
  out(`creq ${id}`);
  try {
    await engine.createPool(id, items.map((i) => ({ ...i })));
    out(`created ${id}`);
  } catch (err) {
    // A catalog whose create record does not fit in one segment is refused (documented, see
    // docs/errors.md): 'wide' with segments below ~9 KiB. The soak checks that it is absent.
    const e = err as { code?: string; details?: { recordBytes?: number; segmentBytes?: number } };
    if (e.code === 'ERR_INVALID_ARGUMENT' && e.details?.recordBytes !== undefined) out(`refused ${id} ${e.details.recordBytes} ${e.details.segmentBytes}`);
    else fail(id, err);
  }
}
/** Pools the draw streams pick from: every pool there is (created ones join once acknowledged). */
const pools = engine.poolIds();
const catalogs = new Map<string, string[]>();
for (const id of pools) catalogs.set(id, (await engine.pool(id)).items.map((i) => i.id));
const indexOf = new Map([...catalogs].map(([id, items]) => [id, new Map(items.map((item, i) => [item, i]))]));
out('ready');

let seen = '';
const poll = setInterval(() => {
  const m = engine.metrics();
  const now = `${m.snapshots} ${m.rotations} ${m.restarts}`;
  if (now !== seen) {
    seen = now;
    out(`m ${now}`);
  }
}, 20);

const pick = (): string => pools[between(rand, 0, pools.length - 1)]!;

function ackLine(pool: string, b: DrawBatch): string {
  const counts = new Array<number>(catalogs.get(pool)!.length + 1).fill(0);
  for (const idx of b.indices) counts[idx === 0xffff ? counts.length - 1 : idx]!++;
  return `ack ${pool} ${b.firstRequestId} ${b.count} ${JSON.stringify(counts)}`;
}

function drawMany(pool: string, n: number): Promise<void> {
  out(`req ${pool} ${n}`);
  return engine.drawMany(pool, n).then(
    (b) => out(ackLine(pool, b)),
    (err) => fail(pool, err),
  );
}

function drawOne(pool: string): Promise<void> {
  out(`req ${pool} 1`);
  return engine.draw(pool).then(
    (r) => out(`d ${pool} ${r.requestId} ${r.itemId === null ? -1 : indexOf.get(pool)!.get(r.itemId)}`),
    (err) => fail(pool, err),
  );
}

/** drawMany calls, several in flight at once. */
async function manyStream(): Promise<void> {
  while (!closing) {
    const calls = [];
    for (let i = between(rand, 1, 4); i > 0; i--) calls.push(drawMany(pick(), between(rand, 1, 20_000)));
    await Promise.all(calls);
  }
}

/** Bursts of concurrent draw() calls. */
async function singleStream(): Promise<void> {
  while (!closing) {
    const calls = [];
    for (let i = between(rand, 1, 32); i > 0; i--) calls.push(drawOne(pick()));
    await Promise.all(calls);
  }
}

/** Weight updates, one at a time (ordered with the draws of their pool). */
async function updateStream(): Promise<void> {
  while (!closing) {
    const pool = pick();
    const index = between(rand, 0, catalogs.get(pool)!.length - 1);
    const weight = between(rand, 1, 50);
    out(`ureq ${pool} ${index} ${weight}`);
    try {
      await engine.updateItem(pool, catalogs.get(pool)![index]!, { weight });
      out(`uack ${pool} ${index} ${weight}`);
    } catch (err) {
      fail(pool, err);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, between(rand, 0, 5)));
  }
}

/** New pools while everything else goes on (a few per run, so reused directories stay small). */
async function createStream(): Promise<void> {
  for (let n = 1; n <= 12 && !closing; n++) {
    await new Promise((resolve) => setTimeout(resolve, between(rand, 5, 120)));
    if (closing) return;
    const id = `${cfg.createPrefix}.${n}`;
    const items = createdCatalog(n);
    out(`creq ${id}`);
    try {
      await engine.createPool(id, items);
    } catch (err) {
      fail(id, err);
      return;
    }
    out(`created ${id}`);
    catalogs.set(id, items.map((i) => i.id));
    indexOf.set(id, new Map(items.map((item, i) => [item.id, i])));
    pools.push(id);
  }
}

async function closeLater(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
  closing = true;
  out('closing');
  await engine.close();
  clearInterval(poll);
  out('closed');
}

const streams = [manyStream(), manyStream(), singleStream(), updateStream(), createStream()];
if (cfg.closeAfterMs !== undefined) streams.push(closeLater(cfg.closeAfterMs));
await Promise.all(streams);
