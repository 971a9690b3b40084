import { fileURLToPath } from 'node:url';

/**
 * Workers always run from the compiled files (Node 20 cannot run .ts in a Worker). From
 * dist/src/ the entry is dist/workers/; when this module itself runs from source
 * (unit tests under vitest), point at the build of the same checkout.
 */
export function workerEntry(name: string): string {
  const here = import.meta.url;
  const rel = here.endsWith('.ts') ? `../dist/workers/${name}.js` : `../workers/${name}.js`;
  return fileURLToPath(new URL(rel, here));
}
