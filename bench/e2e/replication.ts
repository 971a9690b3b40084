/**
 * Replication to NATS JetStream (`npm run bench:replication`): what `sync: 'replicated'` costs
 * against the durable local baseline `sync: 'always'`, how far a follower trails, and how long
 * a failover takes. Three nats-server processes (bench/lib/nats-servers.ts) run on this machine
 * beside the engine, so they share its cores.
 *
 *   1. draw(), 10,000 calls in flight, for --seconds: 'replicated' vs 'always', draws/s and the
 *      ratio of the two in the same repetition;
 *   2. drawMany(--many), 2 calls in flight (one per shard), same comparison;
 *   3. from the replicated runs: draws, WAL records and bytes per stream message;
 *   4. a follower in a child process under the draw() load of an in-process leader: its lag
 *      sampled every 100 ms, and how long after the load stops it has applied everything;
 *   5. failover: leader and follower child processes, the leader drawing (2,000 in flight) is
 *      SIGKILLed; time from the kill to the first draw the new leader acknowledges, with
 *      autoPromote and with promote() called right after the kill, in turn.
 *
 * Engines: 2 shards, wal 'mmap', default options otherwise. Repetitions are interleaved
 * (A, B, A, B, ...), each with a fresh directory and (replicated) a fresh stream, deleted after.
 * Flags: --reps N [5], --seconds S [3], --many N [1,000,000], --failovers N [10],
 * --json <file> (raw figures).
 */
import { rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { connect, type NatsConnection } from 'nats';
import { DrawEngine, type DrawEngineOptions } from '../../src/index.js';
import { shardOf } from '../../src/hash.js';
import { CpuMeter } from '../lib/cpu-load.js';
import { int, markdownTable, sig3, type Table, type TableRow } from '../lib/format.js';
import { machineInfo } from '../lib/machine.js';
import { natsServerVersion, startNatsServers, type NatsServers } from '../lib/nats-servers.js';
import { ScratchDir } from '../lib/paths.js';
import { Progress } from '../lib/progress.js';
import { median, spreadPct } from '../lib/stats.js';
import { drawLoop, drawManyLoop, kCatalog } from './workloads.js';
import type { ChildConfig } from './replication-child.js';
import { kWaitMs, liveNodes, NodeProcess, withTimeout } from './replication-node.js';

const { values: flags } = parseArgs({
  options: {
    reps: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '3' },
    many: { type: 'string', default: '1000000' },
    failovers: { type: 'string', default: '10' },
    json: { type: 'string' },
  },
});
const reps = Number(flags.reps);
const seconds = Number(flags.seconds);
const many = Number(flags.many);
const failovers = Number(flags.failovers);
for (const [k, v] of Object.entries({ reps, seconds, many, failovers })) if (!(v > 0)) throw new Error(`--${k} must be a positive number, got ${v}`);

const kShards = 2;
const kInFlight = 10_000;
const kManyInFlight = 2;
const kWarmUpMs = 300;
const kSampleMs = 100;
const kFailoverInFlight = 2000;
const kLeaseMs = 1000;
/** How long the leader draws (and the follower follows) before the SIGKILL. */
const kLoadBeforeKillMs = 1000;
/** The in-process leader's draw count is sampled this often during the lag runs. */
const kLeaderSampleMs = 20;

const progress = new Progress();
const say = (line: string): void => progress.log(`[${progress.elapsed.toFixed(0).padStart(3)} s] ${line}`);
const scratch = new ScratchDir();
const engines = new Set<DrawEngine>();
let nats: NatsServers | undefined;
let admin: NatsConnection | undefined;
let groups = 0;


/** A replication group's name, unique in this cluster's life. */
const groupName = (): string => `rb${process.pid}x${groups++}`;

/** Delete a group's stream, lease bucket and snapshot store: old R3 groups would keep costing the servers CPU. */
async function deleteGroup(stream: string): Promise<void> {
  if (cleaning !== undefined) return; // the servers are going anyway
  try {
    const jsm = await admin!.jetstreamManager({ timeout: 5000 });
    for (const name of [stream, `KV_${stream}_lease`, `OBJ_${stream}_snap`]) await jsm.streams.delete(name).catch(() => false);
  } catch (err) {
    say(`could not delete replication group ${stream}: ${(err as Error).message}`);
  }
}

/** Two pools, one on each shard (the engine routes by shardOf). */
const pools: string[] = [];
for (let i = 0; pools.length < kShards; i++) if (shardOf(`pool-${i}`, kShards) === pools.length) pools.push(`pool-${i}`);

async function closeEngine(engine: DrawEngine): Promise<void> {
  await withTimeout(engine.close(), kWaitMs, 'engine.close()');
  engines.delete(engine);
}

// ---- 1-3: one engine in this process ----

type Sync = 'always' | 'replicated';

interface EngineRun {
  sync: Sync;
  draws: number;
  seconds: number;
  perSecond: number;
  /** Deltas over the measured window. */
  records: number;
  messages: number;
  bytes: number;
  /** CPU used by other processes (NATS servers included), % of all cores. */
  foreignCpuPct: number;
}

function replicationOf(servers: string[], stream: string): DrawEngineOptions['replication'] {
  return { servers, stream, role: 'leader', node: `bench-${stream}` };
}

async function engineRun(sync: Sync, kind: 'draw' | 'many'): Promise<EngineRun> {
  const dir = scratch.next(`${kind}-${sync}`);
  const stream = sync === 'replicated' ? groupName() : undefined;
  const engine = await DrawEngine.open({
    dir,
    shards: kShards,
    wal: 'mmap',
    ...(stream === undefined ? { sync: 'always' as const } : { replication: replicationOf(nats!.urls, stream) }),
  });
  engines.add(engine);
  try {
    for (const id of pools) await engine.createPool(id, kCatalog);
    const load = (ms: number): Promise<number> => (kind === 'draw' ? drawLoop(engine, pools, kInFlight, ms) : drawManyLoop(engine, pools, many, ms, kManyInFlight / pools.length));
    await load(kWarmUpMs);
    const before = engine.metrics();
    const cpu = new CpuMeter();
    cpu.start();
    const t0 = performance.now();
    const draws = await load(seconds * 1000);
    const elapsed = (performance.now() - t0) / 1000;
    const foreign = cpu.stop().foreignPct;
    const after = engine.metrics();
    if (after.shards.some((sh, k) => sh.draws === before.shards[k]!.draws)) throw new Error(`the load did not reach every shard: ${JSON.stringify(after.shards.map((sh) => sh.draws))}`);
    return {
      sync,
      draws,
      seconds: elapsed,
      perSecond: draws / elapsed,
      records: after.records - before.records,
      messages: (after.replication?.messages ?? 0) - (before.replication?.messages ?? 0),
      bytes: (after.replication?.bytes ?? 0) - (before.replication?.bytes ?? 0),
      foreignCpuPct: foreign,
    };
  } finally {
    await closeEngine(engine);
    if (stream !== undefined) await deleteGroup(stream);
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- child-process nodes ----

function nodeConfig(stream: string, role: 'leader' | 'follower', over: Partial<ChildConfig>): ChildConfig {
  return {
    dir: scratch.next(`${stream}-${role}`),
    servers: nats!.urls,
    stream,
    node: `${stream}-${role}`,
    role,
    autoPromote: false,
    leaseMs: kLeaseMs,
    timeoutMs: 5000,
    pools,
    inflight: kFailoverInFlight,
    load: false,
    sampleMs: 0,
    ...over,
  };
}

// ---- 4: a follower's lag ----

interface Sample {
  at: number;
  lagMessages: number;
  lagMs: number;
  draws: number;
}

interface LagRun {
  leaderPerSecond: number;
  acked: number;
  leaderDraws: number;
  followerDraws: number;
  samples: Sample[];
  lagMessagesMedian: number;
  lagMessagesMax: number;
  lagMsMedian: number;
  lagMsMax: number;
  /**
   * The bench's own view, from the follower's samples and the leader's draw count sampled here
   * every kLeaderSampleMs: draws the leader had (accepted) and the follower not yet, and how long
   * ago the leader had the follower's count.
   */
  behindDrawsMedian: number;
  behindDrawsMax: number;
  behindMsMedian: number;
  behindMsMax: number;
  /**
   * Samples in which the follower reported lagMessages 0 while it trailed by more than twice the
   * draws the leader can have accepted and not yet stored (kInFlight): a margin for the
   * interpolation of the leader's count between its samples.
   */
  blindSamples: number;
  behind: { draws: number; ms: number }[];
  /** From the end of the load (every draw acknowledged) to the follower's lag 0 / its draw count equal to the leader's. */
  lagZeroAfterMs: number;
  drawsEqualAfterMs: number;
  errors: string[];
}

/**
 * How far the follower's sample `f` trails the leader's draw count (samples in time order):
 * the leader's count at f.at (interpolated) minus f.draws, and f.at minus the moment the leader
 * first had f.draws (interpolated; 0 when the follower is level).
 */
function behindAt(leader: { at: number; draws: number }[], f: Sample): { draws: number; ms: number } {
  const interp = (a: { at: number; draws: number }, b: { at: number; draws: number }, x: number, from: 'at' | 'draws', to: 'at' | 'draws'): number =>
    b[from] === a[from] ? b[to] : a[to] + ((b[to] - a[to]) * (x - a[from])) / (b[from] - a[from]);
  let draws = leader.at(-1)!.draws;
  for (let i = 1; i < leader.length; i++) {
    if (leader[i]!.at >= f.at) {
      draws = interp(leader[i - 1]!, leader[i]!, f.at, 'at', 'draws');
      break;
    }
  }
  let hadAt = f.at;
  for (let i = 1; i < leader.length; i++) {
    if (leader[i]!.draws >= f.draws) {
      hadAt = interp(leader[i - 1]!, leader[i]!, f.draws, 'draws', 'at');
      break;
    }
  }
  return { draws: Math.max(0, draws - f.draws), ms: Math.max(0, f.at - hadAt) };
}

async function lagRun(): Promise<LagRun> {
  const stream = groupName();
  const dir = scratch.next(`lag-leader-${stream}`);
  const engine = await DrawEngine.open({ dir, shards: kShards, wal: 'mmap', replication: replicationOf(nats!.urls, stream) });
  engines.add(engine);
  let follower: NodeProcess | undefined;
  try {
    for (const id of pools) await engine.createPool(id, kCatalog);
    follower = new NodeProcess(nodeConfig(stream, 'follower', { sampleMs: kSampleMs }));
    await follower.wait((m) => m.type === 'open', 'open');
    // The follower has applied the pools' creation before the load starts.
    await follower.request('pools', { timeoutMs: 10_000 });
    const t0 = Date.now();
    const p0 = performance.now();
    const leaderSamples: { at: number; draws: number }[] = [{ at: t0, draws: engine.metrics().draws }];
    const sampler = setInterval(() => leaderSamples.push({ at: Date.now(), draws: engine.metrics().draws }), kLeaderSampleMs);
    const acked = await drawLoop(engine, pools, kInFlight, seconds * 1000).finally(() => clearInterval(sampler));
    const tStop = Date.now();
    leaderSamples.push({ at: tStop, draws: engine.metrics().draws });
    const leaderPerSecond = acked / ((performance.now() - p0) / 1000);
    const leaderDraws = engine.metrics().draws;
    const caught = await follower.request('until', { draws: leaderDraws, timeoutMs: kWaitMs }, kWaitMs + 5000);
    if (caught.timedOut) throw new Error(`follower did not catch up within ${kWaitMs} ms: ${JSON.stringify(caught)}`);
    const samples = follower.events
      .filter((m) => m.type === 'sample' && (m.at as number) >= t0 && (m.at as number) <= tStop)
      .map((m) => ({ at: m.at as number, lagMessages: m.lagMessages as number, lagMs: m.lagMs as number, draws: m.draws as number }));
    const behind = samples.map((f) => behindAt(leaderSamples, f));
    return {
      leaderPerSecond,
      acked,
      leaderDraws,
      followerDraws: caught.draws as number,
      samples,
      lagMessagesMedian: median(samples.map((s) => s.lagMessages)),
      lagMessagesMax: Math.max(...samples.map((s) => s.lagMessages)),
      lagMsMedian: median(samples.map((s) => s.lagMs)),
      lagMsMax: Math.max(...samples.map((s) => s.lagMs)),
      behindDrawsMedian: median(behind.map((b) => b.draws)),
      behindDrawsMax: Math.max(...behind.map((b) => b.draws)),
      behindMsMedian: median(behind.map((b) => b.ms)),
      behindMsMax: Math.max(...behind.map((b) => b.ms)),
      blindSamples: samples.filter((f, i) => f.lagMessages === 0 && behind[i]!.draws > 2 * kInFlight).length,
      behind,
      lagZeroAfterMs: Math.max(0, (caught.lagZeroAt as number) - tStop),
      drawsEqualAfterMs: Math.max(0, (caught.drawsAt as number) - tStop),
      errors: follower.errors(),
    };
  } finally {
    await follower?.close();
    await closeEngine(engine);
    await deleteGroup(stream);
    rmSync(dir, { recursive: true, force: true });
    if (follower) rmSync(follower.cfg.dir, { recursive: true, force: true });
  }
}

// ---- 5: failover ----

type Takeover = 'autoPromote' | 'promote';

interface FailoverRun {
  how: Takeover;
  /** SIGKILL of the leader -> the follower's roleChange 'leader' -> its first acknowledged draw. */
  roleMs: number;
  firstAckMs: number;
  /** The follower's last lag sample before the kill. */
  lagMessagesAtKill: number;
  jitterMs: number;
  leaderErrors: string[];
  followerErrors: string[];
}

async function failoverRun(how: Takeover): Promise<FailoverRun> {
  const stream = groupName();
  let leader: NodeProcess | undefined;
  let follower: NodeProcess | undefined;
  try {
    leader = new NodeProcess(nodeConfig(stream, 'leader', { load: true }));
    await leader.wait((m) => m.type === 'firstAck', 'first acknowledged draw');
    follower = new NodeProcess(nodeConfig(stream, 'follower', { load: true, autoPromote: how === 'autoPromote', sampleMs: kSampleMs }));
    await follower.wait((m) => m.type === 'open', 'open');
    // The leader renews its lease every leaseMs / 3: a random extra wait spreads the kill over
    // that period, so autoPromote's figure covers every phase instead of one fixed offset.
    const jitterMs = Math.random() * (kLeaseMs / 3);
    await sleep(kLoadBeforeKillMs + jitterMs);
    const lastSample = follower.events.filter((m) => m.type === 'sample').at(-1);
    const killAt = Date.now();
    leader.kill();
    const promoted = how === 'promote' ? follower.request('promote') : undefined;
    const ack = await follower.wait((m) => m.type === 'firstAck', 'first acknowledged draw as leader');
    const role = await follower.wait((m) => m.type === 'role' && m.role === 'leader', 'role leader');
    await promoted;
    return {
      how,
      roleMs: (role.at as number) - killAt,
      firstAckMs: (ack.at as number) - killAt,
      lagMessagesAtKill: (lastSample?.lagMessages as number | undefined) ?? Number.NaN,
      jitterMs,
      leaderErrors: leader.errors(),
      followerErrors: follower.errors(),
    };
  } finally {
    leader?.kill();
    await follower?.close();
    if (leader) await withTimeout(leader.exited, 5000, `${leader.cfg.node}: exit`).catch(() => {});
    await deleteGroup(stream);
    for (const n of [leader, follower]) if (n) rmSync(n.cfg.dir, { recursive: true, force: true });
  }
}

// ---- the table ----

const rows: TableRow[] = [];
const ms = (n: number): string => (Number.isFinite(n) ? `${int(n)} ms` : '-');
const ratio = (n: number): string => `${sig3(n)}x`;
const count = (n: number): string => (Math.abs(n) >= 1000 ? int(n) : sig3(n));

function row(label: string, values: number[], fmt: (n: number) => string): void {
  const v = values.filter(Number.isFinite);
  const range = v.length === 0 ? '-' : `${fmt(Math.min(...v))} - ${fmt(Math.max(...v))}`;
  rows.push({ id: label, cells: [label, String(v.length), v.length === 0 ? '-' : fmt(median(v)), range, v.length < 2 ? '-' : `±${sig3(spreadPct(v))}%`] });
}

let cleaning: Promise<void> | undefined;
/** Kill the children, close the engines, stop the servers, remove the scratch directory; once. */
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const c of liveNodes) c.kill('SIGKILL');
    await Promise.allSettled([...engines].map((e) => withTimeout(e.close(), 10_000, 'close')));
    await admin?.close().catch(() => {});
    await nats?.stop().catch(() => {});
    scratch.remove();
  })();
  return cleaning;
}

let interrupted: number | undefined;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    say(`${sig}: stopping`);
    interrupted = sig === 'SIGINT' ? 130 : 143;
    void cleanup().finally(() => process.exit(interrupted));
  });
}
process.once('exit', () => {
  for (const c of liveNodes) c.kill('SIGKILL');
});

async function main(): Promise<void> {
  const version = natsServerVersion();
  const m = machineInfo(scratch.path);
  const loadStart = loadavg();
  const t0 = performance.now();
  say(`starting 3 nats-server ${version} ...`);
  nats = await startNatsServers({ dir: scratch.next('nats') });
  admin = await connect({ servers: nats.urls, timeout: 5000 });
  say(`cluster ready in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${nats.urls.join(' ')}`);

  const runs = { draw: { always: [] as EngineRun[], replicated: [] as EngineRun[] }, many: { always: [] as EngineRun[], replicated: [] as EngineRun[] } };
  for (let r = 0; r < reps; r++) {
    for (const kind of ['draw', 'many'] as const) {
      for (const sync of ['always', 'replicated'] as const) {
        const run = await engineRun(sync, kind);
        runs[kind][sync].push(run);
        say(`rep ${r + 1}/${reps} ${kind} ${sync}: ${int(run.perSecond)} draws/s, ${run.messages} messages (other CPU ${sig3(run.foreignCpuPct)}%)`);
      }
    }
  }

  const lags: LagRun[] = [];
  for (let r = 0; r < reps; r++) {
    const run = await lagRun();
    lags.push(run);
    say(`lag rep ${r + 1}/${reps}: leader ${int(run.leaderPerSecond)} draws/s; lag median ${run.lagMessagesMedian} msgs / ${run.lagMsMedian} ms, max ${run.lagMessagesMax} / ${run.lagMsMax} ms; caught up ${run.drawsEqualAfterMs} ms after; draws acked ${run.acked} leader ${run.leaderDraws} follower ${run.followerDraws}`);
  }

  const fos: FailoverRun[] = [];
  for (let r = 0; r < 2 * failovers; r++) {
    const run = await failoverRun(r % 2 === 0 ? 'autoPromote' : 'promote');
    fos.push(run);
    say(`failover ${(r >> 1) + 1}/${failovers} ${run.how}: leader at ${run.roleMs} ms, first ack at ${run.firstAckMs} ms (follower lag at kill ${run.lagMessagesAtKill} msgs)`);
  }

  const perSec = (xs: EngineRun[]): number[] => xs.map((x) => x.perSecond);
  const ratios = (k: 'draw' | 'many'): number[] => runs[k].replicated.map((x, i) => x.perSecond / runs[k].always[i]!.perSecond);
  const per = (xs: EngineRun[], f: (x: EngineRun) => number): number[] => xs.map((x) => (x.messages > 0 ? f(x) / x.messages : Number.NaN));
  const manyLabel = int(many);

  row(`draw(), ${int(kInFlight)} in flight, sync 'always': draws/s`, perSec(runs.draw.always), int);
  row(`draw(), ${int(kInFlight)} in flight, sync 'replicated': draws/s`, perSec(runs.draw.replicated), int);
  row(`  ratio replicated / always (per rep)`, ratios('draw'), ratio);
  row(`drawMany(${manyLabel}), ${kManyInFlight} in flight, sync 'always': draws/s`, perSec(runs.many.always), int);
  row(`drawMany(${manyLabel}), ${kManyInFlight} in flight, sync 'replicated': draws/s`, perSec(runs.many.replicated), int);
  row(`  ratio replicated / always (per rep)`, ratios('many'), ratio);
  for (const [k, label] of [['draw', 'draw()'], ['many', 'drawMany']] as const) {
    row(`${label} replicated: draws per stream message`, per(runs[k].replicated, (x) => x.draws), count);
    row(`${label} replicated: WAL records per message`, per(runs[k].replicated, (x) => x.records), sig3);
    row(`${label} replicated: bytes per message`, per(runs[k].replicated, (x) => x.bytes), int);
  }
  row(`leader draw() draws/s with a follower process attached`, lags.map((x) => x.leaderPerSecond), int);
  row(`follower lagMessages, median of ${kSampleMs} ms samples`, lags.map((x) => x.lagMessagesMedian), count);
  row(`follower lagMessages, max of samples`, lags.map((x) => x.lagMessagesMax), int);
  row(`follower lagMs, median of samples`, lags.map((x) => x.lagMsMedian), ms);
  row(`follower lagMs, max of samples`, lags.map((x) => x.lagMsMax), ms);
  row(`follower behind the leader's draw count (bench view), median: draws`, lags.map((x) => x.behindDrawsMedian), int);
  row(`follower behind, max: draws`, lags.map((x) => x.behindDrawsMax), int);
  row(`follower behind (bench view), median: time since the leader had its count`, lags.map((x) => x.behindMsMedian), ms);
  row(`follower behind, max: time`, lags.map((x) => x.behindMsMax), ms);
  row(`samples with lagMessages 0 while > ${int(2 * kInFlight)} draws behind (of ~${Math.round((seconds * 1000) / kSampleMs)})`, lags.map((x) => x.blindSamples), int);
  row(`load stopped -> follower lagMessages 0`, lags.map((x) => x.lagZeroAfterMs), ms);
  row(`load stopped -> follower draws = leader draws`, lags.map((x) => x.drawsEqualAfterMs), ms);
  for (const how of ['autoPromote', 'promote'] as const) {
    const xs = fos.filter((x) => x.how === how);
    const name = how === 'promote' ? 'promote() right after' : 'autoPromote';
    row(`failover, ${name}: SIGKILL -> first acknowledged draw`, xs.map((x) => x.firstAckMs), ms);
    row(`failover, ${name}: SIGKILL -> roleChange 'leader'`, xs.map((x) => x.roleMs), ms);
  }

  const table: Table = { id: 'replication', title: 'Replication to NATS JetStream', columns: ['Measure', 'Samples', 'Median', 'Min - max', 'Spread'], rows };
  const consistent = lags.every((x) => x.acked === x.leaderDraws && x.followerDraws === x.leaderDraws);
  const errors = [...new Set([...lags.flatMap((x) => x.errors), ...fos.flatMap((x) => [...x.leaderErrors, ...x.followerErrors])].map((e) => e.replace(/rb\d+x\d+/g, '<group>')))];
  const foreign = median(runs.draw.always.map((x) => x.foreignCpuPct));
  const elapsed = (performance.now() - t0) / 1000;

  console.log(`machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, Node ${m.node}, ${m.os}, scratch ${m.scratchFs}`);
  console.log(`nats-server ${version}: 3 servers clustered on 127.0.0.1 (same machine), streams R3 on file storage`);
  console.log(`engine: ${kShards} shards, wal 'mmap'; 'replicated' acknowledges once the stream stored the record (local WAL synced every 10 ms), 'always' after msync`);
  console.log(`${reps} interleaved reps of ${seconds} s (after a ${kWarmUpMs} ms warm-up); failovers: ${failovers} of each kind, interleaved, leaseMs ${kLeaseMs}, leader load ${int(kFailoverInFlight)} draw() in flight for ${kLoadBeforeKillMs} ms + 0-${Math.round(kLeaseMs / 3)} ms (random) before the SIGKILL`);
  console.log(`load average at start ${loadStart.map((l) => l.toFixed(2)).join(', ')}, at end ${loadavg().map((l) => l.toFixed(2)).join(', ')}; other processes' CPU during the 'always' draw() reps: ${sig3(foreign)}% of the machine (median); run took ${elapsed.toFixed(0)} s\n`);
  console.log(markdownTable(table));
  console.log('');
  console.log(`Median, min - max over repetitions; spread = (max - min) / 2 / median. Ratios are taken within each rep.`);
  console.log(`Per message: the leader's replication.messages/bytes and metrics().draws/records over the measured window.`);
  console.log(`Lag: the follower's metrics().replication sampled in its own process every ${kSampleMs} ms while the in-process leader drew.`);
  console.log(`"Behind" (bench view): the in-process leader's metrics().draws sampled every ${kLeaderSampleMs} ms (it counts accepted draws, at most ${int(kInFlight)} of them not yet stored)`);
  console.log(`against the follower's samples of its own metrics().draws.`);
  console.log(`Catch-up compares the follower's metrics().draws (it counts the draws it applies) with the leader's metrics().draws once every call was acknowledged: ${consistent ? 'equal in every rep, and equal to the draws the bench counted as acknowledged' : 'NOT equal in every rep (see JSON)'}.`);
  console.log(`Errors seen by the nodes: ${errors.length === 0 ? 'none' : errors.join('; ')}`);

  if (flags.json) {
    writeFileSync(flags.json, `${JSON.stringify({ machine: m, natsServer: version, options: { reps, seconds, many, failovers, shards: kShards, inFlight: kInFlight, manyInFlight: kManyInFlight, leaseMs: kLeaseMs, failoverInFlight: kFailoverInFlight, loadBeforeKillMs: kLoadBeforeKillMs }, runs, lags, failovers: fos, elapsedSeconds: elapsed }, null, 1)}\n`);
  }
}

let code = 0;
try {
  await main();
} catch (err) {
  // After a signal, what failed is only the cleanup pulling the run down.
  if (interrupted === undefined) console.error(err);
  code = 1;
} finally {
  await cleanup();
}
process.exit(interrupted ?? code);

