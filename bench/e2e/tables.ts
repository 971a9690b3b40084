/**
 * Tables built from the results: the same cells are printed, written to --json and to
 * RESULTS.md. No cell is empty and none contains two spaces in a row (the test splits printed
 * lines on runs of spaces).
 */
import { bytes, duration, int, pct, si, sig3, type Table, type TableRow } from '../lib/format.js';
import type { Profile } from './config.js';
import { resolve, type Result, type Summary } from './results.js';

/** The Go engine's published figures (DESIGN.md), shown beside ours. */
export const kGoRows = [
  { wal: 'none', drawsPerSec: 5.7e6, nsPerOp: 175, bytesPerDraw: Number.NaN, walBytesPerDraw: Number.NaN, walFileBytes: Number.NaN },
  { wal: 'mmap', drawsPerSec: 2.06e6, nsPerOp: 485, bytesPerDraw: 54.6, walBytesPerDraw: Number.NaN, walFileBytes: Number.NaN },
  { wal: 'file', drawsPerSec: 196e3, nsPerOp: 5100, bytesPerDraw: Number.NaN, walBytesPerDraw: 16.4, walFileBytes: 3.3e6 },
] as const;

export const kGoMachine = 'Go, 4-core laptop (published)';

const dash = '-';
const num = (n: number, f: (n: number) => string): string => (Number.isFinite(n) ? f(n) : dash);
const spread = (s: Summary): string => (s.samples < 2 ? dash : `±${sig3(s.spreadPct)}%`);
const bpd = (n: number): string => num(n, sig3);
const walLabel = { none: 'No WAL', mmap: 'Mmap WAL', file: 'File WAL' } as const;

function summaryOf(results: Map<string, Result>, id: string): Summary | undefined {
  return resolve(results, id)?.summary;
}

export function mainTable(results: Map<string, Result>, p: Profile, cores: number): Table {
  const rows: TableRow[] = [];
  const here = `Node, this machine (${cores} cores)`;
  for (const go of kGoRows) {
    for (const api of ['draw', 'drawMany'] as const) {
      const id = `main/${api}/${go.wal}`;
      const s = summaryOf(results, id);
      if (s === undefined) continue;
      rows.push({
        id,
        cells: [
          walLabel[go.wal],
          api === 'draw' ? `draw() x${p.inFlight}` : `drawMany(${p.batch})`,
          here,
          si(s.drawsPerSec),
          duration(s.nsPerOp),
          bpd(s.bytesPerDraw),
          int(s.gcCount),
          bpd(s.walBytesPerDraw),
          go.wal === 'none' ? dash : bytes(s.walFileBytes),
          String(s.samples),
          spread(s),
        ],
      });
    }
    if (rows.some((r) => r.id.endsWith(`/${go.wal}`))) {
      rows.push({
        id: '',
        cells: [
          walLabel[go.wal],
          'one draw per op',
          kGoMachine,
          si(go.drawsPerSec),
          duration(go.nsPerOp),
          bpd(go.bytesPerDraw),
          dash,
          bpd(go.walBytesPerDraw),
          num(go.walFileBytes, bytes),
          dash,
          dash,
        ],
      });
    }
  }
  return {
    id: 'main',
    title: `Main table: ${cores} shards, sync never, ${p.poolsPerShard} pools per shard (Go engine rows: published figures, other machine)`,
    columns: ['WAL', 'API', 'machine', 'draws/sec', 'ns/op', 'bytes/draw', 'gc_count', 'wal_bytes/draw', 'wal_file_size', 'samples', '±%'],
    rows,
  };
}

export function referenceTable(results: Map<string, Result>): Table {
  const rows: TableRow[] = [];
  for (const r of results.values()) {
    if (r.group !== 'ref' || r.summary === undefined) continue;
    const s = r.summary;
    rows.push({ id: r.id, cells: [r.title, si(s.drawsPerSec), duration(s.nsPerOp), bpd(s.bytesPerDraw), int(s.gcCount), pct(s.gcPausePct), String(s.samples), spread(s)] });
  }
  return {
    id: 'ref',
    title: 'Reference rows: limits measured in the same run, on this thread',
    columns: ['reference', 'draws/sec', 'ns/op', 'bytes/draw', 'gc_count', 'GC pause', 'samples', '±%'],
    rows,
  };
}

export function shardsTable(results: Map<string, Result>, cores: number): Table {
  const rows: TableRow[] = [];
  const one = summaryOf(results, 'shards/1');
  const sel = summaryOf(results, 'ref/selection');
  for (let k = 1; k <= cores; k++) {
    const id = `shards/${k}`;
    const s = summaryOf(results, id);
    if (s === undefined) continue;
    rows.push({
      id,
      cells: [
        String(k),
        si(s.drawsPerSec),
        duration(s.nsPerOp),
        one === undefined ? dash : pct((s.drawsPerSec / (k * one.drawsPerSec)) * 100),
        sel === undefined ? dash : `${sig3(s.drawsPerSec / sel.drawsPerSec)}x`,
        bpd(s.bytesPerDraw),
        int(s.gcCount),
        bpd(s.walBytesPerDraw),
        String(s.samples),
        spread(s),
      ],
    });
  }
  return {
    id: 'shards',
    title: 'Scaling: drawMany, mmap WAL, sync never; efficiency = rate / (shards x rate at 1 shard)',
    columns: ['shards', 'draws/sec', 'ns/op', 'efficiency', 'vs bare selection', 'bytes/draw', 'gc_count', 'wal_bytes/draw', 'samples', '±%'],
    rows,
  };
}

export function syncTable(results: Map<string, Result>, p: Profile): Table {
  const rows: TableRow[] = [];
  const ids = ['sync/always', ...p.syncIntervals.map((ms) => `sync/interval-${ms}ms`), 'sync/never'];
  for (const id of ids) {
    const s = summaryOf(results, id);
    if (s === undefined) continue;
    const [sync, interval] = id === 'sync/always' ? ['always', dash] : id === 'sync/never' ? ['never', dash] : ['interval', `${id.slice(14, -2)} ms`];
    rows.push({
      id,
      cells: [
        sync!,
        interval!,
        si(s.drawsPerSec),
        duration(s.nsPerOp),
        num(s.syncsPerSec, sig3),
        num(s.msPerSync, sig3),
        num(s.drawsPerBatch, si),
        bpd(s.bytesPerDraw),
        int(s.gcCount),
        bpd(s.walBytesPerDraw),
        String(s.samples),
        spread(s),
      ],
    });
  }
  return {
    id: 'sync',
    title: `Sync policy: draw() x${p.inFlight} in flight, mmap WAL (ms/sync: one msync(MS_SYNC); draws/batch: draws per shard message)`,
    columns: ['sync', 'syncIntervalMs', 'draws/sec', 'ns/op', 'syncs/sec', 'ms/sync', 'draws/batch', 'bytes/draw', 'gc_count', 'wal_bytes/draw', 'samples', '±%'],
    rows,
  };
}

export function segmentTable(results: Map<string, Result>, p: Profile): Table {
  const rows: TableRow[] = [];
  for (const r of results.values()) {
    if (r.group !== 'segment') continue;
    const s = resolve(results, r.id)?.summary;
    if (s === undefined) continue;
    rows.push({
      id: r.id,
      cells: [
        r.id.slice('segment/'.length).replace(/(\d)([KMG]iB)/, '$1 $2'),
        si(s.drawsPerSec),
        duration(s.nsPerOp),
        int(s.rotations),
        num(s.rotations / s.seconds, sig3),
        int(s.segments),
        bytes(s.walFileBytes),
        bpd(s.bytesPerDraw),
        int(s.gcCount),
        bpd(s.walBytesPerDraw),
        String(s.samples),
        spread(s),
      ],
    });
  }
  return {
    id: 'segment',
    title: `Segment size: drawMany(${p.batch}), mmap WAL, sync never (rotations: metrics().rotations in the timed window)`,
    columns: ['segmentBytes', 'draws/sec', 'ns/op', 'rotations', 'rotations/sec', 'segments', 'wal_file_size', 'bytes/draw', 'gc_count', 'wal_bytes/draw', 'samples', '±%'],
    rows,
  };
}

export function snapshotTable(results: Map<string, Result>, p: Profile, cores: number): Table {
  const rows: TableRow[] = [];
  for (const id of ['snapshot/off', 'snapshot/on']) {
    const r = results.get(id);
    const s = r?.summary;
    if (r === undefined || s === undefined) continue;
    rows.push({
      id,
      cells: [
        int(Number(r.options?.snapshotEveryRecords ?? (id.endsWith('off') ? 0 : p.snapshotEvery))),
        si(s.drawsPerSec),
        duration(s.nsPerOp),
        int(s.snapshots),
        si(s.records),
        bpd(s.bytesPerDraw),
        int(s.gcCount),
        bpd(s.walBytesPerDraw),
        bytes(s.walFileBytes),
        String(s.samples),
        spread(s),
      ],
    });
  }
  return {
    id: 'snapshot',
    title: `Snapshots: draw() x${p.inFlight} in flight over ${p.snapshotPoolsPerShard * cores} pools, mmap WAL, sync never (snapshots, records: metrics() in the timed window)`,
    columns: ['snapshotEveryRecords', 'draws/sec', 'ns/op', 'snapshots', 'records', 'bytes/draw', 'gc_count', 'wal_bytes/draw', 'wal_file_size', 'samples', '±%'],
    rows,
  };
}

export function gcTable(results: Map<string, Result>, p: Profile): Table {
  const rows: TableRow[] = [];
  const ids = [...results.keys()].filter((id) => id.startsWith('gc/')).sort((a, b) => (a.endsWith('default') ? -1 : b.endsWith('default') ? 1 : a.localeCompare(b)));
  for (const id of ids) {
    const r = results.get(id)!;
    const s = resolve(results, r.id)?.summary;
    if (s === undefined) continue;
    const flag = /semi-space-(\d+)mb/.exec(r.id);
    rows.push({
      id: r.id,
      cells: [
        flag ? `--max-semi-space-size=${flag[1]}` : 'default',
        si(s.drawsPerSec),
        duration(s.nsPerOp),
        bpd(s.bytesPerDraw),
        int(s.gcCount),
        pct(s.gcPausePct),
        bpd(s.walBytesPerDraw),
        String(s.samples),
        spread(s),
      ],
    });
  }
  return {
    id: 'gc',
    title: `Young generation: draw() x${p.inFlight} in flight, mmap WAL, sync never (GC pause: share of the window in coordinator GC pauses)`,
    columns: ['node flags', 'draws/sec', 'ns/op', 'bytes/draw', 'gc_count', 'GC pause', 'wal_bytes/draw', 'samples', '±%'],
    rows,
  };
}

export function recoveryTable(results: Map<string, Result>): Table {
  const r = results.get('recovery');
  const rows: TableRow[] = [];
  const notes: string[] = [];
  if (r?.recovery !== undefined) {
    const b = r.recovery.build;
    notes.push(
      `directory: ${si(b.draws)} draw() calls over 2 shards in ${sig3(b.seconds)} s, ${int(b.records)} records, ${bytes(b.walBytes)} of WAL in ${b.segments} segments (${bytes(b.dirBytes)} on disk), snapshotEveryRecords 0`,
    );
    for (const s of r.recovery.byThreads) {
      rows.push({
        id: `recovery/${s.replayThreads}`,
        cells: [
          String(s.replayThreads),
          String(s.threads),
          String(s.threadsUsed),
          int(s.segments),
          int(s.records),
          si(s.drawsReplayed),
          sig3(s.ms),
          si(s.recordsPerSec),
          si(s.drawsPerSec),
          `${sig3(s.speedup)}x`,
          sig3(s.openMs),
          String(s.runs),
          s.runs < 2 ? dash : `±${sig3(s.spreadPct)}%`,
        ],
      });
    }
  }
  return {
    id: 'recovery',
    title:
      'Recovery: copy of the directory opened with { replayThreads, shards: 2 } (ms, records, threads: engine.recovery; threads = the calling thread plus the replay threads started, used = those that decoded a segment; open ms: DrawEngine.open wall clock)',
    columns: ['replayThreads', 'threads', 'threads used', 'segments', 'records', 'draws replayed', 'recovery ms', 'records/s', 'draws/s', 'speedup', 'open ms', 'runs', '±% (ms)'],
    rows,
    notes,
  };
}
