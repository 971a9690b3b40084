/**
 * The npm package as a user gets it (issue 8): `npm pack` from a fresh checkout ships the
 * compiled code and a prebuilt addon; an empty app installs the tarball with `--omit=dev
 * --ignore-scripts` (no compiler, no install script) and runs the README example with the
 * default `wal: 'mmap'`, through `import` and through `require`. Runs on whichever Node runs the
 * suite (CI: 20, 22, 24 and 26).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { tmpDir } from '../helpers/tmp.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** What a fresh clone has: sources and metadata, no node_modules (linked here), no build output. */
function freshCheckout(): string {
  const dir = tmpDir('pack-src');
  for (const name of ['package.json', 'package-lock.json', 'tsconfig.json', 'binding.gyp', 'README.md', 'CHANGELOG.md', 'LICENSE', 'src', 'workers', 'bench', 'docs']) {
    cpSync(join(root, name), join(dir, name), { recursive: true });
  }
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir');
  return dir;
}

const example = `
import { DrawEngine, EngineError } from 'reward-pool-engine';
const engine = await DrawEngine.open({ dir: 'data/rewards' });
if (!engine.poolIds().includes('spring')) {
  await engine.createPool('spring', [
    { id: 'diamond', weight: 10, quantity: 100 },
    { id: 'mud', weight: 70, quantity: -1 },
  ]);
}
const r = await engine.draw('spring');
const b = await engine.drawMany('spring', 1e6);
await engine.updateItem('spring', 'diamond', { quantity: 500, weight: 5 });
const s = await engine.pool('spring');
let code = '';
try { await engine.draw('autumn'); } catch (err) { code = err instanceof EngineError ? err.code : 'not an EngineError'; }
console.log(JSON.stringify({ first: r.requestId, batch: b.count, counted: [...b.counts().values()].reduce((a, n) => a + n, 0), items: s.items.length, code, wal: engine.options.wal, draws: engine.metrics().draws }));
await engine.close();
`;

it('packs from a fresh checkout, installs with --omit=dev --ignore-scripts, and runs the README example (mmap)', { timeout: 240_000 }, () => {
  const src = freshCheckout();
  const out = tmpDir('pack-out');
  // prepack builds the prebuilt addon and the TypeScript.
  execFileSync('npm', ['pack', '--pack-destination', out], { cwd: src, stdio: 'ignore' });
  const tarball = join(out, readdirSync(out).find((n) => n.endsWith('.tgz'))!);
  const files = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
    .map((f) => f.replace(/^package\//, ''));
  expect(files).toContain('dist/src/index.js');
  expect(files).toContain('dist/src/index.d.ts');
  expect(files).toContain('dist/workers/shard-worker.js');
  expect(files).toContain('LICENSE');
  expect(files).toContain('CHANGELOG.md');
  expect(files.some((f) => /^prebuilds\/linux-x64\/.+\.node$/.test(f))).toBe(true);
  expect(files.filter((f) => f.endsWith('.map'))).toEqual([]);
  expect(files.filter((f) => f.startsWith('bench/') || f.startsWith('dist/bench/') || f.startsWith('test/'))).toEqual([]);
  // No root binding.gyp: npm would otherwise run `node-gyp rebuild` on install.
  expect(files).not.toContain('binding.gyp');

  const app = tmpDir('pack-app');
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }));
  const install = spawnSync('npm', ['install', tarball, '--omit=dev', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'], {
    cwd: app,
    encoding: 'utf8',
    env: { ...process.env, CC: 'false', CXX: 'false' }, // no compiler may be needed
  });
  expect(install.status, install.stderr).toBe(0);
  // 161 packages with the old mmap dependency. Now: the engine, piscina, msgpackr,
  // node-gyp-build and their optional platform binaries (11), plus the service's fastify,
  // prom-client and undici with theirs; no build tools, and not the optional gRPC peers.
  const ls = spawnSync('npm', ['ls', '--all', '--omit=dev', '--parseable'], { cwd: app, encoding: 'utf8' });
  const packages = ls.stdout.split('\n').filter(Boolean).slice(1).map((p) => p.slice(p.lastIndexOf('node_modules/') + 'node_modules/'.length));
  expect(packages.length, packages.join('\n')).toBeGreaterThanOrEqual(4);
  expect(packages.length, packages.join('\n')).toBeLessThanOrEqual(70);
  for (const name of ['piscina', 'msgpackr', 'node-gyp-build', 'fastify', 'prom-client', 'undici']) expect(packages).toContain(name);
  for (const name of ['node-gyp', '@mapbox/node-pre-gyp', 'prebuildify', '@grpc/grpc-js', 'typescript', 'vitest']) expect(packages).not.toContain(name);

  writeFileSync(join(app, 'example.mjs'), example);
  const run = spawnSync(process.execPath, ['example.mjs'], { cwd: app, encoding: 'utf8', timeout: 60_000 });
  expect(run.status, run.stderr).toBe(0);
  const result = JSON.parse(run.stdout) as Record<string, unknown>;
  expect(result).toEqual({ first: 1, batch: 1_000_000, counted: 1_000_000, items: 2, code: 'ERR_UNKNOWN_POOL', wal: 'mmap', draws: 1_000_001 });

  // require() of the package, where Node can require ES modules (20.19+, 22.12+).
  writeFileSync(join(app, 'require.cjs'), `const { DrawEngine, EngineError } = require('reward-pool-engine'); console.log(typeof DrawEngine.open, typeof EngineError);`);
  const req = spawnSync(process.execPath, ['require.cjs'], { cwd: app, encoding: 'utf8' });
  expect(req.status, req.stderr).toBe(0);
  expect(req.stdout.trim()).toBe('function function');
  // The installed CLI answers.
  const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version as string;
  const cli = spawnSync(process.execPath, [join(app, 'node_modules', 'reward-pool-engine', 'dist', 'src', 'cli.js'), '--version'], { encoding: 'utf8' });
  expect(cli.stdout.trim()).toBe(version);
  mkdirSync(join(app, 'data'), { recursive: true });
});
