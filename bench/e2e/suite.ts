/**
 * The benchmark suite: `npm run bench [-- options]` and `reward-pool-engine bench [options]`.
 * run(argv) returns the exit code: 0 done (whatever the figures), 1 a scenario failed,
 * 2 bad usage. See kUsage in config.ts for the options.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { calibrate, promiseCosts, type Calibration, type PromiseCosts } from '../lib/heap-probe.js';
import { machineInfo } from '../lib/machine.js';
import { packageRoot, ScratchDir } from '../lib/paths.js';
import { Progress } from '../lib/progress.js';
import { bytes, pct, si, sig3, textTable, type Table } from '../lib/format.js';
import { kUsage, parseSuiteArgs, UsageError, type SuiteArgs } from './config.js';
import { killChildSamples, runChildSample } from './child.js';
import { renderResultsPage } from './results-page.js';
import { loadReport, summarize, summarizeRecovery, type Result, type RunDocument } from './results.js';
import {
  buildPlan,
  buildRecoveryDir,
  runEngineSample,
  runRecovery,
  runReferenceSample,
  selectScenarios,
  type RecoveryRun,
  type Sample,
  type Scenario,
} from './scenarios.js';
import { gcTable, mainTable, recoveryTable, referenceTable, segmentTable, shardsTable, snapshotTable, syncTable } from './tables.js';
import { computeTargets, targetsTable } from './targets.js';

/** A sample is taken at most this many times when the machine is busy with other work. */
const kMaxAttempts = 3;

export interface SuiteIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WriteStream;
}

export async function run(argv: string[], io: SuiteIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  let args: SuiteArgs;
  try {
    args = parseSuiteArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.stderr.write(`bench: ${err.message}\n(see --help)\n`);
    return 2;
  }
  if (args.help) {
    io.stdout.write(kUsage);
    return 0;
  }
  const plan = buildPlan(args.profile, args.cores);
  if (args.list) {
    const w = Math.max(...plan.map((s) => s.id.length));
    for (const s of plan) io.stdout.write(`${s.id.padEnd(w)}  ${s.title}${s.sameAs ? ` (same as ${s.sameAs})` : ''}\n`);
    return 0;
  }
  const selected = selectScenarios(plan, args.filter);
  if (selected.length === 0) {
    io.stderr.write(`bench: no scenario id matches ${String(args.filter)} (see --list)\n`);
    return 2;
  }
  return new Suite(args, plan, selected, io).run(argv);
}

class Suite {
  readonly #args: SuiteArgs;
  readonly #plan: Scenario[];
  readonly #selected: Scenario[];
  readonly #io: SuiteIo;
  readonly #progress: Progress;
  readonly #results = new Map<string, Result>();
  #scratch: ScratchDir | undefined;
  #step = 0;
  #steps = 0;
  #failed = 0;
  #retakes = 0;

  constructor(args: SuiteArgs, plan: Scenario[], selected: Scenario[], io: SuiteIo) {
    this.#args = args;
    this.#plan = plan;
    this.#selected = selected;
    this.#io = io;
    this.#progress = new Progress({ stream: io.stderr, quiet: args.quiet });
  }

  async run(argv: string[]): Promise<number> {
    const { profile: p, cores } = this.#args;
    const t0 = performance.now();
    const scratch = new ScratchDir();
    this.#scratch = scratch;
    // Ctrl-C: remove the scratch directory before leaving (engines may hold files in it).
    const onSignal = (signal: NodeJS.Signals): void => {
      this.#progress.end();
      killChildSamples();
      scratch.remove();
      this.#io.stderr.write(`\nbench: interrupted (${signal}); removed ${scratch.path}\n`);
      process.exit(signal === 'SIGINT' ? 130 : 143);
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    const machine = machineInfo(scratch.path);
    const date = new Date().toISOString();
    const loadStart = loadavg();
    this.#io.stdout.write(
      `reward-pool-engine bench (${p.name}): ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${date.slice(0, 10)}; ` +
        `${p.sampleMs / 1000} s samples after ${p.warmupMs / 1000} s warm-up, ${p.repeat} samples per main scenario\n`,
    );
    let calibration: Calibration | undefined;
    let promises: PromiseCosts | undefined;
    try {
      for (const s of this.#selected) {
        if (s.sameAs !== undefined) continue;
        this.#steps += s.kind === 'recovery' ? 1 + cores * s.repeat : s.repeat;
        this.#results.set(s.id, { id: s.id, group: s.group, kind: s.kind, title: s.title, samples: [], retaken: [] });
      }
      for (const s of this.#selected) {
        if (s.sameAs !== undefined) this.#results.set(s.id, { id: s.id, group: s.group, kind: s.kind, title: s.title, sameAs: s.sameAs, samples: [], retaken: [] });
      }
      calibration = calibrate(p.calibrationObjects);
      promises = await promiseCosts();
      this.#progress.log(
        `heap probe check: ${calibration.objects.toLocaleString('en-US')} objects of ${calibration.expectedBytes} B measured as ` +
          `${sig3(calibration.retainedBytes)} B (retained) and ${sig3(calibration.garbageBytes)} B (garbage, ${calibration.garbageGcs} GCs); ` +
          `new Promise ${sig3(promises.newPromiseBytes)} B, await ${sig3(promises.awaitBytes)} B`,
      );
      // Reference and main scenarios: sample rounds interleaved, so drift spreads over all of them.
      const round = this.#selected.filter((s) => (s.group === 'ref' || s.group === 'main') && s.sameAs === undefined);
      const rounds = Math.max(0, ...round.map((s) => s.repeat));
      for (let r = 0; r < rounds; r++) for (const s of round) if (r < s.repeat) await this.#sample(s, r);
      for (const s of this.#selected) {
        if (s.group === 'ref' || s.group === 'main' || s.sameAs !== undefined) continue;
        if (s.kind === 'recovery') await this.#recovery(s);
        else for (let r = 0; r < s.repeat; r++) await this.#sample(s, r);
      }
    } finally {
      this.#progress.end();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      scratch.remove();
    }
    for (const r of this.#results.values()) if (r.samples.length > 0) r.summary = summarize(r.samples);

    const load = loadReport(this.#results.values(), loadStart, loadavg(), p.maxOtherCpuPct);
    const tables = this.#tables();
    const targets = computeTargets(this.#results, p, cores, promises);
    if (this.#results.has('main/drawMany/mmap') || this.#results.has('ref/selection')) tables.push(targetsTable(targets));
    const doc: RunDocument = {
      version: 1,
      tool: 'reward-pool-engine bench',
      date,
      argv,
      profile: p,
      machine,
      calibration,
      promiseCosts: promises,
      durationSec: (performance.now() - t0) / 1000,
      load,
      results: [...this.#results.values()],
      tables,
      targets,
    };
    for (const t of tables) this.#io.stdout.write(`\n${textTable(t)}\n`);
    const misses = targets.filter((t) => t.pass === false && t.note);
    if (misses.length > 0) this.#io.stdout.write(`\nwhy the misses:\n${misses.map((t) => `- ${t.id}: ${t.note}\n`).join('')}`);
    this.#io.stdout.write(
      `\nother processes used ${pct(load.foreignCpuMedianPct)} of the CPU during the kept windows (median; worst ${pct(load.foreignCpuMaxPct)}), ` +
        `hypervisor steal up to ${pct(load.stealCpuMaxPct)}; ${load.retakenSamples} sample(s) retaken because the machine was busy; ` +
        `load average ${load.loadavgStart.map((l) => l.toFixed(2)).join(' ')} at the start\n`,
    );
    if (load.busySamples > 0) {
      this.#io.stdout.write(
        `warning: ${load.busySamples} kept sample(s) shared the machine with other work (over ${load.maxOtherCpuPct}% of the CPU): their figures are low and the spread wide\n`,
      );
    }
    this.#io.stdout.write(`done in ${doc.durationSec.toFixed(1)} s${this.#failed ? `, ${this.#failed} scenario(s) FAILED` : ''}\n`);
    if (this.#args.json !== undefined) {
      const file = resolvePath(this.#args.json);
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, `${JSON.stringify(doc, jsonNumbers, 2)}\n`);
      this.#io.stdout.write(`results written to ${file}\n`);
    }
    if (this.#args.writeResults) {
      const file = resolvePath(this.#args.resultsFile ?? join(packageRoot(), 'bench', 'RESULTS.md'));
      if (this.#failed > 0) {
        this.#io.stderr.write(`bench: ${file} left as it was: ${this.#failed} scenario(s) failed\n`);
      } else {
        writeFileSync(file, renderResultsPage(doc, this.#plan));
        this.#io.stdout.write(`${file} regenerated\n`);
      }
    }
    return this.#failed > 0 ? 1 : 0;
  }

  #tables(): Table[] {
    const { profile: p, cores } = this.#args;
    const r = this.#results;
    const all = [
      mainTable(r, p, cores),
      referenceTable(r),
      shardsTable(r, cores),
      syncTable(r, p),
      segmentTable(r, p),
      snapshotTable(r, p, cores),
      gcTable(r, p),
      recoveryTable(r),
    ];
    return all.filter((t) => t.rows.some((row) => row.id !== ''));
  }

  #label(s: Scenario, r: number): string {
    const n = String(this.#steps).length;
    return `[${String(this.#step).padStart(n)}/${this.#steps}] ${s.id}${s.repeat > 1 ? ` #${r + 1}/${s.repeat}` : ''}`;
  }

  #eta(): string {
    const done = this.#step - 1;
    const el = this.#progress.elapsed;
    if (done <= 0) return `${el.toFixed(0)} s`;
    return `${el.toFixed(0)} s, eta ~${((el / done) * (this.#steps - done)).toFixed(0)} s`;
  }

  /** Was the machine busy with other work during a window (too busy to keep the figure)? */
  #busy(foreignCpuPct: number, attempt: number): boolean {
    const p = this.#args.profile;
    if (attempt >= kMaxAttempts || this.#retakes >= p.maxRetakes || !(foreignCpuPct > p.maxOtherCpuPct)) return false;
    this.#retakes++;
    return true;
  }

  async #sample(s: Scenario, r: number): Promise<void> {
    const result = this.#results.get(s.id)!;
    if (result.error !== undefined) return;
    this.#step++;
    const label = this.#label(s, r);
    const live = (text: () => string): void => this.#progress.begin(() => `${label} ${text()} | ${this.#eta()}`);
    for (let attempt = 1; ; attempt++) {
      let sample: Sample;
      try {
        if (s.engine === undefined) {
          sample = await runReferenceSample(s, this.#args.profile, live);
        } else {
          const out =
            s.nodeFlags === undefined ? await runEngineSample(s, this.#args.profile, this.#scratch!, live) : await runChildSample(s, this.#args.profile, live);
          sample = out.sample;
          result.options = out.options;
          result.poolsPerShard = s.poolsPerShard ?? this.#args.profile.poolsPerShard;
        }
      } catch (err) {
        this.#progress.end();
        result.error = (err as Error)?.stack ?? String(err);
        this.#failed++;
        this.#progress.log(`${label} FAILED: ${(err as Error)?.message ?? String(err)}`);
        return;
      }
      this.#progress.end();
      const wal = sample.walBytes > 0 ? `, ${sig3(sample.walBytes / sample.draws)} WAL B/draw` : '';
      const line =
        `${label}: ${si(sample.drawsPerSec)} draws/s, ${sig3(sample.heapBytes / sample.draws)} heap B/draw, ${sample.gcCount} GCs${wal} ` +
        `(${sample.seconds.toFixed(2)} s, other processes ${sig3(sample.foreignCpuPct)}% CPU)`;
      if (this.#busy(sample.foreignCpuPct, attempt)) {
        result.retaken.push({ drawsPerSec: sample.drawsPerSec, foreignCpuPct: sample.foreignCpuPct });
        this.#progress.log(`${line}: machine busy, taken again`);
        continue;
      }
      result.samples.push(sample);
      this.#progress.log(line);
      return;
    }
  }

  async #recovery(s: Scenario): Promise<void> {
    const result = this.#results.get(s.id)!;
    const p = this.#args.profile;
    this.#step++;
    let label = this.#label(s, 0).replace(/ #.*/, '');
    const live = (text: () => string): void => this.#progress.begin(() => `${label} ${text()} | ${this.#eta()}`);
    try {
      const { dir, build } = await buildRecoveryDir(p, this.#scratch!, live);
      this.#progress.end();
      this.#progress.log(`${label} build: ${si(build.draws)} draws, ${build.records} records, ${build.segments} segments, ${bytes(build.walBytes)} of WAL (${build.seconds.toFixed(1)} s)`);
      // One untimed open first: the first recovery in a process also loads and compiles the
      // recovery code, which would otherwise be charged to replayThreads 1.
      live(() => 'warm-up open');
      await runRecovery(dir, 1, p, this.#scratch!);
      const runs: RecoveryRun[] = [];
      // Round-robin over the thread counts, so drift spreads over all of them.
      for (let k = 0; k < s.repeat; k++) {
        for (let t = 1; t <= this.#args.cores; t++) {
          this.#step++;
          label = `${this.#label(s, k)} replayThreads ${t}`;
          live(() => 'opening');
          let run = await runRecovery(dir, t, p, this.#scratch!);
          for (let attempt = 1; this.#busy(run.foreignCpuPct, attempt); attempt++) {
            this.#progress.log(`${label}: ${sig3(run.ms)} ms, other processes ${sig3(run.foreignCpuPct)}% CPU: machine busy, taken again`);
            run = await runRecovery(dir, t, p, this.#scratch!);
          }
          this.#progress.end();
          runs.push(run);
          this.#progress.log(
            `${label}: ${sig3(run.ms)} ms, ${run.records} records, ${si(run.drawsReplayed)} draws replayed, threads ${run.threads} (used ${run.threadsUsed}) ` +
              `(open ${sig3(run.openMs)} ms, other processes ${sig3(run.foreignCpuPct)}% CPU)`,
          );
        }
      }
      result.recovery = { build, runs, byThreads: summarizeRecovery(runs) };
    } catch (err) {
      this.#progress.end();
      result.error = (err as Error)?.stack ?? String(err);
      this.#failed++;
      this.#progress.log(`${label} FAILED: ${(err as Error)?.message ?? String(err)}`);
    }
  }
}

/** JSON has no NaN/Infinity: write them as null. */
function jsonNumbers(_key: string, value: unknown): unknown {
  return typeof value === 'number' && !Number.isFinite(value) ? null : value;
}
