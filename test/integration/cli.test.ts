/**
 * The CLI, run as a user would: `node dist/src/cli.js recover|inspect <dir> [--json]`.
 * Exit codes (src/cli/exit-codes.ts): 0 ok, 2 usage, 3 not a data directory, 4 locked by
 * another process, 5 corrupt, 1 anything else.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { allStates, DrawEngine, KiB, useEngines, type States } from '../helpers/engine.js';
import { copyToTmp, tmpDir } from '../helpers/tmp.js';
import { fingerprint, segmentFiles, unsealed } from '../helpers/wal-files.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function cli(...args: string[]): Run {
  const r = spawnSync(process.execPath, ['dist/src/cli.js', ...args], { cwd: root, encoding: 'utf8', timeout: 30_000 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const openEngine = useEngines();

async function statesOf(dir: string): Promise<States> {
  const engine = await openEngine({ dir, shards: 2, segmentBytes: 64 * KiB });
  const states = await allStates(engine);
  await engine.close();
  return states;
}

function copy(label: string): string {
  return copyToTmp(good, label);
}

// The good directory: two shards, several segments, a snapshot in the middle, a 300-item pool
// (two-byte draw records), one update.
let good: string;
let expected: States;
let totalDraws: number;
let successful: number;
let maxRequestId: number;
/** The shard holding pool 'a' (the busy one). */
let busy: number;

beforeAll(async () => {
  good = tmpDir('cli-good');
  const engine = await DrawEngine.open({ dir: good, shards: 2, segmentBytes: 64 * KiB, snapshotEveryRecords: 0 });
  try {
    await engine.createPool('a', [
      { id: 'x', weight: 1, quantity: 100 },
      { id: 'y', weight: 2, quantity: -1 },
    ]);
    await engine.createPool('wide', Array.from({ length: 300 }, (_, i) => ({ id: `w${i}`, weight: 1 + (i % 3), quantity: -1 })));
    await engine.drawMany('a', 100_000);
    await engine.drawMany('wide', 50_000);
    await engine.updateItem('a', 'x', { quantity: 5 });
    await engine.snapshot();
    await engine.drawMany('a', 70_000); // two segments after the snapshot
    totalDraws = 220_000;
    expected = await allStates(engine);
    successful = Object.values(expected).reduce((sum, s) => sum + s.items.reduce((a, i) => a + i.drawn, 0), 0);
    maxRequestId = Math.max(...Object.values(expected).map((s) => s.lastRequestId));
    busy = engine.metrics().shards.findIndex((s) => s.draws > 100_000);
  } finally {
    await engine.close();
  }
}, 60_000);

interface InspectJson {
  ok: boolean;
  shards: {
    shard: number;
    recoverFrom: string;
    segments: { file: string; seq: number; epoch: number; records: Record<string, number>; draws: number; ok: boolean; verdict: string }[];
    snapshots: { file: string; seq: number; valid: boolean; kind?: string; reason?: string; pools?: number }[];
  }[];
}

describe('inspect', () => {
  it('lists segments with records per type and the snapshot chain; changes nothing', () => {
    const before = fingerprint(good);
    const text = cli('inspect', good);
    expect(text.status, text.stderr).toBe(0);
    expect(text.stdout).toContain('shard-0: recovers from snapshot');
    expect(text.stdout).toMatch(/0000000001\.wal {2}epoch 1 .*createPool 2/);
    expect(text.stdout).toMatch(/draw16 \d+/);
    expect(text.stdout).toMatch(/updateItem 1/);
    expect(text.stdout).toMatch(/\.snap {2}incremental epoch 1: 2 pools/);
    expect(text.stdout.trim().split('\n').at(-1)).toBe('all checksums valid');

    const json = cli('inspect', good, '--json');
    expect(json.status, json.stderr).toBe(0);
    const report = JSON.parse(json.stdout) as InspectJson;
    expect(report.ok).toBe(true);
    expect(report.shards.map((s) => s.shard)).toEqual([0, 1]);
    const segs = report.shards.flatMap((s) => s.segments);
    expect(segs.every((g) => g.ok && g.verdict === 'ok')).toBe(true);
    expect(segs.reduce((a, g) => a + g.draws, 0)).toBe(totalDraws);
    const types: Record<string, number> = {};
    for (const g of segs) for (const [k, v] of Object.entries(g.records)) types[k] = (types[k] ?? 0) + v;
    expect(types.createPool).toBe(2);
    expect(types.updateItem).toBe(1);
    expect(types.draw8).toBeGreaterThan(0);
    expect(types.draw16).toBeGreaterThan(0);
    const busyShard = report.shards[busy]!;
    expect(busyShard.segments.length).toBeGreaterThanOrEqual(3);
    const snaps = busyShard.snapshots;
    expect(snaps.every((s) => s.valid)).toBe(true);
    const newest = snaps.at(-1)!;
    expect(newest.kind).toBe('incremental');
    expect(newest.pools).toBe(2);
    expect(busyShard.recoverFrom).toContain(`${String(newest.seq).padStart(10, '0')}.snap`);

    expect(fingerprint(good)).toEqual(before);
  });

  it('reports a torn tail (exit 0) and a damaged snapshot (exit 5)', () => {
    const dir = copy('cli-inspect-damage');
    const newest = segmentFiles(dir, busy).at(-1)!;
    // The process died while writing after its last record: unsealed, with garbage there.
    const buf = unsealed(readFileSync(newest));
    const end = readFileSync(newest).readUInt32LE(32); // sealedEnd
    buf.writeUInt32LE(24, end);
    buf.writeUInt32LE(12345, end + 4);
    buf.fill(7, end + 8, end + 32);
    writeFileSync(newest, buf);
    const torn = cli('inspect', dir);
    expect(torn.status, torn.stdout).toBe(0);
    expect(torn.stdout).toContain(`torn tail at ${end}`);

    const snapDir = join(dir, `shard-${busy}`);
    const snap = join(snapDir, readdirSync(snapDir).filter((n) => n.endsWith('.snap')).sort().at(-1)!);
    const sbuf = readFileSync(snap);
    sbuf[60]! ^= 1;
    writeFileSync(snap, sbuf);
    const damaged = cli('inspect', dir);
    expect(damaged.status).toBe(5);
    expect(damaged.stdout).toMatch(/\[invalid: checksum mismatch\]/);
    expect(damaged.stdout).toContain('damage found');

    // recover falls back to the previous snapshot and says so.
    const rec = cli('recover', dir);
    expect(rec.status, rec.stderr).toBe(0);
    expect(rec.stdout).toContain(`snapshot passed over: ${snap}`);
    expect(rec.stdout).toContain(`torn tail dropped: ${newest} at offset ${end}`);
  });
});

describe('recover', () => {
  it('recovers a good directory, prints the report (text and --json), state unchanged', async () => {
    const dir = copy('cli-recover');
    const text = cli('recover', dir);
    expect(text.status, text.stderr).toBe(0);
    expect(text.stdout).toContain(`recovered ${dir}`);
    expect(text.stdout).toMatch(/pools\s+2 \(successful draws over their life: (\d+)\)/);
    expect(text.stdout).toContain(`successful draws over their life: ${successful})`);
    expect(text.stdout).toMatch(/draws replayed\s+70000\n/);
    expect(text.stdout).toMatch(new RegExp(`max request id\\s+${maxRequestId}\\n`));

    // The first recover wrote snapshots of everything: nothing left to replay.
    const json = cli('recover', dir, '--json');
    expect(json.status, json.stderr).toBe(0);
    const report = JSON.parse(json.stdout) as { pools: number; totalDrawn: number; maxRequestId: number; drawsReplayed: number; epoch: number; snapshotsLoaded: number };
    expect(report.pools).toBe(2);
    expect(report.totalDrawn).toBe(successful);
    expect(report.maxRequestId).toBe(maxRequestId);
    expect(report.drawsReplayed).toBe(0);
    expect(report.snapshotsLoaded).toBeGreaterThan(0);
    expect(report.epoch).toBe(3);

    expect(await statesOf(dir)).toEqual(expected);
  });

  it('--json on a fresh copy replays the WAL after the snapshot', () => {
    const json = cli('recover', copy('cli-recover-json'), '--json', '--replay-threads', '2');
    expect(json.status, json.stderr).toBe(0);
    const report = JSON.parse(json.stdout) as { drawsReplayed: number; totalDrawn: number; tornTails: unknown[] };
    expect(report.drawsReplayed).toBe(70_000);
    expect(report.totalDrawn).toBe(successful);
    expect(report.tornTails).toEqual([]);
  });
});

describe('exit codes', () => {
  it('3: a missing directory, or one that holds no data', () => {
    const empty = tmpDir('cli-empty');
    const other = tmpDir('cli-other');
    writeFileSync(join(other, 'notes.txt'), 'hello');
    mkdirSync(join(other, 'shards')); // not shard-<k>
    const missing = join(empty, 'does-not-exist');
    for (const dir of [missing, empty, other]) {
      for (const cmd of ['recover', 'inspect']) {
        const r = cli(cmd, dir);
        expect(r.status, `${cmd} ${dir}: ${r.stderr}`).toBe(3);
        expect(r.stderr).toContain(`${JSON.stringify(dir)} is not a reward-pool-engine data directory`);
        expect(r.stdout).toBe('');
      }
    }
    // Nothing was created in the missing or foreign directories.
    expect(readdirSync(empty)).toEqual([]);
    expect(readdirSync(other).sort()).toEqual(['notes.txt', 'shards']);
  });

  it('5: a corrupted older record, with the file and offset named; nothing is changed', () => {
    const dir = copy('cli-corrupt');
    // The first segment after the snapshot (replayed, and not the newest).
    const snapDir = join(dir, `shard-${busy}`);
    const snapSeq = readdirSync(snapDir).filter((n) => n.endsWith('.snap')).sort().at(-1)!.slice(0, 10);
    const file = join(snapDir, `${snapSeq}.wal`);
    expect(segmentFiles(dir, busy).at(-1)).not.toBe(file);
    const buf = readFileSync(file);
    const at = 64; // its first record
    buf[at + 8 + 9]! ^= 0x20;
    writeFileSync(file, buf);
    const before = fingerprint(dir);

    const rec = cli('recover', dir);
    expect(rec.status, rec.stderr).toBe(5);
    expect(rec.stderr).toContain('ERR_CORRUPT_WAL');
    expect(rec.stderr).toContain(`${file} at offset ${at}`);
    const after = fingerprint(dir);
    // LOCK is written (our pid), never removed: everything else is as it was.
    delete after.LOCK;
    delete before.LOCK;
    expect(Object.keys(after).sort()).toEqual(Object.keys(before).sort());
    expect(after).toEqual(before);

    const ins = cli('inspect', dir);
    expect(ins.status).toBe(5);
    expect(ins.stdout).toContain(`ERR_CORRUPT_WAL: ${file} at offset ${at}`);
    const json = JSON.parse(cli('inspect', dir, '--json').stdout) as InspectJson;
    expect(json.ok).toBe(false);
    const bad = json.shards.flatMap((s) => s.segments).filter((g) => !g.ok);
    expect(bad.map((g) => g.file)).toEqual([file]);
  });

  it('a damaged segment that the snapshot covers: inspect reports it (5), recover does not need it (0)', () => {
    const dir = copy('cli-covered');
    const file = segmentFiles(dir, busy)[1]!; // segment 2, before the snapshot
    const buf = readFileSync(file);
    buf[64 + 8 + 9]! ^= 0x20;
    writeFileSync(file, buf);
    const ins = cli('inspect', dir);
    expect(ins.status).toBe(5);
    expect(ins.stdout).toContain(`ERR_CORRUPT_WAL: ${file} at offset 64`);
    const rec = cli('recover', dir);
    expect(rec.status, rec.stderr).toBe(0);
  });

  it('4: another engine holds the lock (inspect still reads)', async () => {
    const dir = copy('cli-locked');
    const engine = await openEngine({ dir, shards: 2, segmentBytes: 64 * KiB });
    const rec = cli('recover', dir);
    expect(rec.status, rec.stderr).toBe(4);
    expect(rec.stderr).toContain('ERR_DIR_LOCKED');
    expect(rec.stderr).toContain(String(process.pid));
    // inspect takes no lock.
    const ins = cli('inspect', dir);
    expect(ins.status, ins.stdout + ins.stderr).toBe(0);
    // The engine is unaffected.
    expect(await allStates(engine)).toEqual(expected);
    await engine.close();
    expect(cli('recover', dir).status).toBe(0);
  });

  it('2: bad usage', () => {
    const dir = tmpDir('cli-usage');
    const cases: string[][] = [
      ['recover'],
      ['inspect'],
      ['recover', dir, dir],
      ['inspect', dir, 'extra'],
      ['recover', '--bogus', dir],
      ['inspect', '--nope', dir],
      [],
      ['frobnicate', dir],
    ];
    for (const args of cases) {
      const r = cli(...args);
      expect(r.status, `cli ${args.join(' ')}`).toBe(2);
      expect(r.stdout + r.stderr, `cli ${args.join(' ')}`).toContain('usage: reward-pool-engine');
    }
    // A bad number on a real directory: exit 2 naming the flag and the value.
    for (const [flag, value] of [['--shards', '0'], ['--shards', 'abc'], ['--replay-threads', '1.5'], ['--segment-bytes', '12']]) {
      const bad = cli('recover', copy('cli-bad-number'), flag!, value!);
      expect(bad.status, `${flag} ${value}`).toBe(2);
      expect(bad.stderr).toContain(`${flag} must be an integer`);
      expect(bad.stderr).toContain(JSON.stringify(value));
    }
  });
});

describe('polish', () => {
  it('--version prints the package version; help <command> prints that command\'s help', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-v']) {
      const r = cli(flag);
      expect(r.status).toBe(0);
      expect(r.stdout.trim()).toBe(pkg.version);
    }
    for (const command of ['recover', 'inspect']) {
      const r = cli('help', command);
      expect(r.status).toBe(0);
      expect(r.stdout).toContain(`usage: reward-pool-engine ${command} <dir>`);
    }
    const general = cli('help');
    expect(general.status).toBe(0);
    expect(general.stdout).toContain('commands:');
  });

  it('the installed CLI does not offer the benchmark suite (it ships with the repository only)', () => {
    expect(cli('--help').stdout).not.toMatch(/^\s+bench\b/m);
    const r = cli('bench');
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('unknown command "bench"');
    expect(r.stderr).toContain('npm run bench');
  });

  it('recover stops cleanly on SIGINT and SIGTERM: exit 130 / 143, and the directory still recovers', async () => {
    // Enough segments that recovery is still running when the signal arrives.
    const big = tmpDir('cli-signal-src');
    const engine = await DrawEngine.open({ dir: big, shards: 1, segmentBytes: 64 * KiB, snapshotEveryRecords: 0, sync: 'never' });
    await engine.createPool('s', [{ id: 'x', weight: 1, quantity: -1 }, { id: 'y', weight: 1, quantity: -1 }]);
    for (let i = 0; i < 6; i++) await engine.drawMany('s', 2_000_000);
    const bigStates = await allStates(engine);
    await engine.close();
    for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
      const dir = copyToTmp(big, `cli-${signal}`);
      const child = spawn(process.execPath, ['dist/src/cli.js', 'recover', dir], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      const replaying = new Promise<void>((resolve) =>
        child.stderr.setEncoding('utf8').on('data', (d: string) => {
          stderr += d;
          if (stderr.includes('replaying segments')) resolve();
        }),
      );
      await replaying;
      child.kill(signal);
      const exit = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
      expect(exit, stderr).toBe(code);
      expect(stderr).toContain(`${signal}: stopping`);
      const again = await openEngine({ dir, shards: 1, segmentBytes: 64 * KiB });
      expect(await allStates(again)).toEqual(bigStates);
      await again.close();
    }
  });
});
