/** The suite's building blocks, without engines. */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { kProfiles, parseSuiteArgs, UsageError } from '../../dist/bench/e2e/config.js';
import { buildPlan, selectScenarios } from '../../dist/bench/e2e/scenarios.js';
import { summarizeRecovery } from '../../dist/bench/e2e/results.js';
import { markdownTable, si, textTable } from '../../dist/bench/lib/format.js';
import { calibrate, measureHeap } from '../../dist/bench/lib/heap-probe.js';
import { Progress } from '../../dist/bench/lib/progress.js';
import { median, spreadPct } from '../../dist/bench/lib/stats.js';

describe('heap probe (v8.GCProfiler)', () => {
  it('measures a known allocation within 15%, kept or garbage', () => {
    // Best of three: a window can also catch a code object from a late optimization.
    const c = [calibrate(1_000_000), calibrate(1_000_000), calibrate(1_000_000)].sort((a, b) => a.error - b.error)[0]!;
    expect(c.expectedBytes).toBe(40);
    expect(Math.abs(c.retainedBytes - c.expectedBytes) / c.expectedBytes).toBeLessThan(0.15);
    expect(Math.abs(c.garbageBytes - c.expectedBytes) / c.expectedBytes).toBeLessThan(0.15);
    expect(c.garbageGcs).toBeGreaterThan(0);
  });

  it('sums over the GCs that happen inside the window', () => {
    const sink: unknown[] = [null];
    // 2,000,000 arrays of 8 holes: JSArray (4 words) + FixedArray (2 + 8 words) = 112 bytes
    // without pointer compression, 224 MB in all: more than any Node line's young generation
    // (larger since Node 22), so the window sees several scavenges.
    const n = 2_000_000;
    const run = () =>
      measureHeap(() => {
        for (let i = 0; i < n; i++) sink[0] = new Array(8);
        return 0;
      });
    run();
    const m = [run(), run(), run()].sort((a, b) => Math.abs(a.allocatedBytes - 112 * n) - Math.abs(b.allocatedBytes - 112 * n))[0]!;
    expect(m.gcCount).toBeGreaterThan(0);
    expect(m.allocatedBytes / n).toBeGreaterThan(100);
    expect(m.allocatedBytes / n).toBeLessThan(125);
  });
});

describe('statistics and formatting', () => {
  it('median and spread', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
    expect(median([Number.NaN, 5])).toBe(5);
    expect(spreadPct([90, 100, 110])).toBeCloseTo(10);
    expect(spreadPct([100])).toBe(0);
  });

  it('si units', () => {
    expect(si(45_612_345)).toBe('45.6 M');
    expect(si(196_000)).toBe('196 K');
    expect(si(2_060_000)).toBe('2.06 M');
    expect(si(Number.NaN)).toBe('-');
  });

  it('text and markdown tables carry the same cells', () => {
    const t = { id: 't', title: 'T', columns: ['a', 'n'], rows: [{ id: 'x', cells: ['one', '1.00 M'] }] };
    expect(textTable(t).split('\n')).toEqual(['T', 'a         n', '---  ------', 'one  1.00 M']);
    expect(markdownTable(t)).toBe('| a | n |\n|---|---:|\n| one | 1.00 M |');
  });

  it('recovery speedup is relative to replayThreads 1', () => {
    const run = (replayThreads: number, ms: number) => ({
      replayThreads,
      threads: replayThreads,
      threadsUsed: replayThreads,
      ms,
      records: 10,
      drawsReplayed: 1000,
      segments: 2,
      bytes: 100,
      snapshotsLoaded: 0,
      openMs: ms + 50,
      foreignCpuPct: 0,
    });
    const s = summarizeRecovery([run(1, 100), run(2, 50), run(1, 120), run(2, 60)]);
    expect(s.map((x) => [x.replayThreads, x.ms, x.speedup])).toEqual([
      [1, 110, 1],
      [2, 55, 2],
    ]);
  });
});

describe('plan and arguments', () => {
  it('has the scenarios of issue 4', () => {
    const ids = buildPlan(kProfiles.quick, 2).map((s) => s.id);
    expect(ids).toEqual([
      'ref/selection',
      'ref/promise',
      'ref/promise-result',
      'main/draw/none',
      'main/draw/mmap',
      'main/draw/file',
      'main/drawMany/none',
      'main/drawMany/mmap',
      'main/drawMany/file',
      'shards/1',
      'shards/2',
      'sync/always',
      'sync/interval-1ms',
      'sync/interval-10ms',
      'sync/interval-100ms',
      'sync/never',
      'segment/1MiB',
      'segment/16MiB',
      'segment/64MiB',
      'snapshot/off',
      'snapshot/on',
      'gc/semi-space-default',
      'gc/semi-space-32mb',
      'recovery',
    ]);
  });

  it('scales the shard curve to the cores', () => {
    const plan = buildPlan(kProfiles.quick, 4);
    expect(plan.filter((s) => s.group === 'shards').map((s) => [s.id, s.sameAs])).toEqual([
      ['shards/1', undefined],
      ['shards/2', undefined],
      ['shards/3', undefined],
      ['shards/4', 'main/drawMany/mmap'],
    ]);
  });

  it('a filter pulls in the scenario an alias row shows', () => {
    const plan = buildPlan(kProfiles.quick, 2);
    expect(selectScenarios(plan, /segment\/64/).map((s) => s.id)).toEqual(['main/drawMany/mmap', 'segment/64MiB']);
    expect(selectScenarios(plan, /^nothing$/)).toEqual([]);
  });

  it('parses flags, env knobs and rejects bad values', () => {
    expect(parseSuiteArgs([], {}).profile.name).toBe('quick');
    expect(parseSuiteArgs(['--full'], {}).profile.sampleMs).toBe(5000);
    expect(parseSuiteArgs(['--seconds', '2', '--in-flight', '500'], {}).profile).toMatchObject({ sampleMs: 2000, inFlight: 500 });
    expect(parseSuiteArgs([], { RPE_SECONDS: '3', RPE_BATCH: '1024' }).profile).toMatchObject({ sampleMs: 3000, batch: 1024 });
    expect(parseSuiteArgs(['--seconds', '1'], { RPE_SECONDS: '3' }).profile.sampleMs).toBe(1000);
    expect(() => parseSuiteArgs(['--repeat', '0'], {})).toThrow(UsageError);
    expect(() => parseSuiteArgs(['--filter', '('], {})).toThrow(/--filter/);
    expect(() => parseSuiteArgs(['--full', '--tiny'], {})).toThrow(UsageError);
    expect(() => parseSuiteArgs(['--results-file', 'x.md'], {})).toThrow(/--write-results/);
    expect(() => parseSuiteArgs(['extra'], {})).toThrow(UsageError);
  });
});

describe('progress', () => {
  function capture(isTTY: boolean): { stream: NodeJS.WriteStream; text: () => string } {
    const s = new PassThrough();
    let text = '';
    s.setEncoding('utf8').on('data', (d: string) => (text += d));
    Object.assign(s, { isTTY, columns: 80 });
    return { stream: s as unknown as NodeJS.WriteStream, text: () => text };
  }

  it('rewrites one line with \\r on a TTY', () => {
    const c = capture(true);
    const p = new Progress({ stream: c.stream });
    p.begin(() => 'step 1');
    p.log('done 1');
    p.end();
    expect(p.live).toBe(true);
    expect(c.text()).toBe('\r\x1b[Kstep 1\r\x1b[Kdone 1\n\r\x1b[Kstep 1\r\x1b[K');
  });

  it('writes plain lines otherwise', () => {
    const c = capture(false);
    const p = new Progress({ stream: c.stream });
    p.begin(() => 'step 1');
    p.log('done 1');
    p.end();
    expect(p.live).toBe(false);
    expect(c.text()).toBe('done 1\n');
  });
});
