import { EngineError } from '../errors.js';

/** Exit codes shared by the CLI commands. */
export const kExitOk = 0;
export const kExitFailure = 1;
export const kExitUsage = 2;
export const kExitNoData = 3;
export const kExitLocked = 4;
export const kExitCorrupt = 5;

export function exitCodeFor(err: unknown): number {
  if (!(err instanceof EngineError)) return kExitFailure;
  switch (err.code) {
    case 'ERR_DIR_LOCKED':
      return kExitLocked;
    case 'ERR_CORRUPT_WAL':
    case 'ERR_CORRUPT_SNAPSHOT':
      return kExitCorrupt;
    case 'ERR_INVALID_CONFIG':
      return kExitUsage;
    default:
      return kExitFailure;
  }
}

export function describe(err: unknown): string {
  if (err instanceof EngineError) return `${err.code}: ${err.message}`;
  return (err as Error)?.message ?? String(err);
}
