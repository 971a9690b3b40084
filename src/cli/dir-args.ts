import { existsSync, statSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { listShardDirs } from '../storage/data-dir.js';
import { realStorage } from '../storage/real-storage.js';
import { kExitNoData, kExitOk, kExitUsage } from './exit-codes.js';

export type DirArgs = { dir: string; values: Record<string, string | boolean | undefined> };

/**
 * Parse `<command> <dir> [options]`: usage errors and --help print and give an exit code;
 * otherwise the directory must be a data directory (it has shard-* folders).
 */
export function parseDirArgs(command: string, usage: string, argv: string[], options: NonNullable<ParseArgsConfig['options']>): DirArgs | number {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: { ...options, help: { type: 'boolean', short: 'h' } } });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${usage}`);
    return kExitUsage;
  }
  const values = parsed.values as DirArgs['values'];
  if (values.help) {
    process.stdout.write(usage);
    return kExitOk;
  }
  const dir = parsed.positionals[0];
  if (dir === undefined || parsed.positionals.length > 1) {
    process.stderr.write(usage);
    return kExitUsage;
  }
  if (!existsSync(dir) || !statSync(dir).isDirectory() || listShardDirs(realStorage, dir).length === 0) {
    process.stderr.write(`reward-pool-engine ${command}: ${JSON.stringify(dir)} is not a reward-pool-engine data directory (no shard-* folders)\n`);
    return kExitNoData;
  }
  return { dir, values };
}

/** A usage mistake: the command prints it with its usage and exits 2. */
export class UsageError extends Error {}

/** An integer flag within [min, max], or undefined when absent; anything else is a UsageError. */
export function intFlag(values: DirArgs['values'], name: string, min: number, max: number): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const n = typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return n;
}
