/**
 * The benchmark suite on smoke-test sizes (--tiny: ~100 ms per scenario, a 20,000-draw recovery
 * directory). Checks the plumbing, never a speed: every scenario reports every column, the JSON
 * written by --json holds exactly the rows printed, RESULTS.md is generated, scratch files go.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { kProfiles } from '../../dist/bench/e2e/config.js';
import type { Result, RunDocument } from '../../dist/bench/e2e/results.js';
import { buildPlan } from '../../dist/bench/e2e/scenarios.js';
import { tmpDir } from '../helpers/tmp.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
// What `npm run bench` runs (the installed package's CLI does not offer the suite).
const benchEntry = join(root, 'dist', 'bench', 'e2e', 'engine-throughput.js');

function runBench(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; pid: number }> {
  const child = spawn(process.execPath, [benchEntry, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr, pid: child.pid! }));
  });
}

/** Printed rows of the table titled `title`: cells split on runs of 2+ spaces. */
function printedRows(stdout: string, title: string): string[][] {
  const lines = stdout.split('\n');
  const at = lines.indexOf(title);
  expect(at, `table "${title}" printed`).toBeGreaterThanOrEqual(0);
  const rows: string[][] = [];
  // title, header, dashes, then rows until a blank line (notes may follow the rows).
  for (let i = at + 3; i < lines.length && lines[i] !== ''; i++) rows.push(lines[i]!.trim().split(/ {2,}/));
  return rows;
}

describe('bench suite (tiny profile, whole suite through the CLI)', () => {
  let out: { code: number | null; stdout: string; stderr: string; pid: number };
  let doc: RunDocument;
  let dir: string;

  beforeAll(async () => {
    dir = tmpDir('bench');
    out = await runBench(['--tiny', '--json', join(dir, 'out.json'), '--write-results', '--results-file', join(dir, 'RESULTS.md')]);
    if (out.code !== 0) throw new Error(`bench exited with ${out.code}\n${out.stdout}\n${out.stderr}`);
    doc = JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8')) as RunDocument;
  }, 60_000);

  it('runs every scenario of the plan, each in a result', () => {
    const plan = buildPlan(kProfiles.tiny, doc.machine.cores);
    expect(doc.results.map((r) => r.id).sort()).toEqual(plan.map((s) => s.id).sort());
    for (const r of doc.results) expect(r.error, `${r.id}: ${r.error}`).toBeUndefined();
  });

  it('every measured scenario reports every column', () => {
    const byId = new Map<string, Result>(doc.results.map((r) => [r.id, r]));
    for (const r of doc.results) {
      if (r.sameAs !== undefined) {
        expect(byId.get(r.sameAs)?.summary, `${r.id} -> ${r.sameAs}`).toBeDefined();
        continue;
      }
      if (r.kind === 'recovery') {
        const rec = r.recovery!;
        expect(rec.build.draws).toBe(kProfiles.tiny.recoveryDraws);
        expect(rec.build.drawsLogged).toBeGreaterThanOrEqual(rec.build.draws);
        expect(rec.byThreads.map((t) => t.replayThreads)).toEqual(Array.from({ length: doc.machine.cores }, (_, i) => i + 1));
        for (const t of rec.byThreads) {
          expect(t.drawsReplayed).toBe(rec.build.drawsLogged);
          for (const k of ['threads', 'threadsUsed', 'ms', 'openMs', 'records', 'segments', 'bytes', 'recordsPerSec', 'drawsPerSec', 'speedup'] as const) {
            expect(t[k], `${r.id} threads ${t.replayThreads}: ${k}`).toBeGreaterThan(0);
          }
        }
        continue;
      }
      const s = r.summary!;
      expect(s, r.id).toBeDefined();
      expect(s.samples, r.id).toBe(r.samples.length);
      expect(s.drawsPerSec, `${r.id} draws/sec`).toBeGreaterThan(0);
      expect(s.nsPerOp, `${r.id} ns/op`).toBeGreaterThan(0);
      expect(s.bytesPerDraw, `${r.id} bytes/draw`).toBeGreaterThanOrEqual(0);
      expect(s.gcCount, `${r.id} gc_count`).toBeGreaterThanOrEqual(0);
      const wal = r.options?.wal;
      if (r.group === 'ref' || wal === 'none') {
        expect(s.walBytesPerDraw, `${r.id} wal_bytes/draw`).toBeNull(); // NaN in JSON
      } else {
        expect(wal, r.id).toMatch(/^(mmap|file)$/);
        expect(s.walBytesPerDraw, `${r.id} wal_bytes/draw`).toBeGreaterThan(0.9);
        expect(s.walFileBytes, `${r.id} wal_file_size`).toBeGreaterThan(0);
        expect(s.segments, `${r.id} segments`).toBeGreaterThan(0);
      }
      for (const sample of r.samples) {
        expect(sample.draws).toBeGreaterThan(0);
        expect(sample.heapBytes).toBeGreaterThan(0);
      }
    }
  });

  it('variant options reach the engine (engine.options of each scenario)', () => {
    const opt = (id: string): Record<string, unknown> => doc.results.find((r) => r.id === id)!.options!;
    expect(opt('sync/always')).toMatchObject({ sync: 'always', wal: 'mmap' });
    expect(opt('sync/interval-1ms')).toMatchObject({ sync: 'interval', syncIntervalMs: 1 });
    expect(opt('segment/64KiB')).toMatchObject({ segmentBytes: 64 * 1024 });
    expect(opt('snapshot/off')).toMatchObject({ snapshotEveryRecords: 0 });
    expect(opt('snapshot/on')).toMatchObject({ snapshotEveryRecords: kProfiles.tiny.snapshotEvery });
    expect(opt('shards/1')).toMatchObject({ shards: 1 });
    expect(opt('main/drawMany/file')).toMatchObject({ wal: 'file', sync: 'never', shards: doc.machine.cores });
    expect(doc.results.find((r) => r.id === 'segment/64KiB')!.summary!.rotations).toBeGreaterThan(0);
    // Measured in a child process started with the flag.
    expect(doc.results.find((r) => r.id === 'gc/semi-space-32mb')!.summary!.drawsPerSec).toBeGreaterThan(0);
  });

  it('the JSON tables are exactly the printed tables', () => {
    expect(doc.tables.map((t) => t.id)).toEqual(['main', 'ref', 'shards', 'sync', 'segment', 'snapshot', 'gc', 'recovery', 'targets']);
    for (const t of doc.tables) {
      expect(t.rows.length, t.id).toBeGreaterThan(0);
      for (const row of t.rows) {
        expect(row.cells, `${t.id}: ${row.cells.join(' | ')}`).toHaveLength(t.columns.length);
        for (const c of row.cells) {
          expect(c, `${t.id}: a cell of ${row.id}`).toMatch(/^\S(.*\S)?$/);
          expect(c, `${t.id}: a cell of ${row.id}`).not.toContain('  ');
        }
      }
      expect(printedRows(out.stdout, t.title), t.id).toEqual(t.rows.map((r) => r.cells));
    }
  });

  it('shows the Go engine rows beside ours, and every target with pass or miss', () => {
    const main = doc.tables.find((t) => t.id === 'main')!;
    expect(main.columns).toEqual(['WAL', 'API', 'machine', 'draws/sec', 'ns/op', 'bytes/draw', 'gc_count', 'wal_bytes/draw', 'wal_file_size', 'samples', '±%']);
    const go = main.rows.filter((r) => r.id === '');
    expect(go.map((r) => [r.cells[0], r.cells[3], r.cells[4]])).toEqual([
      ['No WAL', '5.70 M', '175 ns'],
      ['Mmap WAL', '2.06 M', '485 ns'],
      ['File WAL', '196 K', '5.10 us'],
    ]);
    expect(doc.targets.map((t) => t.id)).toEqual([
      'drawMany-vs-selection',
      'mmap-overhead',
      'file-overhead',
      'draw-rate',
      'draw-vs-promise',
      'sync-always',
      'wal-bytes',
      'heap-drawMany',
      'heap-draw',
    ]);
    for (const t of doc.targets) {
      expect(typeof t.pass, t.id).toBe('boolean');
      expect(t.margin, t.id).toMatch(/^(passes with .* to spare|misses by \S+)( \(within the ±\S+% spread\))?$/);
      expect(t.note.length, t.id).toBeGreaterThan(20);
    }
  });

  it('writes RESULTS.md with the machine, the method, the tables and the targets', () => {
    const page = readFileSync(join(dir, 'RESULTS.md'), 'utf8');
    for (const heading of ['## Machine', '## Method', '## Main table', '## Reference rows', '## Targets', '## Recovery']) expect(page).toContain(heading);
    expect(page).toContain(doc.machine.cpu);
    expect(page).toContain(doc.machine.node);
    expect(page).toContain('v8.GCProfiler');
    for (const row of doc.tables.find((t) => t.id === 'main')!.rows) expect(page).toContain(`| ${row.cells.join(' | ')} |`);
  });

  it('reports progress as plain lines when stderr is not a TTY, and cleans up its scratch directory', () => {
    expect(out.stderr).not.toContain('\r');
    expect(out.stderr).toMatch(/^\[ ?1\/\d+\] ref\/selection: /m);
    expect(existsSync(join(root, '_tmp', `bench-${out.pid}`))).toBe(false);
    expect(readdirSync(join(root, '_tmp')).filter((n) => n === `bench-${out.pid}`)).toEqual([]);
  });
});

describe('bench command line', () => {
  it('--help prints the usage and exits 0', async () => {
    const r = await runBench(['--help']);
    expect(r.code).toBe(0);
    for (const flag of ['--full', '--json <file>', '--filter <regex>', '--write-results']) expect(r.stdout).toContain(flag);
  });

  it('a bad flag exits 2 and says why', async () => {
    const r = await runBench(['--bogus']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("'--bogus'");
  });

  it('--write-results refuses --filter (the page is the whole suite)', async () => {
    const r = await runBench(['--write-results', '--filter', 'main']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--filter');
  });

  it('--filter runs the matches and what an alias row points at', async () => {
    const dir = tmpDir('bench-filter');
    const json = join(dir, 'f.json');
    const r = await runBench(['--tiny', '--quiet', '--filter', '^sync/never$', '--json', json]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const doc = JSON.parse(readFileSync(json, 'utf8')) as RunDocument;
    expect(doc.results.map((x) => x.id).sort()).toEqual(['main/draw/mmap', 'sync/never']);
    expect(doc.tables.find((t) => t.id === 'sync')!.rows.map((x) => x.id)).toEqual(['sync/never']);
    expect(doc.targets.find((t) => t.id === 'draw-rate')!.pass).not.toBeNull();
    expect(doc.targets.find((t) => t.id === 'mmap-overhead')!.pass).toBeNull();
  });
});
