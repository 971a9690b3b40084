/**
 * Publish figures on the three-server R3 cluster of test/helpers/nats-cluster.ts (all three
 * nats-server processes and this client share the machine). Prints a table; asserts only that
 * every publish was acknowledged. Not part of `npm test`:
 *
 *   npx vitest run --config test/bench/nats-measure.config.ts
 *
 * RPE_NATS_MEASURE_N (200) latency samples per size, RPE_NATS_MEASURE_TPUT_MS (5000) per
 * throughput run.
 */
import { randomBytes } from 'node:crypto';
import { type JetStreamClient, type JetStreamManager, StorageType } from 'nats';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { natsServerVersion, startCluster, type NatsCluster } from '../helpers/nats-cluster.js';

const samples = Number(process.env.RPE_NATS_MEASURE_N ?? 200);
const tputMs = Number(process.env.RPE_NATS_MEASURE_TPUT_MS ?? 5000);

let cluster: NatsCluster;
let js: JetStreamClient;
let jsm: JetStreamManager;
const rows: string[] = [];

beforeAll(async () => {
  cluster = await startCluster({ label: 'nats-measure' });
  const nc = await cluster.connect();
  js = nc.jetstream({ timeout: 10_000 });
  jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name: 'M', subjects: ['M.s.>'], num_replicas: 3, storage: StorageType.File });
});

afterAll(async () => {
  console.log(
    [`nats-server ${natsServerVersion()}, R3 file storage, 3 servers + client on ${process.env.HOSTNAME ?? 'this machine'}`, ...rows].join('\n'),
  );
  await cluster?.stop();
});

const quantile = (sorted: number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

it('latency: one conditional publish in flight (expected last subject sequence), 256 B / 4 KiB / 64 KiB', async () => {
  for (const size of [256, 4096, 65536]) {
    const subject = `M.s.lat${size}`;
    const data = randomBytes(size);
    let last = 0;
    for (let i = 0; i < 20; i++) last = (await js.publish(subject, data, { expect: { lastSubjectSequence: last } })).seq; // warm-up
    const times: number[] = [];
    for (let i = 0; i < samples; i++) {
      const t = process.hrtime.bigint();
      last = (await js.publish(subject, data, { expect: { lastSubjectSequence: last } })).seq;
      times.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    times.sort((a, b) => a - b);
    rows.push(
      `conditional publish, 1 in flight, ${String(size).padStart(5)} B: median ${quantile(times, 0.5).toFixed(2)} ms, p90 ${quantile(times, 0.9).toFixed(2)} ms, p99 ${quantile(times, 0.99).toFixed(2)} ms (n=${samples})`,
    );
    expect(times).toHaveLength(samples);
  }
});

/** Keeps `window` publishes in flight for RPE_NATS_MEASURE_TPUT_MS; chained: the i-th expects stream sequence first + i. */
async function throughput(label: string, subject: string, size: number, window: number, first: number, chained: boolean): Promise<void> {
  const data = randomBytes(size);
  let sent = 0;
  let acked = 0;
  let failed = 0;
  const t0 = Date.now();
  const stopAt = t0 + tputMs;
  async function lane(): Promise<void> {
    while (Date.now() < stopAt) {
      const i = sent++;
      try {
        await js.publish(subject, data, chained ? { expect: { lastSequence: first + i } } : {});
        acked++;
      } catch {
        failed++;
        return;
      }
    }
  }
  await Promise.all(Array.from({ length: window }, lane));
  const secs = (Date.now() - t0) / 1000;
  rows.push(
    `${label}: ${(acked / secs).toFixed(0)} publishes/s, ${((acked * size) / secs / 1024 / 1024).toFixed(1)} MiB/s (${acked} in ${secs.toFixed(1)} s, ${failed} refused)`,
  );
  expect(failed).toBe(0);
}

it('throughput: 64 in flight, 4 KiB, chained on the stream sequence; and unconditional', async () => {
  // Chained publishes must be sent in order: the lanes take indexes in order synchronously.
  const first = (await jsm.streams.info('M')).state.last_seq;
  await throughput('64 in flight, 4 KiB, chained expected last (stream) sequence', 'M.s.tput', 4096, 64, first, true);
  await throughput('64 in flight, 4 KiB, unconditional', 'M.s.free', 4096, 64, 0, false);
  await throughput('1 in flight, 4 KiB, unconditional', 'M.s.one', 4096, 1, 0, false);
});
