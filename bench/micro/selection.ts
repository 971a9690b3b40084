/**
 * Micro benchmark of the hot function of a shard: WeightedSelector.drawInto with Sfc32, over
 * catalog sizes and with limited quantities, side by side (`npm run bench:micro`).
 * The e2e suite's "bare selection loop" reference row is the first task here.
 * Env: RPE_MICRO_TIME (ms per task, default 500), RPE_BATCH (draws per call, default 65,536).
 */
import { Bench } from 'tinybench';
import { Sfc32 } from '../../src/prng.js';
import { WeightedSelector } from '../../src/selector.js';

const batch = Number(process.env.RPE_BATCH ?? 65_536);
const time = Number(process.env.RPE_MICRO_TIME ?? 500);
const out = new Uint16Array(batch);

function selector(items: number, quantity: number): WeightedSelector {
  const weights = Array.from({ length: items }, (_, i) => 10 + ((i * 37) % 90));
  return new WeightedSelector(weights, new Array<number>(items).fill(quantity));
}

const bench = new Bench({ name: `drawInto(${batch})`, time, warmup: true });
const cases: [string, number, number][] = [
  ['6 items, unlimited (the e2e reference)', 6, -1],
  ['16 items, unlimited', 16, -1],
  ['256 items, unlimited (u16 WAL width from 255)', 256, -1],
  ['4096 items, unlimited', 4096, -1],
  ['6 items, limited (quantity decrements)', 6, 1e12],
];
for (const [name, items, quantity] of cases) {
  const sel = selector(items, quantity);
  const rng = Sfc32.fromSeed(1);
  bench.add(name, () => {
    sel.drawInto(rng, batch, out, 0);
  });
}

await bench.run();
console.log(`${bench.name}: one call = ${batch.toLocaleString('en-US')} draws; Node ${process.version}`);
console.table(bench.table());
// Per draw, from the median call (ms per call in tinybench's latency statistics).
console.table(
  bench.tasks.map((t) => {
    const r = t.result;
    const p50 = r.state === 'completed' ? r.latency.p50 : Number.NaN;
    return { task: t.name, 'M draws/s (median)': Number((batch / p50 / 1e3).toFixed(1)), 'ns/draw (median)': Number(((p50 * 1e6) / batch).toFixed(1)) };
  }),
);
