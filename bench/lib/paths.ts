import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The checkout this module belongs to: the nearest directory above it whose package.json names
 * reward-pool-engine. Works from the sources (bench/lib/) and from the build (dist/bench/lib/).
 */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'reward-pool-engine') return dir;
      } catch {
        // not ours; keep walking up
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find the reward-pool-engine checkout above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

/**
 * Scratch space of one bench run: `<root>/_tmp/bench-<pid>/`. Every file a scenario writes goes
 * below it; `remove()` deletes it (also called on SIGINT/SIGTERM by the suite).
 */
export class ScratchDir {
  readonly path: string;
  #counter = 0;

  constructor(root = packageRoot()) {
    this.path = join(root, '_tmp', `bench-${process.pid}`);
    rmSync(this.path, { recursive: true, force: true });
    mkdirSync(this.path, { recursive: true });
  }

  /** A fresh, not yet existing path for one engine directory. */
  next(label: string): string {
    return join(this.path, `${this.#counter++}-${label.replace(/[^a-z0-9.-]+/gi, '_')}`);
  }

  remove(): void {
    rmSync(this.path, { recursive: true, force: true });
  }
}

/** Sum of the sizes of every regular file below `dir` (0 when it does not exist). */
export function dirBytes(dir: string): number {
  let total = 0;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
  for (const name of names) {
    const p = join(dir, name);
    const st = statSync(p, { throwIfNoEntry: false });
    if (st === undefined) continue;
    if (st.isDirectory()) total += dirBytes(p);
    else if (st.isFile()) total += st.size;
  }
  return total;
}

/** Number of files below `dir` whose name matches `re`. */
export function countFiles(dir: string, re: RegExp): number {
  let n = 0;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const name of names) {
    const p = join(dir, name);
    const st = statSync(p, { throwIfNoEntry: false });
    if (st?.isDirectory()) n += countFiles(p, re);
    else if (st?.isFile() && re.test(name)) n++;
  }
  return n;
}
