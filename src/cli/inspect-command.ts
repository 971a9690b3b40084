export async function run(): Promise<number> {
  process.stderr.write('reward-pool-engine inspect: not built yet\n');
  return 2;
}
