/**
 * Crash matrix: a child process (test/fixtures/crash-matrix-child.mjs) draws under load and
 * prints every request before it is issued and every acknowledgement once received; the parent
 * SIGKILLs it after a seeded number of acknowledgements (so at arbitrary points of appends,
 * group commits, segment rotations and snapshots), then recovers the directory, possibly with a
 * different shard count, and checks that:
 *
 * - every acknowledged draw is there (per pool, per item: drawn >= acknowledged successes),
 * - limited items keep quantity + drawn == initial quantity, unlimited ones stay -1,
 * - at most the in-flight draws (requested, not acknowledged) were logged on top,
 * - an acknowledged weight update is there (or the one in flight replaced it),
 * - request ids issued after recovery exceed every acknowledged one,
 * - recovering twice gives identical state.
 *
 * Each directory sees several runs (kill, recover, close, run the child on it again, kill
 * again), so crashes also hit directories with several epochs, snapshot chains and a different
 * shard layout than the run that wrote them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, type TestContext } from 'vitest';
import type { DrawEngineOptions } from '../../dist/src/index.js';
import { allStates, DrawEngine, fixture, KiB, type Item, type States } from '../helpers/engine.js';
import { copyToTmp, tmpDir } from '../helpers/tmp.js';
import { segmentFiles, shardDirs, unsealFile } from '../helpers/wal-files.js';

const childScript = fixture('crash-matrix-child.mjs');

// ---- engines and children that must not outlive a test (tests run concurrently) ----

interface Live {
  engines: Set<DrawEngine>;
  children: Set<ChildProcess>;
}

/** Concurrent tests must register cleanup on their own context. */
function useLive(onTestFinished: TestContext['onTestFinished']): Live {
  const live: Live = { engines: new Set(), children: new Set() };
  onTestFinished(async () => {
    for (const c of live.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await Promise.allSettled([...live.engines].map((e) => e.close()));
  });
  return live;
}

async function openEngine(live: Live, options: DrawEngineOptions): Promise<DrawEngine> {
  const engine = await DrawEngine.open(options);
  live.engines.add(engine);
  return engine;
}

async function closeEngine(live: Live, engine: DrawEngine): Promise<void> {
  await engine.close();
  live.engines.delete(engine);
}

/** mulberry32, for the kill points and shard counts. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---- one child run ----

interface ChildConfig {
  dir: string;
  wal: 'mmap' | 'file';
  sync: 'always' | 'interval';
  segmentBytes: number;
  shards: number;
  snapshotEveryRecords: number;
  seed: number;
  /** SIGKILL once this many acknowledgements were read; 0 = as soon as pool setup starts. */
  killAfterAcks: number;
  /** Count the acknowledgements only from the child's first automatic snapshot on. */
  afterSnapshot: boolean;
}

interface RunLog {
  openMaxRequestId: number;
  catalogs: Map<string, Item[]>;
  createRequested: Set<string>;
  created: Set<string>;
  existed: Set<string>;
  requested: Map<string, number>;
  acked: Map<string, number>;
  /** Acknowledged draws per item index; the last slot counts empty draws. */
  ackCounts: Map<string, number[]>;
  maxAckId: Map<string, number>;
  ackFirstIds: number[];
  /** "pool/index" -> last acknowledged weight. */
  ackedWeights: Map<string, number>;
  /** The update requested and not acknowledged (at most one: the child awaits each). */
  updateInFlight: { key: string; weight: number } | undefined;
  acks: number;
  /** Acknowledgements read once metrics().snapshots was above 0. */
  acksAfterSnapshot: number;
  snapshots: number;
  rotations: number;
  failures: string[];
  signal: NodeJS.Signals | null;
  code: number | null;
  stderr: string;
}

function newLog(): RunLog {
  return {
    openMaxRequestId: -1,
    catalogs: new Map(),
    createRequested: new Set(),
    created: new Set(),
    existed: new Set(),
    requested: new Map(),
    acked: new Map(),
    ackCounts: new Map(),
    maxAckId: new Map(),
    ackFirstIds: [],
    ackedWeights: new Map(),
    updateInFlight: undefined,
    acks: 0,
    acksAfterSnapshot: 0,
    snapshots: 0,
    rotations: 0,
    failures: [],
    signal: null,
    code: null,
    stderr: '',
  };
}

function parseLine(line: string, log: RunLog): void {
  const parts = line.split(' ');
  const [kind, pool] = parts;
  switch (kind) {
    case 'open':
      log.openMaxRequestId = Number(pool);
      return;
    case 'catalog': {
      const items = JSON.parse(line.slice(`catalog ${pool} `.length)) as Item[];
      log.catalogs.set(pool!, items);
      log.ackCounts.set(pool!, new Array<number>(items.length + 1).fill(0));
      return;
    }
    case 'creq':
      log.createRequested.add(pool!);
      return;
    case 'created':
      log.created.add(pool!);
      return;
    case 'exists':
      log.existed.add(pool!);
      return;
    case 'go':
      return;
    case 'req':
      log.requested.set(pool!, (log.requested.get(pool!) ?? 0) + Number(parts[2]));
      return;
    case 'ack': {
      const first = Number(parts[2]);
      const count = Number(parts[3]);
      const counts = JSON.parse(parts[4]!) as number[];
      const sum = counts.reduce((a, b) => a + b, 0);
      if (sum !== count) log.failures.push(`ack counts do not add up: ${line}`);
      const acc = log.ackCounts.get(pool!)!;
      counts.forEach((n, i) => (acc[i]! += n));
      log.acked.set(pool!, (log.acked.get(pool!) ?? 0) + count);
      log.maxAckId.set(pool!, Math.max(log.maxAckId.get(pool!) ?? 0, first + count - 1));
      log.ackFirstIds.push(first);
      log.acks++;
      if (log.snapshots > 0) log.acksAfterSnapshot++;
      return;
    }
    case 'm':
      log.snapshots = Number(parts[1]);
      log.rotations = Number(parts[2]);
      return;
    case 'ureq':
      log.updateInFlight = { key: `${pool}/${parts[2]}`, weight: Number(parts[3]) };
      return;
    case 'uack':
      log.ackedWeights.set(`${pool}/${parts[2]}`, Number(parts[3]));
      log.updateInFlight = undefined;
      return;
    default:
      log.failures.push(line);
  }
}

/** Run the child until the kill point, SIGKILL it, and read everything it printed. */
function runChild(live: Live, cfg: ChildConfig): Promise<RunLog> {
  const log = newLog();
  const args = [childScript, cfg.dir, cfg.wal, cfg.sync, String(cfg.segmentBytes), String(cfg.shards), String(cfg.snapshotEveryRecords), String(cfg.seed)];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.children.add(child);
  let killed = false;
  const kill = (): void => {
    if (killed) return;
    killed = true;
    child.kill('SIGKILL');
  };
  let pending = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      parseLine(line, log);
      if (cfg.killAfterAcks === 0) {
        if (log.createRequested.size > 0 || line === 'go') kill();
      } else if ((cfg.afterSnapshot ? log.acksAfterSnapshot : log.acks) >= cfg.killAfterAcks) {
        kill();
      }
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (log.stderr += d));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      // A line cut by the kill was never acknowledged to anyone: drop it.
      log.code = code;
      log.signal = signal;
      resolve(log);
    });
  });
}

// ---- the checks after a kill ----

interface DirModel {
  dir: string;
  catalogs: Map<string, Item[]>;
  /** Pools whose creation was acknowledged in some run. */
  created: Set<string>;
  /** State after the previous recovery (and the draws made then). */
  baseline: States;
  /** Highest acknowledged request id over every run on this directory. */
  maxAckedId: number;
  /** "pool/index" -> weight as of the baseline. */
  weights: Map<string, number>;
}

function checkRecovered(model: DirModel, log: RunLog, states: States): void {
  for (const id of model.created) expect(states, `pool ${id} was acknowledged as created`).toHaveProperty(id);
  for (const id of log.created) expect(states, `pool ${id} was acknowledged as created`).toHaveProperty(id);
  for (const [id, state] of Object.entries(states)) {
    const catalog = model.catalogs.get(id);
    expect(catalog, `unexpected pool ${id}`).toBeDefined();
    expect(state.items.map((i) => i.id)).toEqual(catalog!.map((i) => i.id));
    const known = model.created.has(id) || log.created.has(id) || log.createRequested.has(id);
    expect(known, `pool ${id} was never requested`).toBe(true);
    const base = model.baseline[id];
    const ackCounts = log.ackCounts.get(id)!;
    expect(ackCounts, `the child printed no catalog for ${id}`).toBeDefined();
    let extra = 0;
    state.items.forEach((item, i) => {
      const where = `${id}/${item.id}`;
      const baseDrawn = base?.items[i]!.drawn ?? 0;
      // Every acknowledged successful draw is there.
      expect(item.drawn, where).toBeGreaterThanOrEqual(baseDrawn + ackCounts[i]!);
      extra += item.drawn - baseDrawn - ackCounts[i]!;
      const initial = catalog![i]!.quantity;
      if (initial === -1) {
        expect(item.quantity, where).toBe(-1);
      } else {
        expect(item.quantity, where).toBeGreaterThanOrEqual(0);
        expect(item.quantity + item.drawn, where).toBe(initial);
      }
      const key = `${id}/${i}`;
      const ackedWeight = log.ackedWeights.get(key) ?? model.weights.get(key) ?? catalog![i]!.weight;
      const allowed = [ackedWeight];
      if (log.updateInFlight?.key === key) allowed.push(log.updateInFlight.weight);
      expect(allowed, `${where} weight`).toContain(item.weight);
    });
    // Logged on top of what was acknowledged: at most what was still in flight.
    const inFlight = (log.requested.get(id) ?? 0) - (log.acked.get(id) ?? 0);
    expect(extra, `${id}: draws beyond the acknowledged ones`).toBeGreaterThanOrEqual(0);
    expect(extra, `${id}: draws beyond the acknowledged ones`).toBeLessThanOrEqual(inFlight);
    expect(state.lastRequestId, id).toBeGreaterThanOrEqual(log.maxAckId.get(id) ?? base?.lastRequestId ?? 0);
    if (base === undefined && !log.created.has(id)) {
      // Created but never acknowledged: no draw can have been issued on it.
      expect(state.items.map((i) => i.drawn)).toEqual(catalog!.map(() => 0));
    }
  }
}

interface MatrixStats {
  kills: number;
  /** Automatic snapshots the children reported (metrics().snapshots). */
  snapshots: number;
  rotations: number;
  multiSegmentShards: number;
  acked: number;
}

function maxSegmentsPerShard(dir: string): number {
  return Math.max(0, ...shardDirs(dir).map((k) => segmentFiles(dir, k).length));
}

/** Several kill/recover cycles on one directory. */
async function killChain(
  live: Live,
  wal: 'mmap' | 'file',
  sync: 'always' | 'interval',
  seed: number,
  runs: number,
  segmentBytes: number,
  snapshotEveryRecords: number,
  stats: MatrixStats,
): Promise<void> {
  const rand = rng(seed);
  const model: DirModel = { dir: tmpDir(`matrix-${wal}-${sync}`), catalogs: new Map(), created: new Set(), baseline: {}, maxAckedId: 0, weights: new Map() };
  const engineOpts = { dir: model.dir, wal, sync, segmentBytes, snapshotEveryRecords };
  for (let run = 0; run < runs; run++) {
    const childShards = 1 + ((seed + run) % 2);
    // Acknowledgements come much faster without a sync per batch: let those runs go further.
    const killAfterAcks = rand() < 0.15 ? 0 : 1 + Math.floor(rand() * (sync === 'always' ? 300 : 1200));
    // Every other run is killed only after it wrote an automatic snapshot, so crashes also
    // land while later snapshots are written and with snapshot chains on disk.
    const afterSnapshot = run % 2 === 1;
    const log = await runChild(live, { ...engineOpts, shards: childShards, seed: seed * 31 + run, killAfterAcks, afterSnapshot });
    const ctx = `seed ${seed} run ${run} (child shards ${childShards}, kill after ${killAfterAcks} acks${afterSnapshot ? ' after a snapshot' : ''})`;
    expect(log.signal, `${ctx}: child ended with code ${log.code}: ${log.stderr}`).toBe('SIGKILL');
    expect(log.failures, ctx).toEqual([]);
    stats.kills++;
    stats.acked += log.acks;
    if (log.openMaxRequestId >= 0) {
      // The child's own recovery saw everything acknowledged before.
      expect(log.openMaxRequestId, ctx).toBeGreaterThanOrEqual(model.maxAckedId);
      for (const [id, items] of log.catalogs) {
        if (model.catalogs.has(id)) expect(items, ctx).toEqual(model.catalogs.get(id));
        else model.catalogs.set(id, items);
      }
    }
    // Ids never go backwards across restarts.
    for (const first of log.ackFirstIds) expect(first, ctx).toBeGreaterThan(model.maxAckedId);

    stats.snapshots += log.snapshots;
    stats.rotations += log.rotations;
    if (maxSegmentsPerShard(model.dir) > 1) stats.multiSegmentShards++;

    // Recover in the parent, with a different shard count and replay thread count.
    const shards = [2, 3, 1][(run + childShards) % 3]!;
    const engine = await openEngine(live, { ...engineOpts, shards, replayThreads: 1 + (run % 2) });
    const states = await allStates(engine);
    checkRecovered(model, log, states);
    const ackedMax = Math.max(model.maxAckedId, ...log.maxAckId.values());
    expect(engine.recovery.maxRequestId, ctx).toBeGreaterThanOrEqual(ackedMax);
    await closeEngine(live, engine);

    // Recovering again gives the same state (whatever the shard count).
    const again = await openEngine(live, { ...engineOpts, shards: 1 + ((shards + 1) % 3) });
    expect(await allStates(again), `${ctx}: second recovery`).toEqual(states);
    // New ids exceed every acknowledged one.
    for (const id of again.poolIds()) {
      const r = await again.draw(id);
      expect(r.requestId, `${ctx}: first id after recovery, pool ${id}`).toBeGreaterThan(ackedMax);
      expect(r.requestId).toBeGreaterThan(states[id]!.lastRequestId);
    }
    model.baseline = await allStates(again);
    await closeEngine(live, again);

    for (const id of log.created) model.created.add(id);
    for (const [id, s] of Object.entries(model.baseline)) {
      model.created.add(id);
      s.items.forEach((item, i) => model.weights.set(`${id}/${i}`, item.weight));
    }
    model.maxAckedId = Math.max(ackedMax, ...Object.values(model.baseline).map((s) => s.lastRequestId));
  }
}

const combos = [
  ['mmap', 'always'],
  ['mmap', 'interval'],
  ['file', 'always'],
  ['file', 'interval'],
] as const;

// Each (combination, chain) is its own test, so each stays far under its timeout; they run
// concurrently (a run spends much of its time waiting for syncs and child processes). The
// default suite runs 2 chains of 4 kills per combination (32 kills); `npm run test:crash`
// runs a longer matrix (RPE_CRASH_CHAINS chains of RPE_CRASH_RUNS kills each).
const kChains = Number(process.env.RPE_CRASH_CHAINS ?? 2);
const kRuns = Number(process.env.RPE_CRASH_RUNS ?? 4);
const chains = Array.from({ length: kChains }, (_, i) => i);

describe.concurrent.each(combos)('crash matrix, wal %s, sync %s', (wal, sync) => {
  it.for(chains)(`chain %i: ${kRuns} SIGKILLs on one directory, each recovered, checked, reopened and run again`, async (chain, { expect, onTestFinished }) => {
    const live = useLive(onTestFinished);
    const stats: MatrixStats = { kills: 0, snapshots: 0, rotations: 0, multiSegmentShards: 0, acked: 0 };
    const base = 1000 * (combos.findIndex(([w, s]) => w === wal && s === sync) + 1);
    // Alternate small segments with frequent snapshots and larger ones with rarer snapshots.
    const [segmentBytes, snapshotEvery] = chain % 2 === 0 ? [64 * KiB, 20] : [128 * KiB, 50];
    await killChain(live, wal, sync, base + 1 + chain, kRuns, segmentBytes, snapshotEvery, stats);
    expect(stats.kills).toBe(kRuns);
    // The matrix really exercised what it is about.
    expect(stats.acked).toBeGreaterThan(20);
    expect(stats.snapshots + stats.rotations).toBeGreaterThan(0);
    expect(stats.multiSegmentShards).toBeGreaterThan(0);
  });
});

/**
 * A crash while open() writes its snapshots (one per shard of the new layout, then retires what
 * they cover). Built from the files such a crash leaves: the old directory plus the new
 * snapshots written so far, and a half-written temp file of the next one.
 */
describe('crash while open writes its snapshots', () => {
  const cases: [string, number[], boolean][] = [
    ['after the first of three', [0], false],
    ['after two of three', [0, 1], false],
    ['after all three, before retiring the old files', [0, 1, 2], true],
  ];
  it.for(cases)('%s: the next open recovers the same state', async ([, written, complete], { onTestFinished }) => {
    const live = useLive(onTestFinished);
    const old = tmpDir('open-crash-old');
    const opts = { dir: old, shards: 2, segmentBytes: 64 * KiB, snapshotEveryRecords: 0 };
    const engine = await openEngine(live, opts);
    const pools = ['a', 'b', 'c', 'd', 'e'];
    for (const id of pools) await engine.createPool(id, [{ id: 'rare', weight: 1, quantity: 30_000 }, { id: 'mud', weight: 3, quantity: -1 }]);
    for (const id of pools) await engine.drawMany(id, 25_000);
    await engine.snapshot();
    for (const id of pools) await engine.drawMany(id, 4_000);
    await engine.updateItem('c', 'rare', { weight: 6 });
    const states = await allStates(engine);
    await closeEngine(live, engine);

    // The complete open (3 shards) in a copy, to take its snapshot files from.
    const next = copyToTmp(old, 'open-crash-next');
    await closeEngine(live, await openEngine(live, { ...opts, dir: next, shards: 3 }));

    const crashed = copyToTmp(old, 'open-crash');
    // open() first creates every shard's first segment of the new run, then the snapshots that
    // point at them: copy those segments (as a crash leaves them: unsealed, empty) for every shard.
    for (let k = 0; k < 3; k++) {
      const from = join(next, `shard-${k}`);
      mkdirSync(join(crashed, `shard-${k}`), { recursive: true });
      const first = readdirSync(from).filter((n) => n.endsWith('.snap')).sort()[0]!.replace('.snap', '.wal');
      expect(existsSync(join(crashed, `shard-${k}`, first))).toBe(false);
      copyFileSync(join(from, first), join(crashed, `shard-${k}`, first));
      unsealFile(join(crashed, `shard-${k}`, first));
    }
    let copied = 0;
    for (const k of written) {
      const from = join(next, `shard-${k}`);
      mkdirSync(join(crashed, `shard-${k}`), { recursive: true });
      for (const name of readdirSync(from).filter((n) => n.endsWith('.snap'))) {
        if (existsSync(join(crashed, `shard-${k}`, name))) continue;
        copyFileSync(join(from, name), join(crashed, `shard-${k}`, name));
        copied++;
      }
    }
    expect(copied).toBe(written.length);
    // The snapshot being written when the process died.
    const tmp = join(crashed, 'shard-1', '0000000099.snap.tmp');
    writeFileSync(tmp, Buffer.from('half a snapshot'));

    const recovered = await openEngine(live, { ...opts, dir: crashed });
    expect(await allStates(recovered)).toEqual(states);
    expect(existsSync(tmp)).toBe(false);
    if (complete) expect(recovered.recovery.drawsReplayed).toBe(0);
    else expect(recovered.recovery.drawsReplayed).toBe(pools.length * 4_000);
    await closeEngine(live, recovered);
    const again = await openEngine(live, { ...opts, dir: crashed, shards: 3 });
    expect(await allStates(again)).toEqual(states);
  });
});
