/**
 * The draw service over loopback (`npm run bench:server`), servers in child processes, load from
 * this one:
 *
 *   1. ceiling: autocannon against a bare fastify route answering a constant draw body
 *      (bench/e2e/server-bare.ts);
 *   2. one draw per HTTP request against `reward-pool-engine serve` (with a bearer key), at
 *      sync 'never' and 'always' (mmap WAL, and the plain-file WAL): rate, p50/p99, ratio to the
 *      ceiling; then p50/p99 at half the peak rate (autocannon overallRate);
 *   3. RewardPoolClient: rounds of 10,000 concurrent draw() calls (coalesced per turn), sync
 *      'always';
 *   4. drawMany over HTTP: the client (with per-draw indices, a real DrawBatch) and a bare
 *      summary request (counts only).
 *
 * Knobs (env): RPE_DURATION seconds per run [4], RPE_ROUNDS interleaved rounds of the ceiling
 * and one-draw-per-request runs [3, medians reported], RPE_CONNECTIONS [64], RPE_SHARDS
 * [1: the server's HTTP thread is the bottleneck on 2 cores], RPE_MANY draws per drawMany
 * [1,048,576]. Every loop is bounded by time; everything stays on 127.0.0.1.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';

type Result = Awaited<ReturnType<typeof autocannon>>;
import { Pool } from 'undici';
import { RewardPoolClient } from '../../src/client/index.js';
import { machineInfo } from '../lib/machine.js';

const duration = Number(process.env.RPE_DURATION ?? 4);
const rounds = Number(process.env.RPE_ROUNDS ?? 3);
const connections = Number(process.env.RPE_CONNECTIONS ?? 64);
const shards = Number(process.env.RPE_SHARDS ?? 1);
const manyCount = Number(process.env.RPE_MANY ?? 1 << 20);
const root = join(process.cwd(), '_tmp', `bench-server-${process.pid}`);
const token = 'bench-token-0123456789abcdef';
const auth = { authorization: `Bearer ${token}` };
const distDir = fileURLToPath(new URL('../..', import.meta.url));
const catalog = ['diamond', 'gold', 'silver', 'rock', 'mud', 'log'].map((id, i) => ({ id, weight: 10 * (i + 1), quantity: -1 }));

interface Row {
  scenario: string;
  'requests/s': string;
  'draws/s': string;
  p50: string;
  p99: string;
  'vs ceiling': string;
}
const rows: Row[] = [];
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
/** autocannon records latency in whole milliseconds. */
const ms = (n: number): string => (n < 1 ? '< 1 ms' : `${n.toFixed(n < 10 && !Number.isInteger(n) ? 2 : 0)} ms`);

/** Start a child that prints "listening on <url>"; resolves with the child and its URL. */
function startChild(args: string[]): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (\S+)/.exec(out);
      if (m) resolve({ child, url: m[1]! });
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code} before listening: ${out}`)));
  });
}

async function stop(child: ChildProcess): Promise<void> {
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  const code = await exited;
  if (code !== 0) throw new Error(`server exited with ${code} on SIGTERM`);
}

function startServe(sync: 'always' | 'never', wal: 'mmap' | 'file' = 'mmap'): Promise<{ child: ChildProcess; url: string }> {
  const dir = join(root, `serve-${wal}-${sync}`);
  mkdirSync(dir, { recursive: true });
  const config = join(dir, 'serve.json');
  writeFileSync(
    config,
    JSON.stringify({
      engine: { dir: 'data', shards, sync, wal, segmentBytes: 64 << 20 },
      listen: { host: '127.0.0.1', port: 0 },
      auth: { keys: [{ id: 'bench', token, scopes: ['draw', 'read', 'admin'] }] },
    }),
  );
  return startChild([join(distDir, 'src/cli.js'), 'serve', '--config', config]);
}

/** One autocannon run of POST <url>/v1/pools/bench/draw (after a one-second warm-up, unless told). */
async function cannon(url: string, overallRate?: number, ignoreCoordinatedOmission = false, warmUp = true): Promise<Result> {
  const opts = { url: `${url}/v1/pools/bench/draw`, method: 'POST', headers: auth, connections };
  if (warmUp) await autocannon({ ...opts, duration: 1 });
  const r = await autocannon({ ...opts, duration, ...(overallRate === undefined ? {} : { overallRate, ignoreCoordinatedOmission }) });
  if (r.errors > 0 || r.non2xx > 0) throw new Error(`autocannon saw ${r.errors} errors and ${r.non2xx} non-2xx responses`);
  return r;
}

/** Run `round` repeatedly for `seconds`; returns draws/s and the mean round time. */
async function timed(seconds: number, round: () => Promise<number>): Promise<{ perSecond: number; rounds: number; meanMs: number }> {
  const t0 = performance.now();
  let draws = 0;
  let rounds = 0;
  while (performance.now() - t0 < seconds * 1000) {
    draws += await round();
    rounds++;
  }
  const elapsed = performance.now() - t0;
  return { perSecond: draws / (elapsed / 1000), rounds, meanMs: elapsed / rounds };
}

async function createPool(url: string): Promise<void> {
  const admin = new RewardPoolClient({ url, token });
  await admin.createPool('bench', catalog);
  await admin.close();
}

async function main(): Promise<void> {
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  const m = machineInfo(root);
  console.log(`machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, Node ${m.node}, ${m.os}, scratch ${m.scratchFs}`);
  // Other work on the machine moves every figure here: say how busy it was.
  console.log(`load average at start: ${loadavg().map((l) => l.toFixed(2)).join(', ')}`);
  console.log(`server: reward-pool-engine serve, ${shards} shard(s); autocannon ${connections} connections, ${duration} s per run, ${rounds} interleaved rounds (median, range); loopback\n`);

  // 1-2. The ceiling and one draw per request, interleaved: every server is up at once (an idle
  // one costs nothing) and each round runs all of them back to back, so a change in what else
  // the machine does hits them alike; medians over `rounds` rounds, ratios taken per round.
  const targets = [
    { scenario: 'bare fastify route, constant body (ceiling)', srv: await startChild([join(distDir, 'bench/e2e/server-bare.js')]) },
    { scenario: 'one draw per request, sync never', srv: await startServe('never') },
    { scenario: 'one draw per request, sync always, wal mmap', srv: await startServe('always') },
    // pwrite + fdatasync per group commit costs less than msync(MS_SYNC) of a mapping under
    // load (DESIGN.md "Measured on this machine").
    { scenario: 'one draw per request, sync always, wal file', srv: await startServe('always', 'file') },
  ];
  for (const t of targets.slice(1)) await createPool(t.srv.url);
  const runs: Result[][] = targets.map(() => []);
  for (let r = 0; r < rounds; r++) for (const [i, t] of targets.entries()) runs[i]!.push(await cannon(t.srv.url, undefined, false, r === 0));
  const rate = (x: Result): number => x.requests.average;
  let peakAlways = 0;
  for (const [i, t] of targets.entries()) {
    const byRate = [...runs[i]!].sort((a, b) => rate(a) - rate(b));
    const mid = byRate[byRate.length >> 1]!;
    const ratios = runs[i]!.map((x, r) => rate(x) / rate(runs[0]![r]!)).sort((a, b) => a - b);
    const pct = (x: number): string => `${(x * 100).toFixed(0)}%`;
    if (i === 2) peakAlways = rate(mid);
    rows.push({
      scenario: t.scenario,
      'requests/s': `${fmt(rate(mid))} (${fmt(rate(byRate[0]!))}-${fmt(rate(byRate.at(-1)!))})`,
      'draws/s': i === 0 ? '-' : fmt(rate(mid)),
      p50: ms(mid.latency.p50),
      p99: ms(mid.latency.p99),
      'vs ceiling': i === 0 ? '100%' : `${pct(ratios[ratios.length >> 1]!)} (${pct(ratios[0]!)}-${pct(ratios.at(-1)!)})`,
    });
  }
  const srv = targets[2]!.srv;

  // At a fixed rate autocannon corrects for coordinated omission (a request it sent late counts
  // from when it should have been sent): on a shared 2-core machine its own timer lateness lands
  // in that figure, so the uncorrected one is shown beside it.
  const half = Math.round(peakAlways / 2);
  const atHalf = await cannon(srv.url, half);
  const raw = await cannon(srv.url, half, true);
  rows.splice(3, 0, { scenario: `  same at half the peak rate (${fmt(half)}/s), p99 uncorrected in ()`, 'requests/s': fmt(rate(atHalf)), 'draws/s': fmt(rate(atHalf)), p50: ms(atHalf.latency.p50), p99: `${ms(atHalf.latency.p99)} (${ms(raw.latency.p99)})`, 'vs ceiling': '-' });

  // 3. The client: rounds of 10,000 concurrent draw() calls, coalesced into one request per turn.
  const client = new RewardPoolClient({ url: srv.url, token });
  await Promise.all(Array.from({ length: 10_000 }, () => client.draw('bench'))); // warm-up
  const requestsBefore = client.coalescedRequests;
  const c = await timed(duration, async () => (await Promise.all(Array.from({ length: 10_000 }, () => client.draw('bench')))).length);
  const perRound = (client.coalescedRequests - requestsBefore) / c.rounds;
  rows.push({ scenario: `RewardPoolClient, 10,000 concurrent draw(), sync always (${perRound.toFixed(1)} request/round)`, 'requests/s': fmt((perRound * 1000) / c.meanMs), 'draws/s': fmt(c.perSecond), p50: `${ms(c.meanMs)} /round`, p99: '-', 'vs ceiling': '-' });

  // 4. drawMany over HTTP: the client (indices, a DrawBatch) and a bare summary request.
  const d = await timed(duration, async () => (await client.drawMany('bench', manyCount)).count);
  rows.push({ scenario: `RewardPoolClient drawMany(${fmt(manyCount)}) with indices, sync always`, 'requests/s': (1000 / d.meanMs).toFixed(1), 'draws/s': fmt(d.perSecond), p50: `${ms(d.meanMs)} /call`, p99: '-', 'vs ceiling': '-' });
  await client.close();
  const pool = new Pool(srv.url, { connections: 1 });
  const sm = await timed(duration, async () => {
    const res = await pool.request({ method: 'POST', path: '/v1/pools/bench/draws', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ count: manyCount }) });
    const body = (await res.body.json()) as { count: number };
    return body.count;
  });
  await pool.close();
  rows.push({ scenario: `POST /draws {count: ${fmt(manyCount)}}, summary only, sync always`, 'requests/s': (1000 / sm.meanMs).toFixed(1), 'draws/s': fmt(sm.perSecond), p50: `${ms(sm.meanMs)} /call`, p99: '-', 'vs ceiling': '-' });

  for (const t of targets) await stop(t.srv.child);

  console.table(rows);
  console.log('notes: servers run in child processes on the same 2-core machine as the load generator, so the two share the CPU;');
  console.log('       "one draw per request" rows include bearer-token auth and schema validation; the ceiling route has neither.');
  rmSync(root, { recursive: true, force: true });
}

await main();
