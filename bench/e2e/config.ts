/**
 * Suite configuration: the three profiles, the command line and its help text.
 */
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';

export type ProfileName = 'quick' | 'full' | 'tiny';

export interface Profile {
  name: ProfileName;
  /** Timed window of one sample, milliseconds. */
  sampleMs: number;
  /** Untimed load on the same engine before each sample, milliseconds. */
  warmupMs: number;
  /** Samples of every reference and main scenario (each in a fresh engine): median and spread. */
  repeat: number;
  /** Samples of every variant scenario (shards, sync, segment size, snapshot). */
  variantRepeat: number;
  /** draw() calls in flight. */
  inFlight: number;
  /** Draws per drawMany call (and per drawInto call of the selection reference). */
  batch: number;
  /** Pools per shard in the throughput scenarios. */
  poolsPerShard: number;
  /** segmentBytes of every scenario that does not vary it; undefined = the engine default. */
  segmentBytes: number | undefined;
  /** The segment-size variants. */
  segmentSizes: number[];
  /** syncIntervalMs of the sync: 'interval' variants. */
  syncIntervals: number[];
  /** snapshotEveryRecords of the snapshot-on variant (off is 0). */
  snapshotEvery: number;
  /** Pools per shard in the snapshot variants (many small records, so snapshots happen). */
  snapshotPoolsPerShard: number;
  /** Draws written into the recovery directory (2 shards, no snapshots). */
  recoveryDraws: number;
  recoverySegmentBytes: number;
  /** Opens per replayThreads value. */
  recoveryRepeat: number;
  /** Objects allocated by the heap-probe calibration. */
  calibrationObjects: number;
  /**
   * A sample during which other processes used more than this share of the machine's CPU
   * (percent of all cores) is discarded and taken again, at most twice. 100 keeps every sample.
   */
  maxOtherCpuPct: number;
  /** Retakes allowed over the whole run: a machine busy all along is not waited out. */
  maxRetakes: number;
}

const MiB = 1 << 20;
const KiB = 1 << 10;

export const kProfiles: Record<ProfileName, Profile> = {
  quick: {
    name: 'quick',
    sampleMs: 700,
    warmupMs: 200,
    repeat: 3,
    variantRepeat: 1,
    inFlight: 10_000,
    batch: 65_536,
    poolsPerShard: 8,
    segmentBytes: undefined,
    segmentSizes: [1 * MiB, 16 * MiB, 64 * MiB],
    syncIntervals: [1, 10, 100],
    // ~60 K records/s per shard in that scenario: a few snapshots in a 0.7 s window.
    snapshotEvery: 25_000,
    snapshotPoolsPerShard: 512,
    recoveryDraws: 2_000_000,
    recoverySegmentBytes: 1 * MiB,
    recoveryRepeat: 3,
    calibrationObjects: 1_000_000,
    maxOtherCpuPct: 15,
    maxRetakes: 10,
  },
  full: {
    name: 'full',
    sampleMs: 5_000,
    warmupMs: 1_000,
    repeat: 5,
    variantRepeat: 3,
    inFlight: 10_000,
    batch: 65_536,
    poolsPerShard: 8,
    segmentBytes: undefined,
    segmentSizes: [1 * MiB, 16 * MiB, 64 * MiB],
    syncIntervals: [1, 10, 100],
    snapshotEvery: 100_000,
    snapshotPoolsPerShard: 512,
    // ~210 MB of records (about 1.05 B per draw() draw): past kParallelReplayBytes (128 MiB),
    // where replay starts its pool threads. 64 MiB segments (the default) make 4 segments, 2 per
    // shard. Written with draw() calls: about a minute of the full run (54 s on 2 cores).
    recoveryDraws: 200_000_000,
    recoverySegmentBytes: 64 * MiB,
    recoveryRepeat: 5,
    calibrationObjects: 4_000_000,
    maxOtherCpuPct: 15,
    maxRetakes: 30,
  },
  // Smoke-test sizes for test/bench: every scenario and column, figures meaningless.
  tiny: {
    name: 'tiny',
    sampleMs: 100,
    warmupMs: 20,
    repeat: 1,
    variantRepeat: 1,
    inFlight: 1_000,
    batch: 4_096,
    poolsPerShard: 2,
    segmentBytes: 1 * MiB,
    segmentSizes: [64 * KiB, 256 * KiB, 1 * MiB],
    syncIntervals: [1, 10],
    snapshotEvery: 1_000,
    snapshotPoolsPerShard: 16,
    recoveryDraws: 20_000,
    recoverySegmentBytes: 64 * KiB,
    recoveryRepeat: 1,
    calibrationObjects: 100_000,
    maxOtherCpuPct: 100,
    maxRetakes: 0,
  },
};

export interface SuiteArgs {
  profile: Profile;
  /** Shards of the main table (and the top of the scaling curve). */
  cores: number;
  filter: RegExp | undefined;
  json: string | undefined;
  writeResults: boolean;
  resultsFile: string | undefined;
  list: boolean;
  help: boolean;
  quiet: boolean;
}

export const kUsage = `usage: reward-pool-engine bench [options]     (or: npm run bench -- [options])

Runs the benchmark suite: every scenario in a fresh engine under _tmp/ (removed afterwards),
reference rows (bare selection loop, bare promise per call) from the same run, a table per
group, and the ratios against the targets. Progress goes to stderr, results to stdout.

options:
  --full                 the long run (5 s samples, 5 repeats, 200 M-draw recovery; ~10 minutes)
  --tiny                 smoke-test sizes (~100 ms samples; figures meaningless, for tests)
  --filter <regex>       run only scenarios whose id matches (see --list)
  --json <file>          also write the results as JSON
  --write-results        regenerate bench/RESULTS.md (needs the whole suite: no --filter)
  --results-file <file>  where --write-results writes (default: bench/RESULTS.md)
  --seconds <s>          timed window of each sample (quick: 0.7, full: 5)
  --warmup <s>           untimed load before each sample (quick: 0.2, full: 1)
  --repeat <n>           samples of each main and reference scenario (quick: 3, full: 5)
  --in-flight <n>        draw() calls in flight (default 10,000)
  --max-other-cpu <pct>  retake a sample (twice at most, 10 retakes per run; --full: 30) when
                         other processes used more than this % of the machine's CPU during it
                         (default 15; 100 = never)
  --batch <n>            draws per drawMany call (default 65,536)
  --list                 list the scenario ids and exit
  --quiet                no progress output
  -h, --help             this text

environment (flags win): RPE_SECONDS, RPE_WARMUP, RPE_REPEAT, RPE_IN_FLIGHT, RPE_BATCH.
`;

export class UsageError extends Error {}

function positive(name: string, raw: string | undefined, integer: boolean): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new UsageError(`${name} must be a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

export function parseSuiteArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): SuiteArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        full: { type: 'boolean' },
        tiny: { type: 'boolean' },
        filter: { type: 'string' },
        json: { type: 'string' },
        'write-results': { type: 'boolean' },
        'results-file': { type: 'string' },
        seconds: { type: 'string' },
        warmup: { type: 'string' },
        repeat: { type: 'string' },
        'in-flight': { type: 'string' },
        'max-other-cpu': { type: 'string' },
        batch: { type: 'string' },
        list: { type: 'boolean' },
        quiet: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const v = parsed.values;
  if (v.full && v.tiny) throw new UsageError('--full and --tiny exclude each other');
  const profile: Profile = { ...kProfiles[v.full ? 'full' : v.tiny ? 'tiny' : 'quick'] };
  const seconds = positive('--seconds', v.seconds ?? env.RPE_SECONDS, false);
  const warmup = v.warmup ?? env.RPE_WARMUP;
  const repeat = positive('--repeat', v.repeat ?? env.RPE_REPEAT, true);
  const inFlight = positive('--in-flight', v['in-flight'] ?? env.RPE_IN_FLIGHT, true);
  const batch = positive('--batch', v.batch ?? env.RPE_BATCH, true);
  if (seconds !== undefined) profile.sampleMs = seconds * 1000;
  if (warmup !== undefined && warmup !== '') {
    const w = Number(warmup);
    if (!Number.isFinite(w) || w < 0) throw new UsageError(`--warmup must be a number >= 0, got ${JSON.stringify(warmup)}`);
    profile.warmupMs = w * 1000;
  }
  if (repeat !== undefined) profile.repeat = repeat;
  const otherCpu = v['max-other-cpu'];
  if (otherCpu !== undefined) {
    const n = Number(otherCpu);
    if (otherCpu === '' || !Number.isFinite(n) || n < 0 || n > 100) throw new UsageError(`--max-other-cpu must be a percentage from 0 to 100, got ${JSON.stringify(otherCpu)}`);
    profile.maxOtherCpuPct = n;
  }
  if (inFlight !== undefined) profile.inFlight = inFlight;
  if (batch !== undefined) {
    if (batch > 0x7fff_ffff) throw new UsageError(`--batch must be at most ${0x7fff_ffff}, got ${batch}`);
    profile.batch = batch;
  }
  let filter: RegExp | undefined;
  if (v.filter !== undefined) {
    try {
      filter = new RegExp(v.filter);
    } catch (err) {
      throw new UsageError(`--filter: ${(err as Error).message}`);
    }
  }
  if (v['write-results'] && filter !== undefined) throw new UsageError('--write-results regenerates the whole page: it cannot be combined with --filter');
  if (v['results-file'] !== undefined && !v['write-results']) throw new UsageError('--results-file is only meaningful with --write-results');
  return {
    profile,
    cores: availableParallelism(),
    filter,
    json: v.json,
    writeResults: v['write-results'] ?? false,
    resultsFile: v['results-file'],
    list: v.list ?? false,
    help: v.help ?? false,
    quiet: v.quiet ?? false,
  };
}
