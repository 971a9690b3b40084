/**
 * Simulated power loss through the storage seam (issue 12, item 1).
 *
 * SIGKILL tests prove that a process crash loses nothing; the page cache survives them, so they
 * cannot prove what sync 'always' promises: that an acknowledged draw survives a power cut.
 * Here the real WAL writers, ShardCore, snapshot writing and retention, the open-time steps and
 * recovery run on RecordingStorage (test/helpers/recording-storage.ts), an in-memory file
 * system that keeps what each completed sync made durable. At every storage operation (a cut
 * point) the states a power cut could leave are built (every one when there are at most 1024,
 * else a seeded sample) and recovered; each must open, and hold every acknowledged draw:
 * each pool's state must be its state after some prefix of its history at least as long as
 * the acknowledged one (drawn counts, quantities, weights, lastRequestId, idempotency keys),
 * and maxRequestId must be at least every acknowledged and every recovered id, so no id is
 * handed out twice. RPE_SEED=<n> replays another seed.
 */
import { describe, expect, it } from 'vitest';
import type { ItemSpec } from '../../src/catalog.js';
import { shardOf } from '../../src/hash.js';
import { recoverDir, type RecoveredState } from '../../src/recovery/recover.js';
import { scanSegment } from '../../src/wal/reader.js';
import { checkCuts, prepareOn, summary, verifyRecovered, Workload, type CheckResult, type Cut, type PoolModel } from '../helpers/power-loss.js';
import { crashImages, crashStateCount, RecordingStorage, type CrashImage, type RecordingOptions } from '../helpers/recording-storage.js';
import { below, mulberry32, testSeed } from '../helpers/seed.js';

const seed = testSeed(0x5eed12);
const kDir = '/data/rpe';
const kSegmentBytes = 16 * 1024;

const alphaItems: ItemSpec[] = [
  { id: 'gold', weight: 1, quantity: 50 },
  { id: 'silver', weight: 3, quantity: 200 },
  { id: 'dust', weight: 6, quantity: -1 },
];
const betaItems: ItemSpec[] = [
  { id: 'x', weight: 1, quantity: 5 },
  { id: 'y', weight: 1, quantity: 5 },
];

/** A pool id that lives in `shard` of `shards`. */
function poolOn(shard: number, shards: number, prefix: string): string {
  for (let i = 0; ; i++) if (shardOf(`${prefix}-${i}`, shards) === shard) return `${prefix}-${i}`;
}
const alpha = poolOn(0, 2, 'alpha');
const beta = poolOn(1, 2, 'beta');

function report(line: string): void {
  console.log(line);
}

/** A first open on an empty directory, its cut points checked too (nothing acknowledged yet). */
async function openFirst(wal: 'mmap' | 'file', storage: RecordingStorage, shards: number, segmentBytes = kSegmentBytes): Promise<{ w: Workload; cuts: Cut[] }> {
  const cuts: Cut[] = [];
  storage.onOp = (op) => cuts.push({ label: `first open #${op.n} before ${op.op} ${op.path}`, frozen: storage.freeze(), models: new Map(), ack: { pools: new Map(), maxId: 0 } });
  const { state, baseSeqs } = await prepareOn(storage, kDir, shards, segmentBytes);
  const w = new Workload({ storage, dir: kDir, wal, shards, segmentBytes, epoch: state.epoch, firstSeqs: baseSeqs, seed, maxRequestId: state.maxRequestId });
  return { w, cuts };
}

/**
 * Two shards: creates, single draws, drawMany, keyed draws (and a retried key), updates,
 * rotations (16 KiB segments), snapshots written a turn after their job as the snapshot thread
 * does (full, then incremental, with retention deleting covered segments), groups whose records
 * span several pages (several records and batches per commit), and a clean close.
 */
async function firstWorkload(w: Workload): Promise<void> {
  w.create(alpha, alphaItems);
  w.create(beta, betaItems);
  await w.step();
  for (let i = 0; i < 8; i++) {
    w.draw(alpha, 1);
    w.draw(alpha, 40);
    w.drawKeyed(beta, `order-${i}`, 3);
    w.draw(beta, 1);
    if (i % 4 === 3) w.update(alpha, 0, 2, 30);
    await w.step();
  }
  w.draw(alpha, 5000);
  await w.step();
  w.requestSnapshot(0);
  w.draw(alpha, 10);
  await w.step();
  for (let i = 0; i < 3; i++) {
    w.draw(alpha, 3000);
    w.drawKeyed(beta, 'order-1', 3); // a retry: the original outcome, nothing drawn
    w.draw(beta, 2);
    await w.step();
  }
  w.requestSnapshot(0);
  w.requestSnapshot(1);
  await w.step();
  for (let i = 0; i < 2; i++) {
    w.draw(alpha, 3000);
    w.draw(alpha, 1);
    w.update(alpha, 1, 3, 500);
    w.send();
    w.draw(alpha, 3000);
    w.draw(alpha, 2);
    w.drawKeyed(alpha, `big-${i}`, 700);
    w.drawKeyed(beta, `big-${i}`, 2);
    await w.step();
  }
  w.draw(alpha, 100);
  w.update(beta, 1, 5, 10);
  await w.step();
  await w.close();
}

/** A crash state of a first run that recovered, to start a second run from. */
interface Base {
  label: string;
  image: CrashImage;
  cut: Cut;
  state: RecoveredState;
  prefixes: Map<string, number>;
}

interface FirstRun {
  result: CheckResult;
  ms: number;
  bases: Base[];
  violations: string[];
}

/** Run and check a first run once per wal mode (the second-run tests start from its crash states). */
const firstRuns = new Map<string, Promise<FirstRun>>();
function firstRun(wal: 'mmap' | 'file'): Promise<FirstRun> {
  let p = firstRuns.get(wal);
  if (p === undefined) firstRuns.set(wal, (p = runFirst(wal)));
  return p;
}

async function runFirst(wal: 'mmap' | 'file'): Promise<FirstRun> {
  const storage = new RecordingStorage({ dirs: [kDir] });
  const { w, cuts } = await openFirst(wal, storage, 2);
  await firstWorkload(w);
  const all = [...cuts, ...w.cuts];
  // Bases for a second run: the state after the clean close, and a crash state with a torn
  // tail (reservoir-sampled with its own stream, so the sampling of the check does not depend
  // on it).
  const pick = mulberry32(seed ^ 0x9e3779b9);
  let torn: Base | undefined;
  let tornSeen = 0;
  let final: Base | undefined;
  const t0 = performance.now();
  const result = await checkCuts(all, {
    dir: kDir,
    rng: mulberry32(seed),
    onRecovered: (cut, image, state, prefixes) => {
      const base = { label: cut.label, image, cut, state, prefixes };
      if (cut === all.at(-1) && final === undefined) final = { ...base, label: 'the clean close' };
      if (state.report.tornTails.length > 0 && below(pick, ++tornSeen) === 0) torn = base;
    },
  });
  const ms = performance.now() - t0;
  return { result, ms, bases: [final, torn].filter((b) => b !== undefined), violations: storage.violations };
}

/**
 * From a first run's crash state: the open-time steps (recover, first segments, base
 * snapshots, retirement) with one shard instead of two, then draws on the recovered pools and
 * a new one, a rotation, a snapshot and a close; every cut point of all that checked. What the
 * first recovery found counts as acknowledged from then on: the second run builds on it.
 */
async function runSecond(wal: 'mmap' | 'file', base: Base, segmentBytes = kSegmentBytes, stopAfterOpen = false): Promise<{ cuts: Cut[]; models: Map<string, PoolModel> }> {
  return secondRunOn(wal, RecordingStorage.fromImage(base.image), base, segmentBytes, stopAfterOpen);
}

/** The second run on `storage`: a crash image (everything durable), or the first run's own storage after a process crash (its page cache intact). */
async function secondRunOn(
  wal: 'mmap' | 'file',
  storage: RecordingStorage,
  base: Pick<Base, 'label' | 'cut'>,
  segmentBytes = kSegmentBytes,
  stopAfterOpen = false,
): Promise<{ cuts: Cut[]; models: Map<string, PoolModel> }> {
  const cuts: Cut[] = [];
  let models: ReadonlyMap<string, PoolModel> = base.cut.models;
  let ack = base.cut.ack;
  storage.onOp = (op) => cuts.push({ label: `second open (from ${base.label}) #${op.n} before ${op.op} ${op.path}`, frozen: storage.freeze(), models, ack });
  const models2 = new Map<string, PoolModel>();
  const { state, baseSeqs } = await prepareOn(storage, kDir, 1, segmentBytes, (recovered) => {
    const { problems, prefixes } = verifyRecovered(recovered, base.cut.models, base.cut.ack);
    expect(problems, `seed ${seed}`).toEqual([]);
    for (const [id, n] of prefixes) models2.set(id, base.cut.models.get(id)!.prefix(n));
    models = models2;
    ack = { pools: new Map([...models2].map(([id, m]) => [id, m.events.length])), maxId: recovered.maxRequestId };
  });
  if (stopAfterOpen) return { cuts, models: models2 };
  // Automatic snapshots too (every 12 records, taken after a commit as the worker does).
  const w = new Workload({ storage, dir: kDir, wal, shards: 1, segmentBytes, epoch: state.epoch, firstSeqs: baseSeqs, seed: seed + 1, maxRequestId: state.maxRequestId, models: models2, snapshotEveryRecords: 12 });
  const old = [...models2.keys()];
  const gamma = 'gamma';
  w.create(gamma, alphaItems);
  await w.step();
  for (let i = 0; i < 4; i++) {
    for (const p of old) w.draw(p, 1 + i);
    if (models2.has(beta)) w.drawKeyed(beta, 'order-1', 3); // replayed if the first run's key survived
    w.drawKeyed(gamma, `again-${i}`, 2);
    await w.step();
  }
  w.update(gamma, 0, 4, 7);
  w.draw(gamma, 3000);
  w.draw(gamma, 1);
  w.draw(gamma, 3000);
  w.send();
  w.draw(gamma, 3000);
  await w.step();
  w.requestSnapshot(0);
  w.draw(gamma, 10);
  await w.step();
  await w.step();
  for (let i = 0; i < 2; i++) {
    w.draw(gamma, 4000);
    await w.step();
  }
  await w.close();
  expect(storage.violations).toEqual([]);
  return { cuts: [...cuts, ...w.cuts], models: models2 };
}

function expectClean(name: string, r: CheckResult, ms: number): void {
  const line = summary(`${name}, seed ${seed}`, r, ms);
  report(line);
  expect(r.failures, line).toEqual([]);
  expect(r.failureCount).toBe(0);
}

describe(`power loss under sync 'always' (simulated, seed ${seed})`, () => {
  for (const wal of ['mmap', 'file'] as const) {
    it(`wal '${wal}': every crash state of a run (open, draws, rotations, snapshots, retention, close) recovers with every acknowledged draw`, async () => {
      const first = await firstRun(wal);
      expect(first.violations).toEqual([]);
      expectClean(`first run, wal '${wal}'`, first.result, first.ms);
      expect(first.result.cuts).toBeGreaterThan(80);
      expect(first.bases.length).toBe(2);
    });

    it(`wal '${wal}': from crash states of that run, every crash state of the next open (one shard fewer) and its draws recovers with everything acknowledged`, async () => {
      const first = await firstRun(wal);
      let cuts: Cut[] = [];
      for (const base of first.bases) cuts = cuts.concat((await runSecond(wal, base)).cuts);
      const t0 = performance.now();
      // The second open leaves unlinks nobody syncs (the retired shard's directory): they
      // multiply the states of every later cut, so fewer cuts are enumerated in full.
      const r = await checkCuts(cuts, { dir: kDir, rng: mulberry32(seed + 2), exhaustiveUpTo: 64, samples: 10 });
      expectClean(`second run from ${first.bases.length} crash states of the first, wal '${wal}'`, r, performance.now() - t0);
    });
  }

  it('the checker is not too weak: a WAL whose msync/fdatasync is dropped loses acknowledged draws, and the check says so', async () => {
    for (const wal of ['mmap', 'file'] as const) {
      const r = await smallRunWith(wal, { dropSync: (kind, path) => (kind === 'msync' || kind === 'fdatasync') && path.endsWith('.wal') });
      report(summary(`dropped WAL syncs, wal '${wal}' (failures expected)`, r.result, r.ms));
      expect(r.dropped).toBeGreaterThan(0);
      expect(r.result.failures.some((f) => /is no state of its history from the acknowledged one|acknowledged .* but not recovered|< acknowledged id/.test(f)), r.result.failures.join('\n')).toBe(true);
    }
  });

  it('the checker is not too weak: directory fsyncs dropped make named segments and snapshots vanish, and the check says so', async () => {
    const r = await smallRunWith('mmap', { dropSync: (kind) => kind === 'syncDir' });
    report(summary(`dropped directory fsyncs (failures expected)`, r.result, r.ms));
    expect(r.dropped).toBeGreaterThan(0);
    expect(r.result.failureCount).toBeGreaterThan(0);
  });
});

/**
 * One shard: a pool and its first draws acknowledged, then one commit group of six records
 * spanning four pages. Returns the cut just before the group's sync, where any subset of those
 * pages may have reached the disk, and the records as they were written.
 */
async function groupAcrossPages(wal: 'mmap' | 'file'): Promise<{ cut: Cut; records: { offset: number; bytes: Buffer }[]; segment: string }> {
  const storage = new RecordingStorage({ dirs: [kDir] });
  const { w } = await openFirst(wal, storage, 1, 64 * 1024);
  w.create('solo', alphaItems);
  w.draw('solo', 10);
  await w.step();
  for (const n of [3000, 1, 3000, 1, 3000, 1]) w.draw('solo', n);
  w.send();
  const from = w.cuts.length;
  w.commit();
  const cut = w.cuts.slice(from).find((c) => /before (msync|fdatasync) \S+\.wal/.test(c.label))!;
  expect(cut, 'the group sync').toBeDefined();
  const segment = storage.files(kDir).find((f) => f.endsWith('.wal'))!;
  const buf = storage.readFile(segment);
  const records: { offset: number; bytes: Buffer }[] = [];
  scanSegment(buf, { file: segment, newest: true }, (_type, body, offset) => records.push({ offset, bytes: Buffer.from(buf.subarray(offset, offset + 8 + body.length)) }));
  return { cut, records, segment };
}

/** A small one-shard run on a deliberately wrong storage. */
async function smallRunWith(wal: 'mmap' | 'file', opts: RecordingOptions): Promise<{ result: CheckResult; ms: number; dropped: number }> {
  const storage = new RecordingStorage({ dirs: [kDir], ...opts });
  const { w, cuts } = await openFirst(wal, storage, 1, 8192);
  w.create('solo', alphaItems);
  await w.step();
  for (let i = 0; i < 6; i++) {
    w.draw('solo', 1500);
    await w.step();
  }
  w.requestSnapshot(0);
  await w.step();
  await w.step();
  const t0 = performance.now();
  const result = await checkCuts([...cuts, ...w.cuts], { dir: kDir, rng: mulberry32(seed + 3), exhaustiveUpTo: 16, samples: 4 });
  return { result, ms: performance.now() - t0, dropped: storage.dropped };
}

describe('power loss regressions (findings of the tests above)', () => {
  for (const wal of ['mmap', 'file'] as const) {
    it(`wal '${wal}', sync 'never': a power cut after rotations may lose the newest tail, never makes the directory unopenable (rotation syncs the segment it leaves)`, async () => {
      // Before: a rotated segment with pages the OS had not written back was read strictly,
      // as no longer the newest: ERR_CORRUPT_WAL in about half the crash states.
      const storage = new RecordingStorage({ dirs: [kDir] });
      const cuts: Cut[] = [];
      const { state, baseSeqs } = await prepareOn(storage, kDir, 1, 8192);
      const w = new Workload({ storage, dir: kDir, wal, shards: 1, segmentBytes: 8192, epoch: state.epoch, firstSeqs: baseSeqs, seed, maxRequestId: state.maxRequestId, sync: 'never' });
      w.create('solo', alphaItems);
      await w.step();
      for (let i = 0; i < 8; i++) {
        w.draw('solo', 1500);
        await w.step();
      }
      cuts.push(...w.cuts);
      const t0 = performance.now();
      const r = await checkCuts(cuts, { dir: kDir, rng: mulberry32(seed + 7), exhaustiveUpTo: 64, samples: 8 });
      expectClean(`sync 'never' rotations, wal '${wal}'`, r, performance.now() - t0);
      expect(r.states).toBeGreaterThan(50);
    });
  }

  for (const wal of ['mmap', 'file'] as const) {
    it(`wal '${wal}': power loss that writes a group's later pages back before an earlier one keeps acknowledged draws (a torn record with valid records after it ends the newest segment)`, async () => {
      // Before: ERR_CORRUPT_WAL "record checksum mismatch", the directory unopenable, when a
      // record cut at a page boundary was followed by a whole record on a later page.
      const { cut, records, segment } = await groupAcrossPages(wal);
      let states = 0;
      let validAfterTorn = 0;
      let holes = 0;
      for (const image of crashImages(cut.frozen, { rng: mulberry32(seed) })) {
        states++;
        const state = await recoverDir(kDir, { storage: RecordingStorage.fromImage(image), replayThreads: 1 });
        expect(verifyRecovered(state, cut.models, cut.ack).problems, `state ${states}`).toEqual([]);
        const torn = state.report.tornTails[0];
        if (torn === undefined) continue;
        const bytes = image.files.get(segment)!;
        if (records.some((r) => r.offset > torn.offset && bytes.subarray(r.offset, r.offset + r.bytes.length).equals(r.bytes))) {
          validAfterTorn++;
          if (torn.reason.startsWith('zero record length')) holes++;
        }
      }
      report(`group across pages, wal '${wal}': ${states} crash states, ${validAfterTorn} with whole records after the torn point (${holes} after a missing page), seed ${seed}`);
      expect(states).toBe(crashStateCount(cut.frozen));
      expect(validAfterTorn - holes).toBeGreaterThan(0);
      expect(holes).toBeGreaterThan(0);
    });

    it(`wal '${wal}': a second power cut while the next open prepares, after one that left whole records past a missing page, keeps acknowledged draws`, async () => {
      // Before: the first recovery ended the newest segment at the missing page and repaired
      // nothing; the next open's first segment made it an older segment, where valid records
      // after a zero length are damage: ERR_CORRUPT_WAL on every later open. Now the first
      // recovery zeroes the whole unfinished tail.
      const { cut, records, segment } = await groupAcrossPages(wal);
      const bases: Base[] = [];
      for (const image of crashImages(cut.frozen, { rng: mulberry32(seed) })) {
        // The first record that did not make it starts on a page that did not (a zero length),
        // and a later one made it whole.
        const bytes = image.files.get(segment)!;
        const whole = records.map((r) => bytes.subarray(r.offset, r.offset + r.bytes.length).equals(r.bytes));
        const k = whole.indexOf(false);
        if (k < 0 || bytes.readUInt32LE(records[k]!.offset) !== 0 || !whole.slice(k).includes(true)) continue;
        const state = await recoverDir(kDir, { storage: RecordingStorage.fromImage(image), replayThreads: 1 });
        const { problems, prefixes } = verifyRecovered(state, cut.models, cut.ack);
        expect(problems).toEqual([]);
        bases.push({ label: `a missing page at ${records[k]!.offset}`, image, cut, state, prefixes });
      }
      expect(bases.length).toBeGreaterThan(0);
      let cuts: Cut[] = [];
      for (const base of bases) cuts = cuts.concat((await runSecond(wal, base, 64 * 1024, true)).cuts);
      const t0 = performance.now();
      const r = await checkCuts(cuts, { dir: kDir, rng: mulberry32(seed + 4), exhaustiveUpTo: 256, samples: 8 });
      expectClean(`second open after a missing page, wal '${wal}' (${bases.length} first crash states)`, r, performance.now() - t0);
    });
  }
});

describe('power loss after a process crash (findings of the tests above)', () => {
  for (const wal of ['mmap', 'file'] as const) {
    it(`wal '${wal}': a process crash with a group written but not synced, then a power cut while the next open prepares, keeps acknowledged draws`, async () => {
      const storage = new RecordingStorage({ dirs: [kDir] });
      const { w } = await openFirst(wal, storage, 1, 64 * 1024);
      w.create('solo', alphaItems);
      w.draw('solo', 10);
      await w.step();
      for (const n of [3000, 1, 3000, 1, 3000, 1]) w.draw('solo', n);
      w.send();
      // SIGKILL: the group is in the page cache, never synced, never acknowledged. The next
      // open recovers it and builds on it.
      w.abandon();
      const dead: Cut = { label: 'the process crash', frozen: storage.freeze(), models: w.models, ack: w.ack };
      const { cuts } = await secondRunOn(wal, storage, { label: 'a process crash', cut: dead }, 64 * 1024);
      const t0 = performance.now();
      const r = await checkCuts(cuts, { dir: kDir, rng: mulberry32(seed + 5), exhaustiveUpTo: 256, samples: 10 });
      expectClean(`process crash, then power cuts during the next open and run, wal '${wal}'`, r, performance.now() - t0);
    });

    it(`wal '${wal}': a power cut after a shard restart, before anything synced what the dead worker wrote, keeps acknowledged draws`, async () => {
      const storage = new RecordingStorage({ dirs: [kDir] });
      const { w, cuts } = await openFirst(wal, storage, 2, 64 * 1024);
      w.create(alpha, alphaItems);
      w.create(beta, betaItems);
      await w.step();
      w.draw(alpha, 10);
      w.draw(beta, 2);
      await w.step();
      for (const n of [3000, 1, 3000, 1, 3000, 1]) w.draw(alpha, n);
      w.send();
      // Shard 0's worker dies before its commit; the supervisor restarts it on what it wrote.
      await w.restartShard(0);
      for (let i = 0; i < 3; i++) {
        w.draw(alpha, 1 + i);
        w.draw(beta, 1);
        await w.step();
      }
      w.draw(alpha, 2000);
      await w.step();
      await w.close();
      const t0 = performance.now();
      const r = await checkCuts([...cuts, ...w.cuts], { dir: kDir, rng: mulberry32(seed + 6), exhaustiveUpTo: 256, samples: 10 });
      expectClean(`shard restart, then power cuts, wal '${wal}'`, r, performance.now() - t0);
    });
  }
});

describe('RecordingStorage (the model itself)', () => {
  const images = (s: RecordingStorage): CrashImage[] => [...crashImages(s.freeze(), { rng: mulberry32(1) })];
  const contents = (s: RecordingStorage, path: string): string[] =>
    [...new Set(images(s).map((i) => (i.files.has(path) ? i.files.get(path)!.toString('latin1').replace(/\0+$/, '') : '<absent>')))].sort();

  it('a write is durable only once fsync/fdatasync returned; until then either content can survive', () => {
    const s = new RecordingStorage({ dirs: ['/d'] });
    const fd = s.open('/d/f', 'w');
    s.write(fd, Buffer.from('old'), 0, 3, 0);
    s.sync(fd);
    s.syncDir('/d');
    s.write(fd, Buffer.from('new'), 0, 3, 0);
    expect(contents(s, '/d/f')).toEqual(['new', 'old']);
    s.datasync(fd);
    expect(contents(s, '/d/f')).toEqual(['new']);
  });

  it('pages are written back independently: a write spanning pages may survive in part', () => {
    const s = new RecordingStorage({ dirs: ['/d'] });
    const fd = s.open('/d/f', 'w');
    s.allocate(fd, 0, 3 * 4096);
    s.sync(fd);
    s.syncDir('/d');
    s.write(fd, Buffer.alloc(2 * 4096, 1), 0, 2 * 4096, 4096);
    const seen = new Set(images(s).map((i) => [0, 1, 2].map((p) => i.files.get('/d/f')![p * 4096]).join('')));
    expect([...seen].sort()).toEqual(['000', '001', '010', '011']);
  });

  it('msync makes the pages covering its range durable, and only those', () => {
    const s = new RecordingStorage({ dirs: ['/d'] });
    const fd = s.open('/d/f', 'w');
    s.allocate(fd, 0, 3 * 4096);
    s.sync(fd);
    s.syncDir('/d');
    const m = s.map(fd, 3 * 4096);
    m.buffer.fill(7, 4000, 4200); // pages 0 and 1
    m.buffer[2 * 4096 + 5] = 9; // page 2
    m.sync(4100, 50); // rounds down to page 1 only
    const states = images(s).map((i) => [i.files.get('/d/f')![4000], i.files.get('/d/f')![4150], i.files.get('/d/f')![2 * 4096 + 5]].join(','));
    expect(new Set(states)).toEqual(new Set(['0,7,0', '7,7,0', '0,7,9', '7,7,9']));
    m.sync(0, 3 * 4096);
    expect(images(s)).toHaveLength(1);
    m.unmap();
    expect(s.violations).toEqual([]);
    m.buffer[0] = 1;
    s.freeze();
    expect(s.violations).toHaveLength(1);
  });

  it('a rename, creation or unlink is durable once its directory is synced; until then either side can survive', () => {
    const s = new RecordingStorage({ dirs: ['/d'] });
    const fd = s.open('/d/a.tmp', 'w');
    s.write(fd, Buffer.from('x'), 0, 1, 0);
    s.sync(fd);
    s.close(fd);
    s.rename('/d/a.tmp', '/d/a');
    const names = (): string[] => [...new Set(images(s).map((i) => [...i.files.keys()].join('+') || '<none>'))].sort();
    // The creation itself was never made durable: the file may vanish altogether.
    expect(names()).toEqual(['/d/a', '/d/a.tmp', '<none>']);
    s.syncDir('/d');
    expect(names()).toEqual(['/d/a']);
    s.unlink('/d/a');
    expect(names()).toEqual(['/d/a', '<none>']);
  });

  it('what a directory holds is lost with the directory when its creation was not made durable', () => {
    const s = new RecordingStorage({ dirs: ['/d'] });
    s.mkdirp('/d/sub');
    const fd = s.open('/d/sub/f', 'w');
    s.sync(fd);
    s.syncDir('/d/sub');
    expect(new Set(images(s).map((i) => [...i.files.keys()].join('+')))).toEqual(new Set(['/d/sub/f', '']));
    s.syncDir('/d');
    expect(images(s).map((i) => [...i.files.keys()].join('+'))).toEqual(['/d/sub/f']);
  });

  it('enumerates every state when there are few, and samples (seeded) when there are many', () => {
    const s = new RecordingStorage({ dirs: ['/d'] });
    const fd = s.open('/d/f', 'w');
    s.allocate(fd, 0, 16 * 4096);
    s.sync(fd);
    s.syncDir('/d');
    for (let p = 0; p < 3; p++) s.write(fd, Buffer.from('z'), 0, 1, p * 4096);
    expect(crashStateCount(s.freeze())).toBe(8);
    expect(images(s)).toHaveLength(8);
    for (let p = 3; p < 16; p++) s.write(fd, Buffer.from('z'), 0, 1, p * 4096);
    expect(crashStateCount(s.freeze())).toBe(2 ** 16);
    expect([...crashImages(s.freeze(), { rng: mulberry32(2), samples: 10 })]).toHaveLength(12);
  });
});
