/** Placeholder until the benchmark suite lands (issue 4). */
export async function run(): Promise<number> {
  process.stderr.write('reward-pool-engine bench: not built yet; use `npm run bench`\n');
  return 2;
}
