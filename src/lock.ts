import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync, fsyncSync } from 'node:fs';
import { join } from 'node:path';
import { EngineError, storageError } from './errors.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Take dir/LOCK (O_EXCL create holding our pid). A lock whose pid is no longer alive was left
 * by a crashed process and is taken over. Returns the release function.
 */
export function acquireDirLock(dir: string): () => void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    const full = storageError(err, `options.dir ${JSON.stringify(dir)} cannot be created`);
    if (full.code === 'ERR_DISK_FULL') throw full;
    throw new EngineError('ERR_INVALID_CONFIG', `options.dir ${JSON.stringify(dir)} cannot be created: ${(err as Error).message}`, {
      cause: err,
      details: { option: 'dir', value: dir },
    });
  }
  const path = join(dir, 'LOCK');
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw storageError(err, `cannot create ${path}`);
      let owner = NaN;
      try {
        owner = Number.parseInt(readFileSync(path, 'utf8'), 10);
      } catch {
        // vanished between open and read: try again
      }
      if (Number.isSafeInteger(owner) && owner > 0 && alive(owner)) {
        throw new EngineError('ERR_DIR_LOCKED', `${dir} is locked by process ${owner}${owner === process.pid ? ' (this process: another engine is open on it)' : ''}`, {
          details: { dir, pid: owner },
        });
      }
      // Dead owner (or an empty lock from a crash while writing it): take it over.
      try {
        unlinkSync(path);
      } catch {
        // someone else removed it first
      }
      continue;
    }
    try {
      writeSync(fd, String(process.pid));
      fsyncSync(fd);
    } catch (err) {
      closeSync(fd);
      try {
        unlinkSync(path);
      } catch {
        // already gone
      }
      throw storageError(err, `cannot write ${path}`);
    }
    closeSync(fd);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      try {
        if (readFileSync(path, 'utf8') === String(process.pid)) unlinkSync(path);
      } catch {
        // already gone
      }
    };
  }
  throw new EngineError('ERR_DIR_LOCKED', `${dir}: could not take the lock after 3 attempts`, { details: { dir } });
}
