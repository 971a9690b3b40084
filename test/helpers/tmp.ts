import { cpSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';

const root = fileURLToPath(new URL('../../_tmp', import.meta.url));
let counter = 0;
const made: string[] = [];

/** A fresh directory `_tmp/<pid>-<n>` for one test; removed after the file's tests. */
export function tmpDir(label = 'case'): string {
  const dir = join(root, `${process.pid}-${counter++}-${label}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  made.push(dir);
  return dir;
}

/** A copy of directory `from` (e.g. a data directory whose engine is closed) in a fresh tmpDir(label). */
export function copyToTmp(from: string, label = 'copy'): string {
  const to = tmpDir(label);
  cpSync(from, to, { recursive: true });
  return to;
}

afterAll(() => {
  if (process.env.RPE_KEEP_TMP) return;
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});
