/**
 * `npm run soak -- --kills N`: SIGKILL a child engine under load N times, at random moments
 * (while it opens and recovers, under load, while it closes), across wal kinds, sync policies,
 * shard counts, segment sizes (rotations) and snapshot intervals, on fresh directories and on
 * directories that went through earlier kills; after each kill reopen the directory here (with
 * another shard count) and check that every acknowledged draw, pool and weight update is in the
 * recovered state and that request ids continue above every acknowledged one. Not part of CI.
 *
 * Every round prints its seed: `--seed <round seed> --kills 1` runs that round again (on a fresh
 * directory). A round that loses anything, or whose open fails, stops the soak with exit code 1
 * and keeps its directory.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DrawEngine, type PoolState } from '../../src/index.js';
import { int } from '../lib/format.js';
import { machineInfo } from '../lib/machine.js';
import { packageRoot } from '../lib/paths.js';
import { median } from '../lib/stats.js';
import { checkRecovered, maxAcked, newLog, parseLine, type DirModel, type RunLog } from './check.js';
import { describePlan, planRound, roundSeeds, type RoundPlan } from './plan.js';
import type { ChildConfig } from './workload.js';

const kHelp = `usage: npm run soak -- [options]

SIGKILLs a child engine under load at random moments across wal kinds, sync policies, shard
counts, rotations and snapshots, reopens the directory and checks that nothing acknowledged was
lost. Every round prints its seed; a failing round stops the soak (exit code 1) and keeps its
directory. Not part of CI.

options:
  --kills <n>      rounds, one SIGKILL each (default 100)
  --seed <s>       seed of the first round, decimal or 0x hex (default random); the rounds after
                   it get seeds derived from it. Replay one round: --seed <its seed> --kills 1
  --dir <path>     scratch directory (default _tmp/soak-<pid>); removed at the end unless a
                   round failed
  --json <file>    also write every round's figures and the summary as JSON
  --progress <n>   a summary line every n rounds (default: kills / 20)
  -h, --help       this text
`;

class UsageError extends Error {}

interface Args {
  kills: number;
  seed: number;
  dir: string;
  json: string | undefined;
  progress: number;
  help: boolean;
}

function parseSoakArgs(argv: string[]): Args {
  let v;
  try {
    v = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        kills: { type: 'string' },
        seed: { type: 'string' },
        dir: { type: 'string' },
        json: { type: 'string' },
        progress: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const kills = Number(v.kills ?? 100);
  if (!Number.isInteger(kills) || kills < 1) throw new UsageError(`--kills must be a positive integer, got ${JSON.stringify(v.kills)}`);
  let seed = Math.floor(Math.random() * 2 ** 32);
  if (v.seed !== undefined) {
    seed = Number(v.seed);
    if (v.seed === '' || !Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) throw new UsageError(`--seed must be an integer from 0 to 2^32 - 1, got ${JSON.stringify(v.seed)}`);
  }
  const progress = Number(v.progress ?? Math.max(1, Math.round(kills / 20)));
  if (!Number.isInteger(progress) || progress < 1) throw new UsageError(`--progress must be a positive integer, got ${JSON.stringify(v.progress)}`);
  return {
    kills,
    seed,
    dir: resolve(v.dir ?? join(packageRoot(), '_tmp', `soak-${process.pid}`)),
    json: v.json,
    progress,
    help: v.help ?? false,
  };
}

// ---- one round ----

/** Where the kill actually landed, from the child's last lines. */
type Landed = 'node start' | 'open' | 'pool setup' | 'load' | 'closing' | 'after close';

interface RoundResult {
  round: number;
  seed: number;
  plan: RoundPlan;
  /** Kills the directory went through before this one. */
  previousRuns: number;
  landed: Landed;
  /** Child's lifetime, spawn to exit (ms). */
  childMs: number;
  ackedDraws: number;
  acks: number;
  poolsChecked: number;
  snapshots: number;
  rotations: number;
  /** The soak's reopen: engine.recovery.ms, and open() wall time. */
  recoveryMs: number;
  openMs: number;
  segmentsReplayed: number;
  drawsReplayed: number;
  tornTails: number;
  lost: number;
  problems: string[];
}

const childEntry = fileURLToPath(new URL('./child.js', import.meta.url));
/** A child that has not reached the kill after this long is itself a failure (a hang). */
const kChildTimeoutMs = 45_000;

let liveChild: ReturnType<typeof spawn> | undefined;

interface ChildRun {
  log: RunLog;
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  ms: number;
  timedOut: boolean;
}

function runChild(plan: RoundPlan, dir: string): Promise<ChildRun> {
  const cfg: ChildConfig = {
    dir,
    wal: plan.wal,
    sync: plan.sync,
    shards: plan.shards,
    segmentBytes: plan.segmentBytes,
    snapshotEveryRecords: plan.snapshotEveryRecords,
    seed: plan.seed,
    createPrefix: `r${plan.round}`,
    closeAfterMs: plan.closeAfterMs,
  };
  const t0 = performance.now();
  const child = spawn(process.execPath, [childEntry, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
  liveChild = child;
  const log = newLog();
  let stderr = '';
  let pending = '';
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const kill = (): void => {
    clearTimeout(timer);
    child.kill('SIGKILL');
  };
  const killIn = (ms: number): void => {
    if (timer === undefined) timer = setTimeout(kill, ms);
  };
  const watchdog = setTimeout(() => {
    timedOut = true;
    kill();
  }, kChildTimeoutMs);
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      parseLine(line, log);
      if (line === 'opening' && plan.phase === 'open') killIn(plan.killDelayMs);
      if (line === 'ready' && plan.phase === 'load') killIn(plan.killDelayMs);
      if (line === 'closing' && plan.phase === 'close') killIn(plan.killDelayMs);
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolveRun, reject) => {
    child.once('error', reject);
    // 'close' comes after stdout ended: every whole line has been parsed. A line cut by the
    // kill was never completely printed, so it acknowledged nothing: it is dropped.
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(watchdog);
      liveChild = undefined;
      resolveRun({ log, code, signal, stderr, ms: performance.now() - t0, timedOut });
    });
  });
}

function landed(log: RunLog): Landed {
  if (log.closed) return 'after close';
  if (log.closing) return 'closing';
  if (log.ready) return 'load';
  if (log.openMaxRequestId !== undefined) return 'pool setup';
  if (log.opening) return 'open';
  return 'node start';
}

async function allStates(engine: DrawEngine): Promise<Record<string, PoolState>> {
  const ids = engine.poolIds();
  const states = await Promise.all(ids.map((id) => engine.pool(id)));
  return Object.fromEntries(ids.map((id, i) => [id, states[i]!]));
}

async function runRound(plan: RoundPlan, model: DirModel): Promise<RoundResult> {
  const run = await runChild(plan, model.dir);
  const { log } = run;
  const problems: string[] = [];
  if (run.timedOut) problems.push(`the child did not reach its kill within ${kChildTimeoutMs / 1000} s (a hang?)`);
  if (run.signal !== 'SIGKILL') problems.push(`the child ended with ${run.signal ?? `exit code ${run.code}`} instead of the SIGKILL`);
  if (run.stderr !== '') problems.push(`the child wrote to stderr: ${run.stderr.trim()}`);
  const closeRefusals = (line: string): boolean => log.closing && / ERR_ENGINE_CLOSED /.test(line);
  for (const f of log.failures) if (!closeRefusals(f)) problems.push(`child: ${f}`);
  if (log.restarts > 0) problems.push(`a shard of the child restarted ${log.restarts} time(s)`);

  const result: RoundResult = {
    round: plan.round,
    seed: plan.seed,
    plan,
    previousRuns: model.runs,
    landed: landed(log),
    childMs: run.ms,
    ackedDraws: log.ackedDraws,
    acks: log.acks,
    poolsChecked: 0,
    snapshots: log.snapshots,
    rotations: log.rotations,
    recoveryMs: Number.NaN,
    openMs: Number.NaN,
    segmentsReplayed: 0,
    drawsReplayed: 0,
    tornTails: 0,
    lost: 0,
    problems,
  };

  // Reopen here, with another shard count: the open must succeed and recover everything.
  const t0 = performance.now();
  let engine: DrawEngine;
  try {
    engine = await DrawEngine.open({
      dir: model.dir,
      wal: plan.wal,
      sync: plan.sync,
      shards: plan.reopenShards,
      segmentBytes: plan.segmentBytes,
      ...(plan.snapshotEveryRecords === undefined ? {} : { snapshotEveryRecords: plan.snapshotEveryRecords }),
      replayThreads: 1 + (plan.round % 2),
    });
  } catch (err) {
    const e = err as { code?: string; message?: string };
    problems.push(`open failed: ${e.code ?? ''} ${e.message ?? String(err)}`);
    return result;
  }
  try {
    result.openMs = performance.now() - t0;
    const rec = engine.recovery;
    result.recoveryMs = rec.ms;
    result.segmentsReplayed = rec.segments;
    result.drawsReplayed = rec.drawsReplayed;
    result.tornTails = rec.tornTails.length;
    if (rec.snapshotFallbacks.length > 0) problems.push(`snapshots passed over: ${JSON.stringify(rec.snapshotFallbacks)}`);
    const states = await allStates(engine);
    result.poolsChecked = Object.keys(states).length;
    const verdict = checkRecovered(model, log, states, plan.segmentBytes);
    problems.push(...verdict.problems);
    result.lost = verdict.lost;
    const ackedMax = maxAcked(model, log);
    if (rec.maxRequestId < ackedMax) problems.push(`recovery.maxRequestId ${rec.maxRequestId} below acknowledged id ${ackedMax}`);

    // New draws get ids above every acknowledged and every recovered one.
    const ids = Object.keys(states);
    const drawn = await Promise.all(ids.map((id) => engine.draw(id)));
    drawn.forEach((r, i) => {
      const id = ids[i]!;
      if (r.requestId <= ackedMax || r.requestId <= states[id]!.lastRequestId) {
        problems.push(`${id}: first request id after recovery ${r.requestId}, not above acknowledged ${ackedMax} / recovered ${states[id]!.lastRequestId}`);
      }
    });
    if (problems.length === 0) {
      model.baseline = await allStates(engine);
      model.maxAckedId = Math.max(ackedMax, ...drawn.map((r) => r.requestId));
    }
  } finally {
    await engine.close();
  }
  model.runs++;
  return result;
}

// ---- figures ----

function quantile(values: readonly number[], q: number): number {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  return v[Math.min(v.length - 1, Math.max(0, Math.ceil(q * v.length) - 1))]!;
}

function ms(n: number): string {
  if (!Number.isFinite(n)) return '-';
  return n >= 100 ? `${n.toFixed(0)} ms` : `${n.toFixed(1)} ms`;
}

function tally<T extends string | number>(results: RoundResult[], key: (r: RoundResult) => T, order: readonly T[]): string {
  const counts = new Map<T, number>(order.map((k) => [k, 0]));
  for (const r of results) counts.set(key(r), (counts.get(key(r)) ?? 0) + 1);
  return [...counts].map(([k, n]) => `${k} ${int(n)}`).join(', ');
}

interface Summary {
  seed: number;
  kills: number;
  failedRound: number | undefined;
  lost: number;
  ackedDraws: number;
  acks: number;
  poolsChecked: number;
  recoveryMs: { median: number; p99: number; max: number };
  openMs: { median: number; p99: number; max: number };
  elapsedS: number;
}

function summarize(seed: number, results: RoundResult[], elapsedS: number, scratch: string): { summary: Summary; text: string[] } {
  const sum = (f: (r: RoundResult) => number): number => results.reduce((a, r) => a + f(r), 0);
  const rec = results.map((r) => r.recoveryMs);
  const open = results.map((r) => r.openMs);
  const failed = results.find((r) => r.problems.length > 0);
  const summary: Summary = {
    seed,
    kills: results.length,
    failedRound: failed?.round,
    lost: sum((r) => r.lost),
    ackedDraws: sum((r) => r.ackedDraws),
    acks: sum((r) => r.acks),
    poolsChecked: sum((r) => r.poolsChecked),
    recoveryMs: { median: median(rec), p99: quantile(rec, 0.99), max: quantile(rec, 1) },
    openMs: { median: median(open), p99: quantile(open, 0.99), max: quantile(open, 1) },
    elapsedS,
  };
  const chains = results.map((r) => r.previousRuns + 1);
  const m = machineInfo(scratch);
  const snapKind = (r: RoundResult): string =>
    r.plan.snapshotEveryRecords === undefined ? 'default' : r.plan.snapshotEveryRecords === 0 ? 'off' : 'every 10-2,000 records';
  const segKind = (r: RoundResult): string => (r.plan.segmentBytes <= 16 * 1024 ? '4-16 KiB' : r.plan.segmentBytes <= 128 * 1024 ? '16-128 KiB' : '128 KiB-1 MiB');
  const text = [
    `soak summary: seed ${seed} (${int(results.length)} kills in ${(elapsedS / 60).toFixed(1)} min)`,
    `  kills: ${int(results.length)}`,
    `  wal: ${tally(results, (r) => r.plan.wal, ['mmap', 'file'])}`,
    `  sync: ${tally(results, (r) => r.plan.sync, ['always', 'interval', 'never'])}`,
    `  child shards: ${tally(results, (r) => r.plan.shards, [1, 2, 3, 4])}; reopened with: ${tally(results, (r) => r.plan.reopenShards, [1, 2, 3, 4])}`,
    `  segments: ${tally(results, segKind, ['4-16 KiB', '16-128 KiB', '128 KiB-1 MiB'])}`,
    `  snapshotEveryRecords: ${tally(results, snapKind, ['off', 'every 10-2,000 records', 'default'])}`,
    `  kill landed: ${tally(results, (r) => r.landed, ['node start', 'open', 'pool setup', 'load', 'closing', 'after close'])}`,
    `  directories: ${int(results.filter((r) => r.previousRuns === 0).length)} fresh, ${int(results.filter((r) => r.previousRuns > 0).length)} reused (up to ${Math.max(0, ...chains)} kills on one directory)`,
    `  children: ${int(sum((r) => r.rotations))} segment rotations, ${int(sum((r) => r.snapshots))} automatic snapshots`,
    `  acknowledged draws checked: ${int(summary.ackedDraws)} (${int(summary.acks)} acknowledgements), ${int(summary.poolsChecked)} pool states`,
    `  reopen after the kill: recovery ${ms(summary.recoveryMs.median)} median, ${ms(summary.recoveryMs.p99)} p99, ${ms(summary.recoveryMs.max)} max` +
      ` (open() ${ms(summary.openMs.median)} / ${ms(summary.openMs.p99)} / ${ms(summary.openMs.max)}); torn tails dropped in ${int(results.filter((r) => r.tornTails > 0).length)} rounds`,
    `  lost: ${int(summary.lost)} acknowledged draws; failed rounds: ${failed === undefined ? 'none' : `round ${failed.round} (seed ${failed.seed})`}`,
    `  machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, Node ${m.node}, ${m.scratchFs}`,
  ];
  return { summary, text };
}

// ---- main ----

async function main(argv: string[]): Promise<number> {
  let args: Args;
  try {
    args = parseSoakArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`soak: ${err.message}\n(see --help)\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(kHelp);
    return 0;
  }
  let interrupted = false;
  process.once('SIGINT', () => {
    interrupted = true;
    liveChild?.kill('SIGKILL');
  });
  rmSync(args.dir, { recursive: true, force: true });
  mkdirSync(args.dir, { recursive: true });
  console.log(`soak: ${args.kills} kills, seed ${args.seed}, scratch ${args.dir}`);
  console.log(`  replay one round alone: npm run soak -- --seed <its seed> --kills 1`);
  const nextSeed = roundSeeds(args.seed);
  const results: RoundResult[] = [];
  const t0 = performance.now();
  let model: DirModel | undefined;
  let failed: RoundResult | undefined;
  for (let round = 0; round < args.kills && !interrupted; round++) {
    const plan = planRound(round, nextSeed());
    // Chains end now and then, so that reused directories (and their pool counts) stay bounded.
    if (model === undefined || !plan.reuse || model.runs >= 40) {
      if (model !== undefined) rmSync(model.dir, { recursive: true, force: true });
      model = { dir: join(args.dir, `d${round}`), runs: 0, baseline: {}, maxAckedId: 0 };
    }
    const context = describePlan(plan, model.runs);
    const r = await runRound(plan, model);
    results.push(r);
    const recovered = Number.isFinite(r.recoveryMs) ? `recovered in ${ms(r.recoveryMs)} (open ${ms(r.openMs)})` : 'not recovered';
    console.log(
      `round ${round} seed ${plan.seed}: ${context}; landed ${r.landed} after ${ms(r.childMs)}: ${int(r.ackedDraws)} acked draws, ${r.rotations} rotations, ${r.snapshots} snapshots; ${recovered}, ${r.poolsChecked} pools: ${r.problems.length === 0 ? 'ok' : 'FAILED'}`,
    );
    if (r.problems.length > 0) {
      failed = r;
      break;
    }
    if ((round + 1) % args.progress === 0 && round + 1 < args.kills) {
      const done = results.length;
      const rate = (performance.now() - t0) / 1000 / done;
      console.log(
        `-- ${done}/${args.kills} kills, ${int(results.reduce((a, x) => a + x.ackedDraws, 0))} acked draws checked, lost ${int(results.reduce((a, x) => a + x.lost, 0))}, recovery median ${ms(median(results.map((x) => x.recoveryMs)))}, ` +
          `${(((args.kills - done) * rate) / 60).toFixed(0)} min to go`,
      );
    }
  }
  const { summary, text } = summarize(args.seed, results, (performance.now() - t0) / 1000, args.dir);
  if (failed !== undefined) {
    console.log('');
    console.log(`FAILED: round ${failed.round}, seed ${failed.seed}`);
    console.log(`  parameters: ${describePlan(failed.plan, failed.previousRuns)} (segmentBytes ${failed.plan.segmentBytes})`);
    console.log(`  directory kept: ${model!.dir}`);
    console.log(`  replay on a fresh directory: npm run soak -- --seed ${failed.seed} --kills 1`);
    for (const p of failed.problems.slice(0, 40)) console.log(`  - ${p}`);
    if (failed.problems.length > 40) console.log(`  ... and ${failed.problems.length - 40} more`);
  }
  console.log('');
  for (const line of text) console.log(line);
  if (interrupted) console.log('  (interrupted)');
  if (args.json !== undefined) {
    writeFileSync(args.json, `${JSON.stringify({ summary, machine: machineInfo(args.dir), rounds: results }, null, 1)}\n`);
    console.log(`  figures: ${args.json}`);
  }
  if (failed !== undefined) return 1;
  rmSync(args.dir, { recursive: true, force: true });
  return interrupted ? 130 : 0;
}

process.exitCode = await main(process.argv.slice(2));
