/**
 * `reward-pool-engine bench [options]`: runs the benchmark suite of bench/e2e/suite.ts.
 *
 * The suite lives in bench/ (compiled to dist/bench/), which only a checkout of the repository
 * has: the npm package ships dist/src and dist/workers. So it is loaded on demand, and an
 * installed package says where to get it instead of failing with a module error.
 */
interface SuiteModule {
  run(argv: string[]): Promise<number>;
}

export async function run(argv: string[]): Promise<number> {
  let suite: SuiteModule;
  try {
    suite = (await import('../../bench/e2e/suite.js')) as SuiteModule;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException)?.code;
    if (code !== 'ERR_MODULE_NOT_FOUND') throw err;
    process.stderr.write(
      'reward-pool-engine bench: the benchmark suite is not part of the installed package;\n' +
        'run it from a checkout of the repository: npm ci && npm run bench -- --help\n',
    );
    return 2;
  }
  return suite.run(argv);
}
